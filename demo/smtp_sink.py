"""A real SMTP server on 127.0.0.1 that stores every message it receives as an ``.eml`` file.

It stands in for the mail relay in the demo and the tests: Airflow's ``SmtpHook``
talks plain SMTP to it, and each delivered message lands in the outbox folder.

With ``dedupe_message_ids``, it acts like a relay that de-duplicates on ``Message-ID``
(the remedy for the ledger's one remaining window, see ``campaign.delivery``): a message
whose ID it already stored is accepted but not stored again, and its ID is appended to
``duplicates.log`` beside the outbox, so a test can count what was dropped.
"""

from __future__ import annotations

import itertools
import logging
import re
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


_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class _OutboxHandler:
    def __init__(self, outbox: Path, dedupe_message_ids: bool) -> None:
        self.outbox = outbox
        self.dedupe_message_ids = dedupe_message_ids
        self._stored_ids: set[bytes] = set()
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
            content = envelope.original_content or envelope.content
            if self.dedupe_message_ids and (found := _MESSAGE_ID.search(content.split(b"\r\n\r\n", 1)[0])):
                if found.group(1) in self._stored_ids:
                    with (self.outbox.parent / "duplicates.log").open("ab") as log:
                        log.write(found.group(1) + b"\n")
                    return "250 Duplicate of an accepted message, dropped"
                self._stored_ids.add(found.group(1))
            number = next(self._counter)
        (self.outbox / f"{number:06d}.eml").write_bytes(content)
        return "250 Message accepted for delivery"


class SmtpSink:
    """Start with :meth:`start`, stop with :meth:`stop`; messages go to ``outbox/*.eml``."""

    def __init__(self, outbox: Path, port: int = 0, *, dedupe_message_ids: bool = False) -> None:
        self.outbox = outbox
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._handler = _OutboxHandler(outbox, dedupe_message_ids)
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
