"""Offers: the best current offer for each customer segment.

Fetch the latest offers, validated against a JSON Schema and mapped into typed rows,
pick the best offer per segment, personalize and deliver. The fetch task updates the
``campaign_demo_offers`` asset, so a downstream DAG can be scheduled on fresh offers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import Asset, Param, dag, task

from airflow_campaign_provider.campaign.tasks import deliver_messages, select_audience
from airflow_campaign_provider.operators.external_api import ExternalApiOperator

TEMPLATES = Path(__file__).parent / "templates"
AUDIENCE_SQL = "SELECT id, email, first_name, locale, zip, region, segment, email_consent FROM campaign_profiles"
# Test-only: the demo API fails on purpose (500, 503, html, invalid, slow) as the X-Demo-Fail header asks.
# Drop the param and the header when you point a copy of this DAG at your own API.
DEMO_FAIL = Param(
    None,
    type=["null", "string"],
    enum=[None, "500", "503", "html", "invalid", "slow"],
    title="Demo API failure switch",
    description="Make the demo API fail, to see the failure handling. Leave empty for a normal run.",
)
DEMO_FAIL_HEADER = {"X-Demo-Fail": "{{ params.demo_fail or '' }}"}
OFFERS = Asset("campaign_demo_offers")


@dag(schedule=None, catchup=False, tags=["campaign", "demo"], params={"demo_fail": DEMO_FAIL})
def campaign_offers() -> None:
    offers = ExternalApiOperator(
        task_id="fetch_offers",
        conn_id="campaign_demo_oauth",
        endpoint="offers",
        headers=DEMO_FAIL_HEADER,
        response_schema="schemas/offers.schema.json",
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

    @task
    def personalize_offers(profiles: list[dict[str, Any]], best: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from airflow_campaign_provider.campaign.audience import join_by, partition
        from airflow_campaign_provider.campaign.personalize import personalize

        with_offer, _ = partition(join_by(profiles, best, "segment", prefix="offer_"), "offer_id")
        return list(personalize(with_offer, TEMPLATES / "offers"))

    deliver_messages(
        personalize_offers(select_audience(AUDIENCE_SQL), best_offers(offers.output)), smtp_conn_id="smtp_demo"
    )


campaign_offers()
