"""Tonight's line-up: a nested sports API mapped with its context, guarded, and alerted on.

The demo API answers match → teams → players. One call maps it into two tables: ``match``
(one row) and ``players`` (one row per player, with its team's name and side from the
enclosing record, ``%``, and the kick-off from the document root, ``$$``). Data-quality guards
make a thin or broken line-up a request failure: the failure branch then sends a message
without it, and ``on_failure_branch`` e-mails the campaign team, so the run never stays
silently green. Each batch of profiles gets the line-ups in a localized newsletter.

Trigger with ``{"demo_fail": "invalid"}`` to see the guards take the failure branch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_campaign_provider.campaign.tasks import deliver_batch, plan_batches
from airflow_campaign_provider.operators.external_api import ExternalApiOperator

TEMPLATES = Path(__file__).parent / "templates"
AUDIENCE_SQL = "SELECT id, email, first_name, locale, zip, region, segment, email_consent FROM campaign_profiles"
BATCH_SIZE = Param(5000, type="integer", minimum=1, maximum=100_000, title="Profiles per delivery batch")
EVENT = Param("Milano Lions v Roma Wolves", type="string", minLength=1, maxLength=100, title="The match")
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


def alert_campaign_team(context: Any, error: Exception) -> None:
    """E-mail the campaign team when the line-up cannot be used (the smtp provider's notifier, imported late)."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    SmtpNotifier(
        to="campaign-team@example.com",
        from_email="campaign@example.com",
        smtp_conn_id="smtp_demo",
        subject="Line-up unavailable for {{ dag.dag_id }}: the fallback newsletter goes out",
        html_content="<p>The line-up could not be used: {{ exception }}</p><p>Run {{ run_id }}.</p>",
    )({**context, "exception": error})  # calling a notifier renders its templates, then sends


@dag(
    schedule=None,
    catchup=False,
    tags=["campaign", "demo"],
    params={"batch_size": BATCH_SIZE, "event": EVENT, "demo_fail": DEMO_FAIL},
)
def campaign_lineup() -> None:
    lineup = ExternalApiOperator(
        task_id="fetch_lineup",
        conn_id="campaign_demo_apikey",
        endpoint="lineup",
        query_params={"event": "{{ params.event }}"},
        headers=DEMO_FAIL_HEADER,
        outbound={
            "tables": {
                "match": {
                    "records": "$.match",
                    "columns": [
                        {"name": "event", "type": "text", "required": True},
                        {"name": "kickoff", "type": "datetime", "timezone": "Europe/Rome", "required": True},
                        {"name": "venue", "path": "venue.name", "type": "text"},
                        {"name": "home", "path": "$.teams[0].name", "type": "text", "required": True},
                        {"name": "away", "path": "$.teams[1].name", "type": "text", "required": True},
                    ],
                    "min_rows": 1,
                },
                "players": {
                    "records": "$.match.teams[*].players[*]",
                    "columns": [
                        {"name": "team", "path": "%.name", "type": "text", "required": True},
                        {"name": "side", "path": "%.side", "type": "text"},
                        {"name": "number", "type": "integer", "required": True},
                        {"name": "name", "type": "text", "required": True},
                        {"name": "position", "type": "text"},
                        {"name": "kickoff", "path": "$$.match.kickoff", "type": "datetime", "timezone": "UTC"},
                    ],
                    "min_rows": 22,  # two teams of eleven, or the newsletter would be wrong
                    "max_rejected": 0,
                    "strict_columns": True,
                },
            }
        },
        failure_branch="plan_fallback_batches",
        on_failure_branch=alert_campaign_team,
    )

    @task
    def newsletter(match: list[dict[str, Any]], players: list[dict[str, Any]]) -> dict[str, Any]:
        """What every newsletter shows: the match, and each side's players in shirt order."""
        [game] = match

        def squad(side: str) -> list[str]:
            rows = sorted((p for p in players if p["side"] == side), key=lambda p: p["number"])
            return [f"{p['number']} {p['name']}" for p in rows]

        return {"match": {**game, "kickoff_time": game["kickoff"][11:16]}, "home": squad("home"), "away": squad("away")}

    batch_size = "{{ params.batch_size }}"
    batches = plan_batches.override(task_id="plan_lineup_batches")(AUDIENCE_SQL, batch_size)
    fallback_batches = plan_batches.override(task_id="plan_fallback_batches")(AUDIENCE_SQL, batch_size)
    lineup >> [batches, fallback_batches]
    deliver_batch.override(task_id="deliver_lineup").partial(
        audience_sql=AUDIENCE_SQL,
        templates=str(TEMPLATES / "lineup"),
        template_context=newsletter(lineup.output["match"], lineup.output["players"]),
        smtp_conn_id="smtp_demo",
    ).expand(batch=batches)
    deliver_batch.override(task_id="deliver_fallback").partial(
        audience_sql=AUDIENCE_SQL, templates=str(TEMPLATES / "lineup_fallback"), smtp_conn_id="smtp_demo"
    ).expand(batch=fallback_batches)


campaign_lineup()
