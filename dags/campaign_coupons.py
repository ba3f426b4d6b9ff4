"""Spring coupons: the External API activity's tutorial flow.

Select the audience, post the distinct zip codes of the profiles with consent to the
coupon API, join one coupon per zip code to the profiles, render a localized message
for each (it, fr, nl, en) and deliver it by SMTP. If the coupon request fails, the
failure branch sends a message without a coupon instead.

Trigger with ``{"demo_fail": "500"}`` to see the failure branch against the demo API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, task

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


@dag(schedule=None, catchup=False, tags=["campaign", "demo"], params={"demo_fail": DEMO_FAIL})
def campaign_coupons() -> None:
    @task
    def zip_codes(profiles: list[dict[str, Any]]) -> list[dict[str, str]]:
        from airflow_campaign_provider.campaign.audience import distinct, with_consent

        return [{"zip": zip_code} for zip_code in distinct(with_consent(profiles), "zip")]

    audience = select_audience(AUDIENCE_SQL)
    coupons = ExternalApiOperator(
        task_id="fetch_coupons",
        conn_id="campaign_demo_oauth",
        endpoint="coupons",
        headers=DEMO_FAIL_HEADER,
        inbound={"rows": zip_codes(audience), "columns": ["zip"], "params": {"campaign": "spring"}, "add_count": True},
        outbound={
            "records": "$.data[*]",
            "columns": [
                {"name": "zip", "path": "zip", "type": "text", "required": True},
                {"name": "code", "path": "coupon.code", "type": "text", "max_length": 32, "required": True},
                {"name": "discount", "path": "coupon.discount", "type": "integer"},
                {"name": "valid_until", "path": "valid_until", "type": "date"},
            ],
        },
        failure_branch="personalize_fallback",
    )

    @task
    def personalize_coupons(profiles: list[dict[str, Any]], coupons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from airflow_campaign_provider.campaign.audience import join_by, partition
        from airflow_campaign_provider.campaign.personalize import personalize

        # Only the zip codes of profiles with consent were asked about: the others get no coupon.
        with_coupon, without = partition(join_by(profiles, coupons, "zip", prefix="coupon_"), "coupon_code")
        return [
            *personalize(with_coupon, TEMPLATES / "coupons"),
            *personalize(without, TEMPLATES / "coupons_fallback"),
        ]

    @task
    def personalize_fallback(profiles: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from airflow_campaign_provider.campaign.personalize import personalize

        return list(personalize(profiles, TEMPLATES / "coupons_fallback"))

    coupon_messages = personalize_coupons(audience, coupons.output)
    fallback_messages = personalize_fallback(audience)
    coupons >> fallback_messages
    deliver_messages.override(task_id="deliver_coupons")(coupon_messages, smtp_conn_id="smtp_demo")
    deliver_messages.override(task_id="deliver_fallback")(fallback_messages, smtp_conn_id="smtp_demo")


campaign_coupons()
