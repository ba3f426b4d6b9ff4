"""Send personalized messages with Airflow's ``SmtpHook``, once per profile and DAG run, across task retries.

Exactly-once, and its one gap: :func:`deliver` records a message in the ledger right after
the SMTP server accepts it. If the worker dies between the server's acceptance and the
ledger write (milliseconds), the retry sends that one message again. Both copies carry
the same ``Message-ID`` (:func:`message_id`), so the relay, the mailbox provider or a
downstream consumer can drop the second. ``SmtpHook`` also re-sends a failed message up
to the connection's ``retry_limit`` extra within the session; a reply lost after the
server accepted would be duplicated the same way, so set ``retry_limit`` to 0 and leave
retrying to Airflow's task retries.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from collections.abc import Iterable, Mapping
from email.utils import parseaddr
from typing import Any, TypedDict

from airflow_campaign_provider.campaign.errors import CampaignError
from airflow_campaign_provider.campaign.ledger import DeliveryKey, DeliveryLedger, SqliteDeliveryLedger

log = logging.getLogger(__name__)

# One plain ASCII address: RFC 5322 atext before the @, a hostname after it. No separators, so
# data cannot turn one message into several (SmtpHook splits "to" on commas and semicolons).
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


class DeliveryReport(TypedDict):
    """What one :func:`deliver` call did; plain JSON for XCom."""

    sent: int
    skipped_already_sent: int
    skipped_no_consent: int
    skipped_invalid_address: int


class DeliveryError(CampaignError):
    """Sending stopped part-way; the messages sent before it are recorded, so a retry sends the rest."""

    rule = "delivery"


class DuplicateProfileError(DeliveryError):
    """The batch holds two messages for one profile; nothing was sent, since which one is meant is unclear."""

    rule = "one message per profile"


def message_id(key: DeliveryKey, domain: str) -> str:
    """The ``Message-ID`` of ``key``'s message: the same on every try, unique across DAGs, runs and profiles."""
    digest = hashlib.sha256("\x1f".join(key).encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def deliver(
    messages: Iterable[Mapping[str, Any]],
    *,
    smtp_conn_id: str,
    dag_id: str,
    run_id: str,
    ledger: DeliveryLedger | None = None,
    from_email: str | None = None,
) -> DeliveryReport:
    """Send each message (see :class:`~.personalize.Message`) over one SMTP session, once per profile and run.

    A message is skipped when its ``consent`` is not exactly True, when its ``to`` is not one
    plain ASCII address, or when the ledger already holds ``(dag_id, run_id, profile_id)``. The
    plain-text body is sent as escaped HTML, the only body ``SmtpHook`` sends. No SMTP session is
    opened when nothing is left to send.

    :param ledger: defaults to :class:`~.ledger.SqliteDeliveryLedger` under ``$AIRFLOW_HOME``.
    :param from_email: the sender; defaults to the connection's ``from_email`` extra.
    :raises DuplicateProfileError: two messages share a ``profile_id`` (raised before sending anything).
    :raises DeliveryError: a send failed; the error says how many were sent before it.
    """
    ledger = SqliteDeliveryLedger() if ledger is None else ledger
    report = DeliveryReport(sent=0, skipped_already_sent=0, skipped_no_consent=0, skipped_invalid_address=0)
    pending: list[tuple[DeliveryKey, Mapping[str, Any]]] = []
    seen: set[str] = set()
    for message in messages:
        profile_id = str(message["profile_id"])
        if profile_id in seen:
            raise DuplicateProfileError(f"Two messages for profile {profile_id}; deliver sends one per profile")
        seen.add(profile_id)
        key = DeliveryKey(dag_id, run_id, profile_id)
        if message.get("consent") is not True:
            report["skipped_no_consent"] += 1
        elif not _ADDRESS.fullmatch(str(message["to"])):
            log.warning("Skipping profile %s: its address is not one plain ASCII email address", profile_id)
            report["skipped_invalid_address"] += 1
        elif ledger.is_delivered(key):
            report["skipped_already_sent"] += 1
        else:
            pending.append((key, message))

    if pending:
        report["sent"] = _send(pending, smtp_conn_id, ledger, from_email)
    log.info(
        "Delivery for %s / %s: %d sent, %d already sent, %d without consent, %d with an invalid address",
        dag_id,
        run_id,
        report["sent"],
        report["skipped_already_sent"],
        report["skipped_no_consent"],
        report["skipped_invalid_address"],
    )
    return report


def _send(
    pending: list[tuple[DeliveryKey, Mapping[str, Any]]],
    smtp_conn_id: str,
    ledger: DeliveryLedger,
    from_email: str | None,
) -> int:
    """Send and record each pending message in order; return how many were sent."""
    # Imported here so that DAG files importing this module parse without loading the SMTP provider.
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=smtp_conn_id) as hook:
        sender = from_email or hook.from_email
        if not sender:
            raise DeliveryError(f"No sender: pass from_email or set the 'from_email' extra of {smtp_conn_id!r}")
        domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        sent = 0
        for key, message in pending:
            mid = message_id(key, domain)
            try:
                hook.send_email_smtp(
                    to=str(message["to"]),
                    subject=str(message["subject"]),
                    html_content=_as_html(str(message["body"])),
                    from_email=sender,
                    custom_headers={"Message-ID": mid},
                )
            except Exception as err:
                raise DeliveryError(
                    f"Sending to profile {key.profile_id} failed ({type(err).__name__}) after {sent} "
                    f"of {len(pending)} messages were sent and recorded; a retry sends only the rest"
                ) from err
            ledger.record(key, mid)
            sent += 1
    return sent


def _as_html(body: str) -> str:
    """Plain text as HTML: escaped, a ``<p>`` per paragraph and a ``<br>`` per line break."""
    paragraphs = (html.escape(part.strip()).replace("\n", "<br>\n") for part in _PARAGRAPH_BREAK.split(body))
    return "\n".join(f"<p>{part}</p>" for part in paragraphs if part)
