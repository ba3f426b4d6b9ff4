"""Offers: the best current offer for each customer segment, batched for any audience size.

Fetch the whole paged catalogue of the latest offers (``Link: rel="next"`` headers), each page
validated against a JSON Schema and mapped into typed rows, pick
the best offer per segment; each batch of profiles joins its segment's offer, personalizes
and delivers. The fetch task updates the ``campaign_demo_offers`` asset, so a downstream DAG
can be scheduled on fresh offers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import Asset, Param, dag, task

from airflow_campaign_provider.campaign.tasks import deliver_batch, plan_batches
from airflow_campaign_provider.operators.external_api import ExternalApiOperator

TEMPLATES = Path(__file__).parent / "templates"
OFFERS = Asset("campaign_demo_offers")
AUDIENCE_SQL = "SELECT id, email, first_name, locale, zip, region, segment, email_consent FROM campaign_profiles"
BATCH_SIZE = Param(5000, type="integer", minimum=1, maximum=100_000, title="Profiles per delivery batch")
# Test-only: the demo API fails on purpose (500, 503, html, invalid, slow, job_failed) as the X-Demo-Fail header asks.
# Drop the param and the header when you point a copy of this DAG at your own API.
DEMO_FAIL = Param(
    None,
    type=["null", "string"],
    enum=[None, "500", "503", "html", "invalid", "slow", "job_failed"],
    title="Demo API failure switch",
    description="Make the demo API fail, to see the failure handling. Leave empty for a normal run.",
)
DEMO_FAIL_HEADER = {"X-Demo-Fail": "{{ params.demo_fail or '' }}"}


@dag(
    schedule=None,
    catchup=False,
    tags=["campaign", "demo"],
    params={"batch_size": BATCH_SIZE, "demo_fail": DEMO_FAIL},
)
def campaign_offers() -> None:
    offers = ExternalApiOperator(
        task_id="fetch_offers",
        conn_id="campaign_demo_oauth",
        endpoint="offers",
        headers=DEMO_FAIL_HEADER,
        response_schema="schemas/offers.schema.json",
        pagination={"type": "link_header"},
        outbound={
            "records": "$.offers[*]",
            "columns": [
                {"name": "id", "type": "text", "required": True},
                {"name": "segment", "type": "text", "required": True},
                {"name": "title", "type": "text", "max_length": 120},
                {"name": "discount", "type": "float", "on_error": "reject_row"},
                {"name": "valid_from", "type": "date"},
                {"name": "valid_until", "type": "date", "on_error": "ignore_value"},
            ],
        },
        outlets=[OFFERS],
    )

    @task
    def best_offers(offers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from airflow_campaign_provider.campaign.audience import best_by

        return best_by(offers, "segment", "discount")

    deliver_batch.partial(
        audience_sql=AUDIENCE_SQL,
        campaign=best_offers(offers.output),
        join_key="segment",
        prefix="offer_",
        match_column="offer_id",
        templates=str(TEMPLATES / "offers"),
        smtp_conn_id="smtp_demo",
    ).expand(batch=plan_batches(AUDIENCE_SQL, "{{ params.batch_size }}"))


campaign_offers()
