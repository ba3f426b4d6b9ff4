"""``make scale``: the sample DAGs on Airflow's CeleryExecutor, at 100,000 profiles, on this machine.

It starts, each in a process group of its own and all on 127.0.0.1: PostgreSQL (the metadata
DB, the audience and the delivery ledger), Redis (the Celery broker), the demo API and SMTP
sink, and Airflow's api-server, scheduler, dag-processor, triggerer and two Celery workers.
It loads the audience into PostgreSQL with ``COPY``, runs each sample DAG once, prints what
each run delivered and how fast, and stops everything, also on failure or Ctrl-C.

The DAG files are the very ones ``make demo`` runs: only connections and configuration change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from demo.audience import generate_audience
from demo.audience_db import load_postgres
from demo.environment import AUDIENCE_CONN_ID, STATE_FILE, connection_env_vars, demo_connections
from demo.services import LocalPostgres, LocalRedis, Service, free_port, start_group, stop_group, stop_groups
from demo.worker_name import WORKER_NAME_VARIABLE

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DAGS = ("campaign_coupons", "campaign_weather", "campaign_offers", "campaign_lineup")
DELIVERY_TASKS = ("deliver_coupons", "deliver_fallback", "deliver_batch", "deliver_lineup")
LEDGER_TABLE = "campaign_delivery_ledger"


@dataclass
class Worker:
    """One Celery worker process (and, through it, its pool and task processes)."""

    name: str
    process: subprocess.Popen[bytes]
    peak_group_rss: int = 0
    peak_process_hwm: int = 0

    def processes(self) -> list[int]:
        """The worker's pid and those of all its descendants; task processes have process groups of their own."""
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            return [root.pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []


@dataclass
class BatchRun:
    """One try of one mapped delivery task instance."""

    task_id: str
    map_index: int
    try_number: int
    state: str
    worker: str
    started: float
    ended: float
    report: dict[str, Any] | None


@dataclass
class DagReport:
    dag_id: str
    run_id: str
    state: str
    seconds: float
    delivered: int
    batches: list[BatchRun]
    xcom_rows: int
    xcom_bytes: int
    by_worker: dict[str, Counter[str]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        done = [b for b in self.batches if b.report]
        rate = self.delivered / self.seconds if self.seconds else 0.0
        lines = [
            f"{self.dag_id}: {self.state} in {self.seconds:.1f} s ({self.run_id})",
            f"  batches    {len(done)} ({sum(b.report['profiles'] for b in done if b.report):,} profiles)",
            f"  delivered  {self.delivered:,} messages, {rate:,.0f} messages/s over the whole run",
        ]
        for worker, share in sorted(self.by_worker.items()):
            window = share["window_ms"] / 1000
            lines.append(
                f"  {worker:<9}  {share['batches']} batches, {share['sent']:,} messages in {window:.1f} s (its first"
                f" batch's start to its last one's end) = {share['sent'] / window if window else 0:,.0f} messages/s"
            )
        phases = Counter[str]()
        for batch in done:
            phases.update((batch.report or {}).get("seconds", {}))
        if phases:
            first = min(b.started for b in self.batches)
            last = max(b.ended for b in self.batches)
            lines.append(
                "  time       summed over the batches: "
                + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in sorted(phases.items()))
                + f"; the batches ran from {first:.1f} s to {last:.1f} s of the run"
            )
        retried = [b for b in self.batches if b.try_number > 1 or not b.report]
        if retried:
            lines.append(f"  tries      {len(retried)} task tries failed or were retried")
        lines.append(f"  XCom       {self.xcom_rows} values, {self.xcom_bytes:,} bytes in the metadata DB")
        return lines


class ScaleStack(Service):
    """Everything ``make scale`` runs, as a context manager that stops it all.

    :param state_dir: logs, the outbox and the Airflow home; emptied first.
    :param workers: how many Celery workers to start, each with ``concurrency`` task slots.
    :param settings: extra Airflow settings (``AIRFLOW__SECTION__KEY`` variables).
    :param dedupe_message_ids: let the SMTP sink drop a message whose Message-ID it stored already.
    """

    def __init__(
        self,
        state_dir: Path,
        dags_folder: Path,
        *,
        workers: int = 2,
        concurrency: int = 2,
        settings: Mapping[str, str] | None = None,
        dedupe_message_ids: bool = False,
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.dags_folder = dags_folder.resolve()
        self.worker_count = workers
        self.concurrency = concurrency
        self.settings = dict(settings or {})
        self.dedupe_message_ids = dedupe_message_ids
        self.logs = self.state_dir / "logs"
        self.postgres = LocalPostgres(self.logs)
        self.redis = LocalRedis(self.logs)
        self.api_port = free_port()
        self.workers: list[Worker] = []
        self._components: list[subprocess.Popen[bytes]] = []
        self._log_files: list[IO[bytes]] = []
        self._demo: subprocess.Popen[bytes] | None = None
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self.env: dict[str, str] = {}

    @property
    def outbox(self) -> Path:
        return self.state_dir / "demo" / "outbox"

    @property
    def duplicates_log(self) -> Path:
        return self.state_dir / "demo" / "duplicates.log"

    # Start and stop ---------------------------------------------------------------------------

    def start(self) -> ScaleStack:
        for stale in ("airflow", "demo", "logs"):
            shutil.rmtree(self.state_dir / stale, ignore_errors=True)
        self.logs.mkdir(parents=True)
        self.postgres.start()
        self.postgres.create_database("airflow")
        self.postgres.create_database("campaign")
        self.redis.start()
        self._start_demo()
        self.env = self._airflow_env()
        with (self.logs / "db-migrate.log").open("ab") as log:
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"], env=self.env, stdout=log, stderr=log, check=True
            )
        airflow = [sys.executable, "-m", "airflow"]
        self._component("api-server", [*airflow, "api-server", "--port", str(self.api_port)])
        self._component("scheduler", [*airflow, "scheduler", "--skip-serve-logs"])
        self._component("dag-processor", [*airflow, "dag-processor"])
        self._component("triggerer", [*airflow, "triggerer", "--skip-serve-logs"])
        for number in range(1, self.worker_count + 1):
            name = f"worker-{number}"
            command = [*airflow, "celery", "worker", "--concurrency", str(self.concurrency), "--skip-serve-logs",
                       "--celery-hostname", f"{name}@%h", "--without-mingle", "--without-gossip"]  # fmt: skip
            env = {**self.env, WORKER_NAME_VARIABLE: name}
            self.workers.append(Worker(name, self._component(name, command, env)))
        self._sampler = threading.Thread(target=self._sample_rss, name="rss-sampler", daemon=True)
        self._sampler.start()
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        """Stop Airflow's components, the demo, Redis and PostgreSQL, in that order; whatever happens, all stop."""
        self._sampling.set()
        processes, self._components = self._components, []
        stop_groups(processes, grace=30)
        if self._demo is not None:
            stop_group(self._demo)
            self._demo = None
        self.redis.stop()
        self.postgres.stop()
        for log in self._log_files:
            log.close()
        self._log_files = []

    def _component(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        self._log_files.append(log)
        process = start_group(command, log, env or self.env)
        self._components.append(process)
        return process

    def _start_demo(self) -> None:
        """The demo API and SMTP sink in a process of their own, so the sink has a core's worth of time to itself."""
        demo_dir = self.state_dir / "demo"
        command = [sys.executable, "-m", "demo", "serve", "--state-dir", str(demo_dir)]
        if self.dedupe_message_ids:
            command.append("--dedupe-message-ids")
        log = (self.logs / "demo.log").open("ab")
        self._log_files.append(log)
        self._demo = start_group(command, log, {**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 60
        while not (demo_dir / STATE_FILE).exists():
            if self._demo.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the demo environment did not start; see {self.logs / 'demo.log'}")
            time.sleep(0.2)

    def _airflow_env(self) -> dict[str, str]:
        state = json.loads((self.state_dir / "demo" / STATE_FILE).read_text())
        connections = demo_connections(state["base_url"], state["smtp_port"], Path(state["ca_cert"]), Path())
        connections[AUDIENCE_CONN_ID] = self.postgres.connection("campaign")
        metadata = self.postgres.url("airflow", "postgresql+psycopg2")
        return {
            **os.environ,
            **connection_env_vars(connections),
            # The workers' hostname_callable lives in the demo package; the DAG files import nothing from it.
            "PYTHONPATH": str(REPO),
            "AIRFLOW_HOME": str(self.state_dir / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "demo.worker_name.hostname",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(24),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(24),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **self.settings,
        }

    def _wait_until_ready(self, timeout: float = 240.0) -> None:
        """Until the api-server reports every component healthy and the sample DAGs are parsed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self._components:
                if process.poll() is not None:
                    raise RuntimeError(f"an Airflow component exited with {process.returncode}; see {self.logs}")
            if self._healthy() and set(SAMPLE_DAGS) <= self._parsed_dags():
                return
            time.sleep(1)
        raise RuntimeError(f"Airflow was not ready within {timeout:.0f} s; see {self.logs}")

    def _healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
            with urllib.request.urlopen(url, timeout=5) as response:
                health = json.load(response)
        except (OSError, urllib.error.URLError, ValueError):
            return False
        components = ("metadatabase", "scheduler", "dag_processor", "triggerer")
        return all(health.get(name, {}).get("status") == "healthy" for name in components)

    def _parsed_dags(self) -> set[str]:
        with self._metadata() as cursor:
            cursor.execute("SELECT dag_id FROM serialized_dag")
            return {row[0] for row in cursor.fetchall()}

    def _sample_rss(self) -> None:
        """Every half second: each worker's total RSS over all its processes, and the peak (VmHWM) of any one."""
        while not self._sampling.wait(0.5):
            for worker in self.workers:
                total = 0
                for pid in worker.processes():
                    status = _proc_status(pid)
                    total += status.get("VmRSS", 0)
                    worker.peak_process_hwm = max(worker.peak_process_hwm, status.get("VmHWM", 0))
                worker.peak_group_rss = max(worker.peak_group_rss, total)

    # Runs --------------------------------------------------------------------------------------

    def load_audience(self, profiles: int) -> float:
        """Generate ``profiles`` profiles and ``COPY`` them into PostgreSQL; return the seconds it took."""
        started = time.monotonic()
        load_postgres(self.postgres.url("campaign"), generate_audience(profiles))
        return time.monotonic() - started

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        run_id = f"scale__{dag_id}__{time.strftime('%Y%m%dT%H%M%S')}"
        command = [sys.executable, "-m", "airflow", "dags", "trigger", dag_id, "--run-id", run_id,
                   "--conf", json.dumps(dict(conf or {}))]  # fmt: skip
        with (self.logs / "trigger.log").open("ab") as log:
            subprocess.run(command, env=self.env, stdout=log, stderr=log, check=True)
        return run_id

    def wait(self, dag_id: str, run_id: str, timeout: float = 1800.0) -> str:
        """Wait until the run ends; return its state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        raise RuntimeError(f"{dag_id} run {run_id} did not end within {timeout:.0f} s")

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        with self._metadata() as cursor:
            cursor.execute("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
            row = cursor.fetchone()
        return None if row is None else str(row[0])

    def batch_runs(self, dag_id: str, run_id: str) -> list[BatchRun]:
        """Every try of every delivery batch of the run, with the worker it ran on and its report."""
        with self._metadata() as cursor:
            cursor.execute(
                "WITH run AS (SELECT start_date FROM dag_run WHERE dag_id = %s AND run_id = %s),"
                " tries AS (SELECT task_id, map_index, try_number, state, hostname, start_date, end_date"
                " FROM task_instance_history WHERE dag_id = %s AND run_id = %s AND map_index >= 0"
                " UNION ALL SELECT task_id, map_index, try_number, state, hostname, start_date, end_date"
                " FROM task_instance WHERE dag_id = %s AND run_id = %s AND map_index >= 0)"
                " SELECT task_id, map_index, try_number, state, hostname,"
                " EXTRACT(EPOCH FROM (tries.start_date - run.start_date)),"
                " EXTRACT(EPOCH FROM (COALESCE(tries.end_date, now()) - run.start_date)) FROM tries, run",
                (dag_id, run_id) * 3,
            )
            tries = cursor.fetchall()
            cursor.execute(
                "SELECT task_id, map_index, value FROM xcom WHERE dag_id = %s AND run_id = %s AND key = 'return_value'"
                " AND map_index >= 0",
                (dag_id, run_id),
            )
            reports = {(task_id, index): _json(value) for task_id, index, value in cursor.fetchall()}
        runs = []
        for task_id, index, try_number, state, hostname, started, ended in tries:
            if task_id not in DELIVERY_TASKS or started is None:
                continue
            report = reports.get((task_id, index)) if state == "success" else None
            runs.append(
                BatchRun(task_id, index, try_number, str(state), hostname or "?", float(started), float(ended), report)
            )
        return sorted(runs, key=lambda b: (b.task_id, b.map_index, b.try_number))

    def report(self, dag_id: str, run_id: str) -> DagReport:
        with self._metadata() as cursor:
            cursor.execute(
                "SELECT state, EXTRACT(EPOCH FROM (end_date - start_date)) FROM dag_run"
                " WHERE dag_id = %s AND run_id = %s",
                (dag_id, run_id),
            )
            state, seconds = cursor.fetchone()
            cursor.execute(
                "SELECT COUNT(*), COALESCE(SUM(pg_column_size(value)), 0) FROM xcom WHERE dag_id = %s AND run_id = %s",
                (dag_id, run_id),
            )
            xcom_rows, xcom_bytes = cursor.fetchone()
        batches = self.batch_runs(dag_id, run_id)
        by_worker: dict[str, Counter[str]] = {}
        for worker in {b.worker for b in batches}:
            mine = [b for b in batches if b.worker == worker]
            by_worker[worker] = Counter(
                batches=sum(1 for b in mine if b.report),
                sent=sum(b.report["delivery"]["sent"] for b in mine if b.report),
                window_ms=round((max(b.ended for b in mine) - min(b.started for b in mine)) * 1000),
            )
        return DagReport(
            dag_id, run_id, str(state), float(seconds or 0), self.delivered(dag_id, run_id), batches,
            int(xcom_rows), int(xcom_bytes), by_worker,
        )  # fmt: skip

    def delivered(self, dag_id: str, run_id: str) -> int:
        """Messages the ledger holds as delivered for the run."""
        import psycopg2

        conn = psycopg2.connect(self.postgres.url("campaign"))
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    f"SELECT COUNT(*) FROM {LEDGER_TABLE} WHERE dag_id = %s AND run_id = %s"  # noqa: S608
                    " AND delivered_at IS NOT NULL",
                    (dag_id, run_id),
                )
                return int(cursor.fetchone()[0])
        except psycopg2.errors.UndefinedTable:
            return 0
        finally:
            conn.close()

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL a worker and every process under it at once, as if its machine died; return the pids."""
        [worker] = [w for w in self.workers if w.name == name]
        pids = worker.processes()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(10)
        return pids

    @contextlib.contextmanager
    def _metadata(self) -> Iterator[Any]:
        import psycopg2

        conn = psycopg2.connect(self.postgres.url("airflow"))
        try:
            with conn.cursor() as cursor:
                yield cursor
        finally:
            conn.close()


def _json(value: Any) -> Any:
    """An XCom value as stored: JSON, possibly as text."""
    while isinstance(value, str):
        value = json.loads(value)
    return value


def _proc_status(pid: int) -> dict[str, int]:
    """The kB figures of ``/proc/<pid>/status`` (VmRSS, VmHWM, ...), in bytes; empty if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    figures = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            figures[name] = int(value.split()[0]) * 1024
    return figures


def count_outbox(outbox: Path) -> tuple[int, Counter[str], Counter[str]]:
    """The number of ``.eml`` files, and how often each recipient and each Message-ID occurs in them."""
    recipients: Counter[str] = Counter()
    message_ids: Counter[str] = Counter()
    files = 0
    for path in outbox.glob("*.eml"):
        files += 1
        with path.open("rb") as handle:
            head = handle.read(4096).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        for line in head.splitlines():
            name, _, value = line.decode("utf-8", "replace").partition(":")
            if name.lower() == "to":
                recipients[value.strip()] += 1
            elif name.lower() == "message-id":
                message_ids[value.strip()] += 1
    return files, recipients, message_ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dags-folder", type=Path, default=Path("dags"))
    parser.add_argument("--state-dir", type=Path, default=Path(".scale"))
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    # A batch waits on SMTP and database round trips most of the time (about a quarter of a core busy), so two
    # slots per worker keep the two cores busier than one; more only adds memory (about 190 MiB a task).
    parser.add_argument("--concurrency", type=int, default=2, help="task slots per worker (default 2)")
    parser.add_argument("--dags", nargs="*", default=list(SAMPLE_DAGS))
    args = parser.parse_args(argv)
    if args.profiles < 1:
        parser.error("--profiles must be at least 1")

    started = time.monotonic()
    stack = ScaleStack(args.state_dir, args.dags_folder, workers=args.workers, concurrency=args.concurrency)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM tears down like Ctrl-C
    failures = 0
    print(
        f"Starting PostgreSQL, Redis, the demo and Airflow ({args.workers} Celery workers, {args.concurrency} slots "
        f"each); logs in {stack.logs} ...",
        flush=True,
    )
    with stack:
        print(
            f"Ready in {time.monotonic() - started:.0f} s: PostgreSQL 127.0.0.1:{stack.postgres.port}, "
            f"Redis 127.0.0.1:{stack.redis.port}, Airflow API http://127.0.0.1:{stack.api_port}",
            flush=True,
        )
        seconds = stack.load_audience(args.profiles)
        print(f"Loaded {args.profiles:,} profiles into PostgreSQL in {seconds:.1f} s (COPY)\n", flush=True)
        for dag_id in args.dags:
            run_id = stack.trigger(dag_id, {"batch_size": args.batch_size})
            state = stack.wait(dag_id, run_id)
            failures += state != "success"
            print("\n".join(stack.report(dag_id, run_id).lines()) + "\n", flush=True)
        files, recipients, message_ids = count_outbox(stack.outbox)
        twice = sum(1 for count in message_ids.values() if count > 1)
        print(
            f"Outbox     {stack.outbox}: {files:,} .eml files (one per delivered message), {len(recipients):,} "
            f"recipients, {twice} Message-IDs twice"
        )
        for worker in stack.workers:
            print(
                f"Peak RSS   {worker.name}: {worker.peak_group_rss / 2**20:,.0f} MiB over all its processes at once, "
                f"{worker.peak_process_hwm / 2**20:,.0f} MiB the largest single process (VmHWM)"
            )
        print("Stopping everything ...", flush=True)
    print(f"{len(args.dags) - failures} of {len(args.dags)} runs succeeded in {time.monotonic() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
