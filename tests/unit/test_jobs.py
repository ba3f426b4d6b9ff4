"""The job flow on a fake clock: done, failed, unknown status, timeout, Retry-After, status URLs, idempotency keys."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from airflow_campaign_provider import exceptions
from airflow_campaign_provider.exceptions import (
    DeadlineExceededError,
    HostNotAllowedError,
    JobFailedError,
    MappingConfigError,
)
from airflow_campaign_provider.flow import Send
from airflow_campaign_provider.jobs import (
    JobState,
    idempotency_key,
    parse_job,
    poll_flow,
    result_url_of,
    status_url_of,
)
from airflow_campaign_provider.request import build_request
from airflow_campaign_provider.settings import parse_connection
from tests.support.flow_script import FakeClock, Run, drive, response

BASE = "https://api.example.com/v1"
SETTINGS = parse_connection(host=BASE)


def statuses(*values: Any, headers: dict[str, str] | None = None) -> Any:
    """A status endpoint that answers ``values`` in turn (an int is an HTTP status), then the last forever."""
    answers = itertools.chain(values, itertools.repeat(values[-1]))

    def api(send: Send) -> Any:
        value = next(answers)
        if isinstance(value, int):
            return response(value, {"error": "busy"}, headers=headers, url=send.request.url)
        return response(200, {"status": value, "links": {"result": "/v1/results/7"}}, url=send.request.url)

    return api


def poll(spec: dict[str, Any], api: Any, *, clock: FakeClock | None = None, state: JobState | None = None) -> Run:
    clock = clock or FakeClock()
    config = parse_job(spec)
    state = state or JobState(deadline=clock.now() + config.timeout)
    status = build_request(SETTINGS, "GET", f"{BASE}/jobs/7")
    flow = poll_flow(config, status, state, SETTINGS, clock.now, random.Random(1))
    return drive(flow, clock, itertools.repeat(api))


def test_polling_ends_when_the_status_is_done() -> None:
    clock = FakeClock()
    state = JobState(deadline=clock.now() + 3600)
    run = poll({"poll_interval": 10}, statuses("queued", "running", "running", "done"), clock=clock, state=state)
    assert run.result.document["status"] == "done"
    assert len(run.sends) == 4
    assert [w.seconds for w in run.polls] == [10.0, 10.0, 10.0]
    assert [w.status for w in run.polls] == ["queued", "running", "running"]
    assert (state.polls, state.last_status) == (4, "done")


def test_a_failed_status_raises_with_a_short_excerpt() -> None:
    with pytest.raises(JobFailedError, match=r"job failed: status 'failed' after 2 polls: \{\"status\": \"failed\""):
        poll({}, statuses("running", "failed"))


def test_an_unknown_status_keeps_polling() -> None:
    run = poll({"poll_interval": 5}, statuses("warming-up", "weird", "done"))
    assert len(run.sends) == 3


def test_the_job_timeout_ends_polling() -> None:
    clock = FakeClock()
    started = clock.now()
    with pytest.raises(DeadlineExceededError, match=r"job.timeout=60 s \(last status 'running' after 6 polls\)"):
        poll({"poll_interval": 10, "timeout": 60}, statuses("running"), clock=clock)
    assert clock.now() - started <= 60


def test_a_longer_retry_after_on_a_status_response_wins_over_the_interval() -> None:
    clock = FakeClock()
    started = clock.now()
    run = poll({"poll_interval": 10}, statuses("running", 429, "done", headers={"Retry-After": "60"}), clock=clock)
    assert len(run.sends) == 3
    assert [w.seconds for w in run.polls] == [10.0, 60.0], "the 429 poll waited its Retry-After, not 10 s"
    assert clock.now() - started == pytest.approx(10 + 60)
    assert run.sleeps == [], "a 429 on a poll is a longer wait, not a retry of the call"


def test_a_shorter_retry_after_does_not_shorten_the_interval() -> None:
    clock = FakeClock()
    started = clock.now()
    poll({"poll_interval": 10}, statuses(503, "done", headers={"Retry-After": "1"}), clock=clock)
    assert clock.now() - started == pytest.approx(10)


def test_status_and_result_urls_resolve_and_a_status_url_on_another_host_is_refused() -> None:
    config = parse_job({"result_url": "$.links.result"})
    created = response(202, {}, headers={"Location": "/v1/jobs/7"}, url=f"{BASE}/coupon-batches")
    assert status_url_of(config, created, None) == f"{BASE}/jobs/7"
    final = response(200, {"status": "done", "links": {"result": "results/7?page=1"}}, url=f"{BASE}/jobs/7")
    assert result_url_of(config, final, json.loads(final.content)) == f"{BASE}/jobs/results/7?page=1"
    from_body = parse_job({"status_url": "$.links.status"})
    created = response(201, {"links": {"status": "https://evil.example/jobs/7"}}, url=f"{BASE}/coupon-batches")
    elsewhere = status_url_of(from_body, created, json.loads(created.content))
    assert elsewhere == "https://evil.example/jobs/7"
    with pytest.raises(HostNotAllowedError):
        build_request(SETTINGS, "GET", elsewhere)


def test_a_final_status_without_the_result_url_is_a_job_error() -> None:
    config = parse_job({"result_url": "$.links.result"})
    final = response(200, {"status": "done"}, url=f"{BASE}/jobs/7")
    with pytest.raises(JobFailedError, match="no result URL"):
        result_url_of(config, final, {"status": "done"})


def test_a_job_state_survives_json() -> None:
    state = JobState(deadline=1_800_003_600.0, polls=3, last_status="running")
    assert JobState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_the_defaults_and_a_complete_configuration() -> None:
    config = parse_job({})
    assert (config.status_url, config.status_path, config.poll_interval, config.timeout) == (
        "header:Location",
        "$.status",
        10.0,
        3600.0,
    )
    assert config.done == ("done", "succeeded")
    assert parse_job(config.to_dict()) == config, "the trigger rebuilds it from plain data"


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"status_url": "header:Bad Name"}, "job.status_url"),
        ({"result_url": "links.result"}, "job.result_url"),
        ({"done": "done"}, "job.done"),
        ({"failed": [1]}, "job.failed"),
        ({"timeout": 0}, "job.timeout"),
        ({"timeout": 8 * 24 * 3600}, "job.timeout"),
        ({"poll": 5}, "job.poll"),
    ],
)
def test_bad_job_configurations_name_the_key(spec: dict[str, Any], key: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        parse_job(spec)
    assert info.value.field == key


def test_the_idempotency_key_is_stable_per_task_instance_and_differs_otherwise() -> None:
    key = idempotency_key("coupons", "manual__1", "fetch", -1)
    assert key == idempotency_key("coupons", "manual__1", "fetch", -1), "the same on every try"
    others = {
        idempotency_key("coupons", "manual__2", "fetch", -1),
        idempotency_key("coupons", "manual__1", "other", -1),
        idempotency_key("coupons", "manual__1", "fetch", 0),
        idempotency_key("offers", "manual__1", "fetch", -1),
    }
    assert key not in others
    assert len(others) == 4
    assert "coupons" not in key, "opaque"


def _request_failures() -> list[type[exceptions.RequestFailedError]]:
    found, todo = [], [exceptions.RequestFailedError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("kind", _request_failures(), ids=lambda kind: kind.__name__)
def test_every_request_failure_survives_a_trigger_events_round_trip(kind: type[exceptions.RequestFailedError]) -> None:
    """A trigger hands its error to the task as plain data; the task must get the same class back, to branch on it."""
    err = kind("it failed", url="https://api.example.com/v1/jobs/7", status=503)
    payload = json.loads(json.dumps(exceptions.error_payload(err)))
    back = exceptions.error_from_payload(payload)
    assert (type(back), back.message, back.url, back.status) == (kind, "it failed", err.url, 503)
