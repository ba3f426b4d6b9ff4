"""A real SMTP server on 127.0.0.1 that stores every message it receives as an ``.eml`` file.

It stands in for the mail relay in the demo and the tests: Airflow's ``SmtpHook``
talks plain SMTP to it, and each delivered message lands in the outbox folder.
"""

from __future__ import annotations

import itertools
import logging
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
        # Number after what earlier runs left in the outbox, so files sort in arrival order.
        self._counter = itertools.count(len(list(outbox.glob("*.eml"))) + 1)
        self._lock = threading.Lock()
        self.accept_before_outage: int | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            if self.accept_before_outage == 0:
                self.accept_before_outage = None
                return "421 4.3.2 Simulated relay outage, try again later"
            if self.accept_before_outage is not None:
                self.accept_before_outage -= 1
            number = next(self._counter)
        (self.outbox / f"{number:06d}.eml").write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


class SmtpSink:
    """Start with :meth:`start`, stop with :meth:`stop`; messages go to ``outbox/*.eml``."""

    def __init__(self, outbox: Path, port: int = 0) -> None:
        self.outbox = outbox
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._handler = _OutboxHandler(outbox)
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpSink:
        # aiosmtpd logs every SMTP command at INFO; a thousand messages would drown the demo's output.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def fail_once_after(self, accepted: int) -> None:
        """Simulate a relay outage: accept ``accepted`` more messages, refuse the next one (421), then recover."""
        with self._handler._lock:
            self._handler.accept_before_outage = accepted

    def messages(self) -> list[EmailMessage]:
        """Every message in the outbox, parsed, in arrival order."""
        return [
            message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=policy.default)
            for path in sorted(self.outbox.glob("*.eml"))
        ]
