"""The delivery ledger: who may send which profile its message in which DAG run, and who already did.

Claim before send. :func:`~.delivery.deliver` first *claims* the profiles of a chunk with one
atomic insert (``INSERT ... ON CONFLICT DO NOTHING``), sends only what it holds, and *marks*
each message delivered right after the SMTP server accepts it. Two workers, two tries or two
concurrent deliveries of one run therefore never send one profile two messages: the database's
primary key lets exactly one of them insert the claim.

A claim names its claimer: the owner (one task instance: DAG, run, task and map index) and its
try number. A claim that is not delivered is taken over when

* it belongs to an earlier try of the same owner. Airflow starts try N+1 of a task instance
  only after try N has ended in the metadata DB; a try that lost its heartbeat is killed by its
  own supervisor (after ``[workers] max_failed_heartbeats`` failures, or at once on the 409 the
  API server answers for a try that is no longer running) long before the scheduler gives up on
  it (``[scheduler] task_instance_heartbeat_timeout``, 300 s). So the earlier try is not sending.
* or its lease ran out: it was claimed or renewed more than ``lease_seconds`` ago by any other
  claimer (another task instance, or a process outside Airflow). A live claimer never sends on
  an expired claim: :func:`~.delivery.deliver` starts a send only if it ends, even after the whole
  SMTP timeout, before half the lease is gone, and renews its claims otherwise, counting from
  before the claim was written. Claim times are the claimers' wall clocks, so workers need clocks
  in sync to well within the lease (NTP).

:class:`SqlDeliveryLedger` keeps the ledger in a table on any Airflow SQL connection
(``DbApiHook``): SQLite for one machine, PostgreSQL (or MySQL) shared by every worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from airflow_campaign_provider.campaign.errors import CampaignConfigError
from airflow_campaign_provider.clock import Clock, SystemClock

log = logging.getLogger(__name__)

DEFAULT_TABLE = "campaign_delivery_ledger"
DEFAULT_LEASE_SECONDS = 300.0
CHUNK = 500
"""Keys per statement: one round trip claims 500 profiles, well under every database's parameter limit."""


class DeliveryKey(NamedTuple):
    """What a delivery is unique on: one message per profile per DAG run."""

    dag_id: str
    run_id: str
    profile_id: str


class Claimer(NamedTuple):
    """Who claims: an owner (a task instance, or any process name outside Airflow) and its try number."""

    owner: str
    attempt: int


@dataclass
class Claims:
    """What one :meth:`DeliveryLedger.claim` found, by profile id."""

    mine: list[str] = field(default_factory=list)
    """Held by the claimer now: send these, then mark each one."""
    delivered: list[str] = field(default_factory=list)
    """Already delivered, by anyone."""
    held: list[str] = field(default_factory=list)
    """Claimed by another live claimer: wait, then claim again (its lease may run out)."""


class DeliveryLedger(Protocol):
    """Where claims and deliveries are kept; see the module docstring for the rules it must keep."""

    lease_seconds: float

    def claim(self, dag_id: str, run_id: str, profile_ids: Sequence[str], claimer: Claimer) -> Claims:
        """Claim every free or stale profile of ``profile_ids``, renew the claimer's own claims, report all."""
        ...

    def mark_delivered(self, key: DeliveryKey, message_id: str, claimer: Claimer) -> bool:
        """Record that ``key``'s message was accepted; False if ``claimer`` no longer held the claim."""
        ...

    def is_delivered(self, key: DeliveryKey) -> bool:
        """True if ``key``'s message was delivered."""
        ...


_DIALECTS = {
    # dialect name: (insert-if-absent prefix, suffix, column type of a time, of an id)
    "sqlite": ("INSERT INTO", "ON CONFLICT DO NOTHING", "REAL", "TEXT"),
    "postgresql": ("INSERT INTO", "ON CONFLICT DO NOTHING", "DOUBLE PRECISION", "TEXT"),
    "mysql": ("INSERT IGNORE INTO", "", "DOUBLE", "VARCHAR(250)"),
}


class SqlDeliveryLedger:
    """:class:`DeliveryLedger` in a table on an Airflow SQL connection; the table is created on first use.

    It keeps one database connection open from its first call until :meth:`close` (or the end of
    a ``with`` block), so a batch pays one connect; use one instance per thread.

    :param conn_id: any connection whose hook is a ``DbApiHook`` of SQLite, PostgreSQL or MySQL.
    :param table: the table name (letters, digits and underscores).
    :param lease_seconds: how long a claim of another claimer is respected without renewal.
    :param clock: stamps claims and deliveries (tests pass a fake one); real time by default.
    """

    def __init__(
        self,
        conn_id: str,
        *,
        table: str = DEFAULT_TABLE,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        if not (table.isascii() and table.replace("_", "").isalnum()):
            raise CampaignConfigError(f"Ledger table name {table!r} must be letters, digits and underscores")
        if lease_seconds <= 0:
            raise CampaignConfigError(f"The ledger lease must be positive, not {lease_seconds!r} s")
        self.conn_id = conn_id
        self.table = table
        self.lease_seconds = float(lease_seconds)
        self.clock = clock or SystemClock()
        self._conn: Any = None
        self._dialect = ""
        self._ph = ""

    def __repr__(self) -> str:
        return f"SqlDeliveryLedger(conn_id={self.conn_id!r}, table={self.table!r}, lease_seconds={self.lease_seconds})"

    def __enter__(self) -> SqlDeliveryLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection; the next call opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def claim(self, dag_id: str, run_id: str, profile_ids: Sequence[str], claimer: Claimer) -> Claims:
        claims = Claims()
        for start in range(0, len(profile_ids), CHUNK):
            chunk = [str(pid) for pid in profile_ids[start : start + CHUNK]]
            with self._cursor() as (cursor, ph):
                now = self.clock.now()
                self._insert_claims(cursor, dag_id, run_id, chunk, claimer, now)
                keys = f"dag_id = {ph} AND run_id = {ph} AND profile_id IN ({', '.join([ph] * len(chunk))})"
                # Renew our own claims, take over an earlier try's, or any claim past its lease. Rows
                # this call just inserted carry claimed_at = now and are left alone.
                cursor.execute(
                    f"UPDATE {self.table} SET owner = {ph}, attempt = {ph}, claimed_at = {ph} "  # noqa: S608
                    f"WHERE {keys} AND delivered_at IS NULL AND claimed_at < {ph} "
                    f"AND ((owner = {ph} AND attempt <= {ph}) OR claimed_at < {ph})",
                    (*claimer, now, dag_id, run_id, *chunk, now, *claimer, now - self.lease_seconds),
                )
                cursor.execute(
                    f"SELECT profile_id, owner, attempt, delivered_at FROM {self.table} WHERE {keys}",  # noqa: S608
                    (dag_id, run_id, *chunk),
                )
                order = {profile_id: index for index, profile_id in enumerate(chunk)}
                # In the caller's order, so that messages go out in the order they were given.
                rows = sorted(cursor.fetchall(), key=lambda row: order[row[0]])
                for profile_id, owner, attempt, delivered_at in rows:
                    if delivered_at is not None:
                        claims.delivered.append(profile_id)
                    elif (owner, attempt) == claimer:
                        claims.mine.append(profile_id)
                    else:
                        claims.held.append(profile_id)
        return claims

    def mark_delivered(self, key: DeliveryKey, message_id: str, claimer: Claimer) -> bool:
        with self._cursor() as (cursor, ph):
            cursor.execute(
                f"UPDATE {self.table} SET delivered_at = {ph}, message_id = {ph} "  # noqa: S608
                f"WHERE dag_id = {ph} AND run_id = {ph} AND profile_id = {ph} "
                f"AND owner = {ph} AND attempt = {ph} AND delivered_at IS NULL",
                (self.clock.now(), message_id, *key, *claimer),
            )
            marked = bool(cursor.rowcount == 1)
        if not marked:
            log.error("Profile %s was sent, but its claim was no longer held by %s", key.profile_id, claimer.owner)
        return marked

    def is_delivered(self, key: DeliveryKey) -> bool:
        with self._cursor() as (cursor, ph):
            cursor.execute(
                f"SELECT 1 FROM {self.table} WHERE dag_id = {ph} AND run_id = {ph} AND profile_id = {ph} "  # noqa: S608
                "AND delivered_at IS NOT NULL",
                tuple(key),
            )
            return cursor.fetchone() is not None

    def _insert_claims(
        self, cursor: Any, dag_id: str, run_id: str, chunk: list[str], claimer: Claimer, now: float
    ) -> None:
        """Insert a claim row for each key that has none; an existing row, claimed or delivered, is left as is."""
        prefix, suffix, _, _ = _DIALECTS[self._dialect]
        ph = self._ph
        values = ", ".join([f"({ph}, {ph}, {ph}, {ph}, {ph}, {ph})"] * len(chunk))
        parameters = [value for pid in chunk for value in (dag_id, run_id, pid, *claimer, now)]
        cursor.execute(
            f"{prefix} {self.table} (dag_id, run_id, profile_id, owner, attempt, claimed_at) VALUES {values} {suffix}",
            parameters,
        )

    @contextmanager
    def _cursor(self) -> Iterator[tuple[Any, str]]:
        """A cursor on the ledger's connection, which is in autocommit mode, and the parameter placeholder.

        Each statement commits on its own: every rule above rests on one statement being atomic, and
        a mark then costs one round trip, not two.
        """
        conn = self._conn if self._conn is not None else self._open()
        with closing(conn.cursor()) as cursor:
            yield cursor, self._ph

    def _open(self) -> Any:
        """Connect through the connection's ``DbApiHook`` and create the table if it is missing."""
        from airflow_campaign_provider.campaign.sql import db_hook

        hook = db_hook(self.conn_id)
        self._dialect = _dialect_of(hook)
        self._ph = hook.placeholder
        conn = hook.get_conn()
        if self._dialect == "sqlite":
            conn.isolation_level = None  # the standard library's sqlite3 autocommit (3.11)
        else:
            hook.set_autocommit(conn, True)
        _, _, time_type, id_type = _DIALECTS[self._dialect]
        with closing(conn.cursor()) as cursor:
            if self._dialect == "sqlite":
                # Concurrent writers wait for the lock instead of failing at once; readers never block writers.
                cursor.execute("PRAGMA busy_timeout = 30000")
                _use_wal(cursor, self.clock)
            try:
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.table} ("
                    f" dag_id {id_type} NOT NULL, run_id {id_type} NOT NULL, profile_id {id_type} NOT NULL,"
                    f" owner TEXT NOT NULL, attempt INTEGER NOT NULL, claimed_at {time_type} NOT NULL,"
                    f" delivered_at {time_type}, message_id TEXT,"
                    " PRIMARY KEY (dag_id, run_id, profile_id))"
                )
            except Exception:
                # PostgreSQL's IF NOT EXISTS is not atomic: two first deliveries at once can both create the
                # table, and one fails. That one is fine if the table is there now.
                cursor.execute(f"SELECT 1 FROM {self.table} WHERE 1 = 0")  # noqa: S608
        self._conn = conn
        return conn


def _use_wal(cursor: Any, clock: Clock, timeout: float = 30.0) -> None:
    """Put a SQLite file in WAL mode. Switching skips the busy handler, so a first use beside another one retries."""
    import sqlite3

    deadline = clock.now() + timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if clock.now() > deadline:
                raise
            clock.sleep(0.05)


def _dialect_of(hook: Any) -> str:
    """The hook's SQL dialect, one of those the ledger speaks."""
    name = str(getattr(hook, "dialect_name", "") or hook.conn_type or "")
    dialect = "postgresql" if name in ("postgres", "postgresql") else name
    if dialect not in _DIALECTS:
        spoken = ", ".join(sorted(_DIALECTS))
        raise CampaignConfigError(
            f"The delivery ledger speaks {spoken}, not {name!r} (connection {hook.get_conn_id()!r})"
        )
    return dialect
