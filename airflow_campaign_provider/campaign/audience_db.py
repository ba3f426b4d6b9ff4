"""Read a campaign audience from a database with SQL, through Airflow's common SQL layer.

"A query selects the audience": the DAG owns the query, this module runs it on the
connection's ``DbApiHook`` and hands back plain row dicts. Databases without a boolean
type (SQLite) return consent as 0 or 1; the columns named in ``boolean_columns`` are
turned back into ``True``/``False``, so the strict consent rule (exactly ``True``) holds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

from airflow_campaign_provider.campaign.audience import Row
from airflow_campaign_provider.campaign.errors import AudienceDataError
from airflow_campaign_provider.campaign.sql import db_hook, fetch_dicts

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

DEFAULT_BOOLEAN_COLUMNS = ("email_consent",)


def read_profiles(
    conn: str | DbApiHook,
    sql: str,
    parameters: Sequence[Any] = (),
    *,
    boolean_columns: Collection[str] = DEFAULT_BOOLEAN_COLUMNS,
    key: str = "id",
) -> list[Row]:
    """The rows of ``sql`` on a SQL connection (its id, or its hook) as dicts, ``boolean_columns`` as booleans.

    :raises AudienceDataError: a boolean column holds something other than a boolean, 0, 1 or NULL;
        the message names the row by its ``key`` column.
    """
    hook = db_hook(conn) if isinstance(conn, str) else conn
    with closing(hook.get_conn()) as db, closing(db.cursor()) as cursor:
        rows = fetch_dicts(cursor, sql, parameters)
    for row in rows:
        for column in boolean_columns:
            if column in row:
                row[column] = as_boolean(row[column], column, row.get(key))
    return rows


def as_boolean(value: object, column: str, row_id: object = None) -> bool:
    """``True`` for true or 1, ``False`` for false, 0 or NULL; anything else (``"yes"``, 2) is a data error."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    raise AudienceDataError(f"Column {column!r} of audience row {row_id!r} is {value!r}, not a boolean, 0 or 1")
