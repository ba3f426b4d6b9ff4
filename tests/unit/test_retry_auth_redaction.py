"""Pure policy: retry decisions and backoff, Retry-After, the OAuth2 token cache, and redaction."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import quote_plus

import pytest

from airflow_campaign_provider.auth import parse_token_response
from airflow_campaign_provider.exceptions import TokenError
from airflow_campaign_provider.redaction import excerpt, redact_url, scrub, secret_values
from airflow_campaign_provider.retry import RetryPolicy, is_repeatable, parse_retry_after

POLICY = RetryPolicy(max_retries=3, retry_statuses=frozenset({429, 503}))


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "get"])
def test_idempotent_methods_are_repeatable(method: str) -> None:
    assert is_repeatable(method, [])
    assert POLICY.may_retry(0, request_sent=True, repeatable=is_repeatable(method, []))


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_methods_repeat_only_when_opted_in_or_keyed(method: str) -> None:
    assert not is_repeatable(method, ["Content-Type"])
    assert is_repeatable(method, [], retry_non_idempotent=True)
    assert is_repeatable(method, ["idempotency-key"]), "the server de-duplicates: safe to send again"


def test_a_request_that_was_not_sent_may_always_be_retried_and_one_that_was_only_if_repeatable() -> None:
    assert POLICY.may_retry(0, request_sent=False, repeatable=False)
    assert not POLICY.may_retry(0, request_sent=True, repeatable=False)
    assert POLICY.may_retry(0, request_sent=True, repeatable=True)


def test_max_retries_bounds_the_count() -> None:
    assert POLICY.may_retry(2, request_sent=True, repeatable=True)
    assert not POLICY.may_retry(3, request_sent=True, repeatable=True)
    assert not RetryPolicy(0, frozenset()).may_retry(0, request_sent=False, repeatable=True)


def test_backoff_is_exponential_with_jitter() -> None:
    rng = random.Random(7)
    waits = [POLICY.backoff(n, rng) for n in range(1, 6)]
    for n, wait in enumerate(waits, start=1):
        ceiling = min(30.0, 0.5 * 2 ** (n - 1))
        assert ceiling / 2 <= wait <= ceiling
    assert len({round(POLICY.backoff(3, rng), 6) for _ in range(20)}) > 1, "jitter must vary"
    assert POLICY.backoff(50, rng) <= 30.0


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("²", now) is None, "not an ASCII number: unreadable, never a crash"


def test_oauth2_token_expires_with_skew() -> None:
    now = 1000.0
    token = parse_token_response({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 100}, now)
    assert token.value == "tok-1"
    assert token.is_fresh(now + 89)
    assert not token.is_fresh(now + 91), "100 s minus a 10 s skew"
    token = parse_token_response({"access_token": "tok-2", "expires_in": 3600}, now)
    assert token.is_fresh(now + 3600 - 31)
    assert not token.is_fresh(now + 3600 - 29), "the skew is capped at 30 s"
    token = parse_token_response({"access_token": "tok-3"}, now)
    assert token.is_fresh(now + 10**6), "a token without expires_in is kept until a 401"
    assert "tok-3" not in repr(token)


@pytest.mark.parametrize(
    "response",
    [
        {},
        {"access_token": 5},
        {"access_token": ""},
        {"access_token": "t", "token_type": "mac"},
        {"access_token": "t", "expires_in": "soon"},
        {"access_token": "t", "expires_in": -1},
        ["access_token"],
    ],
)
def test_bad_token_responses(response: object) -> None:
    with pytest.raises(TokenError):
        parse_token_response(response, 0.0)


@pytest.mark.parametrize("token", ["tok-secret-1\n", "tok\r\nX-Injected: 1", "tok\x00secret", "tök€n-secret"])
def test_a_token_a_header_cannot_carry_is_a_token_error_that_never_quotes_it(token: str) -> None:
    with pytest.raises(TokenError, match="access_token") as info:
        parse_token_response({"access_token": token, "token_type": "bearer"}, 0.0)
    assert token.strip() not in str(info.value)
    assert "tok" not in str(info.value).replace("token", "")


def test_redact_url_hides_secret_query_values_and_userinfo() -> None:
    url = "https://u:p@api.example.com/v1/x?api_key=abc&zip=20121&access_token=t0k&sig=zz&q=known-secret"
    shown = redact_url(url, ["known-secret"])
    assert shown == ("https://***@api.example.com/v1/x?api_key=***&zip=20121&access_token=***&sig=***&q=***")


def test_secrets_inside_longer_query_values_are_redacted_even_percent_encoded() -> None:
    secret = "abc+def/ghi="
    shown = redact_url(f"https://api.example.com/x?q={quote_plus('prefix ' + secret)}&zip=1", [secret])
    assert quote_plus(secret) not in shown
    assert secret not in shown
    assert "zip=1" in shown


def test_secret_values_of_a_request() -> None:
    values = secret_values(
        headers={"X-Call-Token": "tok-1", "X-Partner": "p-2", "X-Campaign": "spring"},
        params={"api_key": "key-3", "zip": "20121"},
        url="https://api.example.com/x?signature=sig-4&page=2",
        secret_headers=["X-Partner"],
    )
    assert values == ["tok-1", "p-2", "key-3", "sig-4"]


def test_scrub_and_excerpt() -> None:
    assert scrub("Bearer abcd1234 and abcd1234", ["abcd1234"]) == "Bearer *** and ***"
    assert scrub("a b c", ["a"]) == "a b c", "very short values are not scrubbed from prose"
    body = ("x" * 195 + "SECRET-TOKEN-VALUE" + "y" * 500).encode()
    text = excerpt(body, ["SECRET-TOKEN-VALUE"], limit=200)
    assert "SECRET" not in text
    assert len(text) <= 201
    assert excerpt(b"<html>\n  <b>Bad   gateway</b>\n</html>", []) == "<html> <b>Bad gateway</b> </html>"


def test_scrub_finds_a_secret_in_the_encodings_apis_echo_back() -> None:
    import base64
    import json
    from urllib.parse import quote

    secret = "a/b+c d=é"
    echoed = [
        secret,
        quote(secret, safe=""),
        quote(secret, safe="").lower(),  # the secret has no upper-case letter: only the hex changes
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/").replace("\\u00e9", "\\u00E9"),
        json.dumps(secret, ensure_ascii=False)[1:-1],
        base64.b64encode(secret.encode()).decode(),
        "a&#x2F;b+c d=é",
    ]
    for text in echoed:
        assert scrub(f"<{text}>", [secret]) == "<***>", text


def test_redact_query_values_in_free_text() -> None:
    from airflow_campaign_provider.redaction import redact_query_values

    line = '"GET /v1/x?zip=1&api_key=k-123&Signature=s-456 HTTP/1.1" 200'
    assert redact_query_values(line) == '"GET /v1/x?zip=1&api_key=***&Signature=*** HTTP/1.1" 200'
