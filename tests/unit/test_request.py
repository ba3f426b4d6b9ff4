"""The pure request builder: joining, normalizing and checking a URL, headers and body, secrets first."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_campaign_provider.exceptions import (
    HostNotAllowedError,
    InsecureUrlError,
    InvalidHeaderError,
    PathNotAllowedError,
)
from airflow_campaign_provider.request import build_request, remove_dot_segments, resolve_url
from airflow_campaign_provider.settings import ConnectionSettings, parse_connection


def conn(host: str = "https://api.example.com/tenant/v1", **extra: Any) -> ConnectionSettings:
    return parse_connection(host=host, extra=extra)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b/c/./../../g", "/a/g"),
        ("/v1/x/../y", "/v1/y"),
        ("/v1/x/..", "/v1/"),
        ("/../../etc", "/etc"),
        ("/v1/./x/.", "/v1/x/"),
        ("/", "/"),
    ],
)
def test_remove_dot_segments_follows_rfc_3986(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("", "https://api.example.com/tenant/v1"),
        ("offers", "https://api.example.com/tenant/v1/offers"),
        ("/offers?page=2", "https://api.example.com/tenant/v1/offers?page=2"),
        ("x/../offers", "https://api.example.com/tenant/v1/offers"),
        ("x/%2e%2e/offers", "https://api.example.com/tenant/v1/offers"),
        ("https://API.example.com/other/./x", "https://api.example.com/other/x"),
    ],
)
def test_endpoints_are_joined_and_normalized(endpoint: str, url: str) -> None:
    assert resolve_url(conn(), endpoint) == url


@pytest.mark.parametrize(
    "endpoint", ["..", "../v2", "x/../../../admin", "%2E%2E/v2", "..%2Fv2", "..%5Cv2", "x/..%2f..%2fv2"]
)
def test_a_relative_endpoint_never_leaves_the_base_path(endpoint: str) -> None:
    with pytest.raises(PathNotAllowedError):
        resolve_url(conn(), endpoint)


def test_an_internationalized_host_is_sent_idna_encoded() -> None:
    settings = conn("https://bücher.example/v1")
    assert settings.host == "xn--bcher-kva.example"
    assert resolve_url(settings, "x") == "https://xn--bcher-kva.example/v1/x"
    assert resolve_url(settings, "https://BÜCHER.example/v1/y") == "https://xn--bcher-kva.example/v1/y"


@pytest.mark.parametrize(
    ("endpoint", "error"),
    [
        ("https://other.example/x?api_key=k-secret-1", HostNotAllowedError),
        ("https://api.example.com:8443/x?token=k-secret-1", HostNotAllowedError),
        ("http://api.example.com/x?sig=k-secret-1", InsecureUrlError),
        ("https://u:k-secret-1@api.example.com/x", InsecureUrlError),
        ("https://ⓛocalhost/x?api_key=k-secret-1", HostNotAllowedError),
    ],
)
def test_a_refused_url_is_redacted_before_it_is_checked(endpoint: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        build_request(conn(), "GET", endpoint)
    assert "k-secret-1" not in str(info.value)


def test_a_request_carries_its_secrets_and_shows_only_its_redacted_url() -> None:
    settings = conn(headers={"X-Tenant": "acme", "X-Partner-Key": "partner-k-1"})
    request = build_request(
        settings, "post", "coupons", params={"api_key": "q-secret-2", "zip": "1"}, json={"a": 1},
        headers={"X-Call-Token": "h-secret-3"},
    )  # fmt: skip
    assert request.method == "POST"
    assert request.display_url == "https://api.example.com/tenant/v1/coupons?api_key=***&zip=1"
    assert {"partner-k-1", "q-secret-2", "h-secret-3"} <= set(request.secrets)
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Tenant"] == "acme"
    assert request.body == b'{"a":1}'
    assert not request.repeatable, "a POST is not repeatable without an opt-in or an idempotency key"
    for secret in ("partner-k-1", "q-secret-2", "h-secret-3"):
        assert secret not in repr(request)


def test_transport_headers_are_reserved() -> None:
    with pytest.raises(InvalidHeaderError, match="reserved"):
        build_request(conn(), "GET", "x", headers={"Accept-Encoding": "br"})
