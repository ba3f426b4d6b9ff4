"""What waiting costs: worker seconds of a job in each mode, and how fast a deferred task resumes.

Run with ``.venv/bin/python -m tests.benchmarks.bench_deferral [--job-seconds 300]`` (about
``job-seconds`` plus two minutes). A real scheduler (LocalExecutor), triggerer, dag-processor and
api-server run in their own processes against a local HTTPS job API. The same job runs with
``deferrable=False`` (polled on a worker) and ``deferrable=True`` (polled in the triggerer), side
by side; the task instance's state is sampled from the metadata DB every 0.2 s, and the time it
spends ``running`` is the worker time it costs. Short jobs then measure the resume latency: from
the trigger firing (the triggerer's log) to the resumed task's first log line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from tests.support.airflow_cluster import AirflowCluster
from tests.support.scripted_server import ScriptedHandler, ScriptedServer

DAG = """
from airflow.sdk import dag
from airflow_campaign_provider.operators.external_api import ExternalApiOperator


@dag(schedule=None, params={"seconds": 300})
def waiting_cost():
    for deferrable in (False, True):
        ExternalApiOperator(
            task_id="deferrable" if deferrable else "on_worker",
            conn_id="job_api",
            endpoint="jobs",
            method="POST",
            body={"seconds": "{{ params.seconds }}"},
            job={"poll_interval": 10, "timeout": 3600},
            deferrable=deferrable,
        )


waiting_cost()
"""


class Jobs:
    """``POST /v1/jobs`` starts a job that is ``running`` for the posted number of seconds, then ``done``."""

    def __init__(self, server: ScriptedServer) -> None:
        self.started: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()
        server.route("/v1/jobs", self.create)
        for n in range(1, 200):
            server.route(f"/v1/jobs/{n}", self.status)

    def create(self, h: ScriptedHandler) -> None:
        with self.lock:
            job = str(len(self.started) + 1)
            self.started[job] = (time.monotonic(), float(json.loads(h.body)["seconds"]))
        h.send_json(202, {"id": job}, headers={"Location": f"/v1/jobs/{job}"})

    def status(self, h: ScriptedHandler) -> None:
        started, seconds = self.started[h.path.rsplit("/", 1)[1]]
        done = time.monotonic() - started >= seconds
        h.send_json(200, {"status": "done" if done else "running", "rows": [{"n": 1}]})


def worker_seconds(cluster: AirflowCluster, run_id: str, tasks: tuple[str, ...]) -> dict[str, float]:
    """Sample the executor's workers until the run ends: the time a worker is busy with a task is what it costs.

    A LocalExecutor worker's process title names the task instance it runs (from the moment the
    executor hands it over, task start-up and DAG parsing included, to the task process's end).
    """
    spent = dict.fromkeys(tasks, 0.0)
    step = 0.2
    while cluster.run_state("waiting_cost", run_id) not in ("success", "failed"):
        # The id is stored as 32 hex digits; the title shows it with dashes.
        ids = {str(ti).replace("-", ""): task for ti, task in cluster.query(
            "SELECT id, task_id FROM task_instance WHERE run_id = ?", run_id
        )}  # fmt: skip
        for title in cluster.task_processes():
            task = next((task for ti, task in ids.items() if ti in title.replace("-", "")), None)
            if task in spent:
                spent[task] += step
        time.sleep(step)
    return spent


def _timestamp(line: str) -> float:
    return datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")).timestamp()


def resume_latency(cluster: AirflowCluster, run_id: str) -> float:
    """Seconds from the trigger firing to the resumed task's first log line (both from the logs)."""
    folder = cluster.home / "logs" / "dag_id=waiting_cost" / f"run_id={run_id}" / "task_id=deferrable"
    fired = next(
        _timestamp(line)
        for log in folder.glob("attempt=1.log.trigger.*.log")
        for line in log.read_text().splitlines()
        if "Trigger fired event" in line
    )
    lines = (folder / "attempt=1.log").read_text().splitlines()
    return min(_timestamp(line) for line in lines if _timestamp(line) > fired) - fired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job-seconds", type=float, default=300)
    parser.add_argument("--short-runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="campaign-bench-deferral-") as tmp:
        from demo.tls import ensure_local_ca

        home = Path(tmp)
        ca = ensure_local_ca(home / "ca")
        server = ScriptedServer(ca).start()
        Jobs(server)
        (home / "dags").mkdir()
        (home / "dags" / "waiting_cost.py").write_text(DAG)
        connection = {
            "conn_type": "campaign_external_api",
            "host": f"{server.base_url}/v1",
            "extra": {"verify": str(ca.ca_cert), "allow_private_hosts": True},
        }
        cluster = AirflowCluster(home / "airflow", home / "dags", {"AIRFLOW_CONN_JOB_API": json.dumps(connection)})
        try:
            cluster.start()
            run_id = cluster.trigger("waiting_cost", {"seconds": args.job_seconds})
            spent = worker_seconds(cluster, run_id, ("on_worker", "deferrable"))
            latencies = []
            for _ in range(args.short_runs):
                short = cluster.trigger("waiting_cost", {"seconds": 2})
                cluster.wait_for_run("waiting_cost", short)
                latencies.append(resume_latency(cluster, short))
        finally:
            cluster.stop()
            server.stop()
    print(
        f"| a {args.job_seconds:.0f} s job, polled every 10 s | worker busy, seconds |\n|---|---:|\n"
        f"| deferrable=False (polled on the worker) | {spent['on_worker']:.0f} |\n"
        f"| deferrable=True (polled in the triggerer) | {spent['deferrable']:.1f} |\n\n"
        f"Trigger fired to task resumed, {len(latencies)} short jobs: median {statistics.median(latencies):.2f} s, "
        f"min {min(latencies):.2f} s, max {max(latencies):.2f} s"
    )


if __name__ == "__main__":
    main()
