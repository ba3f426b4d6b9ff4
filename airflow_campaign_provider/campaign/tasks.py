"""Ready-made TaskFlow tasks for campaign DAGs, built on the tested functions of this package.

Call them inside a DAG like any ``@task``; use ``.override(task_id=...)`` to name them. The
heavy imports (Jinja, the SQL and SMTP providers) happen when a task runs, not when the DAG
file is parsed. What goes through XCom stays small whatever the audience's size: query
results capped at ``max_rows``, batch descriptors and delivery reports. The profiles and the
rendered messages never do; each batch reads its own slice from the database.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from airflow.sdk import get_current_context, task

from airflow_campaign_provider.campaign.errors import CampaignConfigError
from airflow_campaign_provider.clock import SystemClock

if TYPE_CHECKING:
    from airflow_campaign_provider.campaign.batches import Batch
    from airflow_campaign_provider.campaign.delivery import DeliveryReport

AUDIENCE_CONN_ID = "campaign_audience_db"
"""The connection the audience is read from, and the ledger kept in: any SQL connection (SQLite, PostgreSQL)."""
SMTP_CONN_ID = "smtp_default"
"""Airflow's own default SMTP connection id."""
DEFAULT_BATCH_SIZE = 5000
DEFAULT_MAX_ROWS = 1000


class BatchReport(TypedDict):
    """What one :func:`deliver_batch` did; plain JSON for XCom."""

    batch: int
    profiles: int
    delivery: DeliveryReport
    seconds: dict[str, float]
    """Wall-clock seconds spent reading the slice, rendering the messages and sending them."""


@task
def query_rows(sql: str, conn_id: str = AUDIENCE_CONN_ID, max_rows: int = DEFAULT_MAX_ROWS) -> list[dict[str, Any]]:
    """The rows of a small query (the distinct zip codes, say) for XCom.

    :raises CampaignConfigError: more than ``max_rows`` rows came back: query per batch instead.
    """
    from airflow_campaign_provider.campaign.audience_db import read_profiles

    rows = read_profiles(conn_id, sql)
    if len(rows) > max_rows:
        raise CampaignConfigError(
            f"The query returned {len(rows):,} rows, more than max_rows={max_rows:,}: XCom is for small results; "
            "read large ones per batch (plan_batches and deliver_batch)"
        )
    return rows


@task
def plan_batches(
    audience_sql: str, batch_size: int | str = DEFAULT_BATCH_SIZE, conn_id: str = AUDIENCE_CONN_ID, key: str = "id"
) -> list[Batch]:
    """Batch descriptors for ``audience_sql`` (see ``campaign.batches``); ``batch_size`` may be a rendered param."""
    from airflow_campaign_provider.campaign.batches import plan_batches as plan

    return plan(conn_id, audience_sql, _whole_number(batch_size), key=key)


# A retry resumes from the delivery ledger: it takes over its earlier try's claims and sends only what is missing.
@task(retries=2, retry_delay=timedelta(seconds=5))
def deliver_batch(
    batch: Batch,
    *,
    audience_sql: str,
    templates: str,
    campaign: list[dict[str, Any]] | None = None,
    join_key: str | None = None,
    prefix: str = "",
    match_column: str | None = None,
    fallback_templates: str | None = None,
    variant_field: str | None = None,
    template_context: dict[str, Any] | None = None,
    audience_conn_id: str = AUDIENCE_CONN_ID,
    ledger_conn_id: str | None = None,
    smtp_conn_id: str = SMTP_CONN_ID,
    lease_seconds: float | None = None,
) -> BatchReport:
    """Read one batch of the audience, join the campaign rows, render and send it: map this over ``plan_batches``.

    :param campaign: small rows from an API (coupons, forecasts), joined to each profile on ``join_key``
        with their columns prefixed by ``prefix``; a profile matched when its ``match_column`` is set.
    :param templates: the template set of matched profiles (all profiles without ``campaign``).
    :param fallback_templates: the template set of unmatched profiles; without it they get no message.
    :param template_context: what every message may use (a match and its line-ups, say): small, through XCom.
    :param ledger_conn_id: the SQL connection of the delivery ledger; defaults to ``audience_conn_id``.
    """
    from airflow_campaign_provider.campaign.audience import join_by, partition
    from airflow_campaign_provider.campaign.batches import read_batch
    from airflow_campaign_provider.campaign.delivery import deliver
    from airflow_campaign_provider.campaign.ledger import DEFAULT_LEASE_SECONDS, Claimer, SqlDeliveryLedger
    from airflow_campaign_provider.campaign.personalize import personalize

    context = get_current_context()
    ti = context["ti"]
    clock = SystemClock()
    started = clock.now()
    profiles = read_batch(audience_conn_id, audience_sql, batch)
    read_done = clock.now()
    if campaign is not None:
        if not (join_key and match_column):
            raise CampaignConfigError("deliver_batch needs join_key and match_column with campaign rows")
        matched, unmatched = partition(join_by(profiles, campaign, join_key, prefix=prefix), match_column)
    else:
        matched, unmatched = profiles, []
    messages = personalize(matched, templates, context=template_context, variant_field=variant_field)
    if fallback_templates is not None:
        messages += personalize(unmatched, fallback_templates, context=template_context)
    render_done = clock.now()
    claimer = Claimer(f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}", ti.try_number)
    with SqlDeliveryLedger(
        ledger_conn_id or audience_conn_id, lease_seconds=lease_seconds or DEFAULT_LEASE_SECONDS, clock=clock
    ) as ledger:
        report = deliver(
            messages,
            smtp_conn_id=smtp_conn_id,
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            ledger=ledger,
            claimer=claimer,
            clock=clock,
        )
    return BatchReport(
        batch=batch["number"],
        profiles=len(profiles),
        delivery=report,
        seconds={
            "read": round(read_done - started, 3),
            "render": round(render_done - read_done, 3),
            "send": round(clock.now() - render_done, 3),
        },
    )


def _whole_number(value: int | str) -> int:
    """``value`` as an int; a rendered param arrives as a string of digits."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise CampaignConfigError(f"Batch size must be a whole number, not {value!r}")
