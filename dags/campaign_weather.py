"""Weather: a message that fits the forecast of each profile's region.

Fetch the forecast for the regions of the audience (API-key auth), pick a content
variant per region from its condition (rain, sun, snow, cloud), personalize and deliver.
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
def campaign_weather() -> None:
    @task
    def regions(profiles: list[dict[str, Any]]) -> str:
        from airflow_campaign_provider.campaign.audience import distinct, with_consent

        return ",".join(distinct(with_consent(profiles), "region"))

    audience = select_audience(AUDIENCE_SQL)
    forecasts = ExternalApiOperator(
        task_id="fetch_weather",
        conn_id="campaign_demo_apikey",
        endpoint="weather",
        query_params={"regions": regions(audience)},
        headers=DEMO_FAIL_HEADER,
        outbound={
            "records": "$.forecasts[*]",
            "columns": [
                {"name": "region", "type": "text", "required": True},
                {"name": "condition", "type": "text", "required": True},
                {"name": "temp_c", "type": "integer"},
                {"name": "date", "type": "date"},
            ],
        },
    )

    @task
    def personalize_weather(profiles: list[dict[str, Any]], forecasts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from airflow_campaign_provider.campaign.audience import join_by, partition
        from airflow_campaign_provider.campaign.personalize import personalize

        # The variant is the region's condition: templates/weather/<condition>/<locale>.j2.
        with_forecast, _ = partition(join_by(profiles, forecasts, "region", prefix="weather_"), "weather_condition")
        return list(personalize(with_forecast, TEMPLATES / "weather", variant_field="weather_condition"))

    deliver_messages(personalize_weather(audience, forecasts.output), smtp_conn_id="smtp_demo")


campaign_weather()
