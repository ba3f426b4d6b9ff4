"""``ExternalApiHook``: call a third-party REST API through the External API activity's guardrails.

The hook is thin I/O. The policy it applies comes from pure modules:
:mod:`~airflow_campaign_provider.settings` (the connection),
:mod:`~airflow_campaign_provider.guardrails` (what is refused),
:mod:`~airflow_campaign_provider.retry` (what is retried),
:mod:`~airflow_campaign_provider.auth` (credentials) and
:mod:`~airflow_campaign_provider.json_body` (parsing). Sockets are touched only
by :mod:`~airflow_campaign_provider.transport`.
"""

from __future__ import annotations

import random
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
import urllib3
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret
from requests.structures import CaseInsensitiveDict
from requests.utils import select_proxy

from airflow_campaign_provider.auth import OAuth2ClientCredentials, build_auth
from airflow_campaign_provider.exceptions import (
    ConnectionConfigError,
    DeadlineExceededError,
    ExternalApiError,
    HostNotAllowedError,
    HttpStatusError,
    RedirectNotFollowedError,
    TokenError,
    TransportError,
)
from airflow_campaign_provider.guardrails import (
    check_headers,
    check_resolved_addresses,
    check_response_size,
    check_url,
    encode_json_body,
)
from airflow_campaign_provider.json_body import parse_json
from airflow_campaign_provider.redaction import excerpt, redact_url, secret_values
from airflow_campaign_provider.retry import RetryPolicy, parse_retry_after
from airflow_campaign_provider.settings import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    ConnectionSettings,
    parse_connection,
)
from airflow_campaign_provider.transport import CallGuard, GuardedAdapter

CONNECT_TIMEOUT = 10.0
"""Longest wait for a TCP and TLS connect, within the call's overall deadline."""

READ_CHUNK_BYTES = 64 * 1024
"""Bytes read per step; a response is never buffered beyond the limit plus one chunk."""

EXCERPT_CHARS = 200
"""Longest body excerpt an error message carries (scrubbed of secrets)."""


@dataclass(frozen=True)
class ApiResponse:
    """A fully read, size-checked API response.

    :ivar status_code: the HTTP status.
    :ivar headers: the response headers (case-insensitive).
    :ivar url: the final URL that was called.
    :ivar content: the raw body bytes (at most the connection's ``max_response_bytes``).
    :ivar display_url: ``url`` with query secrets redacted, safe for logs and XCom.
    :ivar elapsed_ms: time from sending the request to the end of the body, in milliseconds.
    """

    status_code: int
    # Kept out of repr: a printed response must not carry a body, cookies or query secrets.
    headers: CaseInsensitiveDict[str] = field(repr=False)
    url: str = field(repr=False)
    content: bytes = field(repr=False)
    display_url: str
    elapsed_ms: float

    def json(self) -> Any:
        """Parse the body as JSON under the guardrails.

        :raises ContentTypeError: the Content-Type is not JSON.
        :raises InvalidJsonError: the body is not valid UTF-8 JSON.
        :raises JsonDepthError: nesting deeper than 10 levels.
        :raises JsonKeyLengthError: a key longer than 255 characters.
        """
        return parse_json(self.content, self.headers.get("Content-Type"), url=self.display_url, status=self.status_code)


def format_size(size: int) -> str:
    """Render a byte count the way the activity's logs do: ``512 B``, ``1.2 KiB``, ``5.0 MiB``."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _plain_reason(error: BaseException) -> str:
    """The socket-level reason of a transport error ("Connection refused"), without urllib3's class names."""
    inner = error.__cause__ or error.__context__
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    return re.sub(r"^\w+\(host=.*?\): ", "", str(error))


@dataclass(frozen=True)
class _Outgoing:
    """One request as the retry loop sends it; ``shown`` is its URL with secrets redacted."""

    method: str
    url: str
    shown: str
    headers: dict[str, str]
    body: bytes | None


class _AttemptFailed(Exception):
    """One attempt failed in a way the retry policy may retry."""

    def __init__(self, reason: str, error: ExternalApiError, *, sent: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.sent = sent
        self.retry_after = retry_after


class ExternalApiHook(BaseHook):
    """Call a REST API safely: HTTPS only, size limits, one deadline, retries with Retry-After, OAuth2.

    One ``requests.Session`` serves every call of a hook instance, so pages and
    repeated calls reuse the TLS connection. Close it with :meth:`close` or use the
    hook as a context manager.

    :param conn_id: the ``campaign_external_api`` connection to use.
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Campaign External API"

    def __init__(self, conn_id: str = DEFAULT_CONN_ID) -> None:
        super().__init__()
        self.conn_id = conn_id
        self._session: requests.Session | None = None
        self._rng = random.Random()

    def __enter__(self) -> ExternalApiHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection, read once and validated; its secrets are registered with Airflow's masker."""
        conn = self.get_connection(self.conn_id)
        settings = parse_connection(
            host=conn.host,
            login=conn.login,
            password=conn.password,
            schema=conn.schema,
            port=conn.port,
            extra=conn.extra_dejson,
        )
        for secret in settings.secrets:
            mask_secret(secret)
        return settings

    @cached_property
    def _auth(self) -> requests.auth.AuthBase | None:
        return build_auth(self.settings.auth)

    @cached_property
    def _secrets(self) -> list[str]:
        """Every secret to scrub from text; fetched tokens are appended as they arrive."""
        return list(self.settings.secrets)

    @cached_property
    def _retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.settings.max_retries, self.settings.retry_statuses)

    def get_conn(self) -> requests.Session:
        """Return the hook's ``requests.Session``, creating it on first use."""
        if self._session is None:
            settings = self.settings
            verify = settings.verify
            if isinstance(verify, str) and not Path(verify).exists():
                raise ConnectionConfigError("extra.verify", f"CA bundle {verify!r} does not exist")
            session = requests.Session()
            # No .netrc credentials, no proxy or CA bundle from the environment: the
            # connection alone decides where requests go and what they carry.
            session.trust_env = False
            session.verify = verify
            session.proxies = dict(settings.proxies)
            session.mount("https://", GuardedAdapter())
            session.headers.update({"Accept": "application/json", **settings.headers})
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the session and its pooled connections."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def url_for(self, endpoint: str = "", params: Mapping[str, Any] | None = None) -> str:
        """Build the URL for ``endpoint`` and check it against the guardrails.

        A relative endpoint, with or without a leading ``/``, is appended to the base
        URL's path. An absolute URL must be on the connection's host.
        """
        base = urlsplit(self.settings.base_url)
        target = urlsplit(endpoint)
        if target.scheme or target.netloc:
            url = endpoint
            parts = check_url(url, allow_private_hosts=self.settings.allow_private_hosts)
            if (parts.hostname or "").lower() != self.settings.host or (parts.port or 443) != (base.port or 443):
                raise HostNotAllowedError(
                    f"host not allowed: an absolute endpoint must be on the connection's host {base.netloc!r}",
                    url=redact_url(url, self._secrets),
                )
        else:
            path, _, query = endpoint.partition("?")
            joined = "/".join(p for p in (base.path.rstrip("/"), path.lstrip("/")) if p)
            query = "&".join(q for q in (base.query, query) if q)
            url = urlunsplit((base.scheme, base.netloc, "/" + joined.lstrip("/"), query, ""))
        if params:
            url += ("&" if urlsplit(url).query else "?") + urlencode(params, doseq=True)
        check_url(url, allow_private_hosts=self.settings.allow_private_hosts)
        return url

    def request(
        self,
        method: str,
        endpoint: str = "",
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_non_idempotent: bool = False,
    ) -> ApiResponse:
        """Call the API and return the fully read response.

        :param method: HTTP method, e.g. ``GET`` or ``POST``.
        :param endpoint: path relative to the base URL, or an absolute URL on the same host.
        :param params: query parameters.
        :param json: JSON request body (at most 5 MiB serialized).
        :param headers: extra request headers; names must be RFC 9110 tokens, values free of CR/LF.
        :param retry_non_idempotent: also retry POST and PATCH after the request may have been sent.
        :raises RequestFailedError: a guardrail, timeout, transport or HTTP error (see the README).
        """
        method = method.upper()
        url = self.url_for(endpoint, params)
        for value in secret_values(headers, params, url, [self.settings.auth.api_key_header]):
            self._remember_secret(value)
        shown = redact_url(url, self._secrets)
        if headers:
            check_headers(headers, url=shown)
        headers = dict(headers or {})
        body = None
        if json is not None:
            body = encode_json_body(json, url=shown)
            headers["Content-Type"] = "application/json"
        deadline = time.monotonic() + self.settings.timeout
        self.log.info("Invoking API URL '%s'", shown)
        return self._call(
            _Outgoing(method, url, shown, headers, body), deadline=deadline, retry_non_idempotent=retry_non_idempotent
        )

    def get_json(self, endpoint: str = "", **kwargs: Any) -> Any:
        """GET ``endpoint`` and return its parsed JSON; keyword arguments go to :meth:`request`."""
        return self.request("GET", endpoint, **kwargs).json()

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection from the UI's Test button: fetch a token if configured, then GET the base URL.

        Success means the server answered over verified TLS and did not reject the
        credentials. The message gives the status and latency, never a secret.
        """
        try:
            started = time.monotonic()
            response = self.request("GET")
            latency = (time.monotonic() - started) * 1000
            return True, (f"Connected to {response.display_url}: HTTP {response.status_code} in {latency:.0f} ms")
        except HttpStatusError as err:
            if err.status in (401, 403):
                return False, f"The API rejected the credentials: HTTP {err.status} from {err.url}"
            if err.status is not None and err.status < 500:
                return True, f"Reached {err.url} (credentials not rejected): HTTP {err.status} on the base URL"
            return False, str(err)
        except ExternalApiError as err:
            return False, str(err)
        finally:
            self.close()

    def _call(
        self,
        outgoing: _Outgoing,
        *,
        deadline: float,
        retry_non_idempotent: bool,
        auth: requests.auth.AuthBase | bool | None = True,
        log_transfers: bool = True,
    ) -> ApiResponse:
        """Run attempts until success, a final error, the retry budget or the deadline."""
        use_auth = self._auth if auth is True else auth or None
        policy = self._retry_policy
        retries_done = 0
        refreshed = False
        while True:
            if isinstance(use_auth, OAuth2ClientCredentials) and not use_auth.has_valid_token:
                self._fetch_token(use_auth, deadline)
            try:
                response = self._attempt(outgoing, deadline, use_auth, log_transfers)
            except _AttemptFailed as failure:
                if not policy.may_retry(
                    retries_done, outgoing.method, request_sent=failure.sent, retry_non_idempotent=retry_non_idempotent
                ):
                    raise failure.error from None
                retries_done += 1
                wait = failure.retry_after
                if wait is None:
                    wait = policy.backoff(retries_done, self._rng)
                remaining = deadline - time.monotonic()
                if wait >= remaining:
                    asked = "Retry-After asks" if failure.retry_after is not None else "the backoff needs"
                    raise DeadlineExceededError(
                        f"timeout: {failure.reason}; {asked} a wait of {wait:.1f} s but only "
                        f"{max(remaining, 0):.1f} s of the {self.settings.timeout:g} s timeout are left",
                        url=outgoing.shown,
                        status=failure.error.status,
                    ) from None
                self.log.info(
                    "Retrying API URL '%s' due to %s in %d ms, attempt %d/%d",
                    outgoing.shown,
                    failure.reason,
                    wait * 1000,
                    retries_done + 1,
                    policy.max_retries + 1,
                )
                time.sleep(wait)
                continue
            if response.status_code == 401 and isinstance(use_auth, OAuth2ClientCredentials) and not refreshed:
                refreshed = True
                use_auth.invalidate()
                self._fetch_token(use_auth, deadline, after_401=True)
                continue
            if response.status_code >= 400:
                raise self._status_error(response.status_code, response.content, outgoing.shown)
            return response

    def _attempt(
        self,
        outgoing: _Outgoing,
        deadline: float,
        auth: requests.auth.AuthBase | None,
        log_transfer: bool,
    ) -> ApiResponse:
        """Send one request and read its body under the size limit and the deadline."""
        settings = self.settings
        session = self.get_conn()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError(f"timeout: the {settings.timeout:g} s deadline passed", url=outgoing.shown)
        proxied = bool(select_proxy(outgoing.url, dict(settings.proxies)))
        if proxied and not settings.allow_private_hosts:
            self._check_target_addresses(outgoing.url, outgoing.shown)
        prepared = session.prepare_request(
            requests.Request(outgoing.method, outgoing.url, headers=outgoing.headers, data=outgoing.body, auth=auth)
        )
        started = time.monotonic()
        expired = DeadlineExceededError(
            f"timeout: no complete response within the {settings.timeout:g} s deadline", url=outgoing.shown
        )
        with CallGuard(
            deadline, check_addresses=not (settings.allow_private_hosts or proxied), url=outgoing.shown
        ) as guard:
            try:
                response = session.send(
                    prepared,
                    stream=True,
                    allow_redirects=False,
                    timeout=(min(CONNECT_TIMEOUT, remaining), remaining),
                )
                try:
                    content = self._read_body(response, outgoing.shown)
                finally:
                    response.close()
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
                # A socket timeout set to the time left races the watchdog; either way the deadline is what failed.
                raise (expired if guard.deadline_passed else self._transport_failure(err, outgoing.shown)) from None
            except ExternalApiError:
                if guard.deadline_passed:
                    raise expired from None
                raise
        # A socket shut down by the watchdog can also look like a short, complete response.
        if guard.expired:
            raise expired
        elapsed_ms = (time.monotonic() - started) * 1000
        status = response.status_code
        if log_transfer:
            self.log.info("Transferred %s in %d ms (HTTP %d)", format_size(len(content)), elapsed_ms, status)
        if 300 <= status < 400:
            location = redact_url(response.headers.get("Location", "(none)"), self._secrets)
            raise RedirectNotFollowedError(
                f"redirects not followed: HTTP {status} to Location '{location}'", url=outgoing.shown, status=status
            )
        if status in self._retry_policy.retry_statuses:
            raise _AttemptFailed(
                f"HTTP - {status}",
                self._status_error(status, content, outgoing.shown),
                sent=True,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        return ApiResponse(
            status_code=status,
            headers=response.headers,
            url=response.url,
            content=content,
            display_url=outgoing.shown,
            elapsed_ms=elapsed_ms,
        )

    def _status_error(self, status: int, content: bytes, shown: str) -> HttpStatusError:
        """The error for an error status, with a short excerpt of the body, scrubbed of secrets."""
        detail = excerpt(content, self._secrets, EXCERPT_CHARS) or "(empty body)"
        return HttpStatusError(f"HTTP - {status}: {detail}", url=shown, status=status)

    def _read_body(self, response: requests.Response, shown: str) -> bytes:
        """Stream the body, refusing it as soon as it passes ``max_response_bytes``."""
        limit = self.settings.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdecimal():
            check_response_size(int(declared), limit, url=shown, declared=True)
        chunks: list[bytes] = []
        received = 0
        read = response.raw.read1
        # Decoded (gzip, deflate) bytes count against the limit; read1 never inflates more than asked.
        while chunk := read(READ_CHUNK_BYTES, decode_content=True):
            received += len(chunk)
            check_response_size(received, limit, url=shown)
            chunks.append(chunk)
        return b"".join(chunks)

    def _transport_failure(self, err: Exception, shown: str) -> _AttemptFailed | ExternalApiError:
        """Classify a transport exception: a final error, or a failed attempt saying whether it was sent."""
        cause = getattr(err.args[0], "reason", None) if err.args else None
        detail = redact_url(_plain_reason(cause or err), self._secrets)[:300]
        if isinstance(err, requests.exceptions.SSLError):
            # A certificate that does not verify will not verify on the next attempt either.
            return TransportError(f"transport: TLS handshake or verification failed ({detail})", url=shown)
        if isinstance(err, requests.ConnectTimeout) or isinstance(
            cause, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
        ):
            kind, sent = "connect failure", False
        elif isinstance(err, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
            kind, sent = "read timeout", True
        else:
            kind, sent = "connection broken", True
        return _AttemptFailed(kind, TransportError(f"transport: {kind} ({detail})", url=shown), sent=sent)

    def _check_target_addresses(self, url: str, shown: str) -> None:
        """With a proxy, the proxy resolves the target; check what it resolves to from here at least."""
        host = urlsplit(url).hostname or ""
        try:
            infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
        except OSError as err:
            raise TransportError(f"transport: cannot resolve {host!r} ({err})", url=shown) from None
        check_resolved_addresses(host, [str(info[4][0]) for info in infos], url=shown)

    def _remember_secret(self, value: str) -> None:
        """Scrub ``value`` from every message this hook writes, and mask it in Airflow's logs."""
        if value not in self._secrets:
            mask_secret(value)
            self._secrets.append(value)

    def _fetch_token(self, auth: OAuth2ClientCredentials, deadline: float, *, after_401: bool = False) -> None:
        """Fetch an OAuth2 client-credentials token through the same guardrails, retries and deadline."""
        settings = self.settings
        token_url = settings.auth.token_url or ""
        check_url(token_url, allow_private_hosts=settings.allow_private_hosts)
        form = {"grant_type": "client_credentials"}
        if settings.auth.scope:
            form["scope"] = settings.auth.scope
        shown = redact_url(token_url, self._secrets)
        try:
            response = self._call(
                _Outgoing(
                    "POST",
                    token_url,
                    shown,
                    {"Content-Type": "application/x-www-form-urlencoded"},
                    urlencode(form).encode(),
                ),
                deadline=deadline,
                # Asking for a token changes nothing on the server: safe to retry.
                retry_non_idempotent=True,
                auth=requests.auth.HTTPBasicAuth(*settings.auth.client_credentials),
                log_transfers=False,
            )
        except HttpStatusError as err:
            raise TokenError(
                f"OAuth2 token: the token endpoint answered {err.message}", url=shown, status=err.status
            ) from None
        self._remember_secret(auth.store(response.json()))
        if after_401:
            self.log.info("OAuth2 token refreshed after HTTP - 401")
        else:
            self.log.info("OAuth2 token fetched (HTTP %d in %d ms)", response.status_code, response.elapsed_ms)
