"""Ready-made TaskFlow tasks for campaign DAGs, built on the tested functions of this package.

Call them inside a DAG like any ``@task``; use ``.override(task_id=...)`` to name them.
The heavy imports (Jinja, the SQL and SMTP providers) happen when the task runs, not when
the DAG file is parsed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task

if TYPE_CHECKING:
    from airflow_campaign_provider.campaign.delivery import DeliveryReport

AUDIENCE_CONN_ID = "campaign_audience_db"
"""The connection the audience is read from: any SQL connection (SQLite, PostgreSQL, ...)."""
SMTP_CONN_ID = "smtp_default"
"""Airflow's own default SMTP connection id."""


@task
def select_audience(sql: str, conn_id: str = AUDIENCE_CONN_ID) -> list[dict[str, Any]]:
    """The rows of the audience query ``sql`` on the SQL connection ``conn_id`` (see ``campaign.audience_db``)."""
    from airflow_campaign_provider.campaign.audience_db import read_profiles

    return read_profiles(conn_id, sql)


# A retry resumes from the delivery ledger, so retrying a half-sent batch never sends a message twice.
@task(retries=2, retry_delay=timedelta(seconds=5), multiple_outputs=False)
def deliver_messages(messages: list[dict[str, Any]], smtp_conn_id: str = SMTP_CONN_ID) -> DeliveryReport:
    """Deliver rendered messages by SMTP, exactly once per profile and DAG run (see ``campaign.delivery``)."""
    from airflow_campaign_provider.campaign.delivery import deliver

    context = get_current_context()
    return deliver(messages, smtp_conn_id=smtp_conn_id, dag_id=context["dag"].dag_id, run_id=context["run_id"])
