"""Build one immutable request from the connection settings and a call's arguments. Pure.

Everything a request must pass before it may leave happens here, in this order:
the secrets it carries are collected first, so that every URL an error shows is
already redacted; the endpoint is joined to the base URL and normalized (dot-segments
removed, so what we check is what is sent); then the URL, host, base-path, header and
body guardrails run. Both transports send the result as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import SplitResult, unquote, urlencode, urlsplit, urlunsplit

from airflow_campaign_provider import __version__
from airflow_campaign_provider.exceptions import HostNotAllowedError, PathNotAllowedError
from airflow_campaign_provider.guardrails import (
    ascii_host,
    check_headers,
    check_under_base_path,
    check_url,
    encode_json_body,
)
from airflow_campaign_provider.redaction import redact_url, secret_values
from airflow_campaign_provider.retry import is_repeatable
from airflow_campaign_provider.settings import ConnectionSettings

TRANSPORT_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": f"airflow-campaign-provider/{__version__}",
}
"""Sent with every request; the transports decode exactly these encodings."""

_DEFAULT_PORTS = {"https": 443, "http": 80}
_ENCODED_DOT = re.compile("%2e", re.IGNORECASE)
_SLASHES = re.compile(r"[/\\]")


@dataclass(frozen=True)
class ApiRequest:
    """One request, ready to send; only the auth headers of the current attempt are added later.

    :ivar method: the HTTP method, upper case.
    :ivar url: the URL to send to (host IDNA-encoded, path normalized). It may hold query secrets.
    :ivar display_url: ``url`` with secrets redacted: the only form logs, errors and XCom see.
    :ivar headers: every header but the auth ones.
    :ivar body: the encoded body, if any.
    :ivar secrets: every secret the request carries or may echo back, to scrub from any text.
    :ivar retry_non_idempotent: a POST or PATCH may be retried after it was sent.
    :ivar authenticate: the connection's auth applies (the OAuth2 token request brings its own).
    """

    method: str
    url: str = field(repr=False)
    display_url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    retry_non_idempotent: bool = False
    authenticate: bool = True

    @property
    def repeatable(self) -> bool:
        """True when sending this request twice is safe (see :func:`~.retry.is_repeatable`)."""
        return is_repeatable(self.method, self.headers, self.retry_non_idempotent)

    def with_headers(self, headers: Mapping[str, str]) -> ApiRequest:
        """A copy with ``headers`` added (they win over existing ones of the same name)."""
        return replace(self, headers={**self.headers, **headers}) if headers else self


def build_request(
    settings: ConnectionSettings,
    method: str,
    endpoint: str = "",
    *,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    retry_non_idempotent: bool = False,
) -> ApiRequest:
    """Build and check the request for ``endpoint``; nothing is sent, so every error comes before any I/O.

    :raises InsecureUrlError, HostNotAllowedError, PathNotAllowedError: the URL is refused.
    :raises InvalidHeaderError, RequestTooLargeError: a header or the body is refused.
    :raises MappingConfigError: the body is not JSON-serializable.
    """
    secrets = (
        *settings.secrets,
        *secret_values(headers, params, endpoint, [settings.auth.api_key_header]),
    )
    url, shown = _resolve(settings, endpoint, params, secrets)
    if headers:
        check_headers(headers, url=shown)
    all_headers = {**TRANSPORT_HEADERS, **settings.headers, **(headers or {})}
    body = None
    if json is not None:
        body = encode_json_body(json, url=shown)
        all_headers["Content-Type"] = "application/json"
    return ApiRequest(
        method=method.upper(),
        url=url,
        display_url=shown,
        headers=all_headers,
        body=body,
        secrets=secrets,
        retry_non_idempotent=retry_non_idempotent,
    )


def resolve_url(
    settings: ConnectionSettings,
    endpoint: str = "",
    params: Mapping[str, Any] | None = None,
    secrets: tuple[str, ...] = (),
) -> str:
    """The URL for ``endpoint``: joined, normalized and checked against every URL guardrail.

    A relative endpoint, with or without a leading ``/``, is appended to the base URL's path
    and must stay under it once its dot-segments are resolved. An absolute URL must be on
    the connection's scheme, host and port.
    """
    return _resolve(settings, endpoint, params, (*settings.secrets, *secrets))[0]


def _resolve(
    settings: ConnectionSettings, endpoint: str, params: Mapping[str, Any] | None, secrets: tuple[str, ...]
) -> tuple[str, str]:
    """:func:`resolve_url`, and the URL as shown, redacted of ``secrets`` (all of them, the connection's too)."""
    shown = redact_url(endpoint, secrets)
    base = urlsplit(settings.base_url)
    target = urlsplit(endpoint)
    if target.scheme or target.netloc:
        parts = check_connection_url(settings, endpoint, shown)
        if not same_origin(parts.scheme, parts.hostname or "", parts.port, settings, url=shown):
            raise HostNotAllowedError(
                f"host not allowed: an absolute endpoint must be on the connection's host {base.netloc!r}", url=shown
            )
        scheme = parts.scheme.lower()
        netloc = ascii_host(parts.hostname or "", url=shown) + (f":{parts.port}" if parts.port else "")
        path, query = normalize_path(parts.path or "/", url=shown), parts.query
    else:
        joined = "/".join(p for p in (base.path.rstrip("/"), target.path.lstrip("/")) if p)
        path = normalize_path("/" + joined.lstrip("/"), url=shown)
        check_under_base_path(path, base.path, url=shown)
        scheme, netloc = base.scheme, base.netloc
        query = "&".join(q for q in (base.query, target.query) if q)
    if params:
        query = "&".join(q for q in (query, urlencode(params, doseq=True)) if q)
    url = urlunsplit((scheme, netloc, path, query, ""))
    shown = redact_url(url, secrets)
    check_connection_url(settings, url, shown)
    return url, shown


def check_connection_url(settings: ConnectionSettings, url: str, display_url: str) -> SplitResult:
    """:func:`~.guardrails.check_url` under the connection's ``allow_private_hosts`` and ``allow_insecure_http``."""
    return check_url(
        url,
        allow_private_hosts=settings.allow_private_hosts,
        allow_insecure_http=settings.allow_insecure_http,
        display_url=display_url,
    )


def same_origin(scheme: str, host: str, port: int | None, settings: ConnectionSettings, *, url: str) -> bool:
    """True when scheme, host (IDNA-encoded) and port are the connection's: where its credentials may go."""
    base = urlsplit(settings.base_url)
    return (
        scheme.lower() == base.scheme
        and ascii_host(host, url=url) == settings.host
        and (port or _DEFAULT_PORTS[scheme.lower()]) == (base.port or _DEFAULT_PORTS[base.scheme])
    )


def normalize_path(path: str, *, url: str) -> str:
    """Resolve dot-segments (RFC 3986 §5.2.4), percent-encoded ones included, so what is checked is what is sent.

    A segment that hides a dot-segment behind an encoded slash or a backslash
    (``..%2fadmin``), which some servers decode, is refused outright.
    """
    path = remove_dot_segments(_ENCODED_DOT.sub(".", path))
    for segment in path.split("/"):
        if ".." in _SLASHES.split(unquote(segment)):
            raise PathNotAllowedError(
                f"path not allowed: the segment {segment!r} hides a '..' behind an encoded slash or a backslash",
                url=url,
            )
    return path


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path: ``/v1/x/../y/.`` becomes ``/v1/y/``; never climbs above ``/``."""
    segments = path.split("/")
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if len(out) > 1:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments[-1] in (".", ".."):
        out.append("")
    return "/".join(out) or "/"
