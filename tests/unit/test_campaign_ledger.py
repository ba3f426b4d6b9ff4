"""SqliteDeliveryLedger: one record per (dag, run, profile), WAL, and concurrent writers that wait, not fail."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from airflow_campaign_provider.campaign.ledger import (
    DEFAULT_LEDGER_FILE,
    DeliveryKey,
    DeliveryLedger,
    SqliteDeliveryLedger,
    default_ledger_path,
)


def test_records_a_key_once(tmp_path: Path) -> None:
    ledger: DeliveryLedger = SqliteDeliveryLedger(tmp_path / "ledger.sqlite3")
    key = DeliveryKey("dag", "run_1", "P1")
    assert not ledger.is_delivered(key)
    assert ledger.record(key, "<a@example.com>") is True
    assert ledger.is_delivered(key)
    assert ledger.record(key, "<b@example.com>") is False
    assert not ledger.is_delivered(DeliveryKey("dag", "run_2", "P1"))
    assert not ledger.is_delivered(DeliveryKey("other_dag", "run_1", "P1"))


def test_survives_reopening_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "ledger.sqlite3"
    SqliteDeliveryLedger(path).record(DeliveryKey("dag", "run", "P1"), "<a@example.com>")
    assert SqliteDeliveryLedger(path).is_delivered(DeliveryKey("dag", "run", "P1"))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT message_id FROM deliveries").fetchall() == [("<a@example.com>",)]


def test_default_path_is_under_airflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert default_ledger_path() == tmp_path / DEFAULT_LEDGER_FILE
    assert SqliteDeliveryLedger().path == tmp_path / DEFAULT_LEDGER_FILE


def test_two_concurrent_writers_record_each_key_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    writers = [SqliteDeliveryLedger(path), SqliteDeliveryLedger(path)]
    keys = [DeliveryKey("dag", "run", f"P{i:03d}") for i in range(150)]

    def write_all(ledger: SqliteDeliveryLedger) -> list[bool]:
        return [ledger.record(key, f"<{key.profile_id}@example.com>") for key in keys]

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(write_all, writers)

    assert all(a != b for a, b in zip(first, second, strict=True)), "each key is new for exactly one writer"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (150,)


def test_a_writer_waits_for_another_connections_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteDeliveryLedger(path)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO deliveries VALUES ('dag', 'run', 'P0', '<0@example.com>', 'now')")
    threading.Timer(0.3, holder.execute, ["COMMIT"]).start()

    started = time.monotonic()
    assert ledger.record(DeliveryKey("dag", "run", "P1"), "<1@example.com>") is True
    assert time.monotonic() - started >= 0.2
    assert ledger.is_delivered(DeliveryKey("dag", "run", "P0"))
    holder.close()


def test_a_busy_database_fails_after_the_timeout_instead_of_hanging(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteDeliveryLedger(path, busy_timeout=0.1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        ledger.record(DeliveryKey("dag", "run", "P1"), "<1@example.com>")
    holder.execute("ROLLBACK")
    holder.close()
