"""The only code that touches sockets: a ``requests`` adapter that enforces two guardrails at connect time.

* **Resolved addresses.** Before a new connection is opened, the host is resolved,
  every address is checked (no loopback, private, link-local or unspecified
  address), and the socket connects to a checked address only. Checking the
  addresses actually used is what stops DNS rebinding.
* **One deadline.** A watchdog timer shuts the socket down when the call's
  deadline passes, so neither a slow connect, a server that drips its headers,
  nor one that trickles its body can keep the call alive past ``timeout``.

The policy for one call travels in a :class:`CallGuard` held in a context variable,
because urllib3 creates connections deep inside ``requests`` where no argument reaches.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from airflow_campaign_provider.guardrails import check_resolved_addresses

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
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True
        self._token: Token[CallGuard | None] | None = None

    def __enter__(self) -> CallGuard:
        self._token = _ACTIVE_GUARD.set(self)
        self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()
        with self._lock:
            # A timer already firing must not shut a socket that goes back to the pool.
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

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            # The plain-socket shutdown, not SSLSocket's, which would also drop its
            # SSL object under the feet of the reading thread.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


class _GuardedHTTPSConnection(HTTPSConnection):
    """An urllib3 HTTPS connection that checks resolved addresses and reports its socket to the watchdog."""

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
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        check_resolved_addresses(self.host, addresses, url=guard.url)
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


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_POOL_CLASSES = {"http": HTTPConnectionPool, "https": _GuardedHTTPSConnectionPool}


class GuardedAdapter(HTTPAdapter):
    """A ``requests`` transport adapter whose HTTPS connections are guarded (see the module docstring)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager
