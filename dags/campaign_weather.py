"""Weather: a message that fits the forecast of each profile's region, batched for any audience size.

Fetch the forecast for the regions of the audience with consent (API-key auth); each batch of
profiles joins its region's forecast, picks a content variant from the condition (rain, sun,
snow, cloud), personalizes and delivers.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import Param, dag, task

from airflow_campaign_provider.campaign.tasks import deliver_batch, plan_batches, query_rows
from airflow_campaign_provider.operators.external_api import ExternalApiOperator

TEMPLATES = Path(__file__).parent / "templates"
AUDIENCE_SQL = "SELECT id, email, first_name, locale, zip, region, segment, email_consent FROM campaign_profiles"
REGIONS_SQL = "SELECT DISTINCT region FROM campaign_profiles WHERE email_consent ORDER BY region"
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
def campaign_weather() -> None:
    @task
    def region_list(rows: list[dict[str, str]]) -> str:
        return ",".join(row["region"] for row in rows)

    forecasts = ExternalApiOperator(
        task_id="fetch_weather",
        conn_id="campaign_demo_apikey",
        endpoint="weather",
        query_params={"regions": region_list(query_rows.override(task_id="select_regions")(REGIONS_SQL))},
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
    # The variant is the region's condition: templates/weather/<condition>/<locale>.j2.
    deliver_batch.partial(
        audience_sql=AUDIENCE_SQL,
        campaign=forecasts.output,
        join_key="region",
        prefix="weather_",
        match_column="weather_condition",
        templates=str(TEMPLATES / "weather"),
        variant_field="weather_condition",
        smtp_conn_id="smtp_demo",
    ).expand(batch=plan_batches(AUDIENCE_SQL, "{{ params.batch_size }}"))


campaign_weather()
