"""The External API activity's guardrails: limits as named constants and the pure checks that enforce them.

Every rule that refuses a URL, a host, a header, a body or a JSON document lives
here, so "why was my call refused?" has one place to look. The checks raise the
typed errors of :mod:`airflow_campaign_provider.exceptions`; none of them does I/O.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Any
from urllib.parse import SplitResult, urlsplit

from airflow_campaign_provider.exceptions import (
    ContentTypeError,
    HostNotAllowedError,
    InsecureUrlError,
    InvalidHeaderError,
    JsonDepthError,
    JsonKeyLengthError,
    MappingConfigError,
    PathNotAllowedError,
    RequestTooLargeError,
    ResponseTooLargeError,
)
from airflow_campaign_provider.redaction import redact_url

MAX_REQUEST_BODY_BYTES = 5 * 1024 * 1024
"""JSON request bodies are at most 5 MiB, as in the activity."""

DEFAULT_MAX_RESPONSE_BYTES = 5 * 1024 * 1024
"""Default response size limit (5,242,880 bytes), the activity's current value."""

MAX_RESPONSE_BYTES_CEILING = 50 * 1024 * 1024
"""Highest ``max_response_bytes`` a connection may set: the activity's earlier 50 MB limit."""

MAX_JSON_DEPTH = 10
"""Nesting limit; the top-level object or array is level 1."""

MAX_JSON_KEY_LENGTH = 255
"""Longest object key accepted; a key becomes a column id."""

RESERVED_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "connection",
        "content-length",
        "content-type",
        "expect",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers the transport owns; a caller may not set them."""

_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215
_LAST_32_BITS_EMBEDDINGS = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix, RFC 6052
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # SIIT IPv4-translated, RFC 2765
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated), RFC 4291; also :: and ::1
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CR, LF, NUL and other controls
_CONTAINER_TYPES = frozenset({dict, list})
_JSON_MEDIA_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json", re.IGNORECASE)


def check_url(
    url: str, *, allow_private_hosts: bool, allow_insecure_http: bool = False, display_url: str | None = None
) -> SplitResult:
    """Check the scheme and host of ``url`` before anything is sent, and return it split.

    ``https://`` only (``http://`` only to a loopback host, with ``allow_insecure_http`` and
    ``allow_private_hosts``, for local mocks), no credentials in the URL, a host that IDNA
    can encode and, unless ``allow_private_hosts``, neither ``localhost`` nor an IP literal
    as the host. Errors name ``display_url`` (by default ``url`` redacted), never ``url``.
    """
    shown = redact_url(url) if display_url is None else display_url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        # The parser's message can quote the netloc, credentials included.
        raise InsecureUrlError("HTTPS only: cannot parse the URL (malformed host or port)", url=shown) from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_insecure_http):
        raise InsecureUrlError(f"HTTPS only: the scheme is {scheme or 'missing'!r}, only 'https' is allowed", url=shown)
    if not parts.hostname:
        raise InsecureUrlError("HTTPS only: the URL has no host", url=shown)
    if parts.username is not None or parts.password is not None:
        raise InsecureUrlError(
            "credentials in the URL are not allowed; put them in the connection's login and password",
            url=shown,
        )
    host = ascii_host(parts.hostname, url=shown)
    if scheme == "http" and not (allow_private_hosts and is_loopback_host(host)):
        raise InsecureUrlError(
            "HTTPS only: allow_insecure_http permits http:// only to a loopback host (localhost, 127.0.0.0/8 "
            "or ::1), and only when allow_private_hosts is set too",
            url=shown,
        )
    if not allow_private_hosts:
        check_host_name(host, url=shown)
    return parts


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals: the only hosts plain HTTP may reach."""
    name = host.lower().rstrip(".").strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def ascii_host(host: str, *, url: str) -> str:
    """The host as sent on the wire: lower case, internationalized names IDNA-encoded (strict, STD3 rules).

    The same encoding urllib3 applies, done here so that a name it would refuse
    (``ⓛocalhost``, full-width dots) is a typed error before any connect, and so that
    the host checks see the name that is really resolved.
    """
    if host.isascii():
        return host.lower()
    import idna

    try:
        return str(idna.encode(host.lower(), strict=True, std3_rules=True).decode("ascii"))
    except idna.IDNAError:
        raise HostNotAllowedError(
            f"host not allowed: {host!r} is not a valid internationalized host name (IDNA 2008)", url=url
        ) from None


def check_under_base_path(path: str, base_path: str, *, url: str) -> None:
    """Refuse a normalized request path that climbs out of the connection's base path.

    Credentials meant for ``/tenant-a/v1`` must never reach ``/tenant-b`` or ``/admin``
    on the same host, whatever dot-segments the endpoint held.
    """
    base = base_path.rstrip("/")
    if base and path != base and not path.startswith(base + "/"):
        raise PathNotAllowedError(
            f"path not allowed: the endpoint resolves to {path!r}, outside the connection's base path {base!r}",
            url=url,
        )


def check_host_name(host: str, *, url: str) -> None:
    """Refuse ``localhost`` (and ``*.localhost``) and IP literals, decimal and hex forms included."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise HostNotAllowedError(
            "host not allowed: 'localhost' is refused (set allow_private_hosts to lift this)", url=url
        )
    last_label = name.rsplit(".", 1)[-1]
    if _is_ip_literal(name) or last_label.isdigit() or last_label.startswith("0x"):
        raise HostNotAllowedError(
            f"host not allowed: {host!r} is an IP address literal, a DNS name is required "
            "(set allow_private_hosts to lift this)",
            url=url,
        )


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def is_public_address(address: str) -> bool:
    """Return True for a globally routable unicast address.

    An IPv6 address that embeds an IPv4 one (mapped, IPv4-compatible, SIIT, NAT64 64:ff9b::/96,
    6to4) is judged by that IPv4 address. Python's ``ipaddress`` calls several of those forms
    global whatever they embed, so the rule lives here. Local-use NAT64 (64:ff9b:1::/48) and
    deprecated site-local addresses (fec0::/10) are never public.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL_USE or ip.is_site_local:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries by a standard embedding, if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in network for network in _LAST_32_BITS_EMBEDDINGS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def checked_addresses(host: str, infos: Iterable[tuple[Any, ...]], *, url: str) -> list[str]:
    """The distinct addresses of a ``getaddrinfo`` answer, in order, after :func:`check_resolved_addresses`."""
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    check_resolved_addresses(host, addresses, url=url)
    return addresses


def check_resolved_addresses(host: str, addresses: Iterable[str], *, url: str) -> None:
    """Refuse a host when any address it resolves to is loopback, private, link-local or unspecified.

    Checking every resolved address (and connecting only to checked ones, which the
    transport does) also stops DNS rebinding: a name cannot pass here and then reach
    an internal address.
    """
    for address in addresses:
        if not is_public_address(address):
            raise HostNotAllowedError(
                f"host not allowed: {host!r} resolves to the non-public address {address} "
                "(loopback, private, link-local and unspecified addresses are refused; "
                "set allow_private_hosts to lift this)",
                url=url,
            )


def check_headers(headers: Mapping[str, str], *, url: str | None = None, source: str = "header") -> None:
    """Check header names (RFC 9110 tokens, not reserved) and values (no CR, LF or controls)."""
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise InvalidHeaderError(f"invalid header: the {source} name {name!r} is not an RFC 9110 token", url=url)
        if name.lower() in RESERVED_HEADERS:
            raise InvalidHeaderError(f"invalid header: {name!r} is reserved and set by the transport", url=url)
        if not isinstance(value, str):
            raise InvalidHeaderError(
                f"invalid header: the value of {name!r} must be a string, not {type(value).__name__}",
                url=url,
            )
        if _FORBIDDEN_IN_VALUE.search(value):
            raise InvalidHeaderError(
                f"invalid header: the value of {name!r} contains CR, LF or another control character",
                url=url,
            )
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidHeaderError(
                f"invalid header: the value of {name!r} has characters outside ISO-8859-1", url=url
            ) from None


def encode_json_body(body: Any, *, url: str, limit: int = MAX_REQUEST_BODY_BYTES) -> bytes:
    """Serialize a request body to compact UTF-8 JSON and enforce the request size limit."""
    try:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as err:
        # A mistake in the DAG or its data, not a request failure: it never takes a failure branch.
        raise MappingConfigError("body", f"the request body is not JSON-serializable: {err}") from None
    if len(data) > limit:
        raise RequestTooLargeError(
            f"request body size limit: the JSON body is {len(data):,} bytes, the limit is {limit:,} bytes",
            url=url,
        )
    return data


def check_response_size(received: int, limit: int, *, url: str, declared: bool = False) -> None:
    """Refuse a response once its size (declared in Content-Length, or read so far) passes ``limit``."""
    if received > limit:
        how = "declares a Content-Length of" if declared else "passed"
        raise ResponseTooLargeError(
            f"response size limit: the response {how} {received:,} bytes, the limit is {limit:,} bytes "
            "(the connection's max_response_bytes)",
            url=url,
        )


def check_json_content_type(content_type: str | None, *, url: str, status: int | None = None) -> None:
    """Require ``application/json`` or ``application/*+json``, with UTF-8 if a charset is given."""
    media_type, _, params = (content_type or "").partition(";")
    if not _JSON_MEDIA_TYPE.fullmatch(media_type.strip()):
        raise ContentTypeError(
            f"JSON content type: the response Content-Type is {content_type or 'missing'!r}, "
            "expected 'application/json' or 'application/*+json'",
            url=url,
            status=status,
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ContentTypeError(f"JSON content type: charset {value.strip()!r} is not UTF-8", url=url, status=status)


def check_json_shape(document: Any, *, url: str | None = None, depth: int = 1) -> None:
    """Enforce the JSON depth limit (top level is level 1) and the key length limit.

    ``depth`` is the level of ``document`` itself: the typed fast path checks what it
    captured, as deep in the response as it was found.

    Walks the document one nesting level at a time, and within a level uses only
    C-level iteration (``set.union``, ``map``, ``chain``), so the cost per record is a
    few tens of nanoseconds rather than a Python loop per object and value.
    Iterative, so a hostile document cannot exhaust the stack.
    """
    level = [document]
    while True:
        kinds = set(map(type, level))
        objects = _only(level, kinds, dict)
        arrays = _only(level, kinds, list)
        keys = set().union(*objects)
        if keys and max(map(len, keys)) > MAX_JSON_KEY_LENGTH:
            key = max(keys, key=len)
            raise JsonKeyLengthError(
                f"JSON key length limit: a key of {len(key):,} characters ({key[:40]!r}…) "
                f"is over the limit of {MAX_JSON_KEY_LENGTH}",
                url=url,
            )

        child_kinds = set(map(type, _children(objects, arrays)))
        if child_kinds.isdisjoint(_CONTAINER_TYPES):
            return
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise JsonDepthError(
                f"JSON depth limit: the document nests {depth} levels deep, the limit is {MAX_JSON_DEPTH}",
                url=url,
            )
        children = list(_children(objects, arrays))
        level = children if child_kinds <= _CONTAINER_TYPES else _only(children, child_kinds, *_CONTAINER_TYPES)


def _children(objects: list[dict[str, Any]], arrays: list[list[Any]]) -> Iterable[Any]:
    return chain(chain.from_iterable(map(dict.values, objects)), chain.from_iterable(arrays))


def _only(nodes: list[Any], kinds: set[type], *wanted: type) -> list[Any]:
    """The nodes whose type is in ``wanted``; skips the per-node loop when all or none qualify."""
    if kinds.isdisjoint(wanted):
        return []
    if kinds.issubset(wanted):
        return nodes
    return [node for node in nodes if type(node) in wanted]
