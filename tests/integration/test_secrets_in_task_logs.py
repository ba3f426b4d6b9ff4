"""No secret reaches what a real task prints or logs, even when the server echoes the headers back.

The hook runs inside real Airflow tasks (``dag.test()``). ``dag.test()`` prints task
logs to stdout, where Airflow's masker does not filter, so the only way to pass is
never to format a secret in the first place.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.conftest import read_task_output
from tests.support.airflow_run import install_dag, run_dag
from tests.support.scripted_server import ScriptedServer, echo_request_headers, json_response, oauth_conn

pytestmark = pytest.mark.integration

DAG = """
from airflow.sdk import dag, task
from airflow_campaign_provider.hooks.external_api import ExternalApiHook


@dag(schedule=None)
def secrets_in_logs():
    for auth in ("basic", "bearer", "api_key", "oauth2"):

        @task(task_id=f"ok_{auth}")
        def ok(conn_id=f"secret_{auth}"):
            hook = ExternalApiHook(conn_id)
            print("ok rows:", hook.get_json("ok", params={"zip": "20121"}))
            hook.log.info("settings: %r", hook.settings)

        @task(task_id=f"echo_{auth}")
        def echo(conn_id=f"secret_{auth}"):
            ExternalApiHook(conn_id).get_json("echo")

        ok()
        echo()


secrets_in_logs()
"""

SECRETS = {
    "password": "basic-Pa55word-4821",
    "bearer token": "bearer-T0ken-7730",
    "API key": "api-K3y-5512",
    "client secret": "client-S3cret-9043",
    "fetched access token": "fetched-Acc3ss-6617",
}


def test_no_secret_in_task_output(airflow_db: Path, airflow_home: Path, server: ScriptedServer, make_conn, capfd):
    base = f"{server.base_url}/v1"
    make_conn("secret_basic", host=base, login="campaign", password=SECRETS["password"])
    make_conn("secret_bearer", host=base, password=SECRETS["bearer token"], auth_type="bearer")
    make_conn("secret_api_key", host=base, password=SECRETS["API key"], auth_type="api_key")
    oauth_conn(server, make_conn, "secret_oauth2", host=base, password=SECRETS["client secret"])
    server.route("/oauth/token", json_response(200, {"access_token": SECRETS["fetched access token"]}))
    server.route("/v1/ok", json_response(200, {"data": [{"zip": "20121"}]}))
    server.route("/v1/echo", echo_request_headers(500))

    dag_file = install_dag(airflow_db, "secrets_in_logs", DAG)
    result = run_dag(dag_file, "secrets_in_logs")

    assert {k: v for k, v in result.task_states.items() if k.startswith("ok_")} == {
        f"ok_{a}": "success" for a in ("basic", "bearer", "api_key", "oauth2")
    }
    assert {k: v for k, v in result.task_states.items() if k.startswith("echo_")} == {
        f"echo_{a}": "failed" for a in ("basic", "bearer", "api_key", "oauth2")
    }
    # The server really did receive (and echo back) every credential.
    echoed = [r.headers.get("Authorization", r.headers.get("X-API-Key", "")) for r in server.requests]
    assert f"Bearer {SECRETS['fetched access token']}" in echoed
    assert SECRETS["API key"] in echoed

    output = read_task_output(capfd, airflow_home)
    assert "internal error; you sent:" in output, "the echoing error page must have been reported"
    assert "Invoking API URL" in output
    basic = base64.b64encode(f"campaign:{SECRETS['password']}".encode()).decode()
    client = base64.b64encode(f"client-id:{SECRETS['client secret']}".encode()).decode()
    for name, secret in {**SECRETS, "basic credentials": basic, "client credentials": client}.items():
        assert secret not in output, f"the {name} leaked into the task output"


BRANCH_DAG = """
from airflow.sdk import dag, task
from airflow_campaign_provider.operators.external_api import ExternalApiOperator


@dag(schedule=None)
def secrets_in_failures():
    cases = {
        "off_host": ("secret_api", "https://elsewhere.example/v1/x?api_key=endpoint-Secret-3141"),
        "dot_segments": ("secret_api", "../admin?access_token=endpoint-Secret-3141"),
        "bad_token": ("secret_oauth", "x"),
        "echo_encoded": ("secret_api", "echo"),
    }
    for name, (conn_id, endpoint) in cases.items():
        fetch = ExternalApiOperator(
            task_id=f"fetch_{name}",
            conn_id=conn_id,
            endpoint=endpoint,
            headers={"X-Call-Token": "header-Secret-2718"},
            failure_branch=f"fallback_{name}",
        )

        @task(task_id=f"fallback_{name}")
        def fallback():
            return "fallback"

        @task(task_id=f"use_{name}")
        def use(rows):
            return rows

        fetch >> [fallback(), use(fetch.output)]

    ExternalApiOperator(task_id="bad_password", conn_id="secret_newline", endpoint="x")


secrets_in_failures()
"""

FAILURE_SECRETS = {
    "endpoint query secret": "endpoint-Secret-3141",
    "header secret": "header-Secret-2718",
    "bearer token": "bearer-T0ken/+=1618",
    "fetched token": "fetched-T0ken-1414",
    "password with a newline": "newline-Passw0rd-1732",
}


def test_failures_of_every_kind_show_no_secret_in_logs_xcom_rendered_fields_or_links(
    airflow_db: Path, airflow_home: Path, server: ScriptedServer, make_conn, capfd
) -> None:
    from urllib.parse import quote, quote_plus

    base = f"{server.base_url}/v1"
    make_conn("secret_api", host=base, password=FAILURE_SECRETS["bearer token"], auth_type="bearer")
    oauth_conn(server, make_conn, "secret_oauth", host=base, password="client-S3cret-0577")
    make_conn("secret_newline", host=base, login="user", password=FAILURE_SECRETS["password with a newline"] + "\n")
    token = FAILURE_SECRETS["fetched token"] + "\n"
    server.route("/oauth/token", json_response(200, {"access_token": token, "token_type": "bearer"}))
    bearer = FAILURE_SECRETS["bearer token"]
    echoed = {"quote": quote(bearer, safe=""), "quote_plus": quote_plus(bearer), "json": bearer.replace("/", "\\/")}
    server.route("/v1/echo", json_response(500, {"error": "denied", "you_sent": echoed}))

    result = run_dag(install_dag(airflow_db, "secrets_in_failures", BRANCH_DAG), "secrets_in_failures")

    for name in ("off_host", "dot_segments", "bad_token", "echo_encoded"):
        assert result.task_states[f"fetch_{name}"] == "success", (name, result.task_states)
        assert result.task_states[f"fallback_{name}"] == "success", name
        assert result.task_states[f"use_{name}"] == "skipped", name
    assert result.task_states["bad_password"] == "failed"
    errors = {name: result.xcom(f"fetch_{name}", "error") for name in ("off_host", "dot_segments", "bad_token")}
    assert errors["off_host"]["type"] == "HostNotAllowedError"
    assert errors["off_host"]["url"] == "https://elsewhere.example/v1/x?api_key=***"
    assert errors["dot_segments"]["type"] == "PathNotAllowedError"
    assert errors["bad_token"]["type"] == "TokenError"
    assert "denied" in result.xcom("fetch_echo_encoded", "error")["message"]
    assert [r.path for r in server.requests if r.path != "/oauth/token"] == ["/v1/echo"], "nothing else was sent"

    output = read_task_output(capfd, airflow_home)
    assert "following the failure branch" in output
    assert "Invalid 'password'" in output
    stored = [result.rendered_fields(f"fetch_{n}") for n in ("off_host", "dot_segments", "bad_token", "echo_encoded")]
    links = [result.xcom(f"fetch_{n}", "_link_ExternalApiLink") for n in ("off_host", "dot_segments", "echo_encoded")]
    assert links[0] == "https://elsewhere.example/v1/x?api_key=***"
    everything = output + json.dumps([errors, stored, links, result.xcom("fetch_echo_encoded", "error")])
    for name, secret in FAILURE_SECRETS.items():
        for form in {secret, quote(secret, safe=""), quote_plus(secret), secret.replace("/", "\\/")}:
            assert form not in everything, f"the {name} leaked as {form!r}"
