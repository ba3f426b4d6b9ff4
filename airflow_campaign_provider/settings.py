"""Parse and validate a Campaign External API connection into frozen settings.

Pure: it takes the connection's fields as plain values and never touches Airflow,
the network or the disk. Every problem is a :class:`ConnectionConfigError` naming
the field. Extras are read under their plain key and under the
``extra__campaign_external_api__<field>`` form that older UIs wrote; an unknown
extra is an error, never a header.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, cast, get_args
from urllib.parse import quote_plus, urlsplit, urlunsplit

from airflow_campaign_provider.exceptions import ConnectionConfigError, ExternalApiError
from airflow_campaign_provider.guardrails import (
    DEFAULT_MAX_RESPONSE_BYTES,
    MAX_RESPONSE_BYTES_CEILING,
    ascii_host,
    check_headers,
    check_url,
)
from airflow_campaign_provider.redaction import REDACTED, is_sensitive_name, redact_url, secret_values
from airflow_campaign_provider.suggestions import did_you_mean

CONN_TYPE = "campaign_external_api"
DEFAULT_CONN_ID = "campaign_external_api_default"
_PREFIX = f"extra__{CONN_TYPE}__"

AuthType = Literal["none", "basic", "bearer", "api_key", "oauth2_client_credentials"]
AUTH_TYPES: tuple[AuthType, ...] = get_args(AuthType)

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 600.0
DEFAULT_MAX_RETRIES = 3
MAX_MAX_RETRIES = 10
DEFAULT_RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True, repr=False)
class AuthSettings:
    """How requests authenticate. ``secret`` is the password, token, API key or client secret."""

    type: AuthType = "none"
    login: str | None = None
    secret: str | None = field(default=None, repr=False)
    api_key_header: str = DEFAULT_API_KEY_HEADER
    token_url: str | None = None
    scope: str | None = None

    @property
    def client_credentials(self) -> tuple[str, str]:
        """OAuth2 client id and secret, form-urlencoded before Basic encoding (RFC 6749 §2.3.1)."""
        return quote_plus(self.login or ""), quote_plus(self.secret or "")

    def __repr__(self) -> str:
        token_url = None if self.token_url is None else redact_url(self.token_url)
        return (
            f"AuthSettings(type={self.type!r}, login={self.login!r}, secret={'***' if self.secret else None!r}, "
            f"api_key_header={self.api_key_header!r}, token_url={token_url!r}, scope={self.scope!r})"
        )


@dataclass(frozen=True, repr=False)
class ConnectionSettings:
    """Everything the hook needs to call an API, validated. See the README's connection table."""

    base_url: str
    auth: AuthSettings = AuthSettings()
    timeout: float = DEFAULT_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    verify: bool | str = True
    headers: Mapping[str, str] = field(default_factory=dict)
    allow_private_hosts: bool = False
    proxies: Mapping[str, str] = field(default_factory=dict)
    allow_insecure_http: bool = False

    def __repr__(self) -> str:
        """Every field, with query secrets, sensitive header values and proxy credentials redacted."""
        headers = {name: REDACTED if is_sensitive_name(name) else value for name, value in self.headers.items()}
        proxies = {scheme: redact_url(url) for scheme, url in self.proxies.items()}
        return (
            f"ConnectionSettings(base_url={redact_url(self.base_url)!r}, auth={self.auth!r}, "
            f"timeout={self.timeout!r}, max_response_bytes={self.max_response_bytes!r}, "
            f"max_retries={self.max_retries!r}, retry_statuses={sorted(self.retry_statuses)!r}, "
            f"verify={self.verify!r}, headers={headers!r}, allow_private_hosts={self.allow_private_hosts!r}, "
            f"proxies={proxies!r}, allow_insecure_http={self.allow_insecure_http!r})"
        )

    @property
    def host(self) -> str:
        """The base URL's host name, lower-cased."""
        return (urlsplit(self.base_url).hostname or "").lower()

    @cached_property
    def secrets(self) -> tuple[str, ...]:
        """Every secret this connection holds, in the forms that could appear in text (worked out once)."""
        found: list[str] = []
        if self.auth.secret:
            found.append(self.auth.secret)
            if self.auth.login:
                # Basic auth and the OAuth2 token request send base64("login:secret"), the latter form-encoded.
                for login, secret in {(self.auth.login, self.auth.secret), self.auth.client_credentials}:
                    found.append(base64.b64encode(f"{login}:{secret}".encode()).decode())
        for proxy in self.proxies.values():
            password = urlsplit(proxy).password
            if password:
                found.append(password)
        found += secret_values(self.headers)
        found += secret_values(url=self.base_url)
        if self.auth.token_url:
            found += secret_values(url=self.auth.token_url)
        return tuple(found)


def _unset(value: Any) -> bool:
    return value is None or value == ""


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConnectionConfigError(name, f"expected true or false, got {value!r}")


def _as_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, str) and _is_integer_text(value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConnectionConfigError(name, f"expected an integer, got {value!r}")
    if not low <= value <= high:
        raise ConnectionConfigError(name, f"{value} is out of range, it must be between {low} and {high}")
    return value


def _is_integer_text(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts superscripts, which ``int()`` refuses."""
    digits = text.strip().removeprefix("-")
    return digits.isascii() and digits.isdecimal()


def _as_number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConnectionConfigError(name, f"expected a number of seconds, got {value!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConnectionConfigError(name, f"expected a number of seconds, got {value!r}")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConnectionConfigError(name, f"expected a number of seconds, got {value!r}")
    if not low < value <= high:
        raise ConnectionConfigError(name, f"{value} is out of range, it must be above {low} and at most {high}")
    return float(value)


def _as_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConnectionConfigError(name, f"expected a string, got {type(value).__name__}")
    return value.strip()


def _as_json(name: str, value: Any) -> Any:
    """Accept a JSON string for list and object extras (URI-form connections carry only strings)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            # Never echo the text: headers and proxies hold credentials.
            raise ConnectionConfigError(name, "expected JSON, and the text does not parse as JSON") from None
    return value


def _as_statuses(name: str, value: Any) -> frozenset[int]:
    value = _as_json(name, value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise ConnectionConfigError(name, f"expected a list of HTTP statuses, got {value!r}")
    return frozenset(_as_int(name, status, 400, 599) for status in value)


def _as_str_map(name: str, value: Any) -> dict[str, str]:
    value = _as_json(name, value)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConnectionConfigError(name, "expected an object of string values")
    return dict(value)


def check_ca_bundle(verify: bool | str) -> None:
    """Refuse a ``verify`` CA bundle path that does not exist on this machine (the worker or the triggerer)."""
    if isinstance(verify, str) and not Path(verify).exists():
        raise ConnectionConfigError("extra.verify", f"CA bundle {verify!r} does not exist")


def _as_verify(name: str, value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return value.strip()
    raise ConnectionConfigError(name, f"expected true, false or a CA bundle path, got {value!r}")


def _as_auth_type(name: str, value: Any) -> AuthType:
    if value not in AUTH_TYPES:
        raise ConnectionConfigError(name, f"{value!r} is not one of {', '.join(AUTH_TYPES)}")
    return cast("AuthType", value)


_EXTRAS: dict[str, Callable[[str, Any], Any]] = {
    "auth_type": _as_auth_type,
    "api_key_header": _as_str,
    "token_url": _as_str,
    "scope": _as_str,
    "timeout": lambda n, v: _as_number(n, v, 0, MAX_TIMEOUT),
    "max_response_bytes": lambda n, v: _as_int(n, v, 1, MAX_RESPONSE_BYTES_CEILING),
    "max_retries": lambda n, v: _as_int(n, v, 0, MAX_MAX_RETRIES),
    "retry_statuses": _as_statuses,
    "verify": _as_verify,
    "headers": _as_str_map,
    "allow_private_hosts": _as_bool,
    "allow_insecure_http": _as_bool,
    "proxies": _as_str_map,
}
"""Every extra the connection accepts, with the parser that validates it."""

EXTRA_FIELDS = tuple(_EXTRAS)


def read_extras(extra: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the connection's extras into typed values, keyed by plain field name.

    Empty values (``None`` or ``""``, which the web UI writes for blank fields) count as unset.
    """
    values: dict[str, Any] = {}
    for key, raw in extra.items():
        name = key[len(_PREFIX) :] if key.startswith(_PREFIX) else key
        if name not in _EXTRAS:
            raise ConnectionConfigError(
                f"extra.{key}",
                f"unknown extra{did_you_mean(name, EXTRA_FIELDS)}; the known extras are {', '.join(EXTRA_FIELDS)}",
            )
        if _unset(raw):
            continue
        # Airflow's UI shows "***" for extras whose name looks secret (token_url, api_key_header).
        if raw == REDACTED:
            raise ConnectionConfigError(
                f"extra.{name}", "'***' is how the web UI masks a value, not a value; enter the real one"
            )
        value = _EXTRAS[name](f"extra.{name}", raw)
        if name in values and values[name] != value:
            raise ConnectionConfigError(
                f"extra.{name}", f"set twice with different values (as {name!r} and {_PREFIX + name!r})"
            )
        values[name] = value
    return values


def _base_url(host: str | None, schema: str | None, port: int | None) -> str:
    if _unset(host):
        raise ConnectionConfigError("host", "the base URL is required, e.g. https://api.example.com/v1")
    host = cast("str", host).strip()
    if "://" not in host:
        host = f"{(schema or 'https').strip().lower()}://{host}"
    elif not _unset(schema) and urlsplit(host).scheme.lower() != cast("str", schema).strip().lower():
        raise ConnectionConfigError("schema", f"{schema!r} contradicts the scheme of the host URL")
    parts = urlsplit(host)
    netloc = parts.netloc
    try:
        url_port = parts.port
    except ValueError:
        raise ConnectionConfigError("host", "the port in the base URL is not a number between 0 and 65535") from None
    if port:
        if url_port not in (None, port):
            raise ConnectionConfigError("port", f"{port} contradicts the port in the host URL")
        netloc = f"{netloc.rsplit(':', 1)[0] if url_port else netloc}:{port}"
    if parts.hostname and not parts.hostname.isascii():
        # Internationalized names are kept IDNA-encoded: what the checks see is what is resolved.
        try:
            encoded = ascii_host(parts.hostname, url=redact_url(host))
        except ExternalApiError as err:
            raise ConnectionConfigError("host", err.message) from None
        userinfo, at, host_port = netloc.rpartition("@")
        _, colon, port_text = host_port.partition(":")
        netloc = f"{userinfo}{at}{encoded}{colon}{port_text}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), parts.query, ""))


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _check_credentials(auth_type: AuthType, login: str | None, password: str | None) -> None:
    """Refuse credentials that HTTP cannot carry, before anything is sent; messages never quote them.

    A control character is almost always a copy-paste accident (a trailing newline from a
    file). Basic, bearer and API-key credentials travel in a header, which carries only
    ISO-8859-1; OAuth2 client credentials are form-encoded first, so any text goes.
    """
    for name, value in (("login", login), ("password", password)):
        if value is None:
            continue
        if _CONTROL_CHARACTER.search(value):
            raise ConnectionConfigError(
                name, "contains a control character (a trailing newline copied from a file?); remove it"
            )
        if auth_type in ("basic", "bearer", "api_key") and not _is_latin_1(value):
            raise ConnectionConfigError(
                name,
                f"has characters outside ISO-8859-1, which an HTTP header cannot carry for auth_type {auth_type!r}",
            )
    if auth_type == "basic" and login is not None and ":" in login:
        raise ConnectionConfigError("login", "a Basic auth user name cannot contain ':' (RFC 7617)")


def _is_latin_1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _check_url_field(name: str, url: str, allow_private_hosts: bool, allow_insecure_http: bool) -> None:
    try:
        check_url(url, allow_private_hosts=allow_private_hosts, allow_insecure_http=allow_insecure_http)
    except ExternalApiError as err:
        raise ConnectionConfigError(name, err.message) from None


def parse_connection(
    *,
    host: str | None,
    login: str | None = None,
    password: str | None = None,
    schema: str | None = None,
    port: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ConnectionSettings:
    """Build validated :class:`ConnectionSettings` from a connection's fields and extras."""
    values = read_extras(extra or {})
    allow_private = values.get("allow_private_hosts", False)
    allow_http = values.get("allow_insecure_http", False)
    base_url = _base_url(host, schema, port)
    _check_url_field("host", base_url, allow_private, allow_http)

    login = None if _unset(login) else login
    password = None if _unset(password) else password
    auth_type: AuthType = values.get("auth_type", "basic" if login else "none")
    _check_credentials(auth_type, login, password)
    if auth_type == "basic" and not login:
        raise ConnectionConfigError("login", "auth_type 'basic' needs a login (and usually a password)")
    if auth_type in ("bearer", "api_key") and not password:
        raise ConnectionConfigError("password", f"auth_type {auth_type!r} reads the token from the password")
    if auth_type == "oauth2_client_credentials":
        if not login or not password:
            raise ConnectionConfigError(
                "login",
                "auth_type 'oauth2_client_credentials' needs the client id (login) and secret (password)",
            )
        if "token_url" not in values:
            raise ConnectionConfigError("extra.token_url", "auth_type 'oauth2_client_credentials' needs a token_url")
        _check_url_field("extra.token_url", values["token_url"], allow_private, allow_http)
    elif "token_url" in values or "scope" in values:
        raise ConnectionConfigError(
            "extra.token_url", "token_url and scope only apply to auth_type 'oauth2_client_credentials'"
        )

    api_key_header = values.get("api_key_header", DEFAULT_API_KEY_HEADER)
    headers = values.get("headers", {})
    for name, checked in (("extra.api_key_header", {api_key_header: "-"}), ("extra.headers", headers)):
        try:
            check_headers(checked, source=name)
        except ExternalApiError as err:
            raise ConnectionConfigError(name, err.message) from None
    if auth_type != "none" and any(name.lower() == "authorization" for name in headers):
        raise ConnectionConfigError("extra.headers", f"Authorization conflicts with auth_type {auth_type!r}")

    for scheme, proxy in values.get("proxies", {}).items():
        if scheme not in ("http", "https", "all") or "://" not in proxy:
            raise ConnectionConfigError("extra.proxies", "expected {'https': 'http://proxy.example:3128'}")

    return ConnectionSettings(
        base_url=base_url,
        auth=AuthSettings(
            type=auth_type,
            login=login,
            secret=password,
            api_key_header=api_key_header,
            token_url=values.get("token_url"),
            scope=values.get("scope"),
        ),
        timeout=values.get("timeout", DEFAULT_TIMEOUT),
        max_response_bytes=values.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
        max_retries=values.get("max_retries", DEFAULT_MAX_RETRIES),
        retry_statuses=values.get("retry_statuses", DEFAULT_RETRY_STATUSES),
        verify=values.get("verify", True),
        headers=headers,
        allow_private_hosts=allow_private,
        proxies=values.get("proxies", {}),
        allow_insecure_http=allow_http,
    )


def settings_of(conn: Any) -> ConnectionSettings:
    """:func:`parse_connection` of an Airflow ``Connection`` (anything with its fields and ``extra_dejson``)."""
    return parse_connection(
        host=conn.host,
        login=conn.login,
        password=conn.password,
        schema=conn.schema,
        port=conn.port,
        extra=conn.extra_dejson,
    )
