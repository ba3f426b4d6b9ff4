"""A real HTTPS server on 127.0.0.1 whose behaviour each test scripts, misbehaviour included.

Routes map a path to a list of responders; each request takes the next one and
the last one repeats. Every request is recorded, so tests can assert on what
really arrived on the wire (headers, body, how many attempts).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from demo.https_server import JsonRequestHandler, LocalHttpsServer
from demo.tls import LocalCA

Responder = Callable[["ScriptedHandler"], None]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Script:
    routes: dict[str, list[Responder]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    # Bytes each streaming responder managed to write before the client went away.
    bytes_sent: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_responder(self, path: str) -> Responder | None:
        with self.lock:
            queue = self.routes.get(path)
            if not queue:
                return None
            return queue.pop(0) if len(queue) > 1 else queue[0]


class ScriptedHandler(JsonRequestHandler):
    script: Script
    body: bytes = b""

    def setup(self) -> None:
        super().setup()
        with self.script.lock:
            self.script.connections += 1

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        self.body = body = self.read_body()
        self.script.requests.append(
            Recorded(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body)
        )
        responder = self.script.next_responder(parts.path)
        if responder is None:
            self.send_json(404, {"error": f"no route for {parts.path}"})
        else:
            responder(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class ScriptedServer:
    """Start with :meth:`start`; script with :meth:`route`; inspect :attr:`requests`."""

    def __init__(self, ca: LocalCA) -> None:
        self.script = Script()
        handler = type("Handler", (ScriptedHandler,), {"script": self.script})
        self._server = LocalHttpsServer(handler, ca)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def requests(self) -> list[Recorded]:
        return self.script.requests

    def route(self, path: str, *responders: Responder) -> None:
        self.script.routes[path] = list(responders)

    def start(self) -> ScriptedServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


# Responders ---------------------------------------------------------------------------------


def json_response(status: int = 200, document: Any = None, headers: dict[str, str] | None = None) -> Responder:
    def respond(h: ScriptedHandler) -> None:
        h.send_json(status, {"ok": True} if document is None else document, headers=headers)

    return respond


def token_response(value: str, expires_in: int = 3600) -> Responder:
    """The OAuth2 token endpoint's answer: a bearer ``access_token`` valid ``expires_in`` seconds."""
    return json_response(200, {"access_token": value, "token_type": "bearer", "expires_in": expires_in})


def oauth_conn(
    server: ScriptedServer, make_conn: Any, conn_id: str = "campaign_external_api_default", **overrides: Any
) -> str:
    """An OAuth2 client-credentials connection to ``server``, its token endpoint at ``/oauth/token``."""
    fields: dict[str, Any] = {
        "host": f"{server.base_url}/v1",
        "login": "client-id",
        "password": "client-secret-123",
        "auth_type": "oauth2_client_credentials",
        "token_url": f"{server.base_url}/oauth/token",
        "scope": "offers:read",
    }
    return str(make_conn(conn_id, **{**fields, **overrides}))


def raw_body(status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> Responder:
    def respond(h: ScriptedHandler) -> None:
        h.send_bytes(status, body, content_type=content_type, headers=headers)

    return respond


def echo_request_headers(status: int = 500) -> Responder:
    """An error page that echoes the request line and every header back, secrets included."""

    def respond(h: ScriptedHandler) -> None:
        text = "\n".join([h.requestline, *(f"{k}: {v}" for k, v in h.headers.items())])
        h.send_bytes(status, f"internal error; you sent:\n{text}".encode(), content_type="text/plain")

    return respond


def chunked_forever(name: str, chunk: bytes = b" " * 16384) -> Responder:
    """A chunked JSON body that never ends; records how many bytes were written."""

    def respond(h: ScriptedHandler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            h.wfile.write(b"1\r\n[\r\n")
            while True:
                h.wfile.write(frame)
                sent += len(chunk)
                h.script.bytes_sent[name] = sent
        except OSError:
            h.close_connection = True

    return respond


def drip(name: str, interval: float, total: int = 10_000) -> Responder:
    """Send a JSON body one byte every ``interval`` seconds (a slow-drip server)."""

    def respond(h: ScriptedHandler) -> None:
        h.wfile.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {total}\r\n\r\n".encode())
        sent = 0
        try:
            for _ in range(total):
                h.wfile.write(b" ")
                sent += 1
                h.script.bytes_sent[name] = sent
                time.sleep(interval)
        except OSError:
            h.close_connection = True

    return respond


def drip_headers(interval: float) -> Responder:
    """Send the status line and then header bytes one at a time, never finishing the headers."""

    def respond(h: ScriptedHandler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        try:
            for _ in range(100_000):
                h.wfile.write(b"a")
                time.sleep(interval)
        except OSError:
            h.close_connection = True

    return respond


def reset_mid_body(declared: int = 10_000, sent: int = 100) -> Responder:
    """Announce ``declared`` bytes, send ``sent`` of them, then reset the TCP connection."""

    def respond(h: ScriptedHandler) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
        h.wfile.write(head.encode() + b"[" + b" " * (sent - 1))
        h.wfile.flush()
        raw = h.request
        # SO_LINGER with a zero timeout turns close() into a TCP RST; the reader file
        # holds a reference to the socket, so it must go first for close() to be real.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.rfile.close()
        raw.close()
        h.close_connection = True

    return respond
