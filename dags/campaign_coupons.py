"""Spring coupons: the External API activity's tutorial flow, batched for any audience size.

A query selects the audience. The distinct zip codes of the profiles with consent are posted
to the coupon generator, which works as an async job: it answers 202 with a status URL, the
task defers while the triggerer polls it, and the coupons (one per zip code, a paged list)
are fetched once the job is done. Each batch of profiles (one mapped task instance per
``batch_size`` profiles) then joins its coupon, renders a localized message (it, fr, nl, en)
and delivers it by SMTP. If the coupon request or the job fails, the failure branch sends
every batch a message without a coupon instead.

Trigger with ``{"demo_fail": "job_failed"}`` (or ``"500"``) to see the failure branch against the demo API.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import Param, dag

from airflow_campaign_provider.campaign.tasks import deliver_batch, plan_batches, query_rows
from airflow_campaign_provider.operators.external_api import ExternalApiOperator

TEMPLATES = Path(__file__).parent / "templates"
AUDIENCE_SQL = "SELECT id, email, first_name, locale, zip, region, segment, email_consent FROM campaign_profiles"
ZIP_CODES_SQL = "SELECT DISTINCT zip FROM campaign_profiles WHERE email_consent ORDER BY zip"
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
def campaign_coupons() -> None:
    coupons = ExternalApiOperator(
        task_id="fetch_coupons",
        conn_id="campaign_demo_oauth",
        endpoint="coupon-batches",
        headers=DEMO_FAIL_HEADER,
        # The generator answers 202 with a Location; the triggerer polls it, the worker slot is free meanwhile.
        job={"result_url": "$.links.result", "poll_interval": 1, "timeout": 600},
        pagination={"type": "link_header"},
        deferrable=True,
        idempotency_key=True,
        inbound={
            "rows": query_rows.override(task_id="select_zip_codes")(ZIP_CODES_SQL),
            "columns": ["zip"],
            "params": {"campaign": "spring"},
            "add_count": True,
        },
        outbound={
            "records": "$.data[*]",
            "columns": [
                {"name": "zip", "path": "zip", "type": "text", "required": True},
                {"name": "code", "path": "coupon.code", "type": "text", "max_length": 32, "required": True},
                {"name": "discount", "path": "coupon.discount", "type": "integer"},
                {"name": "valid_until", "path": "valid_until", "type": "date"},
            ],
        },
        failure_branch="plan_fallback_batches",
    )
    batch_size = "{{ params.batch_size }}"
    coupon_batches = plan_batches.override(task_id="plan_coupon_batches")(AUDIENCE_SQL, batch_size)
    fallback_batches = plan_batches.override(task_id="plan_fallback_batches")(AUDIENCE_SQL, batch_size)
    coupons >> [coupon_batches, fallback_batches]

    # Only the zip codes of profiles with consent were asked about: the others get the message without a coupon.
    deliver_batch.override(task_id="deliver_coupons").partial(
        audience_sql=AUDIENCE_SQL,
        campaign=coupons.output,
        join_key="zip",
        prefix="coupon_",
        match_column="coupon_code",
        templates=str(TEMPLATES / "coupons"),
        fallback_templates=str(TEMPLATES / "coupons_fallback"),
        smtp_conn_id="smtp_demo",
    ).expand(batch=coupon_batches)
    deliver_batch.override(task_id="deliver_fallback").partial(
        audience_sql=AUDIENCE_SQL, templates=str(TEMPLATES / "coupons_fallback"), smtp_conn_id="smtp_demo"
    ).expand(batch=fallback_batches)


campaign_coupons()
