"""Shared fixtures: an isolated AIRFLOW_HOME, the local CA, scripted HTTPS servers and connections.

AIRFLOW_HOME is set before anything imports Airflow, so no test touches ``~/airflow``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="campaign-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
(_HOME / "dags").mkdir()

from demo.tls import LocalCA, ensure_local_ca  # noqa: E402
from tests.support.scripted_server import ScriptedServer  # noqa: E402

ConnFactory = Callable[..., str]


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return ensure_local_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def server(local_ca: LocalCA) -> Iterator[ScriptedServer]:
    srv = ScriptedServer(local_ca).start()
    yield srv
    srv.stop()


@pytest.fixture
def make_conn(monkeypatch: pytest.MonkeyPatch, local_ca: LocalCA) -> ConnFactory:
    """Register a campaign_external_api connection through the AIRFLOW_CONN_ environment variable."""

    def make(
        conn_id: str = "campaign_external_api_default",
        *,
        host: str,
        login: str | None = None,
        password: str | None = None,
        **extra: Any,
    ) -> str:
        extra.setdefault("verify", str(local_ca.ca_cert))
        extra.setdefault("allow_private_hosts", True)
        payload = {"conn_type": "campaign_external_api", "host": host, "extra": extra}
        if login is not None:
            payload["login"] = login
        if password is not None:
            payload["password"] = password
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(payload))
        return conn_id

    return make


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB; returns the dags folder that ``dag.test()`` syncs."""
    from tests.support.airflow_run import migrate_db

    migrate_db()
    return _HOME / "dags"


def read_task_output(capfd: pytest.CaptureFixture[str], home: Path) -> str:
    """Everything a task run printed (stdout and stderr) plus every log file under AIRFLOW_HOME/logs."""
    out, err = capfd.readouterr()
    logs = [p.read_text(errors="replace") for p in (home / "logs").rglob("*") if p.is_file()]
    return "\n".join([out, err, *logs])
