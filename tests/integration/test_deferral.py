"""Deferrable mode with a real triggerer: scheduler (LocalExecutor), triggerer, dag-processor and api-server
run as separate processes on a SQLite metadata DB, against the real local HTTPS server.

``dag.test()`` runs triggers inline and proves nothing here; this watches the task instance in
the metadata DB and the executor's processes while the job runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.airflow_cluster import AirflowCluster
from tests.support.scripted_server import ScriptedHandler, ScriptedServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DAG = """
from airflow.sdk import dag, task
from airflow_campaign_provider.operators.external_api import ExternalApiOperator


@dag(schedule=None, params={"scenario": "ok"})
def deferred_coupons():
    batch = ExternalApiOperator(
        task_id="coupons",
        conn_id="job_api",
        endpoint="coupon-batches",
        method="POST",
        headers={"X-Scenario": "{{ params.scenario }}"},
        body={"params": {"campaign": "spring"}},
        job={"result_url": "$.links.result", "poll_interval": 1, "timeout": 600},
        outbound={"records": "$.data[*]"},
        deferrable=True,
        idempotency_key=True,
        failure_branch="fallback",
    )

    @task
    def fallback():
        return "fallback"

    @task
    def count(rows):
        return len(rows)

    batch >> [fallback(), count(batch.output)]


deferred_coupons()
"""

COUPONS = [{"zip": z, "code": f"SPRING-{z}"} for z in ("20121", "75001", "1012")]


class TimedJobs:
    """Jobs whose status moves with time: queued, running for ``scenario`` seconds, then done or failed.

    The scenario comes in an ``X-Scenario`` header: ``ok`` (done after 8 s), ``long`` (40 s),
    ``failed`` (fails after 4 s), ``rate-limited`` (done after 4 s, but the second poll gets a 429
    with Retry-After 60).
    """

    def __init__(self, server: ScriptedServer) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        server.route("/v1/coupon-batches", self.create)
        for n in range(1, 50):
            server.route(f"/v1/coupon-batches/b-{n}", self.status)
            server.route(f"/v1/coupon-batches/b-{n}/coupons", self.result)

    def create(self, h: ScriptedHandler) -> None:
        with self.lock:
            job_id = f"b-{len(self.jobs) + 1}"
            self.jobs[job_id] = {"created": time.monotonic(), "scenario": h.headers.get("X-Scenario", "ok"), "polls": 0}
        h.send_json(202, {"id": job_id}, headers={"Location": f"/v1/coupon-batches/{job_id}"})

    def status(self, h: ScriptedHandler) -> None:
        job_id = h.path.split("/")[-1].split("?")[0]
        job = self.jobs[job_id]
        job["polls"] += 1
        age = time.monotonic() - job["created"]
        scenario = job["scenario"]
        if scenario == "rate-limited" and job["polls"] == 2:
            job["limited_at"] = time.monotonic()
            h.send_json(429, {"error": "slow down"}, headers={"Retry-After": "60"})
            return
        duration = {"ok": 8, "long": 40, "failed": 4, "rate-limited": 4}[scenario]
        status = "queued" if age < 1 else "running" if age < duration else "failed" if scenario == "failed" else "done"
        links = {"result": f"/v1/coupon-batches/{job_id}/coupons"}
        h.send_json(200, {"id": job_id, "status": status, "links": links})

    def result(self, h: ScriptedHandler) -> None:
        h.send_json(200, {"data": COUPONS})


@pytest.fixture(scope="module")
def api(local_ca) -> Iterator[tuple[ScriptedServer, TimedJobs]]:
    server = ScriptedServer(local_ca).start()
    jobs = TimedJobs(server)
    yield server, jobs
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, api, local_ca) -> Iterator[AirflowCluster]:
    server, _ = api
    home = tmp_path_factory.mktemp("cluster")
    dags = home / "dags"
    dags.mkdir()
    (dags / "deferred_coupons.py").write_text(DAG)
    connection = {
        "conn_type": "campaign_external_api",
        "host": f"{server.base_url}/v1",
        "extra": {"verify": str(local_ca.ca_cert), "allow_private_hosts": True, "timeout": 30},
    }
    cluster = AirflowCluster(home, dags, {"AIRFLOW_CONN_JOB_API": json.dumps(connection)}).start()
    yield cluster
    cluster.stop()


def watch_deferred(cluster: AirflowCluster, run_id: str, seconds: float) -> list[tuple[str | None, list[str]]]:
    """Sample, for ``seconds``, the task's state and the executor workers busy with this task instance.

    Sampling starts once the worker has let the task go: after the task defers, its process
    takes a moment to wind down (it reports its state, then exits).
    """
    ti_id = cluster.task_instance_id("deferred_coupons", run_id, "coupons")
    cluster.wait_for(
        lambda: not [title for title in cluster.task_processes() if ti_id in title], 15, "the worker to let go"
    )
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        busy = [title for title in cluster.task_processes() if ti_id in title]
        samples.append((cluster.task_state("deferred_coupons", run_id, "coupons"), busy))
        time.sleep(0.5)
    return samples


def posts(server: ScriptedServer) -> list[Any]:
    return [r for r in server.requests if r.method == "POST"]


def test_a_deferred_job_holds_no_worker_and_its_rows_land_in_xcom(cluster, api) -> None:
    server, _ = api
    before = len(posts(server))
    run_id = cluster.trigger("deferred_coupons", {"scenario": "long"})
    cluster.wait_for(
        lambda: cluster.task_state("deferred_coupons", run_id, "coupons") == "deferred", 120, "the task to defer"
    )
    samples = watch_deferred(cluster, run_id, 15)
    assert {state for state, _ in samples} == {"deferred"}, samples
    assert all(busy == [] for _, busy in samples), f"no executor worker holds the task while it waits: {samples}"
    assert cluster.wait_for_run("deferred_coupons", run_id) == "success"
    assert cluster.xcom("deferred_coupons", run_id, "coupons") == COUPONS
    assert cluster.xcom("deferred_coupons", run_id, "count") == len(COUPONS)
    assert cluster.task_state("deferred_coupons", run_id, "fallback") == "skipped"
    assert len(posts(server)) - before == 1
    summary = cluster.xcom("deferred_coupons", run_id, "coupons", "summary")
    assert summary["job"]["status"] == "done"
    assert summary["url"].endswith("/v1/coupon-batches"), "after resuming, the summary still names the create call"


def test_a_triggerer_killed_mid_poll_is_replaced_and_the_job_was_created_once(cluster, api) -> None:
    server, jobs = api
    before = len(posts(server))
    run_id = cluster.trigger("deferred_coupons", {"scenario": "long"})
    cluster.wait_for(
        lambda: cluster.task_state("deferred_coupons", run_id, "coupons") == "deferred", 120, "the task to defer"
    )
    job = jobs.jobs[f"b-{len(jobs.jobs)}"]
    cluster.wait_for(lambda: job["polls"] >= 3, 60, "the triggerer to poll")
    cluster.kill_component("triggerer")
    polls_at_kill = job["polls"]
    time.sleep(3)
    assert job["polls"] <= polls_at_kill + 1, "nobody polls while no triggerer runs"
    cluster.start_component("triggerer")
    assert cluster.wait_for_run("deferred_coupons", run_id) == "success"
    assert job["polls"] > polls_at_kill + 1, "the new triggerer took the polling over"
    assert len(posts(server)) - before == 1, "the create POST was sent exactly once"
    assert cluster.xcom("deferred_coupons", run_id, "coupons") == COUPONS


def test_a_failed_job_takes_the_failure_branch(cluster, api) -> None:
    run_id = cluster.trigger("deferred_coupons", {"scenario": "failed"})
    assert cluster.wait_for_run("deferred_coupons", run_id) == "success"
    assert cluster.task_state("deferred_coupons", run_id, "fallback") == "success"
    assert cluster.task_state("deferred_coupons", run_id, "count") == "skipped"
    assert cluster.xcom("deferred_coupons", run_id, "coupons", "error")["type"] == "JobFailedError"


def test_a_retry_after_of_60_s_on_a_status_poll_is_spent_deferred(cluster, api) -> None:
    _, jobs = api
    job_id = f"b-{len(jobs.jobs) + 1}"
    run_id = cluster.trigger("deferred_coupons", {"scenario": "rate-limited"})
    cluster.wait_for(lambda: "limited_at" in jobs.jobs.get(job_id, {}), 120, "the 429 on a poll")
    samples = watch_deferred(cluster, run_id, 30)
    assert {state for state, _ in samples} == {"deferred"}, samples
    assert all(busy == [] for _, busy in samples), f"the 60 s wait is not spent on a worker: {samples}"
    assert cluster.wait_for_run("deferred_coupons", run_id) == "success"
    waited = time.monotonic() - jobs.jobs[job_id]["limited_at"]
    assert waited >= 60, "the Retry-After was honoured"
    assert jobs.jobs[job_id]["polls"] == 4, "three polls in the triggerer, then the worker reads the final status"
