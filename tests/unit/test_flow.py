"""The call flow's timing and status rules with a fake clock and scripted outcomes: no sockets, no sleeping."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from airflow_campaign_provider.exceptions import (
    DeadlineExceededError,
    HttpStatusError,
    RedirectNotFollowedError,
    TokenError,
    TransportError,
)
from airflow_campaign_provider.flow import CallState, Send, Sleep, call_flow, token_flow
from airflow_campaign_provider.request import build_request
from airflow_campaign_provider.settings import ConnectionSettings, parse_connection
from tests.support.flow_script import FakeClock, Run, drive, response

BASE = "https://api.example.com/v1"


def settings(**extra: Any) -> ConnectionSettings:
    login = extra.pop("login", None)
    password = extra.pop("password", None)
    return parse_connection(host=BASE, login=login, password=password, extra=extra)


def oauth_settings(**extra: Any) -> ConnectionSettings:
    return settings(
        login="client-id",
        password="client-secret-123",
        auth_type="oauth2_client_credentials",
        token_url="https://auth.example.com/token",
        **extra,
    )


def flow_for(conn: ConnectionSettings, clock: FakeClock, method: str = "GET", **kwargs: Any) -> Any:
    request = build_request(conn, method, "x", **kwargs)
    state = CallState.start(clock.now(), conn.timeout)
    return call_flow(request, conn, state, clock.now, random.Random(7))


def transport_error(kind: str = "connection broken", *, sent: bool = True, retryable: bool = True) -> TransportError:
    return TransportError(f"transport: {kind}", url=f"{BASE}/x", kind=kind, sent=sent, retryable=retryable)


# Success, retries and backoff ---------------------------------------------------------------


def test_a_success_is_returned_at_once_with_the_whole_timeout_for_the_attempt() -> None:
    clock = FakeClock()
    run = drive(flow_for(settings(timeout=30), clock), clock, [response(200, [1])])
    assert run.result.json() == [1]
    assert [s.timeout for s in run.sends] == [30.0]
    assert run.sleeps == []


def test_a_retried_status_backs_off_with_jitter_and_the_next_attempt_gets_what_is_left() -> None:
    clock = FakeClock()
    run = drive(flow_for(settings(timeout=60), clock), clock, [response(503), response(503), response(200)])
    first, second = (sleep.seconds for sleep in run.sleeps)
    assert 0.25 <= first <= 0.5, "first backoff: 0.5 s, half of it random"
    assert 0.5 <= second <= 1.0, "it doubles"
    assert [(s.reason, s.attempt, s.attempts) for s in run.sleeps] == [("HTTP - 503", 2, 4), ("HTTP - 503", 3, 4)]
    assert [s.timeout for s in run.sends] == pytest.approx([60, 60 - first, 60 - first - second])


def test_backoff_jitter_differs_between_runs() -> None:
    waits = set()
    for seed in range(5):
        clock = FakeClock()
        conn = settings()
        request = build_request(conn, "GET", "x")
        flow = call_flow(request, conn, CallState.start(clock.now(), 60), clock.now, random.Random(seed))
        waits.add(drive(flow, clock, [response(503), response(200)]).sleeps[0].seconds)
    assert len(waits) == 5


def test_max_retries_bounds_the_attempts_then_the_status_error_is_final() -> None:
    clock = FakeClock()
    run = Run()
    with pytest.raises(HttpStatusError, match="HTTP - 502") as info:
        drive(flow_for(settings(max_retries=2), clock), clock, [response(502)] * 5, run=run)
    assert info.value.status == 502
    assert len(run.sends) == 3


def test_a_status_outside_retry_statuses_is_final_and_its_excerpt_is_scrubbed() -> None:
    clock = FakeClock()
    conn = settings(password="bearer-token-9876", auth_type="bearer")
    body = b'{"error": "boom", "you_sent": "Bearer bearer-token-9876"}'
    with pytest.raises(HttpStatusError) as info:
        drive(flow_for(conn, clock), clock, [response(500, body=body)])
    assert "HTTP - 500: " in str(info.value)
    assert "bearer-token-9876" not in str(info.value)
    assert '"error": "boom"' in str(info.value)


# Retry-After and the one deadline -----------------------------------------------------------


def test_retry_after_in_seconds_is_the_wait() -> None:
    clock = FakeClock()
    run = drive(flow_for(settings(), clock), clock, [response(429, headers={"Retry-After": "7"}), response(200)])
    assert [s.seconds for s in run.sleeps] == [7.0]


def test_retry_after_as_an_http_date_waits_until_that_date_on_the_flow_clock() -> None:
    clock = FakeClock()
    when = datetime.fromtimestamp(clock.now(), timezone.utc) + timedelta(seconds=42)
    header = {"Retry-After": format_datetime(when, usegmt=True)}
    run = drive(flow_for(settings(), clock), clock, [response(503, headers=header), response(200)], send_seconds=2)
    assert [s.seconds for s in run.sleeps] == [40.0], "42 s from the request, 2 s of which the request took"


def test_retry_after_zero_is_honoured_instead_of_the_backoff() -> None:
    clock = FakeClock()
    run = drive(flow_for(settings(), clock), clock, [response(503, headers={"Retry-After": "0"}), response(200)])
    assert [s.seconds for s in run.sleeps] == [0.0]


def test_a_retry_after_past_the_deadline_fails_now_without_sleeping() -> None:
    clock = FakeClock()
    started = clock.now()
    run = Run()
    with pytest.raises(DeadlineExceededError, match=r"Retry-After asks a wait of 3600\.0 s but only 5\.0 s") as info:
        drive(flow_for(settings(timeout=5), clock), clock, [response(429, headers={"Retry-After": "3600"})], run=run)
    assert info.value.status == 429
    assert run.sleeps == []
    assert clock.now() == started, "no time was spent waiting"


def test_a_backoff_past_the_deadline_fails_now() -> None:
    clock = FakeClock()
    with pytest.raises(DeadlineExceededError, match="the backoff needs a wait of"):
        drive(flow_for(settings(timeout=10), clock), clock, [response(503)] * 4, send_seconds=9.9)


def test_the_deadline_covers_every_attempt_and_wait() -> None:
    clock = FakeClock()
    started = clock.now()
    run = Run()
    with pytest.raises(DeadlineExceededError, match="timeout"):
        drive(
            flow_for(settings(timeout=60, max_retries=10), clock),
            clock,
            [response(503, headers={"Retry-After": "5"})] * 20,
            send_seconds=15,
            run=run,
        )
    assert clock.now() - started <= 60
    assert all(send.timeout > 0 for send in run.sends)
    assert sum(s.seconds for s in run.sleeps) + 15 * len(run.sends) <= 60


def test_an_attempt_after_the_deadline_is_never_sent() -> None:
    clock = FakeClock()
    run = Run()
    late = transport_error("read timeout")

    def slow(send: Send) -> TransportError:
        clock.sleep(send.timeout)  # the transport used up the whole deadline
        return late

    with pytest.raises(DeadlineExceededError, match="backoff needs"):
        drive(flow_for(settings(timeout=20), clock), clock, [slow], run=run)
    assert len(run.sends) == 1


# Which failures are retried -----------------------------------------------------------------


def test_a_broken_connection_is_retried_for_get_but_not_for_post() -> None:
    clock = FakeClock()
    run = drive(flow_for(settings(), clock), clock, [transport_error(), response(200)])
    assert [s.reason for s in run.sleeps] == ["connection broken"]
    with pytest.raises(TransportError, match="connection broken"):
        drive(flow_for(settings(), clock, "POST", json={}), clock, [transport_error(), response(200)])


def test_a_post_is_retried_after_sending_only_when_opted_in_or_keyed() -> None:
    clock = FakeClock()
    with pytest.raises(HttpStatusError):
        drive(flow_for(settings(), clock, "POST", json={}), clock, [response(503), response(200)])
    opted_in = flow_for(settings(), clock, "POST", json={}, retry_non_idempotent=True)
    assert drive(opted_in, clock, [response(503), response(200)]).result.status_code == 200
    keyed = flow_for(settings(), clock, "POST", json={}, headers={"Idempotency-Key": "run-1"})
    assert drive(keyed, clock, [response(503), response(200)]).result.status_code == 200


def test_a_connect_failure_is_retried_even_for_post() -> None:
    clock = FakeClock()
    failures = [transport_error("connect failure", sent=False)] * 2
    run = drive(flow_for(settings(), clock, "POST", json={}), clock, [*failures, response(200)])
    assert [s.reason for s in run.sleeps] == ["connect failure", "connect failure"]


def test_a_tls_failure_is_never_retried() -> None:
    clock = FakeClock()
    run = Run()
    with pytest.raises(TransportError, match="TLS"):
        drive(flow_for(settings(), clock), clock, [transport_error("TLS", retryable=False), response(200)], run=run)
    assert len(run.sends) == 1


def test_redirects_are_never_followed_and_the_location_is_redacted() -> None:
    clock = FakeClock()
    moved = response(302, headers={"Location": "https://elsewhere.example/x?token=abc123"})
    with pytest.raises(RedirectNotFollowedError) as info:
        drive(flow_for(settings(), clock), clock, [moved])
    assert "Location 'https://elsewhere.example/x?token=***'" in str(info.value)
    assert info.value.status == 302


# OAuth2: one token, one refresh after a 401 --------------------------------------------------


def test_oauth2_asks_for_a_token_first_and_sends_it() -> None:
    clock = FakeClock()
    run = drive(flow_for(oauth_settings(), clock), clock, [response(200)], tokens=["tok-1"])
    assert [(t.stale, t.refresh) for t in run.tokens] == [(None, False)]
    assert run.sends[0].request.headers["Authorization"] == "Bearer tok-1"


def test_oauth2_refreshes_once_after_a_401_outside_the_retry_budget() -> None:
    clock = FakeClock()
    conn = oauth_settings(max_retries=0)
    run = drive(flow_for(conn, clock), clock, [response(401), response(200)], tokens=["stale-1", "fresh-2"])
    assert [(t.stale, t.refresh) for t in run.tokens] == [(None, False), ("stale-1", True)]
    assert [s.request.headers["Authorization"] for s in run.sends] == ["Bearer stale-1", "Bearer fresh-2"]


def test_oauth2_a_second_401_is_final() -> None:
    clock = FakeClock()
    run = Run()
    with pytest.raises(HttpStatusError, match="HTTP - 401"):
        drive(flow_for(oauth_settings(), clock), clock, [response(401)] * 3, tokens=["t-1", "t-2", "t-3"], run=run)
    assert len(run.tokens) == 2


def test_a_401_without_oauth2_is_final() -> None:
    clock = FakeClock()
    run = Run()
    with pytest.raises(HttpStatusError, match="HTTP - 401"):
        drive(flow_for(settings(), clock), clock, [response(401), response(200)], run=run)
    assert run.tokens == []


def test_the_token_flow_posts_client_credentials_and_retries_like_any_call() -> None:
    clock = FakeClock()
    conn = oauth_settings(scope="offers:read")
    token_doc = {"access_token": "tok-9", "token_type": "bearer", "expires_in": 100}
    run = drive(
        token_flow(conn, clock.now() + 60, clock.now, random.Random(1)),
        clock,
        [response(503, headers={"Retry-After": "1"}), response(200, token_doc)],
    )
    token, reply = run.result
    assert token.value == "tok-9"
    assert token.expires_at == pytest.approx(clock.now() + 90)
    assert reply.status_code == 200
    request = run.sends[0].request
    assert (request.method, request.url) == ("POST", "https://auth.example.com/token")
    assert request.body == b"grant_type=client_credentials&scope=offers%3Aread"
    assert request.headers["Authorization"].startswith("Basic ")
    assert [s.seconds for s in run.sleeps] == [1.0]


def test_a_refused_token_request_is_a_token_error_without_the_secret() -> None:
    clock = FakeClock()
    refused = response(401, body=b"invalid_client: client-secret-123")
    with pytest.raises(TokenError, match="HTTP - 401") as info:
        drive(token_flow(oauth_settings(), clock.now() + 60, clock.now, random.Random(1)), clock, [refused])
    assert "client-secret-123" not in str(info.value)


# The state survives serialization -----------------------------------------------------------


def test_a_call_resumes_in_another_process_with_its_attempt_count_and_deadline() -> None:
    clock = FakeClock()
    conn = settings(timeout=600)
    request = build_request(conn, "GET", "x")
    state = CallState.start(clock.now(), conn.timeout)
    flow = call_flow(request, conn, state, clock.now, random.Random(3))
    assert isinstance(next(flow), Send)
    sleep = flow.send(response(429, headers={"Retry-After": "120"}))
    assert isinstance(sleep, Sleep)
    assert sleep.seconds == 120.0
    # A deferred task hands the state to the triggerer and takes it back: JSON in between.
    saved = json.dumps(state.to_dict())
    clock.sleep(120)
    restored = CallState.from_dict(json.loads(saved))
    assert restored == state
    resumed = call_flow(request, conn, restored, clock.now, random.Random(3))
    run = drive(resumed, clock, [response(503, headers={"Retry-After": "1"}), response(200)])
    assert [(s.attempt, s.attempts) for s in run.sleeps] == [(3, 4)], "the count goes on"
    assert run.sends[0].timeout == pytest.approx(600 - 120), "the deadline did not move"


def test_an_outer_deadline_caps_a_call() -> None:
    state = CallState.start(100.0, 60.0, deadline=130.0)
    assert state.deadline == 130.0
    assert CallState.start(100.0, 60.0, deadline=1000.0).deadline == 160.0
