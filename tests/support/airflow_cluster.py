"""Real Airflow components in separate processes: api-server, scheduler (LocalExecutor), dag-processor, triggerer.

``dag.test()`` runs triggers inline, so it cannot show that a deferred task released its
worker, nor survive a triggerer restart. This starts each component in its own process
group on loopback, with a SQLite metadata DB of its own, and reads task states straight
from that DB. Every process is stopped by its process group, never by name (Airflow
rewrites process titles).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class AirflowCluster:
    """Start with :meth:`start`, stop with :meth:`stop`; DAGs come from ``dags_folder``.

    :param home: the cluster's own AIRFLOW_HOME (SQLite DB, logs).
    :param env: extra environment for every component (``AIRFLOW_CONN_*`` connections, say).
    """

    def __init__(self, home: Path, dags_folder: Path, env: Mapping[str, str]) -> None:
        self.home = home
        self.port = free_port()
        self.logs = home / "component-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            **env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": "test-cluster-jwt-secret-0123456789abcdef",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            # A killed triggerer's triggers are adopted once its heartbeat is this old.
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run an ``airflow`` CLI command against this cluster and return its output."""
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout,
        ).stdout

    def start(self) -> AirflowCluster:
        self.airflow("db", "migrate")
        try:
            for name in COMPONENTS:
                self.start_component(name)
            self.wait_for(self._healthy, 120, "the api-server and scheduler to be healthy")
        except BaseException:
            self.stop()
            raise
        return self

    def start_component(self, name: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *COMPONENTS[name]],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so it can be killed with everything it started
        )

    def kill_component(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(30)

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name in list(self.processes):
            process = self.processes.pop(name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # and whatever it started

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=5) as reply:
                health = json.loads(reply.read())
        except OSError:
            return False
        return bool(health.get("scheduler", {}).get("status") == "healthy")

    @staticmethod
    def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")

    # The metadata DB, read directly ---------------------------------------------------------------

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.home / "airflow.db", timeout=30) as db:
            return db.execute(sql, args).fetchall()

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a run once the DAG is parsed; returns its run_id."""
        self.wait_for(lambda: self.query("SELECT 1 FROM dag WHERE dag_id = ?", dag_id), 120, f"{dag_id} to be parsed")
        run_id = f"manual__{dag_id}__{time.time_ns()}"
        self.airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(dict(conf or {})))
        return run_id

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        rows = self.query(
            "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?", dag_id, run_id, task_id
        )
        return rows[0][0] if rows else None

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
        return rows[0][0] if rows else None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        def finished() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return str(self.wait_for(finished, timeout, f"run {run_id} to finish"))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ?",
            dag_id,
            run_id,
            task_id,
            key,
        )
        if not rows:
            return None
        value = rows[0][0]
        # SQLite hands JSON scalars back as numbers; anything else is JSON text.
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def task_instance_id(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The task instance's id as worker process titles show it (with dashes)."""
        (raw,) = self.query(
            "SELECT id FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?", dag_id, run_id, task_id
        )[0]
        hexa = str(raw).replace("-", "")
        return f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"

    def task_processes(self) -> list[str]:
        """Titles of this scheduler's LocalExecutor workers that are busy with a task (they name its id)."""
        parents: dict[int, int] = {}
        titles: dict[int, str] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                titles[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            parents[int(proc.name)] = int(stat.rpartition(")")[2].split()[1])
        ours = {self.processes["scheduler"].pid}
        for _ in range(6):  # the scheduler, its workers, the tasks they run
            ours |= {pid for pid, parent in parents.items() if parent in ours}
        return [
            titles[pid].strip()
            for pid in ours
            if titles.get(pid, "").startswith("airflow worker -- LocalExecutor") and "<idle>" not in titles[pid]
        ]
