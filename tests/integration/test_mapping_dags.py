"""No silent bad data, end to end: real Airflow (``dag.test()``) against the real local HTTPS server.

The four mistakes that once gave a green run with empty or null rows, and the rules
that now catch them, on a nested line-up response (match → teams → players).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import read_task_output
from tests.support.airflow_run import DagRunResult, install_dag, run_dag
from tests.support.lineup import MATCH, PLAYERS, lineup
from tests.support.scripted_server import ScriptedServer, json_response

pytestmark = pytest.mark.integration

LINEUP_DAG = """
import pathlib

from airflow.sdk import dag, task
from airflow.sdk.bases.notifier import BaseNotifier
from airflow_campaign_provider.operators.external_api import ExternalApiOperator


class FileNotifier(BaseNotifier):
    template_fields = ("message",)

    def __init__(self, path, message):
        super().__init__()
        self.path = path
        self.message = message

    def notify(self, context):
        pathlib.Path(self.path).write_text(self.message)


def record_alert(context, error):
    pathlib.Path({alert_dir!r}, "callable.txt").write_text(context["ti"].task_id + " " + type(error).__name__)


@dag(schedule=None)
def {dag_id}():
    fetch = ExternalApiOperator(
        task_id="lineup",
        conn_id="football",
        endpoint="lineup",
        outbound={outbound!r},
        failure_branch={failure_branch!r},
        on_failure_branch=[
            FileNotifier(pathlib.Path({alert_dir!r}, "notifier.txt"), "{{{{ ti.task_id }}}}: {{{{ exception }}}}"),
            record_alert,
        ],
    )

    @task
    def newsletter(players):
        return [f"{{p['player']}} ({{p['team']}})" for p in players]

    @task(task_id="fallback")
    def fallback():
        return "generic newsletter"

    sent = newsletter(fetch.output{players_key})
    if {failure_branch!r}:
        fetch >> [sent, fallback()]


{dag_id}()
"""


@pytest.fixture
def football(server: ScriptedServer, make_conn: Any) -> ScriptedServer:
    make_conn("football", host=f"{server.base_url}/v1")
    server.route("/v1/lineup", json_response(200, lineup()))
    return server


def run_lineup(folder: Path, alert_dir: Path, dag_id: str, outbound: dict[str, Any], **kw: Any) -> DagRunResult:
    values = {"failure_branch": None, "players_key": "", "alert_dir": str(alert_dir), **kw}
    source = LINEUP_DAG.format(dag_id=dag_id, outbound=outbound, **values)
    return run_dag(install_dag(folder, dag_id, source), dag_id)


def columns(*replace: dict[str, Any]) -> list[dict[str, Any]]:
    """The players columns with some replaced by name."""
    by_name = {c["name"]: c for c in replace}
    return [by_name.get(c["name"], c) for c in PLAYERS["columns"]]


def test_the_nested_lineup_maps_with_root_and_team_columns(airflow_db, tmp_path, football) -> None:
    result = run_lineup(airflow_db, tmp_path, "lineup_ok", PLAYERS)
    assert result.state == "success", result.task_states
    rows = result.xcom("lineup")
    assert len(rows) == 24
    assert rows[12] == {
        "player": "Milan Player 1",
        "number": 1,
        "position": "DF",
        "team": "Milan",
        "kickoff": "2026-12-01T20:45:00+01:00",
    }
    assert result.xcom("newsletter")[0] == "Inter Player 1 (Inter)"
    summary = result.xcom("lineup", "summary")
    assert (summary["rows"], summary["rejected"], summary["empty_columns"]) == (24, 0, [])


def test_mistake_1_a_records_path_typo_takes_the_failure_branch_and_alerts(
    airflow_db, airflow_home, tmp_path, football, capfd
) -> None:
    outbound = {**PLAYERS, "records": "$.match.team[*].players[*]"}
    result = run_lineup(airflow_db, tmp_path, "lineup_records_typo", outbound, failure_branch="fallback")
    assert result.task_states == {"lineup": "success", "newsletter": "skipped", "fallback": "success"}
    error = result.xcom("lineup", "error")
    assert error["type"] == "ResponseMappingError"
    assert "member 'team' is absent at $.match (did you mean 'teams'?)" in error["message"]
    assert result.xcom("lineup") is None and result.xcom("lineup", "summary") is None
    assert (tmp_path / "callable.txt").read_text() == "lineup ResponseMappingError"
    notified = (tmp_path / "notifier.txt").read_text()
    assert notified.startswith(
        "lineup: outbound mapping: the records path '$.match.team[*].players[*]' matched nothing"
    )


def test_mistake_1_without_a_failure_branch_fails_the_task(airflow_db, tmp_path, football) -> None:
    result = run_lineup(
        airflow_db, tmp_path, "lineup_records_typo_fail", {**PLAYERS, "records": "$.match.teamz[*].players[*]"}
    )
    assert result.task_states == {"lineup": "failed", "newsletter": "upstream_failed"}
    assert not (tmp_path / "callable.txt").exists(), "alerts go with the failure branch only"


def test_mistakes_2_and_3_column_path_typos_warn_and_list_the_empty_columns(
    airflow_db, airflow_home, tmp_path, football, capfd
) -> None:
    outbound = {
        **PLAYERS,
        "columns": columns({"name": "position", "path": "postion"}, {"name": "kickoff", "path": "$.match.kickoff"}),
    }
    result = run_lineup(airflow_db, tmp_path, "lineup_column_typos", outbound)
    assert result.state == "success"
    assert result.xcom("lineup", "summary")["empty_columns"] == ["position", "kickoff"]
    output = read_task_output(capfd, airflow_home)
    assert "column 'position' was found in no record, so it is null in every row" in output
    assert (
        "column 'kickoff' was found in no record, so it is null in every row "
        "(column paths are relative to the record; from the document root use '$$.match.kickoff')" in output
    )
    assert "[warning  ] column 'position' was found in no record" in output


def test_strict_columns_makes_an_empty_column_a_request_failure(airflow_db, tmp_path, football) -> None:
    outbound = {**PLAYERS, "columns": columns({"name": "position", "path": "postion"}), "strict_columns": True}
    result = run_lineup(airflow_db, tmp_path, "lineup_strict", outbound, failure_branch="fallback")
    assert result.task_states["fallback"] == "success"
    assert (
        "columns ['position'] were found in no record (outbound.strict_columns)"
        in result.xcom("lineup", "error")["message"]
    )


def test_mistake_4_a_wrong_type_rejecting_every_row_is_a_data_quality_failure(
    airflow_db, airflow_home, tmp_path, football, capfd
) -> None:
    outbound = {**PLAYERS, "columns": columns({"name": "number", "path": "number", "type": "date"})}
    result = run_lineup(airflow_db, tmp_path, "lineup_wrong_type", outbound, failure_branch="fallback")
    assert result.task_states == {"lineup": "success", "newsletter": "skipped", "fallback": "success"}
    error = result.xcom("lineup", "error")
    assert error["type"] == "DataQualityError"
    assert error["message"].startswith(
        "data quality: the mapping rejected 24 of 24 records, every record (set outbound.max_rejected to allow it) "
        "(first reasons: record 0 column 'number': cannot convert 1 to date"
    )
    output = read_task_output(capfd, airflow_home)
    assert "[warning  ] rejected 24 of 24 records (first reasons: record 0 column 'number'" in output


def test_max_rejected_share_and_a_text_column_refusing_a_list(airflow_db, tmp_path, football, server) -> None:
    document = lineup()
    document["match"]["teams"][0]["players"][0]["name"] = ["Inter"]
    server.route("/v1/lineup", json_response(200, document))
    result = run_lineup(airflow_db, tmp_path, "lineup_share", {**PLAYERS, "max_rejected": "5%"})
    assert result.state == "success"  # 1 of 24 is 4.2 %
    summary = result.xcom("lineup", "summary")
    assert summary["rejected_samples"] == [
        {"index": 0, "column": "player", "reason": "a list is not text (use type 'json' for structured values)"}
    ]
    result = run_lineup(
        airflow_db, tmp_path, "lineup_share_breach", {**PLAYERS, "max_rejected": 0}, failure_branch="fallback"
    )
    assert "over outbound.max_rejected=0" in result.xcom("lineup", "error")["message"]


def test_tables_feed_a_task_by_name_and_min_rows_guards_each(airflow_db, tmp_path, football, server) -> None:
    outbound = {"tables": {"match": MATCH, "players": PLAYERS}, "min_rows": 1}
    result = run_lineup(airflow_db, tmp_path, "lineup_tables", outbound, players_key='["players"]')
    assert result.state == "success", result.task_states
    value = result.xcom("lineup")
    assert value["match"][0]["venue"] == "San Siro"
    assert len(value["players"]) == 24
    assert result.xcom("newsletter")[-1] == "Milan Player 12 (Milan)"
    summary = result.xcom("lineup", "summary")
    assert summary["tables"]["match"]["rows"] == 1 and summary["tables"]["players"]["rows"] == 24

    empty = lineup()
    empty["match"]["teams"] = []
    server.route("/v1/lineup", json_response(200, empty))
    result = run_lineup(
        airflow_db, tmp_path, "lineup_tables_empty", outbound, players_key='["players"]', failure_branch="fallback"
    )
    error = result.xcom("lineup", "error")
    assert error["type"] == "DataQualityError"
    assert "table 'players' has 0 rows, fewer than outbound.min_rows=1" in error["message"]


def test_a_missing_schema_file_fails_at_parse_time(airflow_db, tmp_path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    source = """
from airflow.sdk import DAG
from airflow_campaign_provider.operators.external_api import ExternalApiOperator

with DAG("schema_typo", schedule=None):
    ExternalApiOperator(task_id="lineup", endpoint="lineup", response_schema="schemas/lineup.shema.json")
"""
    bag = DagBag(dag_folder=str(install_dag(airflow_db, "schema_typo", source)))
    (error,) = bag.import_errors.values()
    assert "Invalid 'response_schema'" in error and "lineup.shema.json" in error and "No such file" in error
    json.dumps(error)


NOTIFIER_DAG = """
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import dag, task
from airflow_campaign_provider.operators.external_api import ExternalApiOperator


@dag(schedule=None)
def lineup_smtp_alert():
    fetch = ExternalApiOperator(
        task_id="lineup",
        conn_id="football",
        endpoint="lineup",
        outbound={outbound!r},
        failure_branch="send_generic_newsletter",
        on_failure_branch=SmtpNotifier(
            smtp_conn_id="smtp_alerts",
            from_email="airflow@example.com",
            to="campaign-ops@example.com",
            subject="{{{{ dag.dag_id }}}}: line-up API failed, generic newsletter sent",
            html_content="{{{{ ti.task_id }}}}: {{{{ exception }}}}",
        ),
    )

    @task
    def newsletter(players):
        return len(players)

    @task
    def send_generic_newsletter():
        return "generic"

    fetch >> [newsletter(fetch.output), send_generic_newsletter()]


lineup_smtp_alert()
"""


def test_the_readme_smtp_notifier_alerts_when_the_failure_branch_runs(
    airflow_db, tmp_path, football, server, monkeypatch
) -> None:
    from demo.smtp_sink import SmtpSink

    sink = SmtpSink(tmp_path / "outbox").start()
    try:
        extra = {"disable_tls": True, "disable_ssl": True, "retry_limit": 0, "timeout": 5}
        conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": sink.port, "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", json.dumps(conn))
        server.route("/v1/lineup", json_response(500, {"error": "upstream down"}))
        dag_file = install_dag(airflow_db, "lineup_smtp_alert", NOTIFIER_DAG.format(outbound=PLAYERS))
        result = run_dag(dag_file, "lineup_smtp_alert")
        assert result.task_states == {
            "lineup": "success",
            "newsletter": "skipped",
            "send_generic_newsletter": "success",
        }
        (message,) = sink.messages()
    finally:
        sink.stop()
    assert message["To"] == "campaign-ops@example.com"
    assert message["Subject"] == "lineup_smtp_alert: line-up API failed, generic newsletter sent"
    body = message.get_body(("html", "plain"))
    assert body is not None
    assert 'lineup: HTTP - 500: {"error": "upstream down"}' in body.get_content()
