"""The delivery ledger: which profile already got its message in which DAG run.

:func:`~.delivery.deliver` asks the ledger before each send and records each message
right after the SMTP server accepts it, so a retried task sends only what is missing.
The ledger is a :class:`DeliveryLedger` protocol; :class:`SqliteDeliveryLedger` is the
embedded default. A team with its own database implements the two methods on it.

The SQLite file lives on one machine: it makes retries exactly-once when they run where
the first try ran (LocalExecutor, or a volume every worker mounts locally). With Celery
or Kubernetes workers, point the ledger at a shared database instead; SQLite in WAL mode
must not sit on a network file system.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple, Protocol

DEFAULT_LEDGER_FILE = "campaign_delivery_ledger.sqlite3"


class DeliveryKey(NamedTuple):
    """What a delivery is unique on: one message per profile per DAG run."""

    dag_id: str
    run_id: str
    profile_id: str


class DeliveryLedger(Protocol):
    """Where deliveries are recorded; implementations must make ``record`` atomic on the key."""

    def is_delivered(self, key: DeliveryKey) -> bool:
        """True if a message for ``key`` was already accepted by the SMTP server."""
        ...

    def record(self, key: DeliveryKey, message_id: str) -> bool:
        """Record the delivery of ``key``; True if it is new, False if ``key`` was already recorded."""
        ...


def default_ledger_path() -> Path:
    """``$AIRFLOW_HOME/campaign_delivery_ledger.sqlite3`` (Airflow's default home is ``~/airflow``)."""
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / DEFAULT_LEDGER_FILE


class SqliteDeliveryLedger:
    """:class:`DeliveryLedger` in a SQLite file: WAL, a primary key on the delivery key, one connection per call.

    A connection per call keeps instances stateless, so any thread or process can use one;
    concurrent writers wait up to ``busy_timeout`` seconds for the write lock instead of failing.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_ledger_path()
        self.busy_timeout = busy_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS deliveries ("
                " dag_id TEXT NOT NULL, run_id TEXT NOT NULL, profile_id TEXT NOT NULL,"
                " message_id TEXT NOT NULL, delivered_at TEXT NOT NULL,"
                " PRIMARY KEY (dag_id, run_id, profile_id))"
            )

    def is_delivered(self, key: DeliveryKey) -> bool:
        """True if ``key`` is recorded."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM deliveries WHERE dag_id = ? AND run_id = ? AND profile_id = ?", tuple(key)
            ).fetchone()
        return row is not None

    def record(self, key: DeliveryKey, message_id: str) -> bool:
        """Insert ``key`` once; the primary key makes a second insert of the same key a no-op."""
        delivered_at = datetime.now(timezone.utc).isoformat()
        with self._connect() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?, ?)", (*key, message_id, delivered_at)
            )
        return cursor.rowcount == 1

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode: each statement is its own transaction, committed before it returns."""
        with closing(sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)) as conn:
            yield conn
