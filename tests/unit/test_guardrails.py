"""The pure guardrails: URL, host, address, header, body, content type and JSON shape."""

from __future__ import annotations

import gc
import json

import pytest

from airflow_campaign_provider.exceptions import (
    ContentTypeError,
    HostNotAllowedError,
    InsecureUrlError,
    InvalidHeaderError,
    InvalidJsonError,
    JsonDepthError,
    JsonKeyLengthError,
    MappingConfigError,
    RequestTooLargeError,
    ResponseTooLargeError,
)
from airflow_campaign_provider.guardrails import (
    MAX_JSON_DEPTH,
    MAX_JSON_KEY_LENGTH,
    MAX_REQUEST_BODY_BYTES,
    check_headers,
    check_json_content_type,
    check_resolved_addresses,
    check_response_size,
    check_url,
    encode_json_body,
    is_public_address,
)
from airflow_campaign_provider.json_body import gc_paused, parse_json

URL = "https://api.example.com/v1"


def nested(depth: int) -> object:
    doc: object = 1
    for _ in range(depth):
        doc = [doc]
    return doc


@pytest.mark.parametrize("url", ["http://api.example.com", "ftp://api.example.com", "api.example.com/x"])
def test_https_only(url: str) -> None:
    with pytest.raises(InsecureUrlError, match="HTTPS only"):
        check_url(url, allow_private_hosts=False)


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST.", "api.localhost", "127.0.0.1", "[::1]", "10.1.2.3", "2130706433", "0x7f.1"],
)
def test_localhost_and_ip_literals_are_refused(host: str) -> None:
    with pytest.raises(HostNotAllowedError):
        check_url(f"https://{host}/x", allow_private_hosts=False)
    check_url(f"https://{host}/x", allow_private_hosts=True)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),  # noqa: S104,
        ("100.64.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::", False),
        ("224.0.0.1", False),
        # IPv6 forms that embed an IPv4 address are judged by it; Python calls several of them global.
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::808:808", True),
        ("64:ff9b:1::808:808", False),
        ("2002:a00:1::1", False),
        ("2002:808:808::1", True),
        ("::a00:1", False),
        ("::ffff:0:7f00:1", False),
        ("::ffff:0:808:808", True),
        ("fec0::1", False),
        ("2001::1", False),
    ],
)
def test_public_address_classification(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_any_non_public_resolved_address_refuses_the_host() -> None:
    check_resolved_addresses("api.example.com", ["93.184.216.34"], url=URL)
    with pytest.raises(HostNotAllowedError, match=r"resolves to the non-public address 10\.0\.0\.7"):
        check_resolved_addresses("api.example.com", ["93.184.216.34", "10.0.0.7"], url=URL)


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"X-Ok": "a\r\nX-Injected: 1"}, "CR, LF"),
        ({"X-Ok": "a\nb"}, "CR, LF"),
        ({"X-Ok": "a\x00b"}, "CR, LF"),
        ({"Bad Name": "v"}, "RFC 9110 token"),
        ({"X:Colon": "v"}, "RFC 9110 token"),
        ({"": "v"}, "RFC 9110 token"),
        ({"Content-Length": "1"}, "reserved"),
        ({"Host": "other.example"}, "reserved"),
        ({"Accept": "text/html"}, "reserved"),
        ({"X-Ok": "€"}, "ISO-8859-1"),
    ],
)
def test_bad_headers(headers: dict[str, str], fragment: str) -> None:
    with pytest.raises(InvalidHeaderError, match=fragment):
        check_headers(headers, url=URL)


def test_good_headers_pass() -> None:
    check_headers({"X-Campaign": "spring 2026", "If-None-Match": '"abc"', "X-Tab": "a\tb"}, url=URL)


def test_request_body_limit() -> None:
    assert encode_json_body({"a": "é"}, url=URL) == '{"a":"é"}'.encode()
    at_limit = {"x": "a" * (MAX_REQUEST_BODY_BYTES - 8)}
    assert len(encode_json_body(at_limit, url=URL)) == MAX_REQUEST_BODY_BYTES
    with pytest.raises(RequestTooLargeError, match="5,242,881 bytes, the limit is 5,242,880"):
        encode_json_body({"x": "a" * (MAX_REQUEST_BODY_BYTES - 7)}, url=URL)
    with pytest.raises(MappingConfigError, match="not JSON-serializable"):
        encode_json_body({"x": float("nan")}, url=URL)
    with pytest.raises(MappingConfigError, match="not JSON-serializable"):
        encode_json_body({"when": object()}, url=URL)


def test_response_size_rule() -> None:
    check_response_size(100, 100, url=URL)
    with pytest.raises(ResponseTooLargeError, match="declares a Content-Length of 101 bytes"):
        check_response_size(101, 100, url=URL, declared=True)
    with pytest.raises(ResponseTooLargeError, match="passed 101 bytes"):
        check_response_size(101, 100, url=URL)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/problem+json", "Application/JSON"],
)
def test_json_content_types_pass(content_type: str) -> None:
    check_json_content_type(content_type, url=URL)


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/html", "text/json", "application/jsonp", "application/json; charset=latin-1"],
)
def test_other_content_types_fail(content_type: str | None) -> None:
    with pytest.raises(ContentTypeError):
        check_json_content_type(content_type, url=URL)


def test_depth_ten_passes_and_eleven_fails() -> None:
    assert parse_json(json.dumps(nested(MAX_JSON_DEPTH)).encode(), "application/json", url=URL)
    with pytest.raises(JsonDepthError, match="11 levels deep, the limit is 10"):
        parse_json(json.dumps(nested(MAX_JSON_DEPTH + 1)).encode(), "application/json", url=URL)
    mixed = {"a": {"b": [{"c": [[[[[[1]]]]]]}]}}  # 10 containers
    parse_json(json.dumps(mixed).encode(), "application/json", url=URL)
    with pytest.raises(JsonDepthError):
        parse_json(json.dumps({"x": mixed}).encode(), "application/json", url=URL)


def test_very_deep_documents_fail_cleanly() -> None:
    with pytest.raises((JsonDepthError, InvalidJsonError)):
        parse_json(b"[" * 100_000 + b"]" * 100_000, "application/json", url=URL)


def test_key_length_limit() -> None:
    ok = {"k" * MAX_JSON_KEY_LENGTH: 1}
    parse_json(json.dumps([ok]).encode(), "application/json", url=URL)
    with pytest.raises(JsonKeyLengthError, match="256 characters"):
        parse_json(json.dumps([{"k" * (MAX_JSON_KEY_LENGTH + 1): 1}]).encode(), "application/json", url=URL)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html>oops</html>", "malformed JSON"),
        (b'{"a": NaN}', "malformed JSON"),
        (b'{"a": Infinity}', "malformed JSON"),
        (b'{"a": 1e400}', "Number out of range"),
        (b'{"a": "\xff"}', "not valid UTF-8"),
        (b'"\\ud800"', "malformed JSON"),
        (b"", "malformed JSON"),
        (b"[1] trailing", "malformed JSON"),
        (b"\xef\xbb\xbf[1]", "malformed JSON"),
        ('{"a": 1}'.encode("utf-16"), "malformed JSON"),
    ],
)
def test_invalid_json(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidJsonError, match=fragment):
        parse_json(body, "application/json", url=URL)


def test_parse_runs_with_the_garbage_collector_paused() -> None:
    collections: list[str] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(phase)

    body = json.dumps([{"id": i, "tags": [i, i + 1]} for i in range(100_000)]).encode()
    gc.callbacks.append(count)
    try:
        parse_json(body, "application/json", url=URL)
        paused = len(collections)
        json.loads(body)
        unpaused = len(collections) - paused
    finally:
        gc.callbacks.remove(count)
    # Re-enabling the collector may run the one deferred collection; the parse itself runs none.
    assert paused <= 1
    assert unpaused > 10, "the control parse should have triggered many collections"
    assert gc.isenabled()


def test_gc_paused_restores_the_previous_state() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError
    assert gc.isenabled()


@pytest.mark.parametrize("body", [b"null", b"3", b'"text"', b"true"])
def test_scalar_documents_parse(body: bytes) -> None:
    assert parse_json(body, "application/json", url=URL) == json.loads(body)


@pytest.mark.parametrize("url", ["http://localhost:8080/v1", "http://127.0.0.1/v1", "http://[::1]:9000/v1"])
def test_plain_http_only_to_loopback_with_both_switches(url: str) -> None:
    check_url(url, allow_private_hosts=True, allow_insecure_http=True)
    with pytest.raises(InsecureUrlError, match="only 'https' is allowed"):
        check_url(url, allow_private_hosts=True)
    with pytest.raises(InsecureUrlError, match=r"only to a loopback host .* allow_private_hosts is set too"):
        check_url(url, allow_private_hosts=False, allow_insecure_http=True)


@pytest.mark.parametrize("url", ["http://api.example.com/v1", "http://10.0.0.1/v1", "http://localhost.example.com/"])
def test_plain_http_is_never_allowed_beyond_loopback(url: str) -> None:
    with pytest.raises(InsecureUrlError, match="only to a loopback host"):
        check_url(url, allow_private_hosts=True, allow_insecure_http=True)
