"""The async transport, for the deferrable trigger: the same guardrails as the sync one, on ``httpcore``.

``httpcore`` is the transport layer under ``httpx`` (installed with Airflow), built on
the sans-I/O ``h11``. We use it directly rather than ``httpx.AsyncClient`` because the
policy already lives in the call flow: we need only a connection pool, a network
backend we can pin addresses in, and the raw bytes of the body for our capped decoder.

* **Resolved addresses.** :class:`PinnedBackend` resolves the host, checks every
  address and connects to a checked one only; TLS still verifies the host name.
* **One deadline.** Each attempt runs under ``asyncio.timeout``, which cancels a slow
  connect, handshake, header or body at the deadline.
* **Size.** The raw body streams through :class:`~airflow_campaign_provider.body.BodyReader`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import httpcore

from airflow_campaign_provider.body import BodyReader
from airflow_campaign_provider.exceptions import (
    DeadlineExceededError,
    GuardrailError,
    TransportError,
)
from airflow_campaign_provider.guardrails import checked_addresses
from airflow_campaign_provider.redaction import redact_url
from airflow_campaign_provider.request import ApiRequest
from airflow_campaign_provider.response import ApiResponse, Headers
from airflow_campaign_provider.settings import ConnectionSettings, check_ca_bundle
from airflow_campaign_provider.transport import CONNECT_TIMEOUT

_DISPLAY_URL: ContextVar[str] = ContextVar("campaign_external_api_async_url", default="")


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, check every address, and connect only to a checked one (which stops DNS rebinding)."""

    def __init__(self, *, check_addresses: bool) -> None:
        self.check_addresses = check_addresses
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        if not self.check_addresses:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = checked_addresses(host, infos, url=_DISPLAY_URL.get())
        for index, address in enumerate(addresses):
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                if index == len(addresses) - 1:
                    raise
        raise httpcore.ConnectError(f"{host!r} resolved to no address")

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise httpcore.ConnectError("unix sockets are not used")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """TLS settings that match the sync transport's: certifi's CAs, a CA bundle path, or no verification."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        check_ca_bundle(verify)
        return ssl.create_default_context(cafile=verify)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class AsyncTransport:
    """Send requests over one ``httpcore`` connection pool per proxy; use as an async context manager.

    :param settings: the connection; it alone decides where requests go and what they carry.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._ssl = ssl_context(settings.verify)
        self._pools: dict[str | None, httpcore.AsyncConnectionPool] = {}

    async def __aenter__(self) -> AsyncTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()

    def _pool(self, proxy: str | None) -> httpcore.AsyncConnectionPool:
        if proxy not in self._pools:
            if proxy is None:
                self._pools[None] = httpcore.AsyncConnectionPool(
                    ssl_context=self._ssl,
                    network_backend=PinnedBackend(check_addresses=not self.settings.allow_private_hosts),
                )
            else:
                parts = urlsplit(proxy)
                auth = (parts.username or "", parts.password or "") if parts.username else None
                self._pools[proxy] = httpcore.AsyncHTTPProxy(
                    proxy_url=f"{parts.scheme}://{parts.hostname}:{parts.port or 80}",
                    proxy_auth=auth,
                    ssl_context=self._ssl,
                )
        return self._pools[proxy]

    async def send(self, request: ApiRequest, timeout: float, budget: float) -> ApiResponse:
        """Send ``request`` and read its whole body within ``timeout`` seconds; errors as the sync transport's."""
        from requests.utils import select_proxy

        settings = self.settings
        shown = request.display_url
        proxy = select_proxy(request.url, dict(settings.proxies))
        if proxy and not settings.allow_private_hosts:
            await _check_target_addresses(request.url, shown)
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in request.headers.items()]
        limits = {"connect": min(CONNECT_TIMEOUT, timeout), "read": timeout, "write": timeout, "pool": timeout}
        started = time.monotonic()
        token = _DISPLAY_URL.set(shown)
        try:
            async with asyncio.timeout(timeout):
                async with self._pool(proxy).stream(
                    request.method, request.url, headers=headers, content=request.body, extensions={"timeout": limits}
                ) as response:
                    found = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers)
                    reader = BodyReader(
                        found.get("Content-Encoding"),
                        found.get("Content-Length"),
                        settings.max_response_bytes,
                        url=shown,
                    )
                    async for chunk in response.aiter_stream():
                        reader.feed(chunk)
                    content = reader.finish()
        except TimeoutError:
            raise DeadlineExceededError(
                f"timeout: no complete response within the {budget:g} s deadline", url=shown
            ) from None
        except (GuardrailError, TransportError):
            raise
        except Exception as err:
            raise _transport_error(err, shown, request.secrets) from None
        finally:
            _DISPLAY_URL.reset(token)
        return ApiResponse(
            status_code=response.status,
            headers=found,
            url=request.url,
            content=content,
            display_url=shown,
            elapsed_ms=(time.monotonic() - started) * 1000,
        )


def _transport_error(err: Exception, shown: str, secrets: tuple[str, ...]) -> TransportError:
    """Map an ``httpcore`` exception the way the sync transport maps urllib3's."""
    detail = redact_url(str(err) or type(err).__name__, secrets)[:300]
    cause = err.__cause__ or err.__context__
    if isinstance(cause, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in detail or isinstance(err, ssl.SSLError):
        return TransportError.tls_failed(detail, url=shown)
    if isinstance(err, (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout)):
        return TransportError.attempt_failed("connect failure", detail, url=shown)
    if isinstance(err, httpcore.ReadTimeout):
        return TransportError.attempt_failed("read timeout", detail, url=shown)
    return TransportError.attempt_failed("connection broken", detail, url=shown)


async def _check_target_addresses(url: str, shown: str) -> None:
    """With a proxy, the proxy resolves the target; check what it resolves to from here at least."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except OSError as err:
        raise TransportError.attempt_failed("name resolution", f"{host!r}: {err.strerror or err}", url=shown) from None
    checked_addresses(host, infos, url=shown)
