"""ExternalApiHook against a real HTTPS server on 127.0.0.1 (locally generated CA); nothing is mocked."""

from __future__ import annotations

import base64
import gzip
import json
import re
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import parse_qs

import pytest

from airflow_campaign_provider.body import READ_CHUNK_BYTES
from airflow_campaign_provider.exceptions import (
    ConnectionConfigError,
    ContentTypeError,
    DeadlineExceededError,
    HostNotAllowedError,
    HttpStatusError,
    InsecureUrlError,
    InvalidHeaderError,
    InvalidJsonError,
    JsonDepthError,
    JsonKeyLengthError,
    RedirectNotFollowedError,
    RequestTooLargeError,
    ResponseTooLargeError,
    TokenError,
    TransportError,
)
from airflow_campaign_provider.hooks.external_api import ExternalApiHook
from tests.support.scripted_server import (
    Responder,
    ScriptedHandler,
    chunked_forever,
    drip,
    drip_headers,
    echo_request_headers,
    json_response,
    oauth_conn,
    raw_body,
    reset_mid_body,
    token_response,
)

pytestmark = pytest.mark.integration


def logged(capfd: pytest.CaptureFixture[str]) -> str:
    """Everything the hook logged: Airflow's structlog setup writes task logs to stdout."""
    out, err = capfd.readouterr()
    return out + err


def retry_lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    return re.findall(r"Retrying API URL .*? attempt \d+/\d+", logged(capfd))


# Requests and responses --------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["offers", "/offers"])
def test_relative_endpoints_join_the_base_path(hook, server, endpoint) -> None:
    server.route("/v1/offers", json_response(200, {"data": [{"code": "A"}]}))
    response = hook.request("GET", endpoint, params={"segment": "gold"})
    assert response.status_code == 200
    assert response.json() == {"data": [{"code": "A"}]}
    assert response.url == f"{server.base_url}/v1/offers?segment=gold"
    assert response.content == json.dumps({"data": [{"code": "A"}]}).encode()
    assert '"A"' not in repr(response), "a printed response carries no body"
    seen = server.requests[0]
    assert (seen.path, seen.query) == ("/v1/offers", {"segment": ["gold"]})
    assert seen.headers["Accept"] == "application/json"


def test_absolute_url_on_the_same_host_is_allowed_and_other_hosts_are_not(hook, server) -> None:
    server.route("/other/x", json_response(200, [1]))
    assert hook.get_json(f"{server.base_url}/other/x") == [1]
    with pytest.raises(HostNotAllowedError, match="must be on the connection's host"):
        hook.get_json(f"https://127.0.0.1:{server.port}/other/x")
    assert len(server.requests) == 1


def test_json_body_is_posted_with_a_json_content_type(hook, server) -> None:
    server.route("/v1/coupons", json_response(200, {"data": []}))
    hook.request("POST", "coupons", json={"params": {"count": 1}, "data": [{"zip": "20121"}]})
    seen = server.requests[0]
    assert seen.method == "POST"
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == {"params": {"count": 1}, "data": [{"zip": "20121"}]}


def test_one_session_keeps_the_connection_alive(hook, server) -> None:
    server.route("/v1/page", json_response(200, {"ok": True}))
    for _ in range(5):
        hook.get_json("page")
    assert server.script.connections == 1


def test_connection_default_headers_are_sent(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", headers={"X-Tenant": "acme"})
    server.route("/v1/x", json_response())
    ExternalApiHook().get_json("x")
    assert server.requests[0].headers["X-Tenant"] == "acme"


def test_missing_ca_bundle_is_a_clear_error(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", verify="/nonexistent/ca.pem")
    with pytest.raises(ConnectionConfigError, match=r"extra\.verify"):
        ExternalApiHook().get_json("x")


def test_tls_verification_is_on_by_default(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", verify=True)
    server.route("/v1/x", json_response())
    with pytest.raises(TransportError, match="TLS") as info:
        ExternalApiHook().get_json("x")
    assert "set the connection's verify extra" in str(info.value), "the error says how to fix it"


# URL and host guardrails --------------------------------------------------------------------


def test_http_is_refused_before_anything_is_sent(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1")
    with pytest.raises(InsecureUrlError, match="HTTPS only"):
        ExternalApiHook().get_json(f"http://localhost:{server.port}/v1/x")
    assert server.requests == []


def test_redirects_are_not_followed(hook, server) -> None:
    server.route("/v1/moved", json_response(302, {}, {"Location": "https://elsewhere.example/x?token=abc"}))
    server.route("/x", json_response(200, {"followed": True}))
    with pytest.raises(RedirectNotFollowedError) as info:
        hook.get_json("moved")
    assert "Location 'https://elsewhere.example/x?token=***'" in str(info.value)
    assert info.value.status == 302
    assert [r.path for r in server.requests] == ["/v1/moved"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_localhost_and_ip_literals_need_allow_private_hosts(server, make_conn, host) -> None:
    make_conn(host=f"https://{host}:{server.port}/v1", allow_private_hosts=False)
    with pytest.raises(ConnectionConfigError, match="host"):
        ExternalApiHook().get_json("x")
    assert server.script.connections == 0


def test_a_name_resolving_to_a_private_address_is_refused(server, make_conn, monkeypatch) -> None:
    """DNS says api.campaign.test is 127.0.0.1: the resolved-address check refuses it before connecting."""
    real_getaddrinfo = socket.getaddrinfo

    def fake_dns(host, port, *args, **kwargs):
        if host == "api.campaign.test":
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    make_conn(host=f"https://api.campaign.test:{server.port}/v1", allow_private_hosts=False)
    server.route("/v1/x", json_response())
    with pytest.raises(HostNotAllowedError, match=r"resolves to the non-public address 127\.0\.0\.1"):
        ExternalApiHook().get_json("x")
    assert server.script.connections == 0


# Request guardrails -------------------------------------------------------------------------


def test_header_with_crlf_is_refused_before_sending(hook, server) -> None:
    server.route("/v1/x", json_response())
    with pytest.raises(InvalidHeaderError, match="CR, LF"):
        hook.request("GET", "x", headers={"X-Campaign": "spring\r\nX-Injected: yes"})
    assert server.requests == []


def test_request_body_over_five_mib_is_refused_before_sending(hook, server) -> None:
    server.route("/v1/x", json_response())
    with pytest.raises(RequestTooLargeError, match="limit is 5,242,880 bytes"):
        hook.request("POST", "x", json={"data": "x" * (5 * 1024 * 1024)})
    assert server.requests == []


# Response guardrails ------------------------------------------------------------------------


def test_declared_content_length_over_the_limit_is_refused_before_reading(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", max_response_bytes=1000)
    server.route("/v1/big", raw_body(200, b"[" + b" " * 5000 + b"]", "application/json"))
    with pytest.raises(ResponseTooLargeError, match="declares a Content-Length of 5,002 bytes") as info:
        ExternalApiHook().get_json("big")
    assert "max_response_bytes" in str(info.value), "the error names the setting to raise"


def test_oversize_chunked_body_is_cut_off_near_the_limit(server, make_conn) -> None:
    limit = 256 * 1024
    make_conn(host=f"{server.base_url}/v1", max_response_bytes=limit)
    server.route("/v1/stream", chunked_forever("stream"))
    with pytest.raises(ResponseTooLargeError) as info:
        ExternalApiHook().get_json("stream")
    read = int(str(info.value).split("passed ")[1].split(" bytes")[0].replace(",", ""))
    # The body never ends: the hook stopped on its own, within one read step of the limit.
    assert limit < read <= limit + READ_CHUNK_BYTES


def test_html_error_page_is_an_http_error_with_a_short_excerpt(hook, server) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1>" + b"<p>upstream</p>" * 200 + b"</body></html>"
    server.route("/v1/x", raw_body(500, page, "text/html"))
    with pytest.raises(HttpStatusError) as info:
        hook.get_json("x")
    assert info.value.status == 500
    assert "HTTP - 500: <html><body><h1>502 Bad Gateway</h1>" in str(info.value)
    assert len(info.value.message) < 260


def test_html_with_status_200_is_a_content_type_error(hook, server) -> None:
    server.route("/v1/x", raw_body(200, b"<html>maintenance</html>", "text/html"))
    with pytest.raises(ContentTypeError, match="'text/html'"):
        hook.get_json("x")


def test_invalid_json_body(hook, server) -> None:
    server.route("/v1/x", raw_body(200, b'{"a": ', "application/json"))
    with pytest.raises(InvalidJsonError):
        hook.get_json("x")


def test_depth_eleven_is_refused(hook, server) -> None:
    doc: object = 0
    for _ in range(11):
        doc = {"k": doc}
    server.route("/v1/deep", json_response(200, doc))
    with pytest.raises(JsonDepthError, match="11 levels"):
        hook.get_json("deep")


def test_long_key_is_refused(hook, server) -> None:
    server.route("/v1/x", json_response(200, {"k" * 256: 1}))
    with pytest.raises(JsonKeyLengthError):
        hook.get_json("x")


# Time ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_slow_drip_body_cannot_outlive_the_deadline(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", timeout=2, max_retries=0)
    server.route("/v1/drip", drip("drip", interval=0.05, total=100_000))
    with pytest.raises(DeadlineExceededError, match="2 s deadline"):
        ExternalApiHook().get_json("drip")
    # At 20 bytes a second the server would need 5,000 s; it was cut off long before.
    assert server.script.bytes_sent["drip"] < 1000


@pytest.mark.timeout(60)
def test_slow_drip_headers_cannot_outlive_the_deadline(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", timeout=2, max_retries=0)
    server.route("/v1/drip", drip_headers(interval=0.05))
    with pytest.raises(DeadlineExceededError):
        ExternalApiHook().get_json("drip")


# Retries ------------------------------------------------------------------------------------


def test_503_then_success(hook, server, capfd) -> None:
    server.route("/v1/x", json_response(503, {"busy": True}), json_response(200, {"ok": 1}))
    assert hook.get_json("x") == {"ok": 1}
    assert len(server.requests) == 2
    (line,) = retry_lines(capfd)
    assert line.startswith(f"Retrying API URL '{server.base_url}/v1/x' due to HTTP - 503 in ")
    assert line.endswith(" ms, attempt 2/4")


def test_429_with_a_date_retry_after_is_honoured(hook, server, capfd) -> None:
    # A date already past means "retry now": a wait of 0 ms, where the backoff would wait 250 ms or more.
    # The exact arithmetic of future dates is a fake-clock unit test of the flow (tests/unit/test_flow.py).
    when = format_datetime(datetime.now(timezone.utc) - timedelta(seconds=30), usegmt=True)
    server.route("/v1/x", json_response(429, {}, {"Retry-After": when}), json_response(200, [1]))
    assert hook.get_json("x") == [1]
    (line,) = retry_lines(capfd)
    assert " due to HTTP - 429 in 0 ms, attempt 2/4" in line


def test_retry_after_past_the_deadline_fails_now(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", timeout=5)
    server.route("/v1/x", json_response(429, {}, {"Retry-After": "3600"}), json_response(200, [1]))
    with pytest.raises(DeadlineExceededError, match=r"Retry-After asks a wait of 3600\.0 s") as info:
        ExternalApiHook().get_json("x")
    assert info.value.status == 429
    assert len(server.requests) == 1


def test_max_retries_bounds_the_attempts(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", max_retries=2)
    server.route("/v1/x", json_response(502, {}, {"Retry-After": "0"}))
    with pytest.raises(HttpStatusError, match="HTTP - 502"):
        ExternalApiHook().get_json("x")
    assert len(server.requests) == 3


def test_500_is_retried_only_when_the_connection_adds_it(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1")
    server.route("/v1/x", json_response(500, {}), json_response(200, [1]))
    with pytest.raises(HttpStatusError):
        ExternalApiHook().get_json("x")
    make_conn(host=f"{server.base_url}/v1", retry_statuses=[500, 503])
    server.route("/v1/x", json_response(500, {}, {"Retry-After": "0"}), json_response(200, [1]))
    assert ExternalApiHook().get_json("x") == [1]


def test_post_is_not_retried_after_it_was_sent_unless_asked(hook, server) -> None:
    server.route("/v1/x", json_response(503, {}, {"Retry-After": "0"}), json_response(200, [1]))
    with pytest.raises(HttpStatusError):
        hook.request("POST", "x", json={"a": 1})
    assert len(server.requests) == 1
    server.route("/v1/x", json_response(503, {}, {"Retry-After": "0"}), json_response(200, [1]))
    assert hook.request("POST", "x", json={"a": 1}, retry_non_idempotent=True).json() == [1]
    assert len(server.requests) == 3


def test_connection_reset_mid_body_is_retried_for_get(hook, server, capfd) -> None:
    server.route("/v1/x", reset_mid_body(), json_response(200, [1]))
    assert hook.get_json("x") == [1]
    assert "due to connection broken" in retry_lines(capfd)[0]


def test_connection_reset_mid_body_is_not_retried_for_post(hook, server) -> None:
    server.route("/v1/x", reset_mid_body(), json_response(200, [1]))
    with pytest.raises(TransportError, match="connection broken"):
        hook.request("POST", "x", json={})
    assert len(server.requests) == 1


def test_connect_failures_are_retried_even_for_post(make_conn, local_ca, capfd) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    make_conn(host=f"https://localhost:{closed_port}/v1", max_retries=2, timeout=20)
    with pytest.raises(TransportError, match="connect failure"):
        ExternalApiHook().request("POST", "x", json={})
    assert [line.split(" due to ")[1].split(" in ")[0] for line in retry_lines(capfd)] == [
        "connect failure",
        "connect failure",
    ]


# Auth ---------------------------------------------------------------------------------------


def test_basic_auth(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", login="campaign", password="basic-pass-123")
    server.route("/v1/x", json_response())
    ExternalApiHook().get_json("x")
    expected = "Basic " + base64.b64encode(b"campaign:basic-pass-123").decode()
    assert server.requests[0].headers["Authorization"] == expected


def test_bearer_auth(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", password="bearer-token-123", auth_type="bearer")
    server.route("/v1/x", json_response())
    ExternalApiHook().get_json("x")
    assert server.requests[0].headers["Authorization"] == "Bearer bearer-token-123"


def test_api_key_auth_uses_the_configured_header(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", password="api-key-123", auth_type="api_key", api_key_header="X-Key")
    server.route("/v1/x", json_response())
    ExternalApiHook().get_json("x")
    assert server.requests[0].headers["X-Key"] == "api-key-123"
    assert "Authorization" not in server.requests[0].headers


def test_oauth2_fetches_once_and_caches_the_token(server, make_conn, capfd) -> None:
    oauth_conn(server, make_conn)
    server.route("/oauth/token", token_response("access-1"))
    server.route("/v1/x", json_response())
    hook = ExternalApiHook()
    hook.get_json("x")
    hook.get_json("x")
    token_requests = [r for r in server.requests if r.path == "/oauth/token"]
    assert len(token_requests) == 1
    form = parse_qs(token_requests[0].body.decode())
    assert form == {"grant_type": ["client_credentials"], "scope": ["offers:read"]}
    assert (
        token_requests[0].headers["Authorization"]
        == "Basic " + base64.b64encode(b"client-id:client-secret-123").decode()
    )
    api = [r for r in server.requests if r.path == "/v1/x"]
    assert [r.headers["Authorization"] for r in api] == ["Bearer access-1", "Bearer access-1"]
    assert "OAuth2 token fetched (HTTP 200 in " in logged(capfd)


def test_oauth2_refreshes_once_after_a_401(server, make_conn, capfd) -> None:
    oauth_conn(server, make_conn)
    server.route("/oauth/token", token_response("stale-1"), token_response("fresh-2"))
    server.route("/v1/x", json_response(401, {"error": "expired"}), json_response(200, [1]))
    assert ExternalApiHook().get_json("x") == [1]
    api = [r.headers["Authorization"] for r in server.requests if r.path == "/v1/x"]
    assert api == ["Bearer stale-1", "Bearer fresh-2"]
    assert "OAuth2 token refreshed after HTTP - 401" in logged(capfd)


def test_oauth2_second_401_is_final(server, make_conn) -> None:
    oauth_conn(server, make_conn)
    server.route("/oauth/token", token_response("t-1"), token_response("t-2"), token_response("t-3"))
    server.route("/v1/x", json_response(401, {"error": "nope"}))
    with pytest.raises(HttpStatusError, match="HTTP - 401"):
        ExternalApiHook().get_json("x")
    assert len([r for r in server.requests if r.path == "/oauth/token"]) == 2


def test_oauth2_token_endpoint_gets_retries(server, make_conn) -> None:
    oauth_conn(server, make_conn)
    server.route("/oauth/token", json_response(503, {}, {"Retry-After": "0"}), token_response("t-1"))
    server.route("/v1/x", json_response())
    ExternalApiHook().get_json("x")
    assert len([r for r in server.requests if r.path == "/oauth/token"]) == 2


def test_oauth2_refused_credentials(server, make_conn) -> None:
    oauth_conn(server, make_conn)
    server.route("/oauth/token", json_response(401, {"error": "invalid_client"}))
    with pytest.raises(TokenError, match="HTTP - 401") as info:
        ExternalApiHook().get_json("x")
    assert "client-secret-123" not in str(info.value)


def test_oauth2_expired_token_is_fetched_again(server, make_conn) -> None:
    oauth_conn(server, make_conn)
    server.route("/oauth/token", token_response("short-1", expires_in=0), token_response("next-2"))
    server.route("/v1/x", json_response())
    hook = ExternalApiHook()
    hook.get_json("x")
    hook.get_json("x")
    api = [r.headers["Authorization"] for r in server.requests if r.path == "/v1/x"]
    assert api == ["Bearer short-1", "Bearer next-2"]


# Secrets in error messages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login", "password", "extra", "secrets"),
    [
        (
            "user",
            "basic-pass-9876",
            {},
            ["basic-pass-9876", base64.b64encode(b"user:basic-pass-9876").decode()],
        ),
        (None, "bearer-tok-9876", {"auth_type": "bearer"}, ["bearer-tok-9876"]),
        (None, "api-key-9876", {"auth_type": "api_key"}, ["api-key-9876"]),
    ],
)
def test_an_error_body_echoing_headers_leaks_no_secret(server, make_conn, login, password, extra, secrets) -> None:
    make_conn(host=f"{server.base_url}/v1", login=login, password=password, **extra)
    server.route("/v1/x", echo_request_headers(500))
    with pytest.raises(HttpStatusError) as info:
        ExternalApiHook().get_json("x")
    assert "internal error; you sent:" in str(info.value)
    for secret in secrets:
        assert secret not in str(info.value)


def test_query_secrets_are_redacted_in_errors(hook, server) -> None:
    server.route("/v1/x", json_response(404, {}))
    with pytest.raises(HttpStatusError) as info:
        hook.get_json("x", params={"api_key": "query-key-123", "zip": "20121"})
    assert "query-key-123" not in str(info.value)
    assert "api_key=***&zip=20121" in str(info.value)


# test_connection ----------------------------------------------------------------------------


def test_test_connection_success_uses_get_on_the_base_url(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", password="bearer-tok-555", auth_type="bearer")
    server.route("/v1", json_response(200, {"status": "up"}))
    ok, message = ExternalApiHook().test_connection()
    assert ok, message
    assert message.startswith(f"Connected to {server.base_url}/v1: HTTP 200 in ")
    assert message.endswith(" ms")
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v1")]
    assert "bearer-tok-555" not in message


def test_test_connection_fetches_the_oauth_token(server, make_conn) -> None:
    oauth_conn(server, make_conn)
    server.route("/oauth/token", token_response("tc-token-777"))
    server.route("/v1", json_response(200, {}))
    ok, message = ExternalApiHook().test_connection()
    assert ok, message
    assert [r.path for r in server.requests] == ["/oauth/token", "/v1"]
    assert "tc-token-777" not in message


def test_test_connection_reports_rejected_credentials(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", password="bearer-tok-555", auth_type="bearer")
    server.route("/v1", echo_request_headers(401))
    ok, message = ExternalApiHook().test_connection()
    assert not ok
    assert "rejected the credentials: HTTP 401" in message
    assert "bearer-tok-555" not in message


def test_test_connection_reports_a_closed_port(make_conn) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    make_conn(
        host=f"https://localhost:{closed_port}/v1",
        password="bearer-tok-555",
        auth_type="bearer",
        max_retries=0,
    )
    ok, message = ExternalApiHook().test_connection()
    assert not ok
    assert "connect failure" in message
    assert "bearer-tok-555" not in message


# Found in review --------------------------------------------------------------------------


def gzip_json(document: object, headers: dict[str, str] | None = None) -> Responder:
    def respond(h: ScriptedHandler) -> None:
        body = gzip.compress(json.dumps(document).encode())
        h.send_bytes(200, body, headers={"Content-Encoding": "gzip", **(headers or {})})

    return respond


def test_gzip_responses_are_decoded(hook, server) -> None:
    server.route("/v1/x", gzip_json({"data": [1, 2, 3]}))
    assert hook.get_json("x") == {"data": [1, 2, 3]}
    assert "gzip" in server.requests[0].headers.get("Accept-Encoding", "")


def test_the_size_limit_counts_decoded_bytes(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", max_response_bytes=100_000)
    server.route("/v1/bomb", gzip_json(["x" * 1_000_000]))  # about 1 KiB on the wire
    with pytest.raises(ResponseTooLargeError, match="passed"):
        ExternalApiHook().get_json("bomb")


@pytest.mark.timeout(60)
def test_a_server_dripping_its_tls_handshake_cannot_outlive_the_deadline(make_conn) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            # A valid TLS record header announcing 16 KiB of handshake, then one byte at a time.
            conn.sendall(b"\x16\x03\x03\x40\x00")
            while not stop.is_set():
                try:
                    conn.sendall(b"\x00")
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    make_conn(host=f"https://localhost:{listener.getsockname()[1]}/v1", timeout=2, max_retries=0)
    try:
        with pytest.raises(DeadlineExceededError):
            ExternalApiHook().get_json("x")
    finally:
        stop.set()
        listener.close()


def test_per_call_and_connection_header_secrets_never_reach_the_error(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", headers={"Authorization": "Token conn-header-31337"})
    server.route("/v1/x", echo_request_headers(500))
    with pytest.raises(HttpStatusError) as info:
        ExternalApiHook().request(
            "GET", "x", headers={"X-Call-Token": "call-token-31337"}, params={"api_key": "param-key-31337"}
        )
    message = str(info.value)
    assert "you sent:" in message
    for secret in ("conn-header-31337", "call-token-31337", "param-key-31337"):
        assert secret not in message


def test_the_base_url_query_is_kept(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1?tenant=acme")
    server.route("/v1/x", json_response())
    ExternalApiHook().get_json("x?page=2")
    assert server.requests[0].query == {"tenant": ["acme"], "page": ["2"]}


def test_a_proxy_for_another_scheme_keeps_the_address_check(server, make_conn, monkeypatch) -> None:
    real_getaddrinfo = socket.getaddrinfo

    def fake_dns(host, port, *args, **kwargs):
        name = "127.0.0.1" if host == "api.campaign.test" else host
        return real_getaddrinfo(name, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    make_conn(
        host=f"https://api.campaign.test:{server.port}/v1",
        allow_private_hosts=False,
        proxies={"http": "http://proxy.example:3128"},
    )
    with pytest.raises(HostNotAllowedError, match="non-public address"):
        ExternalApiHook().get_json("x")
    assert server.script.connections == 0
