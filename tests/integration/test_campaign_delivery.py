"""Personalize and deliver through Airflow's SmtpHook into a real SMTP server on 127.0.0.1; SMTP is not mocked.

Mid-batch failures are real: the relay is stopped between two messages, and the next
send fails on the closed connection. A ledger wrapper only picks the moment to stop it.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from collections.abc import Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from airflow_campaign_provider.campaign.delivery import DeliveryError, DeliveryReport, deliver, message_id
from airflow_campaign_provider.campaign.errors import CampaignConfigError
from airflow_campaign_provider.campaign.ledger import Claimer, Claims, DeliveryKey, DeliveryLedger, SqlDeliveryLedger
from airflow_campaign_provider.campaign.personalize import Message, personalize
from airflow_campaign_provider.clock import Clock, SystemClock
from demo.smtp_sink import SmtpSink
from tests.support.flow_script import FakeClock

pytestmark = pytest.mark.integration

TEMPLATES = Path(__file__).resolve().parents[2] / "dags" / "templates"
CONN_ID = "smtp_demo"
DAG_ID = "campaign_coupons"
RUN_ID = "manual__2026-11-23T08:00:00+00:00"
LOCALES = ["it", "fr", "nl", "en", "de"]
TRY_1 = Claimer(f"{DAG_ID}/{RUN_ID}/deliver/0", 1)
TRY_2 = Claimer(f"{DAG_ID}/{RUN_ID}/deliver/0", 2)


class Relay:
    """The sink, restartable on the same port and outbox like a mail relay coming back after an outage."""

    def __init__(self, outbox: Path) -> None:
        self.sink = SmtpSink(outbox).start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.sink.stop()
            self.running = False

    def restart(self) -> None:
        self.sink = SmtpSink(self.sink.outbox, port=self.sink.port).start()
        self.running = True

    def messages(self) -> list[EmailMessage]:
        return self.sink.messages()

    def recipients(self) -> Counter[str]:
        return Counter(str(m["To"]) for m in self.messages())


@pytest.fixture
def relay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Relay]:
    relay = Relay(tmp_path / "outbox")
    extra = {
        "disable_tls": True,
        "disable_ssl": True,
        "from_email": "campaign@example.com",
        "retry_limit": 0,
        "timeout": 5,
    }
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": relay.sink.port, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    yield relay
    relay.stop()


@pytest.fixture
def ledger(sql_conn: str) -> Iterator[SqlDeliveryLedger]:
    """The ledger on SQLite, then on PostgreSQL."""
    with SqlDeliveryLedger(sql_conn) as opened:
        yield opened


def send(
    messages: list[Message],
    ledger: DeliveryLedger,
    claimer: Claimer = TRY_1,
    run_id: str = RUN_ID,
    clock: Clock | None = None,
) -> DeliveryReport:
    return deliver(
        messages,
        smtp_conn_id=CONN_ID,
        dag_id=DAG_ID,
        run_id=run_id,
        ledger=ledger,
        claimer=claimer,
        clock=clock or SystemClock(),
    )


def coupon_messages(count: int = 10) -> list[Message]:
    """Every third profile has no consent; locales cycle through it, fr, nl, en and de (de falls back to en)."""
    profiles = [
        {
            "id": f"P{i:04d}",
            "email": f"user{i}@example.com",
            "first_name": f"Name{i}",
            "locale": LOCALES[i % len(LOCALES)],
            "email_consent": i % 3 != 0,
            "coupon_code": f"CODE{i}",
            "coupon_discount": 10,
            "coupon_valid_until": "2026-12-31",
        }
        for i in range(count)
    ]
    return personalize(profiles, TEMPLATES / "coupons")


def consenting(messages: list[Message]) -> Counter[str]:
    return Counter(m["to"] for m in messages if m["consent"])


class LedgerWrapper:
    """Passes every call on to a real ledger; subclasses pick a moment to break something."""

    def __init__(self, ledger: SqlDeliveryLedger) -> None:
        self.ledger = ledger
        self.lease_seconds = ledger.lease_seconds

    def claim(self, dag_id: str, run_id: str, profile_ids: Sequence[str], claimer: Claimer) -> Claims:
        return self.ledger.claim(dag_id, run_id, profile_ids, claimer)

    def mark_delivered(self, key: DeliveryKey, message_id: str, claimer: Claimer) -> bool:
        return self.ledger.mark_delivered(key, message_id, claimer)

    def is_delivered(self, key: DeliveryKey) -> bool:
        return self.ledger.is_delivered(key)


class StopRelayAfter(LedgerWrapper):
    """A ledger that stops the relay once ``count`` deliveries are marked, so the next send meets a dead server."""

    def __init__(self, ledger: SqlDeliveryLedger, relay: Relay, count: int) -> None:
        super().__init__(ledger)
        self.relay, self.count = relay, count

    def mark_delivered(self, key: DeliveryKey, message_id: str, claimer: Claimer) -> bool:
        marked = super().mark_delivered(key, message_id, claimer)
        self.count -= 1
        if self.count == 0:
            self.relay.stop()
        return marked


class CrashBeforeMarking(LedgerWrapper):
    """A ledger whose worker dies after the server accepted message number ``at`` but before it was marked."""

    def __init__(self, ledger: SqlDeliveryLedger, at: int) -> None:
        super().__init__(ledger)
        self.at = at

    def mark_delivered(self, key: DeliveryKey, message_id: str, claimer: Claimer) -> bool:
        self.at -= 1
        if self.at == 0:
            raise SystemExit("worker killed")
        return super().mark_delivered(key, message_id, claimer)


def test_delivers_one_localized_message_per_consenting_profile(relay: Relay, ledger: SqlDeliveryLedger) -> None:
    messages = coupon_messages()
    report = send(messages, ledger)

    assert report == {"sent": 6, "skipped_already_sent": 0, "skipped_no_consent": 4, "skipped_invalid_address": 0}
    delivered = {str(m["To"]): m for m in relay.messages()}
    assert delivered.keys() == consenting(messages).keys()
    for message in messages:
        if not message["consent"]:
            continue
        email = delivered[message["to"]]
        assert email["Subject"] == message["subject"]
        assert email["From"] == "campaign@example.com"
        assert email["Message-ID"] == message_id(DeliveryKey(DAG_ID, RUN_ID, message["profile_id"]), "example.com")
        assert f"CODE{int(message['profile_id'][1:])}" in email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert delivered["user1@example.com"]["Subject"] == "Name1, votre bon de 10 % est arrivé"
    assert delivered["user4@example.com"]["Subject"] == "Name4, your 10% coupon is here"  # de falls back to en


def test_never_sends_without_consent(relay: Relay, ledger: SqlDeliveryLedger) -> None:
    messages = coupon_messages(6)
    report = send(messages, ledger)

    assert report["skipped_no_consent"] == 2
    assert not {"user0@example.com", "user3@example.com"} & relay.recipients().keys()
    assert not ledger.is_delivered(DeliveryKey(DAG_ID, RUN_ID, "P0000"))


def test_a_retry_after_a_mid_batch_failure_sends_only_the_rest(relay: Relay, ledger: SqlDeliveryLedger) -> None:
    messages = coupon_messages(12)

    with pytest.raises(DeliveryError, match="after 3 messages were sent and marked") as failed:
        send(messages, StopRelayAfter(ledger, relay, 3))
    assert "SMTPServerDisconnected" in str(failed.value)
    assert sum(relay.recipients().values()) == 3

    relay.restart()
    retry = send(messages, ledger, TRY_2)

    assert retry == {"sent": 5, "skipped_already_sent": 3, "skipped_no_consent": 4, "skipped_invalid_address": 0}
    assert relay.recipients() == consenting(messages), "every consenting profile got exactly one message"


def test_a_second_run_with_the_same_run_id_sends_nothing(relay: Relay, ledger: SqlDeliveryLedger) -> None:
    messages = coupon_messages()
    send(messages, ledger)
    relay.stop()  # an SMTP session would now fail: the second run must not even open one

    again = send(messages, ledger, TRY_2)

    assert again == {"sent": 0, "skipped_already_sent": 6, "skipped_no_consent": 4, "skipped_invalid_address": 0}
    assert relay.recipients() == consenting(messages)


def test_a_new_run_id_delivers_again(relay: Relay, ledger: SqlDeliveryLedger) -> None:
    messages = coupon_messages(4)
    send(messages, ledger)
    report = send(messages, ledger, run_id="manual__next")
    assert report["sent"] == 2
    assert set(relay.recipients().values()) == {2}


def test_a_crash_between_accept_and_mark_resends_one_message_with_the_same_message_id(
    relay: Relay, ledger: SqlDeliveryLedger
) -> None:
    messages = coupon_messages(6)  # P0001, P0002, P0004, P0005 consent
    with pytest.raises(SystemExit):
        send(messages, CrashBeforeMarking(ledger, 2))

    retry = send(messages, ledger, TRY_2)

    assert retry["sent"] == 3
    assert relay.recipients() == consenting(messages) + Counter({"user2@example.com": 1})
    copies = [m["Message-ID"] for m in relay.messages() if m["To"] == "user2@example.com"]
    assert len(copies) == 2
    assert copies[0] == copies[1], "the duplicate can be dropped downstream by its Message-ID"


def test_profile_data_is_escaped_in_the_html_body(relay: Relay, ledger: SqlDeliveryLedger) -> None:
    profile = {
        "id": "P1",
        "email": "anna@example.com",
        "first_name": "<b>Anna</b>",
        "locale": "en",
        "email_consent": True,
    }
    messages = personalize([profile], TEMPLATES / "coupons_fallback")
    send(messages, ledger)

    [email] = relay.messages()
    html_body = email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "&lt;b&gt;Anna&lt;/b&gt;" in html_body
    assert "<b>" not in html_body
    assert html_body.startswith("<p>Hi &lt;b&gt;Anna&lt;/b&gt;,</p>")


def deliver_in_a_process(
    messages: list[Message], ledger_conn_id: str, owner: str, start: Any, reports: Any
) -> None:  # pragma: no cover - runs in a child process
    """One of two concurrent deliveries of the same batch: waits for the other at ``start``, then delivers."""
    with SqlDeliveryLedger(ledger_conn_id) as ledger:
        start.wait()
        reports.put(send(messages, ledger, Claimer(owner, 1)))


def test_two_concurrent_deliveries_of_one_batch_send_every_message_once(relay: Relay, sql_conn: str) -> None:
    """Two processes deliver the same 600 messages of one run at the same moment, against one ledger.

    The read-then-write ledger this replaced sent all 600 twice here: both read "not delivered" before
    either wrote. Claim before send lets exactly one of them insert each claim.
    """
    messages = [m for m in coupon_messages(900) if m["consent"]]
    spawn = multiprocessing.get_context("spawn")
    start, reports = spawn.Barrier(2), spawn.Queue()
    workers = [
        spawn.Process(target=deliver_in_a_process, args=(messages, sql_conn, owner, start, reports))
        for owner in ("parallel-branch-a", "parallel-branch-b")
    ]
    for worker in workers:
        worker.start()
    results = [reports.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0

    assert len(messages) == 600
    assert relay.recipients() == consenting(messages), "every message once, from one of the two"
    assert len({str(m["Message-ID"]) for m in relay.messages()}) == 600
    assert sum(r["sent"] for r in results) == 600
    assert sum(r["skipped_already_sent"] for r in results) == 600, "each saw the other's messages delivered"


def test_a_deduplicating_relay_stores_a_resent_message_once_and_logs_it(tmp_path: Path, monkeypatch) -> None:
    """The remedy for the one remaining window, as the scale runs' sink applies it."""
    sink = SmtpSink(tmp_path / "outbox", dedupe_message_ids=True).start()
    try:
        extra = {"disable_tls": True, "disable_ssl": True, "from_email": "c@example.com", "retry_limit": 0}
        conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": sink.port, "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_DEDUPE_RELAY", json.dumps(conn))
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id="dedupe_relay") as hook:
            for mid in ("<a@example.com>", "<b@example.com>", "<a@example.com>"):
                hook.send_email_smtp(
                    to="x@example.com", subject="s", html_content="b", custom_headers={"Message-ID": mid}
                )
    finally:
        sink.stop()
    assert sorted(str(m["Message-ID"]) for m in sink.messages()) == ["<a@example.com>", "<b@example.com>"]
    assert (tmp_path / "duplicates.log").read_text() == "<a@example.com>\n"


class CountClaims(LedgerWrapper):
    def __init__(self, ledger: SqlDeliveryLedger) -> None:
        super().__init__(ledger)
        self.claims = 0

    def claim(self, dag_id: str, run_id: str, profile_ids: Sequence[str], claimer: Claimer) -> Claims:
        self.claims += 1
        return super().claim(dag_id, run_id, profile_ids, claimer)


class TickingClock(FakeClock):
    """A fake clock that moves one second each time it is read: a send takes a second."""

    def now(self) -> float:
        self.time += 1.0
        return self.time


def test_claims_are_renewed_before_half_their_lease_is_gone(relay: Relay, sql_conn: str) -> None:
    """A 300 s lease and the relay's SMTP timeout of 5 s: a send starts only up to 145 s after its claim.

    With a second per send, a claim covers 144 sends, so 400 messages take the first claim and two renewals.
    """
    messages = [m for m in coupon_messages(600) if m["consent"]]
    with SqlDeliveryLedger(sql_conn) as ledger:
        counting = CountClaims(ledger)
        report = send(messages, counting, clock=TickingClock())
        other = ledger.claim(DAG_ID, RUN_ID, [m["profile_id"] for m in messages], Claimer("other", 1))
    assert report["sent"] == len(messages) == 400
    assert counting.claims > 1, "the claims were renewed mid-batch"
    assert counting.claims == 3
    assert relay.recipients() == consenting(messages)
    assert len(other.delivered) == 400


def test_a_lease_too_short_for_a_send_is_refused_before_anything_is_sent(relay: Relay, sql_conn: str) -> None:
    with (
        SqlDeliveryLedger(sql_conn, lease_seconds=10) as short,
        pytest.raises(CampaignConfigError, match=r"SMTP timeout .* \(5 s\) must be under half the ledger's lease"),
    ):
        send(coupon_messages(4), short)
    assert relay.messages() == []


class RenewOthersClaims(LedgerWrapper):
    """A ledger where another live delivery renews its claims on ``held`` just before each claim of ours."""

    def __init__(self, ledger: SqlDeliveryLedger, owner: Claimer, held: list[str]) -> None:
        super().__init__(ledger)
        self.owner, self.held = owner, held

    def claim(self, dag_id: str, run_id: str, profile_ids: Sequence[str], claimer: Claimer) -> Claims:
        self.ledger.claim(dag_id, run_id, self.held, self.owner)
        return super().claim(dag_id, run_id, profile_ids, claimer)


def test_profiles_another_delivery_holds_are_taken_over_once_its_lease_runs_out(relay: Relay, sql_conn: str) -> None:
    messages = coupon_messages(6)  # P0001, P0002, P0004, P0005 consent
    clock = FakeClock()
    with SqlDeliveryLedger(sql_conn, lease_seconds=30, clock=clock) as ledger:
        ledger.claim(DAG_ID, RUN_ID, ["P0001", "P0002"], Claimer("a-delivery-that-died", 1))
        started = clock.now()
        report = send(messages, ledger, clock=clock)
    assert report["sent"] == 4
    assert relay.recipients() == consenting(messages)
    assert 30 < clock.now() - started <= 31, "it waited for the lease, polling every second, and not longer"


def test_profiles_another_live_delivery_keeps_renewing_fail_after_a_lease_and_more(relay: Relay, sql_conn: str) -> None:
    messages = coupon_messages(6)
    clock = FakeClock()
    with SqlDeliveryLedger(sql_conn, lease_seconds=30, clock=clock) as ledger:
        live = RenewOthersClaims(ledger, Claimer("a-live-delivery", 1), ["P0001"])
        with pytest.raises(DeliveryError, match="1 profiles are still claimed by another live delivery"):
            send(messages, live, clock=clock)
    assert sorted(relay.recipients()) == ["user2@example.com", "user4@example.com", "user5@example.com"]
