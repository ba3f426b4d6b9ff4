"""Delivery rules decided before any SMTP session: Message-IDs, duplicates, and nothing-to-send runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_campaign_provider.campaign.delivery import DuplicateProfileError, deliver, message_id
from airflow_campaign_provider.campaign.ledger import Claimer, DeliveryKey, SqlDeliveryLedger
from tests.support.flow_script import FakeClock

# No AIRFLOW_CONN_ for this id: a test that reached the SMTP hook would fail on the missing connection.
NO_SMTP = "smtp_not_configured"
CLAIMER = Claimer("dag/run/deliver/0", 1)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SqlDeliveryLedger:
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_DB", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "l.db")}))
    return SqlDeliveryLedger("ledger_db")


def msg(pid: str, *, consent: object = True, to: str | None = None) -> dict[str, object]:
    return {"profile_id": pid, "to": to or f"{pid}@example.com", "subject": "s", "body": "b", "consent": consent}


def test_message_id_is_stable_and_unique_per_key() -> None:
    key = DeliveryKey("dag", "scheduled__2026-01-01T00:00:00+00:00", "P1")
    assert message_id(key, "example.com") == message_id(DeliveryKey(*key), "example.com")
    assert message_id(key, "example.com").endswith("@example.com>")
    others = [
        DeliveryKey("dag", key.run_id, "P2"),
        DeliveryKey("dag", "manual__x", "P1"),
        DeliveryKey("dag2", key.run_id, "P1"),
    ]
    assert len({message_id(k, "example.com") for k in [key, *others]}) == 4
    # The separator keeps ("a", "b c") and ("a b", "c") apart.
    assert message_id(DeliveryKey("a", "b", "c d"), "x") != message_id(DeliveryKey("a", "b c", "d"), "x")


def test_duplicate_profiles_fail_before_anything_is_sent(ledger: SqlDeliveryLedger) -> None:
    with pytest.raises(DuplicateProfileError, match="Two messages for profile P1"):
        deliver(
            [msg("P1"), msg("P2", consent=False), msg("P1")],
            smtp_conn_id=NO_SMTP,
            dag_id="dag",
            run_id="run",
            ledger=ledger,
            claimer=CLAIMER,
            clock=FakeClock(),
        )
    with pytest.raises(DuplicateProfileError, match="Two messages for profile P2"):
        deliver([msg("P2", consent=False), msg("P2")], smtp_conn_id=NO_SMTP, dag_id="dag", run_id="run",
                ledger=ledger, claimer=CLAIMER, clock=FakeClock())  # fmt: skip
    assert ledger.claim("dag", "run", ["P1", "P2"], CLAIMER).mine == ["P1", "P2"], "nothing was claimed"


def test_nothing_to_send_opens_no_smtp_session(ledger: SqlDeliveryLedger) -> None:
    ledger.claim("dag", "run", ["P1"], CLAIMER)
    ledger.mark_delivered(DeliveryKey("dag", "run", "P1"), "<x@example.com>", CLAIMER)
    messages = [
        msg("P1"),
        msg("P2", consent=False),
        msg("P3", consent="yes"),
        msg("P4", to="a@example.com, b@example.com"),
        msg("P5", to="x@example.com\r\nBcc: y@example.com"),
        msg("P6", to="not-an-address"),
    ]
    report = deliver(
        messages, smtp_conn_id=NO_SMTP, dag_id="dag", run_id="run", ledger=ledger, claimer=CLAIMER, clock=FakeClock()
    )
    assert report == {"sent": 0, "skipped_already_sent": 1, "skipped_no_consent": 2, "skipped_invalid_address": 3}
