"""The sync transport: the only sync code that touches sockets. It sends an ``ApiRequest`` and reads it capped.

One ``requests`` session per transport, mounted with an adapter whose HTTPS
connections enforce two guardrails at connect time:

* **Resolved addresses.** Before a new connection is opened, the host is resolved,
  every address is checked (no loopback, private, link-local or unspecified
  address), and the socket connects to a checked address only. Checking the
  addresses actually used is what stops DNS rebinding.
* **One deadline.** A watchdog timer shuts the socket down when the call's
  deadline passes, so neither a slow connect, a server that drips its headers,
  nor one that trickles its body can keep the call alive past ``timeout``.

Informational (1xx) responses are skipped, the body is streamed through a
:class:`~airflow_campaign_provider.body.BodyReader`, and every library exception is
mapped here, once, to the package's typed errors. The policy for one attempt travels
in a :class:`CallGuard` held in a context variable, because urllib3 creates
connections deep inside ``requests`` where no argument reaches.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import os
import re
import socket
import threading
import time
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from airflow_campaign_provider.body import READ_CHUNK_BYTES, BodyReader
from airflow_campaign_provider.exceptions import (
    DeadlineExceededError,
    ExternalApiError,
    TransportError,
)
from airflow_campaign_provider.guardrails import checked_addresses
from airflow_campaign_provider.redaction import redact_url
from airflow_campaign_provider.request import ApiRequest
from airflow_campaign_provider.response import ApiResponse, Headers
from airflow_campaign_provider.settings import ConnectionSettings, check_ca_bundle

CONNECT_TIMEOUT = 10.0
"""Longest wait for a TCP and TLS connect, within the call's overall deadline."""

MAX_INFORMATIONAL_RESPONSES = 16
"""1xx responses skipped before the final one; more is a misbehaving server."""

_ACTIVE_GUARD: ContextVar[CallGuard | None] = ContextVar("campaign_external_api_call_guard", default=None)


class CallGuard:
    """The deadline watchdog and the address policy for one attempt.

    Use as a context manager around ``Session.send`` and the body read. When the
    deadline passes, :attr:`expired` turns True and the watched socket is shut down,
    which makes any blocked read return at once.
    """

    def __init__(self, deadline: float, *, check_addresses: bool, url: str) -> None:
        self.deadline = deadline
        self.check_addresses = check_addresses
        self.url = url
        self.expired = False
        self.finished = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._token: Token[CallGuard | None] | None = None

    def __enter__(self) -> CallGuard:
        self._token = _ACTIVE_GUARD.set(self)
        _WATCHDOG.watch(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            # A watchdog already firing must not shut a socket that goes back to the pool.
            self.finished = True
            self._sock = None
        if self._token is not None:
            _ACTIVE_GUARD.reset(self._token)

    @property
    def deadline_passed(self) -> bool:
        """True once the deadline is reached, whether the watchdog or a socket timeout noticed first."""
        return self.expired or time.monotonic() >= self.deadline

    def remaining(self) -> float:
        """Seconds left before the deadline (at least a millisecond, so it is a valid socket timeout)."""
        return max(0.001, self.deadline - time.monotonic())

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it already has)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shutdown()

    def expire(self) -> None:
        """The deadline passed: shut the watched socket down (the watchdog calls this)."""
        with self._lock:
            if not self.finished:
                self.expired = True
                self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            # The plain-socket shutdown, not SSLSocket's, which would also drop its
            # SSL object under the feet of the reading thread.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread per process expires every guard at its deadline.

    A timer thread per attempt cost about half a millisecond to start, more than a
    keep-alive request over loopback takes; this one thread sleeps until the earliest
    deadline. Finished guards are dropped as they reach the top of the heap.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked worker gets a thread of its own

    def _reset(self) -> None:
        self._wakeup = threading.Condition()
        self._heap: list[tuple[float, int, CallGuard]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, guard: CallGuard) -> None:
        with self._wakeup:
            heapq.heappush(self._heap, (guard.deadline, next(self._order), guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="external-api-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0][2] is guard:
                self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                due = self._next_due()
            due.expire()

    def _next_due(self) -> CallGuard:
        """Wait (holding the condition) until a guard still running reaches its deadline, and pop it."""
        while True:
            while self._heap and self._heap[0][2].finished:
                heapq.heappop(self._heap)
            if not self._heap:
                self._wakeup.wait()
                continue
            wait = self._heap[0][0] - time.monotonic()
            if wait <= 0:
                return heapq.heappop(self._heap)[2]
            self._wakeup.wait(wait)


_WATCHDOG = _Watchdog()


class UnexpectedSwitchingProtocols(http.client.HTTPException):
    """A ``101`` although no protocol upgrade was asked for."""


class _FinalResponse(http.client.HTTPResponse):
    """``http.client`` skips only ``100 Continue``; this skips every informational response (``103 Early Hints``)."""

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(MAX_INFORMATIONAL_RESPONSES):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if status == 101:
                raise UnexpectedSwitchingProtocols("HTTP 101 Switching Protocols, but no upgrade was asked for")
            if not 100 < status < 200:
                return version, status, reason
            http.client.parse_headers(self.fp)  # the informational response's headers, dropped
        raise http.client.HTTPException(f"more than {MAX_INFORMATIONAL_RESPONSES} informational responses")


class _GuardedHTTPConnection(HTTPConnection):
    """An urllib3 connection that checks resolved addresses and reports its socket to the watchdog.

    Plain HTTP reaches only loopback mocks (``allow_insecure_http``); the HTTPS subclass serves everything else.
    """

    response_class = _FinalResponse

    def _new_conn(self) -> socket.socket:
        guard = _ACTIVE_GUARD.get()
        if guard is None:
            return super()._new_conn()
        sock = self._connect_checked(guard) if guard.check_addresses else self._connect_within(guard)
        # Watched from here on, the TLS handshake is bounded by the deadline too.
        guard.watch(sock)
        return sock

    def _connect_within(self, guard: CallGuard) -> socket.socket:
        """Connect with a timeout that never reaches past the call's deadline."""
        if isinstance(self.timeout, (int, float)):
            self.timeout = min(self.timeout, guard.remaining())
        return super()._new_conn()

    def _connect_checked(self, guard: CallGuard) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as err:
            raise NameResolutionError(self.host, self, err) from err
        addresses = checked_addresses(self.host, infos, url=guard.url)
        # Connect to the addresses just checked, never to a fresh resolution of the name.
        for index, address in enumerate(addresses):
            self._dns_host = address
            try:
                return self._connect_within(guard)
            except (NewConnectionError, ConnectTimeoutError):
                if index == len(addresses) - 1:
                    raise
        raise NameResolutionError(self.host, self, socket.gaierror("no address"))

    def getresponse(self) -> Any:
        guard = _ACTIVE_GUARD.get()
        if guard is not None:
            guard.watch(self.sock)
        return super().getresponse()


class _GuardedHTTPSConnection(_GuardedHTTPConnection, HTTPSConnection):
    """The guarded connection over TLS: the watchdog bounds the handshake too."""


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_POOL_CLASSES = {"http": _GuardedHTTPConnectionPool, "https": _GuardedHTTPSConnectionPool}


class GuardedAdapter(HTTPAdapter):
    """A ``requests`` transport adapter whose HTTPS connections are guarded (see the module docstring)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


class SyncTransport:
    """Send requests over one ``requests`` session with guarded connections; thread-safe like the session.

    :param settings: the connection; it alone decides where requests go and what they carry.
    :param pool_size: connections kept per host (concurrent pages need one each).
    """

    def __init__(self, settings: ConnectionSettings, *, pool_size: int = 10) -> None:
        check_ca_bundle(settings.verify)
        self.settings = settings
        session = requests.Session()
        # No .netrc credentials, no proxy or CA bundle from the environment, no default
        # headers: the connection and the request alone decide what is sent and where.
        session.trust_env = False
        session.headers.clear()
        session.verify = settings.verify
        session.proxies = dict(settings.proxies)
        adapter = GuardedAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        # http:// too: the guardrails let it through only to loopback mocks (allow_insecure_http).
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self.session = session

    def close(self) -> None:
        """Close the session and its pooled connections."""
        self.session.close()

    def send(self, request: ApiRequest, timeout: float, budget: float) -> ApiResponse:
        """Send ``request`` and read its whole body within ``timeout`` seconds.

        :param budget: the call's whole timeout, named in the deadline error.
        :raises TransportError: the connection failed; ``sent`` and ``retryable`` say what the flow may do.
        :raises DeadlineExceededError: no complete response before the deadline.
        :raises GuardrailError: a resolved address or the response size is refused.
        """
        settings = self.settings
        shown = request.display_url
        proxied = bool(select_proxy(request.url, dict(settings.proxies)))
        if proxied and not settings.allow_private_hosts:
            _check_target_addresses(request.url, shown)
        prepared = self.session.prepare_request(
            requests.Request(request.method, request.url, headers=dict(request.headers), data=request.body)
        )
        started = time.monotonic()
        expired = DeadlineExceededError(f"timeout: no complete response within the {budget:g} s deadline", url=shown)
        guard = CallGuard(started + timeout, check_addresses=not (settings.allow_private_hosts or proxied), url=shown)
        with guard:
            try:
                response = self.session.send(
                    prepared,
                    stream=True,
                    allow_redirects=False,
                    timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
                )
                try:
                    content = self._read_body(response, shown)
                finally:
                    response.close()
            except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as err:
                # A socket timeout set to the time left races the watchdog; either way the deadline is what failed.
                raise (expired if guard.deadline_passed else _transport_error(err, shown, request.secrets)) from None
            except ExternalApiError:
                if guard.deadline_passed:
                    raise expired from None
                raise
        # A socket shut down by the watchdog can also look like a short, complete response.
        if guard.expired:
            raise expired
        return ApiResponse(
            status_code=response.status_code,
            headers=Headers(response.raw.headers.items()),
            url=request.url,
            content=content,
            display_url=shown,
            elapsed_ms=(time.monotonic() - started) * 1000,
        )

    def _read_body(self, response: requests.Response, shown: str) -> bytes:
        """Stream the raw body through the capped decoder."""
        reader = BodyReader(
            response.headers.get("Content-Encoding"),
            response.headers.get("Content-Length"),
            self.settings.max_response_bytes,
            url=shown,
        )
        read = response.raw.read1
        while chunk := read(READ_CHUNK_BYTES, decode_content=False):
            reader.feed(chunk)
        return reader.finish()


def _plain_reason(error: BaseException) -> str:
    """The socket-level reason of a transport error ("Connection refused"), without urllib3's class names."""
    inner = error.__cause__ or error.__context__
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    return re.sub(r"^\w+\(host=.*?\): ", "", str(error))


def _transport_error(err: Exception, shown: str, secrets: tuple[str, ...]) -> TransportError:
    """Map a library exception to a :class:`TransportError` that says whether the request may have been sent."""
    cause = getattr(err.args[0], "reason", None) if err.args else None
    detail = redact_url(_plain_reason(cause or err), secrets)[:300]
    if isinstance(err, requests.exceptions.SSLError):
        return TransportError.tls_failed(detail, url=shown)
    if isinstance(err, UnexpectedSwitchingProtocols) or isinstance(cause, UnexpectedSwitchingProtocols):
        return TransportError(f"transport: {detail}", url=shown, kind="protocol error", retryable=False)
    if isinstance(err, requests.ConnectTimeout) or isinstance(
        cause, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
    ):
        return TransportError.attempt_failed("connect failure", detail, url=shown)
    if isinstance(err, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
        return TransportError.attempt_failed("read timeout", detail, url=shown)
    return TransportError.attempt_failed("connection broken", detail, url=shown)


def _check_target_addresses(url: str, shown: str) -> None:
    """With a proxy, the proxy resolves the target; check what it resolves to from here at least."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except OSError as err:
        raise TransportError.attempt_failed("name resolution", f"{host!r}: {err.strerror or err}", url=shown) from None
    checked_addresses(host, infos, url=shown)
