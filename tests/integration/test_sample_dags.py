"""The sample DAGs end to end in real Airflow, against the demo HTTPS API and the real SMTP sink."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from demo import switch
from demo.audience import load_audience
from demo.environment import DemoEnvironment
from tests.support.airflow_run import DagRunResult, run_dag

pytestmark = pytest.mark.integration

REPO_DAGS = Path(__file__).resolve().parents[2] / "dags"
SAMPLE_DAGS = ("campaign_coupons", "campaign_lineup", "campaign_offers", "campaign_weather")
PROFILES: dict[str, dict[str, Any]] = {str(p["id"]): dict(p) for p in load_audience()}
BY_EMAIL = {p["email"]: p for p in PROFILES.values()}
CONSENTING = {p["email"] for p in PROFILES.values() if p["email_consent"]}
# What only running a task needs; parsing a DAG file must not pay for it.
RUNTIME_ONLY = (
    "requests",
    "airflow_campaign_provider.hooks.external_api",
    "airflow_campaign_provider.campaign.personalize",
    "airflow_campaign_provider.campaign.delivery",
    "airflow.providers.smtp.hooks.smtp",
    "airflow.providers.common.sql.hooks.sql",
    "airflow.providers.sqlite.hooks.sqlite",
    "airflow_campaign_provider.campaign.audience_db",
)


@pytest.fixture(scope="module")
def demo(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEnvironment]:
    """The demo environment, with the sample DAGs (and their templates) in Airflow's dags folder."""
    for name in SAMPLE_DAGS:
        shutil.copyfile(REPO_DAGS / f"{name}.py", airflow_db / f"{name}.py")
    for folder in ("templates", "schemas"):
        if not (airflow_db / folder).exists():
            (airflow_db / folder).symlink_to(REPO_DAGS / folder)
    with DemoEnvironment(tmp_path_factory.mktemp("demo")) as environment:
        yield environment


@pytest.fixture
def campaign(demo: DemoEnvironment, monkeypatch: pytest.MonkeyPatch, airflow_db: Path):
    """Run a sample DAG and return its result and the messages the SMTP sink received during the run."""
    for name, value in demo.env_vars().items():
        monkeypatch.setenv(name, value)

    def run(dag_id: str, **kwargs: Any) -> tuple[DagRunResult, list[EmailMessage]]:
        before = len(demo.smtp.messages())
        result = run_dag(airflow_db / f"{dag_id}.py", dag_id, **kwargs)
        return result, demo.smtp.messages()[before:]

    return run


def recipients(messages: list[EmailMessage]) -> Counter[str]:
    return Counter(str(m["To"]) for m in messages)


def body(message: EmailMessage) -> str:
    part = message.get_body(("html", "plain"))
    assert part is not None
    return str(part.get_content())


def delivered(result: DagRunResult, task_id: str) -> dict[str, int]:
    """The delivery reports of every batch of ``task_id``, added up."""
    total: Counter[str] = Counter()
    for report in result.mapped_xcoms(task_id):
        total.update(report["delivery"])
    return dict(total)


def test_coupons_one_localized_message_with_the_coupon_per_consenting_profile(campaign) -> None:
    result, messages = campaign("campaign_coupons", run_conf={"batch_size": 500})
    assert result.state == "success", result.task_states
    assert result.task_states["plan_fallback_batches"] == "skipped"
    assert result.task_states["deliver_fallback"] == "skipped"

    assert recipients(messages) == Counter(CONSENTING), "every consenting profile exactly once, nobody else"
    reports = result.mapped_xcoms("deliver_coupons")
    assert [(r["batch"], r["profiles"]) for r in reports] == [(0, 500), (1, 500), (2, 200)]
    assert delivered(result, "deliver_coupons") == {
        "sent": len(CONSENTING),
        "skipped_already_sent": 0,
        "skipped_no_consent": len(PROFILES) - len(CONSENTING),
        "skipped_invalid_address": 0,
    }
    assert result.xcom("plan_coupon_batches") == [
        {"number": 0, "first_key": 1, "last_key": 500, "size": 500},
        {"number": 1, "first_key": 501, "last_key": 1000, "size": 500},
        {"number": 2, "first_key": 1001, "last_key": 1200, "size": 200},
    ]
    coupons = {row["zip"]: row for row in result.xcom("fetch_coupons")}
    summary = result.xcom("fetch_coupons", "summary")
    assert summary["rows"] == len(coupons)
    assert summary["job"]["status"] == "done", "the coupons came from an async job the task deferred on"
    assert summary["pages"] == 3, "29 coupons, 10 a page"
    openings = {"it": "ecco il tuo buono", "fr": "votre bon de", "nl": "je kortingscode", "en": "coupon is here"}
    for message in messages:
        profile = BY_EMAIL[str(message["To"])]
        coupon = coupons[profile["zip"]]
        assert coupon["code"] in body(message)
        assert str(message["Subject"]).startswith(f"{profile['first_name']}, ")
        assert openings[profile["locale"]] in str(message["Subject"])


@pytest.mark.parametrize(("switch_value", "error_type"), [("500", "HttpStatusError"), ("job_failed", "JobFailedError")])
def test_coupons_failure_switch_sends_the_fallback_and_skips_the_coupon_path(
    campaign, switch_value, error_type
) -> None:
    result, messages = campaign("campaign_coupons", run_conf={"demo_fail": switch_value})
    assert result.state == "success", result.task_states
    assert result.task_states["fetch_coupons"] == "success"
    assert result.task_states["plan_coupon_batches"] == "skipped"
    assert result.task_states["deliver_coupons"] == "skipped"
    assert result.task_states["plan_fallback_batches"] == "success"
    assert result.task_states["deliver_fallback"] == "success"
    assert result.xcom("fetch_coupons", "error")["type"] == error_type
    assert recipients(messages) == Counter(CONSENTING)
    fallback = {
        "it": "un piccolo pensiero",
        "fr": "une petite attention",
        "nl": "een kleine attentie",
        "en": "a little",
    }
    for message in messages:
        profile = BY_EMAIL[str(message["To"])]
        assert fallback[profile["locale"]] in str(message["Subject"])
        assert "SPRING-" not in body(message)


def test_weather_picks_the_variant_of_each_region(campaign) -> None:
    result, messages = campaign("campaign_weather")
    assert result.state == "success", result.task_states
    assert recipients(messages) == Counter(CONSENTING)
    conditions = {row["region"]: row["condition"] for row in result.xcom("fetch_weather")}
    assert set(conditions) == {p["region"] for p in PROFILES.values() if p["email_consent"]}
    english = {
        "rain": "Rainy days ahead",
        "sun": "Sunshine is coming",
        "snow": "Snow on the way",
        "cloud": "A grey day",
    }
    english_messages = [m for m in messages if BY_EMAIL[str(m["To"])]["locale"] == "en"]
    assert english_messages
    for message in english_messages:
        region = BY_EMAIL[str(message["To"])]["region"]
        assert str(message["Subject"]).startswith(english[conditions[region]])


def test_offers_best_offer_per_segment_and_asset_event(campaign) -> None:
    result, messages = campaign("campaign_offers")
    assert result.state == "success", result.task_states
    assert recipients(messages) == Counter(CONSENTING)
    best = {row["segment"]: row["title"] for row in result.xcom("best_offers")}
    assert best == {
        "gold": "Black Friday private sale",
        "silver": "Second item half price",
        "bronze": "Newsletter exclusive",
    }
    for message in messages:
        assert best[BY_EMAIL[str(message["To"])]["segment"]] in str(message["Subject"])
    summary = result.xcom("fetch_offers", "summary")
    assert (summary["pages"], summary["rows"], summary["stopped_by"]) == (3, 9, "no next link")

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "campaign_demo_offers", AssetEvent.source_run_id == result.run_id)
        ).all()
    assert len(events) == 1


def test_lineup_maps_match_teams_and_players_with_their_context_into_a_newsletter(campaign) -> None:
    result, messages = campaign("campaign_lineup")
    assert result.state == "success", result.task_states
    assert result.task_states["deliver_fallback"] == "skipped"
    [match] = result.xcom("fetch_lineup", "match")
    players = result.xcom("fetch_lineup", "players")
    assert len(players) == 22
    assert {p["team"] for p in players} == {match["home"], match["away"]}, "each player has its team's name"
    assert {p["kickoff"] for p in players} == {"2026-11-23T19:45:00+00:00"}, "the kick-off from the root, in UTC"
    assert match["kickoff"] == "2026-11-23T20:45:00+01:00"
    summary = result.xcom("fetch_lineup", "summary")
    assert summary["tables"]["players"]["rows"] == 22
    assert summary["empty_columns"] == []
    assert recipients(messages) == Counter(CONSENTING)
    english = next(m for m in messages if BY_EMAIL[str(m["To"])]["locale"] == "en")
    assert str(english["Subject"]).endswith(f"tonight: {match['home']} v {match['away']}")
    home = sorted((p for p in players if p["side"] == "home"), key=lambda p: p["number"])
    assert f"{home[0]['number']} {home[0]['name']}" in body(english)


def test_a_broken_lineup_takes_the_failure_branch_and_alerts_the_campaign_team(campaign) -> None:
    result, messages = campaign("campaign_lineup", run_conf={"demo_fail": "invalid"})
    assert result.state == "success", result.task_states
    assert result.task_states["deliver_lineup"] == "skipped"
    assert result.task_states["deliver_fallback"] == "success"
    assert result.xcom("fetch_lineup", "error")["type"] == "ResponseMappingError"
    alerts = [m for m in messages if str(m["To"]) == "campaign-team@example.com"]
    assert len(alerts) == 1, "the on_failure_branch notifier e-mailed the campaign team"
    assert "Line-up unavailable for campaign_lineup" in str(alerts[0]["Subject"])
    assert "outbound mapping: the records path" in body(alerts[0]), "the alert says what went wrong"
    assert recipients([m for m in messages if m not in alerts]) == Counter(CONSENTING)


def test_the_preview_cli_maps_a_live_sample_from_the_demo_api(demo) -> None:
    env = {**os.environ, **demo.env_vars()}
    out = subprocess.run(
        [sys.executable, "-m", "airflow_campaign_provider", "preview", "--conn-id", "campaign_demo_apikey",
         "--endpoint", "lineup?event=Milano+Lions+v+Roma+Wolves", "--records", "$.match.teams[*].players[*]"],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    assert '"records": "$.match.teams[*].players[*]"' in out or "'records': '$.match.teams[*].players[*]'" in out
    assert "position" in out
    assert "demo-api-key-2026" not in out


def test_a_delivery_retry_after_a_mid_batch_failure_sends_each_message_exactly_once(campaign, demo) -> None:
    """The relay refuses the 301st message; Airflow retries the task, which sends only the rest."""
    demo.smtp.fail_once_after(300)
    result, messages = campaign("campaign_offers")
    assert result.state == "success", result.task_states
    assert recipients(messages) == Counter(CONSENTING), "every consenting profile got exactly one message"
    report = delivered(result, "deliver_batch")
    assert report["sent"] == len(CONSENTING) - 300, "the retry sent only what the first try had not"
    assert report["skipped_already_sent"] == 300


def test_xcom_carries_campaign_rows_batches_and_reports_never_profiles_or_messages(campaign) -> None:
    result, _ = campaign("campaign_weather", run_conf={"batch_size": 100})
    assert result.state == "success", result.task_states
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.value).where(
                XComModel.dag_id == result.dag_id, XComModel.run_id == result.run_id
            )
        ).all()
    assert len(result.mapped_xcoms("deliver_batch")) == 12
    stored = "".join(str(value) for _, value in rows)
    assert "@example.com" not in stored, "no address, so no profile and no message, goes through XCom"
    assert len(stored) < 12 * 400 + 4000, "the XComs grow with the number of batches only"


def test_the_dags_folder_loads_without_errors_and_parses_light() -> None:
    code = (
        "import sys, time\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO_DAGS)!r})\n"
        "print(sorted(bag.dag_ids)); print(bag.import_errors)\n"
        f"print(sorted(m for m in {RUNTIME_ONLY!r} if m in sys.modules))\n"
        "print(sorted(m for m in sys.modules if m == 'demo' or m.startswith('demo.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    dag_ids, errors, heavy, demo_modules = out.strip().splitlines()[-4:]
    assert dag_ids == str(sorted(SAMPLE_DAGS))
    assert errors == "{}"
    assert heavy == "[]", "parsing the sample DAGs must not import what only running tasks need"
    assert demo_modules == "[]", "the sample DAGs import nothing from the demo"


def test_each_dags_failure_switch_offers_exactly_what_the_demo_api_does() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_DAGS))
    for dag_id in SAMPLE_DAGS:
        param = bag.get_dag(dag_id).params.get_param("demo_fail")
        assert param.value is None
        assert param.schema["enum"] == [None, *switch.FAILURES], dag_id
