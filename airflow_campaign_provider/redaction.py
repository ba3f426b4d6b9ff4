"""Keep secrets out of URLs, messages and excerpts before they reach a log, an error or XCom.

Airflow's secret masker filters task logs, but ``dag.test()`` prints to stdout
unfiltered and exception messages travel further than logs, so this provider
never formats a secret in the first place. These helpers are pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"

# A name that says it holds a secret: used for query parameters and header names.
_SENSITIVE_NAME = re.compile(
    r"token|secret|key|password|passwd|pwd|auth|credential|signature|sig$|session|cookie",
    re.IGNORECASE,
)

# Headers whose values are always secret, whatever the name pattern says.
ALWAYS_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

# Shorter values are not scrubbed from free text: masking "a" would mangle every message.
_MIN_SECRET_LENGTH = 4


def is_sensitive_name(name: str) -> bool:
    """Return True when a query parameter or header name suggests that its value is a secret."""
    return name.lower() in ALWAYS_SECRET_HEADERS or bool(_SENSITIVE_NAME.search(name))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each known secret in ``text`` with ``***``."""
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """Return ``url`` with user info and secret-looking query values replaced by ``***``.

    A query value is redacted when its name looks sensitive (``api_key``, ``token``,
    ``signature`` ...) or when it equals a known secret.
    """
    secrets = tuple(secrets)
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url, secrets)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        known = {s for s in secrets if s}
        # Scrub the decoded values: a secret with "+", "/" or "=" is percent-encoded in the URL.
        pairs = [
            (name, REDACTED if is_sensitive_name(name) or value in known else scrub(value, secrets))
            for name, value in parse_qsl(query, keep_blank_values=True)
        ]
        query = urlencode(pairs, safe="*")
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)), secrets)


def secret_values(
    headers: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    url: str | None = None,
    secret_headers: Iterable[str] = (),
) -> list[str]:
    """The values that must be treated as secrets in a request's headers, query parameters and URL.

    A header is secret when its name looks sensitive or is in ``secret_headers`` (such as the
    connection's API-key header); a query parameter, in ``params`` or in the URL, when its
    name looks sensitive.
    """
    named = {name.lower() for name in secret_headers}
    found = [str(value) for name, value in (headers or {}).items() if name.lower() in named or is_sensitive_name(name)]
    found += [str(value) for name, value in (params or {}).items() if is_sensitive_name(name)]
    if url:
        found += [value for name, value in parse_qsl(urlsplit(url).query) if is_sensitive_name(name)]
    return [value for value in found if value]


def excerpt(content: bytes, secrets: Iterable[str], limit: int = 200) -> str:
    """Return at most ``limit`` characters of a response body, decoded leniently and scrubbed.

    Secrets are scrubbed from a longer window than is shown, so that a secret cut
    in half by the limit cannot leak its first half.
    """
    secrets = tuple(secrets)
    window = max((len(s) for s in secrets), default=0) + limit
    text = scrub(content[: window * 4].decode("utf-8", errors="replace"), secrets)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
