"""Split an audience query into batches of consecutive keys, and read one batch back.

A batch is a small descriptor (its number, first and last key, size), so a DAG can map one
task instance over each through XCom without the audience itself ever going there. Batches
are cut in the database, with ``ROW_NUMBER()`` over the key (SQLite 3.25+, PostgreSQL): gaps
in the keys do not matter, and every batch but the last holds exactly ``batch_size`` rows.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from contextlib import closing
from typing import Any, TypedDict

from airflow_campaign_provider.campaign.audience import Row
from airflow_campaign_provider.campaign.audience_db import DEFAULT_BOOLEAN_COLUMNS, read_profiles
from airflow_campaign_provider.campaign.errors import CampaignConfigError
from airflow_campaign_provider.campaign.sql import db_hook, fetch_dicts

MAX_BATCH_SIZE = 100_000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class Batch(TypedDict):
    """One slice of the audience: the rows whose key lies in ``[first_key, last_key]``."""

    number: int
    first_key: Any
    last_key: Any
    size: int


def plan_batches(conn_id: str, audience_sql: str, batch_size: int, *, key: str = "id") -> list[Batch]:
    """The batches of ``audience_sql``'s rows in ``key`` order, ``batch_size`` rows each (the last may hold fewer).

    :raises CampaignConfigError: a batch size outside 1 to 100,000, a key that is not a plain column name,
        or a query ending in a semicolon.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise CampaignConfigError(f"Batch size must be a whole number from 1 to {MAX_BATCH_SIZE:,}, not {batch_size!r}")
    sql = (
        f"SELECT MIN({_column(key)}) AS first_key, MAX({key}) AS last_key, COUNT(*) AS size FROM ("  # noqa: S608
        f"SELECT {key}, (ROW_NUMBER() OVER (ORDER BY {key}) - 1) / {batch_size} AS batch "
        f"FROM ({_subquery(audience_sql)}) AS audience) AS numbered GROUP BY batch ORDER BY batch"
    )
    with closing(db_hook(conn_id).get_conn()) as conn, closing(conn.cursor()) as cursor:
        rows = fetch_dicts(cursor, sql)
    return [
        Batch(number=number, first_key=row["first_key"], last_key=row["last_key"], size=int(row["size"]))
        for number, row in enumerate(rows)
    ]


def read_batch(
    conn_id: str,
    audience_sql: str,
    batch: Batch,
    *,
    key: str = "id",
    boolean_columns: Collection[str] = DEFAULT_BOOLEAN_COLUMNS,
) -> list[Row]:
    """The rows of ``audience_sql`` in ``batch``, in key order, with ``boolean_columns`` as real booleans."""
    hook = db_hook(conn_id)
    ph = hook.placeholder
    sql = (
        f"SELECT * FROM ({_subquery(audience_sql)}) AS audience "  # noqa: S608
        f"WHERE {_column(key)} BETWEEN {ph} AND {ph} ORDER BY {key}"
    )
    return read_profiles(hook, sql, (batch["first_key"], batch["last_key"]), boolean_columns=boolean_columns, key=key)


def _column(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise CampaignConfigError(f"Batch key {name!r} must be a plain column name")
    return name


def _subquery(sql: str) -> str:
    text = sql.strip()
    if not text or text.endswith(";"):
        raise CampaignConfigError("The audience query must be one SELECT statement without a trailing semicolon")
    return text
