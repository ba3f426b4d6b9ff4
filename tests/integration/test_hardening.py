"""Hardening, class by class, against the real local HTTPS server (or a fake DNS answer); nothing mocks HTTP.

Each class: credentials HTTP cannot carry, redacted URLs everywhere, scrubbing of
echoed encodings, reprs, library debug logs, IPv6 addresses embedding a non-public
IPv4, dot-segments above the base path, hosts IDNA refuses, informational responses,
and single-flight OAuth2 token fetches.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import threading
import time
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from airflow_campaign_provider.exceptions import (
    ConnectionConfigError,
    HostNotAllowedError,
    HttpStatusError,
    InsecureUrlError,
    PathNotAllowedError,
    TokenError,
    TransportError,
)
from airflow_campaign_provider.hooks.external_api import ExternalApiHook
from airflow_campaign_provider.request import build_request
from tests.support.scripted_server import ScriptedHandler, ScriptedServer, json_response, oauth_conn

pytestmark = pytest.mark.integration


def nothing_reached(server: ScriptedServer) -> bool:
    return server.script.connections == 0 and server.requests == []


# 1. Credentials that cannot be sent ---------------------------------------------------------

BAD_CREDENTIALS = [
    pytest.param("user", "basic-pass-123\n", {}, id="basic-trailing-newline"),
    pytest.param("user", "basic\r\nX-Injected: 1", {}, id="basic-crlf"),
    pytest.param(None, "bearer-tok\x00en-123", {"auth_type": "bearer"}, id="bearer-nul"),
    pytest.param(None, "api-key-123\n", {"auth_type": "api_key"}, id="api-key-newline"),
    pytest.param("user", "pässwörd-€uro", {}, id="basic-not-latin-1"),
    pytest.param(None, "tök€n-secret-123", {"auth_type": "bearer"}, id="bearer-not-latin-1"),
    pytest.param("client", "client-secret\n", {"auth_type": "oauth2_client_credentials"}, id="oauth2-newline"),
]


@pytest.mark.parametrize(("login", "password", "extra"), BAD_CREDENTIALS)
def test_credentials_http_cannot_carry_are_a_typed_error_before_anything_is_sent(
    server, make_conn, login, password, extra
) -> None:
    if extra.get("auth_type") == "oauth2_client_credentials":
        extra = {**extra, "token_url": f"{server.base_url}/oauth/token"}
    make_conn(host=f"{server.base_url}/v1", login=login, password=password, **extra)
    server.route("/v1/x", json_response())
    with pytest.raises(ConnectionConfigError, match="'password'") as info:
        ExternalApiHook().get_json("x")
    assert password.strip() not in str(info.value)
    assert password.split("\n")[0].split("\r")[0].split("\x00")[0] not in str(info.value)
    assert nothing_reached(server)


@pytest.mark.parametrize(
    "token", ["fetched-token-1\n", "fetched\r\nX-Injected: yes", "fetched\x00token", "fetched-tök€n-1"]
)
def test_a_fetched_token_http_cannot_carry_is_a_token_error_naming_the_field(server, make_conn, token) -> None:
    oauth_conn(server, make_conn)
    server.route("/oauth/token", json_response(200, {"access_token": token, "token_type": "bearer"}))
    server.route("/v1/x", json_response())
    with pytest.raises(TokenError, match="access_token") as info:
        ExternalApiHook().get_json("x")
    assert "fetched" not in str(info.value)
    assert [r.path for r in server.requests] == ["/oauth/token"], "the API never got the token"


# 2. Every URL shown anywhere is redacted -----------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://other.example/x?api_key=query-secret-777",
        "https://localhost:1/x?access_token=query-secret-777",
        "http://localhost/x?signature=query-secret-777",
        "https://user:query-secret-777@localhost/x",
        "https://query-secret-777@localhost/x",
    ],
)
def test_a_refused_absolute_endpoint_never_shows_its_secrets(hook, server, endpoint) -> None:
    with pytest.raises((HostNotAllowedError, InsecureUrlError)) as info:
        hook.get_json(endpoint)
    assert "query-secret-777" not in str(info.value)
    assert "query-secret-777" not in str(info.value.url)
    assert "***" in str(info.value.url)
    assert nothing_reached(server)


# 3. Scrubbing covers the encodings an API echoes back --------------------------------------

ECHOED_SECRET = "s3cr/et+tok en=é~X"


def echo_in_every_encoding(h: ScriptedHandler) -> None:
    token = h.headers["Authorization"].removeprefix("Bearer ")
    forms = {
        "plain": token,
        "quote": quote(token, safe=""),
        "quote_lower_hex": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(token, safe="")),
        "quote_path": quote(token),
        "quote_plus": quote_plus(token),
        "base64": base64.b64encode(token.encode()).decode(),
        "html": token.replace("&", "&amp;").replace('"', "&quot;"),
    }
    text = json.dumps({"error": "denied", "forms": forms})  # \u00e9 escapes
    text += " " + json.dumps(token).replace("/", "\\/")  # the \/ form other serializers write
    text += " " + json.dumps(token, ensure_ascii=False)
    h.send_bytes(403, text.encode(), content_type="application/json")


def test_an_error_excerpt_scrubs_the_secret_in_every_echoed_encoding(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", password=ECHOED_SECRET, auth_type="bearer")
    server.route("/v1/x", echo_in_every_encoding)
    with pytest.raises(HttpStatusError) as info:
        ExternalApiHook().get_json("x")
    message = str(info.value)
    assert '"error": "denied"' in message, "the excerpt is there, only the secret is gone"
    for leaked in ("s3cr", "et+tok", "et%2Btok", "et%2btok", "ZXQrdG9r", "\\/et", "\\u00e9~X"):
        assert leaked not in message, leaked


# 4. No secret in any repr or str -----------------------------------------------------------


def test_no_object_built_from_a_connection_full_of_secrets_prints_one(server, make_conn) -> None:
    secrets = ["base-url-secret-1", "header-secret-2", "proxy-pass-3", "password-secret-4", "token-url-secret-5"]
    make_conn(
        host=f"{server.base_url}/v1?api_key=base-url-secret-1",
        login="user",
        password="password-secret-4",
        headers={"X-Api-Token": "header-secret-2", "X-Tenant": "acme"},
        proxies={"http": "http://proxy-user:proxy-pass-3@proxy.example:3128"},
    )
    server.route("/v1/x", json_response(200, {"ok": True}))
    hook = ExternalApiHook()
    response = hook.request("GET", "x", params={"access_token": "call-secret-6"})
    request = build_request(hook.settings, "GET", "x", params={"access_token": "call-secret-6"})
    printed = "\n".join(
        text
        for thing in (hook.settings, hook.settings.auth, hook, request, response, response.headers)
        for text in (repr(thing), str(thing))
    )
    assert "acme" in printed, "the printout shows the harmless values"
    for secret in [*secrets, "call-secret-6"]:
        assert secret not in printed, secret
    oauth_url = f"{server.base_url}/oauth/token?client_assertion=token-url-secret-5"
    make_conn(
        "oauth", host=f"{server.base_url}/v1", login="c", password="cs-1234", auth_type="oauth2_client_credentials",
        token_url=oauth_url,
    )  # fmt: skip
    oauth = ExternalApiHook("oauth").settings
    assert "token-url-secret-5" not in repr(oauth)
    assert "cs-1234" not in repr(oauth)


# 5. No secret in library debug logs ---------------------------------------------------------


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def test_every_record_logged_during_a_call_is_free_of_secrets_whoever_logs_it(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", password="bearer-debug-secret", auth_type="bearer")
    server.route("/v1/x", json_response(200, {"ok": True}))
    capture = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        ExternalApiHook().request("GET", "x", params={"api_key": "query-debug-secret", "zip": "20121"})
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    urllib3_lines = [line for line in capture.lines if line.startswith("urllib3")]
    assert any("GET /v1/x?api_key=***&zip=20121" in line for line in urllib3_lines), urllib3_lines
    for line in capture.lines:
        assert "query-debug-secret" not in line
        assert "bearer-debug-secret" not in line


# 6. Addresses that embed a non-public IPv4 ---------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 well-known prefix embedding 127.0.0.1
        "64:ff9b::a00:1",  # ... embedding 10.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2002:7f00:1::1",  # 6to4 embedding 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 embedding 192.168.1.1
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::ffff:0:a9fe:a9fe",  # SIIT embedding 169.254.169.254
        "fec0::1",  # deprecated site-local
    ],
)
def test_a_name_resolving_to_an_address_that_embeds_a_non_public_ipv4_is_refused(
    server, make_conn, monkeypatch, address
) -> None:
    real_getaddrinfo = socket.getaddrinfo

    def fake_dns(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "api.campaign.test":
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    make_conn(host=f"https://api.campaign.test:{server.port}/v1", allow_private_hosts=False)
    with pytest.raises(HostNotAllowedError, match="non-public address"):
        ExternalApiHook().get_json("x")
    assert nothing_reached(server)


# 7. A relative endpoint stays under the base path --------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["../admin", "x/../../admin", "%2e%2e/admin", "x/%2E%2E/%2e%2e/admin", ".%2e/admin", "..%2fadmin", "..%5cadmin"],
)
def test_dot_segments_cannot_climb_above_the_base_path(server, make_conn, endpoint) -> None:
    make_conn(host=f"{server.base_url}/tenant-a/v1", password="tenant-a-token", auth_type="bearer")
    with pytest.raises(PathNotAllowedError, match="path not allowed"):
        ExternalApiHook().get_json(endpoint)
    assert nothing_reached(server)


def test_dot_segments_that_stay_under_the_base_path_are_resolved_before_sending(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/tenant-a/v1")
    server.route("/tenant-a/v1/offers", json_response(200, [1]))
    assert ExternalApiHook().get_json("x/../offers") == [1]
    assert server.requests[0].path == "/tenant-a/v1/offers"


# 8. Hosts that cannot be encoded -------------------------------------------------------------


# A circled letter, an ideographic full stop and a full-width letter: UTS 46 would map them, IDNA 2008 refuses.
@pytest.mark.parametrize("host", ["\u24dbocalhost", "example\u3002com", "\uff45xample.com"])
def test_a_host_idna_refuses_is_a_typed_error_before_any_connect(hook, server, host) -> None:
    with pytest.raises(HostNotAllowedError, match="IDNA"):
        hook.get_json(f"https://{host}:{server.port}/v1/x")
    assert nothing_reached(server)


def test_a_base_url_host_idna_refuses_is_a_connection_error(make_conn) -> None:
    make_conn(host="https://ⓛocalhost/v1", allow_private_hosts=False)
    with pytest.raises(ConnectionConfigError, match="IDNA"):
        ExternalApiHook().get_json("x")


# 9. Informational responses ------------------------------------------------------------------


def informational_then(status: int, final: bytes) -> Any:
    def respond(h: ScriptedHandler) -> None:
        head = f"HTTP/1.1 {status} Informational\r\nLink: </style.css>; rel=preload\r\n\r\n".encode()
        h.wfile.write(head + head + final)
        h.close_connection = True

    return respond


def test_early_hints_are_skipped_and_the_final_response_is_read(hook, server) -> None:
    body = b'{"offers": [1, 2]}'
    final = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server.route("/v1/x", informational_then(103, final))
    response = hook.request("GET", "x")
    assert response.status_code == 200
    assert response.json() == {"offers": [1, 2]}


def test_switching_protocols_without_an_upgrade_is_a_typed_error(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", max_retries=0)
    server.route("/v1/x", informational_then(101, b""))
    with pytest.raises(TransportError, match="101"):
        ExternalApiHook().get_json("x")


# 10. One OAuth2 token fetch at a time --------------------------------------------------------


def test_threads_sharing_a_hook_fetch_one_token_and_refresh_it_once(server, make_conn) -> None:
    oauth_conn(server, make_conn)
    issued = iter(["token-1", "token-2", "token-3", "token-4"])
    valid = {"token-1"}

    def token(h: ScriptedHandler) -> None:
        time.sleep(0.3)  # a slow token endpoint, so that the other threads are waiting meanwhile
        h.send_json(200, {"access_token": next(issued), "token_type": "bearer"})

    def api(h: ScriptedHandler) -> None:
        presented = h.headers["Authorization"].removeprefix("Bearer ")
        h.send_json(200 if presented in valid else 401, {"token": presented})

    server.route("/oauth/token", token)
    server.route("/v1/x", api)
    hook = ExternalApiHook()

    def in_threads(count: int) -> list[Any]:
        start = threading.Barrier(count)
        results: list[Any] = [None] * count

        def call(index: int) -> None:
            start.wait()
            results[index] = hook.get_json("x")["token"]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        return results

    assert in_threads(8) == ["token-1"] * 8
    assert len([r for r in server.requests if r.path == "/oauth/token"]) == 1, "one fetch for eight first calls"

    valid.clear()
    valid.add("token-2")  # the server revokes token-1: eight concurrent calls get a 401
    assert in_threads(8) == ["token-2"] * 8
    assert len([r for r in server.requests if r.path == "/oauth/token"]) == 2, "one refresh for eight 401s"


# allow_insecure_http: plain HTTP to a loopback mock, and nowhere else ------------------------


def test_plain_http_reaches_a_loopback_mock_only_when_allowed(make_conn) -> None:
    from http.server import ThreadingHTTPServer

    from tests.support.scripted_server import Script

    script = Script(routes={"/v1/x": [json_response(200, {"plain": True})]})
    handler = type("Handler", (ScriptedHandler,), {"script": script})
    plain = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{plain.server_address[1]}/v1"
        make_conn("mock", host=base, allow_insecure_http=True)
        assert ExternalApiHook("mock").get_json("x") == {"plain": True}
        make_conn("no_switch", host=base)
        with pytest.raises(ConnectionConfigError, match="only 'https' is allowed"):
            ExternalApiHook("no_switch").get_json("x")
        make_conn("not_private", host=base, allow_insecure_http=True, allow_private_hosts=False)
        with pytest.raises(ConnectionConfigError, match="only to a loopback host"):
            ExternalApiHook("not_private").get_json("x")
        assert len(script.requests) == 1
    finally:
        plain.shutdown()
        plain.server_close()
