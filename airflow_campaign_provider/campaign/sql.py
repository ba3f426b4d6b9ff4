"""Airflow's common SQL layer for the campaign blocks: a ``DbApiHook`` from a connection id, rows as dicts.

Any connection whose hook is a ``DbApiHook`` works (SQLite, PostgreSQL, MySQL, ...): the
provider of that connection type must be installed where the task runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_campaign_provider.campaign.errors import CampaignConfigError

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook


def db_hook(conn_id: str) -> DbApiHook:
    """The ``DbApiHook`` of ``conn_id``.

    :raises CampaignConfigError: the connection's type has no SQL hook (an HTTP connection, say).
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(conn_id).get_hook()  # type: ignore[no-untyped-call]
    if not isinstance(hook, DbApiHook):
        raise CampaignConfigError(
            f"Connection {conn_id!r} is of a type whose hook ({type(hook).__name__}) is not a SQL hook (DbApiHook)"
        )
    return hook


def fetch_dicts(cursor: Any, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Run ``sql`` on a DB-API ``cursor`` and return its rows as dicts keyed by column name."""
    cursor.execute(sql, tuple(parameters))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
