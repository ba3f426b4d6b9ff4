"""The preview, from Python and from the command line: on sample files, and live through the hook.

The live runs go to the real HTTPS test server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_campaign_provider.outbound import compile_outbound
from airflow_campaign_provider.preview import infer_mapping, preview
from tests.support.lineup import PLAYERS, lineup
from tests.support.scripted_server import ScriptedServer, json_response


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_campaign_provider", "preview", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "lineup.json"
    path.write_text(json.dumps(lineup(2)))
    return path


def test_the_inferred_mapping_is_ready_to_paste_and_maps_the_sample_cleanly() -> None:
    mapping = infer_mapping(lineup(), "$.match.teams[*].players[*]")
    assert mapping == {
        "records": "$.match.teams[*].players[*]",
        "columns": [
            {"name": "name", "type": "text"},
            {"name": "number", "type": "integer"},
            {"name": "position", "type": "text"},
            {"name": "captain", "type": "boolean"},
            {"name": "born", "type": "integer"},
        ],
    }
    match = infer_mapping(lineup(), "$.match")
    assert {"name": "venue_name", "path": "venue.name", "type": "text"} in match["columns"]
    assert {"name": "kickoff", "type": "datetime"} in match["columns"]
    assert {"name": "teams", "type": "json"} in match["columns"]
    shown = preview(None, lineup(), records="$.match")
    assert shown.inferred and shown.error is None and shown.result is not None
    assert shown.result.rows[0]["venue_city"] == "Milano"
    exec_globals: dict[str, Any] = {}
    exec(shown.mapping_source(), exec_globals)  # noqa: S102 - the pasted text is Python that compiles
    assert compile_outbound(exec_globals["outbound"]).map(lineup()).rows == shown.result.rows


def test_preview_keeps_rejects_empty_columns_and_the_quality_error() -> None:
    outbound = {**PLAYERS, "columns": [*PLAYERS["columns"], {"name": "shirt", "path": "shrit"}], "min_rows": 30}
    shown = preview(outbound, lineup())
    assert shown.result is not None and shown.result.empty_columns == ["shirt"]
    assert shown.error is not None and "has 24 rows, fewer than outbound.min_rows=30" in shown.error
    broken = preview({**PLAYERS, "records": "$.match.team[*].players[*]"}, lineup())
    assert broken.result is None and "did you mean 'teams'?" in str(broken.error)


def test_cli_on_a_sample_file_prints_the_mapping_rows_rejects_and_empty_columns(sample: Path, tmp_path: Path) -> None:
    done = cli(str(sample), "--records", "$.match.teams[*].players[*]")
    assert done.returncode == 0, done.stderr
    assert "Inferred outbound mapping, ready to paste" in done.stdout
    assert "outbound = {'records': '$.match.teams[*].players[*]'," in done.stdout
    assert "4 rows, 0 rejected of 4 records" in done.stdout
    assert "Milan Player 2" in done.stdout

    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps(
            {
                **PLAYERS,
                "columns": [
                    *PLAYERS["columns"][:3],
                    {"name": "kick", "path": "$.match.kickoff"},
                    {"name": "number_as_date", "path": "number", "type": "date"},
                ],
                "max_rejected": "50%",
            }
        )
    )
    done = cli(str(sample), "--mapping", str(mapping), "--format", "json")
    assert done.returncode == 1
    assert '"records": "$.match.teams[*].players[*]"' in done.stdout
    assert "0 rows, 4 rejected of 4 records" in done.stdout
    assert "number_as_date │ cannot convert 1 to date" in done.stdout
    assert "Column 'kick' was found in no record" in done.stdout
    assert "over outbound.max_rejected='50%'" in " ".join(done.stdout.split())


def test_cli_refuses_a_bad_mapping_and_a_missing_file(sample: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "bad.json"
    mapping.write_text(json.dumps({"records": "$.x", "colums": []}))
    done = cli(str(sample), "--mapping", str(mapping))
    assert done.returncode == 1
    assert "MappingConfigError: Invalid 'outbound': unknown key 'colums' (did you mean 'columns'?)" in done.stderr
    assert cli(str(tmp_path / "missing.json")).returncode == 1


@pytest.mark.integration
def test_cli_fetches_a_live_sample_through_the_hook(server: ScriptedServer, local_ca: Any) -> None:
    server.route("/v1/lineup", json_response(200, lineup(3)))
    conn = {
        "conn_type": "campaign_external_api",
        "host": f"{server.base_url}/v1",
        "extra": {"verify": str(local_ca.ca_cert)},
    }
    refused = cli("--conn-id", "football", "--endpoint", "lineup", env={"AIRFLOW_CONN_FOOTBALL": json.dumps(conn)})
    assert refused.returncode == 1
    assert "'localhost' is refused (set allow_private_hosts" in refused.stderr
    assert server.requests == [], "every guardrail applies"

    conn["extra"]["allow_private_hosts"] = True  # type: ignore[index]
    env = {"AIRFLOW_CONN_FOOTBALL": json.dumps(conn)}
    done = cli("--conn-id", "football", "--endpoint", "lineup", "--records", "$.match.teams[*].players[*]", env=env)
    assert done.returncode == 0, done.stderr
    assert "6 rows, 0 rejected of 6 records" in done.stdout
    assert "Milan Player 3" in done.stdout
    assert [request.path for request in server.requests] == ["/v1/lineup"]
