"""ExternalApiOperator end to end: real Airflow (``dag.test()``, SQLite) against the real local HTTPS server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import read_task_output
from tests.support.airflow_run import install_dag, run_dag
from tests.support.scripted_server import ScriptedServer, json_response

pytestmark = pytest.mark.integration

COUPON_DAG = """
from airflow.sdk import dag, task
from airflow_campaign_provider.operators.external_api import ExternalApiOperator


@dag(schedule=None)
def {dag_id}():
    @task
    def audience():
        return {audience!r}

    coupons = ExternalApiOperator(
        task_id="coupons",
        conn_id="coupon_api",
        endpoint={endpoint!r},
        headers={{"Authorization": "Bearer header-secret-4242", "X-Campaign": "spring"}},
        inbound={{"rows": audience(), "columns": ["zip"], "params": {{"campaign": "spring"}}, "add_count": True}},
        outbound={{
            "records": "$.data[*]",
            "columns": [
                {{"name": "zip", "path": "zip", "type": "text"}},
                {{"name": "code", "path": "coupon.code", "type": "text", "max_length": 12}},
                {{"name": "discount", "path": "coupon.discount", "type": "float",
                  "on_error": "use_default", "default": 0.0}},
                {{"name": "valid_until", "path": "valid_until", "type": "date"}},
            ],
        }},
        response_schema={schema},
        failure_branch={failure_branch!r},
        xcom_max_bytes={xcom_max_bytes},
        output_path={output_path},
    )

    @task
    def personalize(rows):
        return {{"received": rows}}

    @task(task_id="fallback")
    def fallback():
        return "fallback sent"

    personalized = personalize(coupons.output)
    coupons >> [personalized, fallback()] if {failure_branch!r} else coupons >> personalized


{dag_id}()
"""

COUPONS = {
    "data": [
        {"zip": "20121", "coupon": {"code": "IT-20121-X", "discount": 15}, "valid_until": "2026-12-31"},
        {"zip": "75001", "coupon": {"code": "FR-75001-X", "discount": "n/a"}, "valid_until": "2026-12-31"},
        {"zip": "99999", "coupon": {"code": "WAY-TOO-LONG-CODE"}, "valid_until": "2026-12-31"},
    ]
}

SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "array", "items": {"type": "object", "required": ["zip", "coupon"]}}},
}


def write_dag(folder: Path, dag_id: str, **kw: object) -> Path:
    values = {
        "endpoint": "coupons",
        "audience": [{"zip": "20121", "email": "a@example.com"}, {"zip": "75001", "email": "b@example.com"}],
        "schema": "None",
        "failure_branch": None,
        "xcom_max_bytes": 1024 * 1024,
        "output_path": "None",
        **kw,
    }
    return install_dag(folder, dag_id, COUPON_DAG.format(dag_id=dag_id, **values))


@pytest.fixture
def coupon_api(server: ScriptedServer, make_conn) -> ScriptedServer:
    make_conn("coupon_api", host=f"{server.base_url}/v1")
    return server


def test_inbound_from_xcom_rows_downstream_summary_and_link(airflow_db, airflow_home, coupon_api, capfd) -> None:
    coupon_api.route("/v1/coupons", json_response(200, COUPONS))
    endpoint = "coupons?access_token=endpoint-secret-5150"
    result = run_dag(write_dag(airflow_db, "op_coupons", schema=SCHEMA, endpoint=endpoint), "op_coupons")

    assert result.state == "success", result.task_states
    posted = json.loads(coupon_api.requests[0].body)
    assert posted == {
        "params": {"campaign": "spring", "count": 2},
        "data": [{"zip": "20121"}, {"zip": "75001"}],
    }
    assert coupon_api.requests[0].method == "POST"

    expected_rows = [
        {"zip": "20121", "code": "IT-20121-X", "discount": 15.0, "valid_until": "2026-12-31"},
        {"zip": "75001", "code": "FR-75001-X", "discount": 0.0, "valid_until": "2026-12-31"},
    ]
    assert result.xcom("coupons") == expected_rows
    assert result.xcom("personalize") == {"received": expected_rows}
    summary = result.xcom("coupons", "summary")
    called = f"{coupon_api.base_url}/v1/coupons?access_token=***"
    assert summary["url"] == called
    assert (summary["method"], summary["status"], summary["rows"], summary["rejected"]) == ("POST", 200, 2, 1)
    assert summary["bytes"] == len(json.dumps(COUPONS))
    assert summary["elapsed_ms"] >= 0
    assert summary["rejected_samples"] == [
        {"index": 2, "column": "code", "reason": "17 characters is over max_length 12"}
    ]
    assert result.xcom("coupons", "_link_ExternalApiLink") == called

    output = read_task_output(capfd, airflow_home)
    assert f"Invoking API URL '{called}'" in output
    assert "Mapped 2 rows, rejected 1" in output
    assert "rejected 1 of 3 records (first reasons: record 2 column 'code': 17 characters" in output
    rendered = result.rendered_fields("coupons")
    assert rendered["headers"]["X-Campaign"] == "spring"
    assert rendered["headers"]["Authorization"] == "***"
    assert rendered["endpoint"] == "coupons?access_token=***"
    everything = json.dumps([rendered, summary, result.xcom("coupons")]) + output
    for secret in ("header-secret-4242", "endpoint-secret-5150"):
        assert secret not in everything


def test_schema_failure_without_failure_branch_fails_the_task(airflow_db, coupon_api) -> None:
    coupon_api.route("/v1/coupons", json_response(200, {"data": [{"zip": "20121"}]}))
    result = run_dag(write_dag(airflow_db, "op_schema_fail", schema=SCHEMA), "op_schema_fail")
    assert result.task_states["coupons"] == "failed"
    assert result.task_states["personalize"] == "upstream_failed"
    assert result.xcom_keys("coupons") <= {"_link_ExternalApiLink"}


def test_schema_failure_with_failure_branch_follows_it(airflow_db, airflow_home, coupon_api, capfd) -> None:
    coupon_api.route("/v1/coupons", json_response(200, {"data": [{"zip": "20121"}, {"coupon": 1}]}))
    dag_file = write_dag(airflow_db, "op_schema_branch", schema=SCHEMA, failure_branch="fallback")
    result = run_dag(dag_file, "op_schema_branch")
    assert result.task_states == {
        "audience": "success",
        "coupons": "success",
        "personalize": "skipped",
        "fallback": "success",
    }
    error = result.xcom("coupons", "error")
    assert error["type"] == "ResponseSchemaError"
    assert error["url"] == f"{coupon_api.base_url}/v1/coupons"
    assert error["status"] is None
    assert "'coupon' is a required property at $.data[0]" in error["message"]
    assert "'zip' is a required property at $.data[1]" in error["message"]
    assert result.xcom("coupons") is None
    assert result.xcom("coupons", "summary") is None
    assert "Request failed (response schema), following the failure branch" in read_task_output(capfd, airflow_home)


def test_http_error_with_failure_branch(airflow_db, coupon_api) -> None:
    coupon_api.route("/v1/coupons", json_response(500, {"error": "down"}))
    result = run_dag(write_dag(airflow_db, "op_http_branch", failure_branch="fallback"), "op_http_branch")
    assert result.task_states["personalize"] == "skipped"
    assert result.task_states["fallback"] == "success"
    assert result.xcom("coupons", "error")["status"] == 500


def test_success_with_failure_branch_skips_the_branch(airflow_db, coupon_api) -> None:
    coupon_api.route("/v1/coupons", json_response(200, COUPONS))
    result = run_dag(write_dag(airflow_db, "op_success_branch", failure_branch="fallback"), "op_success_branch")
    assert result.task_states == {
        "audience": "success",
        "coupons": "success",
        "personalize": "success",
        "fallback": "skipped",
    }
    assert len(result.xcom("coupons")) == 2
    assert result.xcom("coupons", "summary")["rows"] == 2
    assert result.xcom("personalize")["received"][0]["code"] == "IT-20121-X"


def test_output_path_writes_json_lines(airflow_db, coupon_api, tmp_path) -> None:
    coupon_api.route("/v1/coupons", json_response(200, COUPONS))
    target = tmp_path / "out" / "coupons.jsonl"
    result = run_dag(write_dag(airflow_db, "op_output_path", output_path=repr(f"file://{target}")), "op_output_path")
    assert result.state == "success", result.task_states
    assert result.xcom("coupons") == {"path": f"file://{target}", "rows": 2}
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [row["code"] for row in lines] == ["IT-20121-X", "FR-75001-X"]


def test_size_guard_fails_and_pushes_nothing(airflow_db, airflow_home, coupon_api, capfd) -> None:
    coupon_api.route("/v1/coupons", json_response(200, COUPONS))
    result = run_dag(write_dag(airflow_db, "op_size_guard", xcom_max_bytes=100), "op_size_guard")
    assert result.task_states["coupons"] == "failed"
    assert result.xcom("coupons") is None
    assert result.xcom("coupons", "summary") is None
    output = read_task_output(capfd, airflow_home)
    assert "XComTooLargeError" in output
    assert "over xcom_max_bytes=100. Set output_path" in output


def test_size_guard_never_takes_the_failure_branch(airflow_db, coupon_api) -> None:
    coupon_api.route("/v1/coupons", json_response(200, COUPONS))
    result = run_dag(
        write_dag(airflow_db, "op_size_guard_branch", xcom_max_bytes=100, failure_branch="fallback"),
        "op_size_guard_branch",
    )
    assert result.task_states["coupons"] == "failed"
    assert result.task_states["fallback"] == "upstream_failed"


def test_inbound_data_error_never_takes_the_failure_branch(airflow_db, airflow_home, coupon_api, capfd) -> None:
    coupon_api.route("/v1/coupons", json_response(200, COUPONS))
    rows = [{"zip": "20121"}, {"email": "no-zip@example.com"}]
    dag_file = write_dag(airflow_db, "op_inbound_error", audience=rows, failure_branch="fallback")
    result = run_dag(dag_file, "op_inbound_error")
    assert result.task_states["coupons"] == "failed"
    assert result.task_states["fallback"] == "upstream_failed"
    assert coupon_api.requests == [], "nothing is sent when the inbound rows are wrong"
    assert "InboundDataError: inbound data: row 1 has no column 'zip'" in read_task_output(capfd, airflow_home)
