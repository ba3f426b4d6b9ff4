"""No secret reaches what a real task prints or logs, even when the server echoes the headers back.

The hook runs inside real Airflow tasks (``dag.test()``). ``dag.test()`` prints task
logs to stdout, where Airflow's masker does not filter, so the only way to pass is
never to format a secret in the first place.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.conftest import read_task_output
from tests.support.airflow_run import install_dag, run_dag
from tests.support.scripted_server import ScriptedServer, echo_request_headers, json_response

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
    make_conn(
        "secret_oauth2",
        host=base,
        login="client-id",
        password=SECRETS["client secret"],
        auth_type="oauth2_client_credentials",
        token_url=f"{server.base_url}/oauth/token",
    )
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
