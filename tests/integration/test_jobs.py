"""Async jobs against the real local HTTPS server: polled on the worker in ``dag.test()``, and by the trigger
in an event loop with the async transport (its guardrails tested there too). The real triggerer is in
``test_deferral.py``."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_campaign_provider.async_transport import AsyncTransport
from airflow_campaign_provider.body import READ_CHUNK_BYTES
from airflow_campaign_provider.exceptions import (
    DeadlineExceededError,
    HostNotAllowedError,
    ResponseTooLargeError,
    TransportError,
)
from airflow_campaign_provider.hooks.external_api import ExternalApiHook
from airflow_campaign_provider.jobs import JobState, parse_job
from airflow_campaign_provider.request import build_request
from airflow_campaign_provider.triggers.external_api import ExternalApiTrigger
from tests.support.airflow_run import install_dag, run_dag
from tests.support.scripted_server import (
    ScriptedHandler,
    ScriptedServer,
    chunked_forever,
    drip,
    json_response,
    oauth_conn,
)

pytestmark = pytest.mark.integration

COUPONS = [{"zip": z, "code": f"SPRING-{z}"} for z in ("20121", "75001", "1012", "10115", "28001")]


class JobApi:
    """``POST /v1/coupon-batches`` answers 202 with a Location; the status moves on each poll; the result pages."""

    def __init__(self, server: ScriptedServer, states: list[Any], *, create: list[int] | None = None) -> None:
        self.states = states
        self.creates = create or [202]
        server.route("/v1/coupon-batches", self.create)
        server.route("/v1/coupon-batches/b-1", self.status)
        server.route("/v1/coupon-batches/b-1/coupons", self.result)
        self.polls = 0

    def create(self, h: ScriptedHandler) -> None:
        status = self.creates.pop(0) if len(self.creates) > 1 else self.creates[0]
        if status != 202:
            h.send_json(status, {"error": "busy"}, headers={"Retry-After": "0"})
            return
        h.send_json(202, {"id": "b-1"}, headers={"Location": "/v1/coupon-batches/b-1"})

    def status(self, h: ScriptedHandler) -> None:
        state = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        if isinstance(state, tuple):  # (HTTP status, Retry-After)
            h.send_json(state[0], {"error": "slow down"}, headers={"Retry-After": str(state[1])})
            return
        doc = {"id": "b-1", "status": state, "links": {"result": "/v1/coupon-batches/b-1/coupons"}}
        if state == "failed":
            doc["reason"] = "the coupon generator is out of codes"
        h.send_json(200, doc)

    def result(self, h: ScriptedHandler) -> None:
        page = int(h.path.partition("page=")[2] or "1")
        headers = {"Link": f'</v1/coupon-batches/b-1/coupons?page={page + 1}>; rel="next"'} if page < 3 else {}
        h.send_json(200, {"data": COUPONS[(page - 1) * 2 : page * 2]}, headers=headers)


JOB_DAG = """
from airflow.sdk import dag, task
from airflow_campaign_provider.operators.external_api import ExternalApiOperator


@dag(schedule=None)
def {dag_id}():
    batch = ExternalApiOperator(
        task_id="coupons",
        conn_id="job_api",
        endpoint="coupon-batches",
        method="POST",
        body={{"params": {{"campaign": "spring"}}, "data": [{{"zip": "20121"}}]}},
        job={{"result_url": "$.links.result", "poll_interval": 0.2, "timeout": {timeout}}},
        pagination={{"type": "link_header"}},
        outbound={{"records": "$.data[*]"}},
        idempotency_key={idempotency_key},
        failure_branch="fallback",
        retries={retries},
        retry_delay=0,
    )

    @task
    def fallback():
        return "fallback"

    @task
    def use(rows):
        return len(rows)

    batch >> [fallback(), use(batch.output)]


{dag_id}()
"""


def job_dag(folder: Path, dag_id: str, *, timeout: float = 30, idempotency_key: bool = False, retries: int = 0) -> Path:
    source = JOB_DAG.format(dag_id=dag_id, timeout=timeout, idempotency_key=idempotency_key, retries=retries)
    return install_dag(folder, dag_id, source)


@pytest.fixture
def job_conn(server: ScriptedServer, make_conn) -> ScriptedServer:
    make_conn("job_api", host=f"{server.base_url}/v1")
    return server


def posts(server: ScriptedServer) -> list[Any]:
    return [r for r in server.requests if r.method == "POST"]


def test_a_job_is_created_polled_on_the_worker_and_its_paged_result_mapped(airflow_db, job_conn) -> None:
    api = JobApi(job_conn, ["queued", "running", "running", "done"])
    result = run_dag(job_dag(airflow_db, "job_sync"), "job_sync")
    assert result.task_states["coupons"] == "success", result.task_states
    assert result.task_states["fallback"] == "skipped"
    assert result.xcom("coupons") == COUPONS
    summary = result.xcom("coupons", "summary")
    assert summary["job"] == {"status": "done", "polls": 4}
    assert summary["url"] == f"{job_conn.base_url}/v1/coupon-batches", "the summary names the request that made the job"
    assert result.xcom("coupons", "_link_ExternalApiLink") == summary["url"]
    assert summary["pages"] == 3
    assert len(posts(job_conn)) == 1
    assert api.polls == 4


def test_a_failed_job_takes_the_failure_branch(airflow_db, job_conn) -> None:
    JobApi(job_conn, ["running", "failed"])
    result = run_dag(job_dag(airflow_db, "job_failed"), "job_failed")
    assert result.task_states["fallback"] == "success"
    assert result.task_states["use"] == "skipped"
    error = result.xcom("coupons", "error")
    assert error["type"] == "JobFailedError"
    assert "out of codes" in error["message"]


def test_the_job_timeout(airflow_db, job_conn) -> None:
    JobApi(job_conn, ["running"])
    result = run_dag(job_dag(airflow_db, "job_timeout", timeout=1), "job_timeout")
    assert result.xcom("coupons", "error")["type"] == "DeadlineExceededError"


def test_a_post_is_retried_after_it_was_sent_only_with_an_idempotency_key(airflow_db, job_conn) -> None:
    JobApi(job_conn, ["done"], create=[503, 202])
    result = run_dag(job_dag(airflow_db, "job_no_key"), "job_no_key")
    assert result.xcom("coupons", "error")["status"] == 503, "without a key, a sent POST is never repeated"
    assert len(posts(job_conn)) == 1

    job_conn.requests.clear()
    JobApi(job_conn, ["done"], create=[503, 202])
    result = run_dag(job_dag(airflow_db, "job_key", idempotency_key=True), "job_key")
    assert result.task_states["coupons"] == "success"
    keys = [r.headers["Idempotency-Key"] for r in posts(job_conn)]
    assert len(keys) == 2
    assert keys[0] == keys[1], "the retry carries the same key"
    assert not any("Idempotency-Key" in r.headers for r in job_conn.requests if r.method == "GET")


def test_the_idempotency_key_is_the_same_on_a_task_retry_and_differs_on_another_run(airflow_db, job_conn) -> None:
    JobApi(job_conn, ["done"], create=[500, 202])  # 500 is not retried by the call: the task's retry sends again
    result = run_dag(job_dag(airflow_db, "job_retry", idempotency_key=True, retries=1), "job_retry")
    first = [r.headers["Idempotency-Key"] for r in posts(job_conn)]
    assert result.xcom("coupons", "error")["status"] == 500, "the failure branch took the first try's 500"
    assert len(first) == 1

    job_conn.requests.clear()
    JobApi(job_conn, ["done"])
    run_dag(job_dag(airflow_db, "job_retry", idempotency_key=True, retries=1), "job_retry")
    second = [r.headers["Idempotency-Key"] for r in posts(job_conn)]
    assert second[0] != first[0], "another run, another key"


# The trigger and the async transport -----------------------------------------------------------


def trigger_for(server: ScriptedServer, **job: Any) -> ExternalApiTrigger:
    config = parse_job({"poll_interval": 0.1, "result_url": "$.links.result", **job})
    state = JobState(deadline=time.time() + config.timeout)
    return ExternalApiTrigger(
        conn_id="job_api",
        status_url=f"{server.base_url}/v1/coupon-batches/b-1",
        job=config.to_dict(),
        state=state.to_dict(),
    )


def first_event(trigger: ExternalApiTrigger) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    return asyncio.run(run())


def test_the_trigger_polls_with_get_only_and_fires_one_small_event(job_conn) -> None:
    JobApi(job_conn, ["queued", (429, 0), "running", "done"])
    trigger = trigger_for(job_conn)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_campaign_provider.triggers.external_api.ExternalApiTrigger"
    assert set(kwargs) == {"conn_id", "status_url", "job", "state"}
    event = first_event(trigger)
    assert event["status"] == "done"
    assert event["job"]["polls"] == 4
    assert len(json.dumps(event)) < 1024
    assert {r.method for r in job_conn.requests} == {"GET"}


def test_the_trigger_reports_a_failed_job_as_a_typed_error(job_conn) -> None:
    JobApi(job_conn, ["failed"])
    event = first_event(trigger_for(job_conn))
    assert event["status"] == "error"
    assert event["error"]["type"] == "JobFailedError"


def test_the_trigger_refuses_a_status_url_off_the_connection_host(job_conn) -> None:
    trigger = trigger_for(job_conn)
    trigger.status_url = "https://elsewhere.example/jobs/1?token=t0k-1"
    event = first_event(trigger)
    assert event["error"]["type"] == "HostNotAllowedError"
    assert "t0k-1" not in json.dumps(event)


def test_the_trigger_fetches_an_oauth2_token_and_masks_it_like_the_hook(job_conn, make_conn) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    oauth_conn(job_conn, make_conn, "job_api")
    job_conn.route("/oauth/token", json_response(200, {"access_token": "trigger-tok-9f3", "expires_in": 3600}))
    JobApi(job_conn, ["running", "done"])
    event = first_event(trigger_for(job_conn))
    assert event["status"] == "done"
    polls = [r for r in job_conn.requests if r.path == "/v1/coupon-batches/b-1"]
    assert [r.headers["Authorization"] for r in polls] == ["Bearer trigger-tok-9f3"] * 2, "one token for every poll"
    assert redact("polled with trigger-tok-9f3") == "polled with ***", "the token is registered with the masker"


def send_async(server: ScriptedServer, endpoint: str, timeout: float = 10.0) -> Any:
    settings = ExternalApiHook().settings
    request = build_request(settings, "GET", endpoint)

    async def run() -> Any:
        async with AsyncTransport(settings) as transport:
            return await transport.send(request, timeout, timeout)

    return asyncio.run(run())


def test_the_async_transport_reads_decodes_and_keeps_the_connection(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1")
    server.route("/v1/x", json_response(200, {"data": [1, 2]}))
    response = send_async(server, "x")
    assert response.json() == {"data": [1, 2]}
    assert server.requests[0].headers["Accept-Encoding"] == "gzip, deflate"


def test_the_async_transport_pins_checked_addresses(server, make_conn, monkeypatch) -> None:
    real_getaddrinfo = socket.getaddrinfo

    def fake_dns(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = "127.0.0.1" if host == "api.campaign.test" else host
        return real_getaddrinfo(name, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    make_conn(host=f"https://api.campaign.test:{server.port}/v1", allow_private_hosts=False)
    with pytest.raises(HostNotAllowedError, match=r"non-public address 127\.0\.0\.1"):
        send_async(server, "x")
    assert server.script.connections == 0


def test_the_async_transport_caps_the_body(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", max_response_bytes=100_000)
    server.route("/v1/stream", chunked_forever("stream"))
    with pytest.raises(ResponseTooLargeError, match="max_response_bytes") as info:
        send_async(server, "stream")
    read = int(str(info.value).split("passed ")[1].split(" bytes")[0].replace(",", ""))
    # The body never ends: the transport stopped on its own, within one read of the limit.
    assert 100_000 < read <= 100_000 + READ_CHUNK_BYTES


@pytest.mark.timeout(60)
def test_the_async_transport_keeps_the_deadline_against_a_drip(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1")
    server.route("/v1/drip", drip("drip", interval=0.05, total=100_000))
    with pytest.raises(DeadlineExceededError, match="2 s deadline"):
        send_async(server, "drip", timeout=2)
    assert server.script.bytes_sent["drip"] < 1000


def test_the_async_transport_verifies_tls(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", verify=True)
    server.route("/v1/x", json_response())
    with pytest.raises(TransportError, match="verify extra"):
        send_async(server, "x")
