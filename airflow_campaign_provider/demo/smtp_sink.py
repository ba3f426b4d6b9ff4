"""A real SMTP server on 127.0.0.1 that stores every message it receives as an ``.eml`` file.

It stands in for the mail relay in the demo and the tests: Airflow's ``SmtpHook``
talks plain SMTP to it, and each delivered message lands in the outbox folder.
"""

from __future__ import annotations

import itertools
import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _OutboxHandler:
    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            number = next(self._counter)
            existing = len(list(self.outbox.glob("*.eml")))
        path = self.outbox / f"{existing + number:06d}.eml"
        path.write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


class SmtpSink:
    """Start with :meth:`start`, stop with :meth:`stop`; messages go to ``outbox/*.eml``."""

    def __init__(self, outbox: Path, port: int = 0) -> None:
        self.outbox = outbox
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._controller = Controller(_OutboxHandler(outbox), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def messages(self) -> list[EmailMessage]:
        """Every message in the outbox, parsed, in arrival order."""
        return [
            message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=policy.default)
            for path in sorted(self.outbox.glob("*.eml"))
        ]
