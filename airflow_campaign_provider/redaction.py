"""Keep secrets out of URLs, messages and excerpts before they reach a log, an error or XCom.

Airflow's secret masker filters task logs, but ``dag.test()`` prints to stdout
unfiltered and exception messages travel further than logs, so this provider
never formats a secret in the first place. These helpers are pure.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

REDACTED = "***"

# A name that says it holds a secret: used for query parameters and header names.
_SENSITIVE_NAME = re.compile(
    r"token|secret|key|password|passwd|pwd|auth|credential|signature|sig$|session|cookie|assertion|jwt",
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
    """Replace every occurrence of each known secret in ``text``, in any of its common encodings, with ``***``.

    Besides the plain value, the forms an API or a library echoes back are found:
    percent-encoded (``quote`` and ``quote_plus``, upper- and lower-case hex),
    JSON-escaped (``\\/`` and ``\\uXXXX``, either case), HTML-escaped and base64.
    """
    pattern = _scrub_pattern(frozenset(s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH))
    return text if pattern is None else pattern.sub(REDACTED, text)


@lru_cache(maxsize=64)
def _scrub_pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms = {form for secret in secrets for form in secret_forms(secret) if len(form) >= _MIN_SECRET_LENGTH}
    if not forms:
        return None
    # Longest first, so a secret is never half-replaced by a shorter one it contains.
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)))


def secret_forms(secret: str) -> set[str]:
    """The spellings of ``secret`` that commonly appear in echoed requests, error pages and logs."""
    raw = secret.encode()
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        html.escape(secret),
        html.escape(secret).replace("/", "&#x2F;"),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    for ensure_ascii in (True, False):
        escaped = json.dumps(secret, ensure_ascii=ensure_ascii)[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/")}
    # Percent-encoding and \u escapes may use either case for their hex digits.
    return {variant for form in forms for variant in (form, _hex_case(form, str.lower), _hex_case(form, str.upper))}


_HEX_ESCAPE = re.compile(r"(?<=%)[0-9A-Fa-f]{2}|(?<=\\u)[0-9A-Fa-f]{4}")


def _hex_case(form: str, case: Callable[[str], str]) -> str:
    """``form`` with the hex digits of its ``%XX`` and ``\\uXXXX`` escapes in one case."""
    return _HEX_ESCAPE.sub(lambda m: case(m.group()), form)


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


_QUERY_PAIR = re.compile(r"(?<=[?&;])([^=&;#\s\"'<>]+)=([^&;#\s\"'<>]*)")


def redact_query_values(text: str) -> str:
    """Redact the values of secret-looking query parameters wherever a URL appears in free text (a log line)."""
    return _QUERY_PAIR.sub(
        lambda m: f"{m.group(1)}={REDACTED}" if is_sensitive_name(unquote(m.group(1))) else m.group(0), text
    )


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
        parts = urlsplit(url)
        found += [value for name, value in parse_qsl(parts.query) if is_sensitive_name(name)]
        # Credentials in the userinfo part are secret, user name included (``https://TOKEN@host``).
        found += [unquote(value) for value in (parts.username, parts.password) if value]
    return [value for value in found if value]


def excerpt(content: bytes, secrets: Iterable[str], limit: int = 200) -> str:
    """Return at most ``limit`` characters of a response body, decoded leniently and scrubbed.

    Secrets are scrubbed from a longer window than is shown, so that a secret cut
    in half by the limit cannot leak its first half.
    """
    secrets = tuple(secrets)
    # An encoded secret (percent or \\u escapes) is up to six times as long as the secret.
    window = 6 * max((len(s) for s in secrets), default=0) + limit
    text = scrub(content[: window * 4].decode("utf-8", errors="replace"), secrets)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
