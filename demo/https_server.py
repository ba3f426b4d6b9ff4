"""A small threaded HTTPS server on 127.0.0.1 for the demo API and the test servers.

It is the standard library's ``http.server`` with two fixes that matter for honest
measurements: ``TCP_NODELAY`` on every connection and each response written in one
``send``, because headers and body in two small writes cost about 40 ms per
keep-alive request (Nagle's algorithm against delayed ACK). The TLS handshake runs
in the handler thread, so one stalled client cannot block the accept loop.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from demo.tls import LocalCA


class JsonRequestHandler(BaseHTTPRequestHandler):
    """Request handler with helpers to read a body and write a whole response at once."""

    protocol_version = "HTTP/1.1"
    server_version = "campaign-demo"

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the demo and the tests print what matters themselves."""

    def read_body(self) -> bytes:
        """Read the request body announced by Content-Length."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Write status line, headers and body in a single send."""
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}"]
        all_headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
        lines += [f"{name}: {value}" for name, value in all_headers.items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.close_connection = all_headers.get("Connection", "").lower() == "close"

    def send_json(self, status: int, document: Any, *, headers: dict[str, str] | None = None) -> None:
        """Serialize ``document`` and send it as ``application/json``."""
        self.send_bytes(status, json.dumps(document).encode(), headers=headers)


class LocalHttpsServer(ThreadingHTTPServer):
    """A threaded HTTPS server on a loopback port, serving ``handler`` with the local CA's certificate."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], ca: LocalCA, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__((host, port), handler)
        self.socket = ca.server_context().wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.server_address[1])

    @property
    def base_url(self) -> str:
        """The root URL; the local certificate covers ``localhost``, so TLS verification works."""
        return f"https://localhost:{self.port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, size limits) are expected here, not errors."""

    def start(self) -> LocalHttpsServer:
        """Serve in a daemon thread and return self."""
        self._thread = threading.Thread(target=self.serve_forever, name="local-https", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
