"""Send personalized messages with Airflow's ``SmtpHook``, once per profile and DAG run, whoever sends.

Claim before send (see :mod:`.ledger`): :func:`deliver` claims a chunk of profiles in the
ledger, sends only the messages it holds over one SMTP session, and marks each one delivered
right after the SMTP server accepts it. Profiles another live delivery holds are waited for:
when :func:`deliver` returns, every message it was given went out once, from it or from another.

The one remaining window: a worker that dies after the server accepted a message and before
the mark (a millisecond) leaves a claim that the next try takes over and sends again. That one
message goes out twice, both copies with the same ``Message-ID`` (:func:`message_id`), so the
relay, the mailbox provider or a downstream consumer can drop the second (many relays and
mailbox providers de-duplicate on it already). A team that must rule it out needs a relay that
de-duplicates on ``Message-ID`` itself, or an API-based sender with an idempotency key.
``SmtpHook`` also re-sends a failed message up to the connection's ``retry_limit`` extra within
the session; a reply lost after the server accepted would be duplicated the same way, so set
``retry_limit`` to 0 and leave retrying to Airflow's task retries.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from email.utils import parseaddr
from typing import Any, TypedDict

from airflow_campaign_provider.campaign.errors import CampaignConfigError, CampaignError
from airflow_campaign_provider.campaign.ledger import Claimer, Claims, DeliveryKey, DeliveryLedger
from airflow_campaign_provider.clock import Clock

log = logging.getLogger(__name__)

# One plain ASCII address: RFC 5322 atext before the @, a hostname after it. No separators, so
# data cannot turn one message into several (SmtpHook splits "to" on commas and semicolons).
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
DEFAULT_SMTP_TIMEOUT = 30.0
"""``SmtpHook``'s own default; the real one is read from the connection when the session opens."""


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
    ledger: DeliveryLedger,
    claimer: Claimer,
    clock: Clock,
    from_email: str | None = None,
    poll_seconds: float = 1.0,
) -> DeliveryReport:
    """Send each message (see :class:`~.personalize.Message`) over one SMTP session, once per profile and run.

    A message is skipped when its ``consent`` is not exactly True, when its ``to`` is not one
    plain ASCII address, or when the ledger shows it delivered. The plain-text body is sent as
    escaped HTML, the only body ``SmtpHook`` sends. No SMTP session is opened when nothing is
    left to send. Profiles another claimer holds are claimed again every ``poll_seconds`` until
    they are delivered or their lease runs out and this call takes them over.

    :param ledger: where claims and deliveries are kept, e.g. :class:`~.ledger.SqlDeliveryLedger`.
    :param claimer: who is sending: a task instance and its try number.
    :param clock: times the claims' leases and the waits (a fake one in tests).
    :param from_email: the sender; defaults to the connection's ``from_email`` extra.
    :raises DuplicateProfileError: two messages share a ``profile_id`` (raised before sending anything).
    :raises DeliveryError: a send failed, or another delivery still held profiles after a lease and more;
        what was sent before is marked, so a retry sends only the rest.
    """
    report = DeliveryReport(sent=0, skipped_already_sent=0, skipped_no_consent=0, skipped_invalid_address=0)
    pending: dict[str, Mapping[str, Any]] = {}
    seen: set[str] = set()
    for message in messages:
        profile_id = str(message["profile_id"])
        if profile_id in seen:
            raise DuplicateProfileError(f"Two messages for profile {profile_id}; deliver sends one per profile")
        seen.add(profile_id)
        if message.get("consent") is not True:
            report["skipped_no_consent"] += 1
        elif not _ADDRESS.fullmatch(str(message["to"])):
            log.warning("Skipping profile %s: its address is not one plain ASCII email address", profile_id)
            report["skipped_invalid_address"] += 1
        else:
            pending[profile_id] = message

    with ExitStack() as stack:
        sender = _LazySmtp(smtp_conn_id, from_email, ledger.lease_seconds, stack)
        batch = _Batch(dag_id, run_id, ledger, claimer, report, clock)
        held = batch.claim_and_send(list(pending), pending, sender)
        # Wait for the profiles other deliveries hold: each is delivered by them, or taken over here
        # once their lease runs out. Bounded: a lease, the time to send, and one more poll.
        deadline = clock.now() + ledger.lease_seconds + sender.timeout + poll_seconds
        while held and clock.now() < deadline:
            clock.sleep(poll_seconds)
            held = batch.claim_and_send(held, pending, sender)
    if held:
        raise DeliveryError(
            f"{len(held)} profiles are still claimed by another live delivery after its lease; {report['sent']} "
            "messages were sent and marked here; a retry sends whatever is left"
        )
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


class _LazySmtp:
    """One ``SmtpHook`` session, opened on the first send; none at all when nothing is sent."""

    def __init__(self, smtp_conn_id: str, from_email: str | None, lease_seconds: float, stack: ExitStack) -> None:
        self.smtp_conn_id = smtp_conn_id
        self.from_email = from_email
        self.lease_seconds = lease_seconds
        self._stack = stack
        self._send: Callable[[DeliveryKey, Mapping[str, Any]], str] | None = None
        self.timeout = DEFAULT_SMTP_TIMEOUT

    def open(self) -> Callable[[DeliveryKey, Mapping[str, Any]], str]:
        """Open the session (once), which also reads the connection's timeout; return the send function."""
        if self._send is None:
            self._send = self._open()
        return self._send

    def send(self, key: DeliveryKey, message: Mapping[str, Any]) -> str:
        """Send one message; return its Message-ID."""
        return self.open()(key, message)

    def _open(self) -> Callable[[DeliveryKey, Mapping[str, Any]], str]:
        # Imported here so that DAG files importing this module parse without loading the SMTP provider.
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        hook = self._stack.enter_context(SmtpHook(smtp_conn_id=self.smtp_conn_id))
        self.timeout = float(hook.timeout)
        if self.timeout >= self.lease_seconds / 2:
            raise CampaignConfigError(
                f"The SMTP timeout of {self.smtp_conn_id!r} ({self.timeout:g} s) must be under half the ledger's "
                f"lease ({self.lease_seconds:g} s), so that a claim is renewed before a send can outlast it"
            )
        sender = self.from_email or hook.from_email
        if not sender:
            raise DeliveryError(f"No sender: pass from_email or set the 'from_email' extra of {self.smtp_conn_id!r}")
        domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"

        def send(key: DeliveryKey, message: Mapping[str, Any]) -> str:
            mid = message_id(key, domain)
            hook.send_email_smtp(
                to=str(message["to"]),
                subject=str(message["subject"]),
                html_content=_as_html(str(message["body"])),
                from_email=sender,
                custom_headers={"Message-ID": mid},
            )
            return mid

        return send


class _Batch:
    """Claims chunks of profiles, sends what it holds and marks it, renewing claims before their lease ends."""

    def __init__(
        self, dag_id: str, run_id: str, ledger: DeliveryLedger, claimer: Claimer, report: DeliveryReport, clock: Clock
    ) -> None:
        self.dag_id, self.run_id, self.ledger, self.claimer, self.report = dag_id, run_id, ledger, claimer, report
        self.clock = clock

    def claim_and_send(
        self, profile_ids: list[str], messages: Mapping[str, Mapping[str, Any]], sender: _LazySmtp
    ) -> list[str]:
        """Claim ``profile_ids``, send the messages this claimer holds; return the ids others hold."""
        held: list[str] = []
        claimed_at = self.clock.now()  # before the claim is written, so the lease is never overestimated
        queue = deque(self._take(self.ledger.claim(self.dag_id, self.run_id, profile_ids, self.claimer), held))
        while queue:
            sender.open()  # the real SMTP timeout is known from here on
            # A send starts only while the claim has more than a send's worth of its lease left; renewing at
            # half the lease keeps a margin of a whole lease for clock drift between this worker and others.
            if self.clock.now() - claimed_at + sender.timeout >= self.ledger.lease_seconds / 2:
                # Renew before the lease can run out mid-send; whatever was taken over meanwhile is not sent.
                claimed_at = self.clock.now()
                claims = self.ledger.claim(self.dag_id, self.run_id, list(queue), self.claimer)
                queue = deque(self._take(claims, held))
                continue
            profile_id = queue.popleft()
            key = DeliveryKey(self.dag_id, self.run_id, profile_id)
            try:
                mid = sender.send(key, messages[profile_id])
            except DeliveryError:
                raise
            except Exception as err:
                raise DeliveryError(
                    f"Sending to profile {profile_id} failed ({type(err).__name__}) after {self.report['sent']} "
                    "messages were sent and marked; a retry sends only the rest"
                ) from err
            self.ledger.mark_delivered(key, mid, self.claimer)
            self.report["sent"] += 1
        return held

    def _take(self, claims: Claims, held: list[str]) -> list[str]:
        self.report["skipped_already_sent"] += len(claims.delivered)
        held.extend(claims.held)
        return claims.mine


def _as_html(body: str) -> str:
    """Plain text as HTML: escaped, a ``<p>`` per paragraph and a ``<br>`` per line break."""
    paragraphs = (html.escape(part.strip()).replace("\n", "<br>\n") for part in _PARAGRAPH_BREAK.split(body))
    return "\n".join(f"<p>{part}</p>" for part in paragraphs if part)
