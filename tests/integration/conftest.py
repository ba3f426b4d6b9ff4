"""Real databases for the ledger and delivery tests: a SQLite file, or a database on a throwaway PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.services import LocalPostgres


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """One PostgreSQL server on 127.0.0.1 for the session; each test gets its own database."""
    with LocalPostgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def sql_conn(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh, empty SQL database behind the connection id it returns: SQLite, then PostgreSQL."""
    conn_id = "campaign_test_db"
    if request.param == "sqlite":
        conn: dict[str, object] = {"conn_type": "sqlite", "host": str(tmp_path / "campaign.sqlite3")}
    else:
        server: LocalPostgres = request.getfixturevalue("postgres")
        conn = server.connection(server.create_database(f"t_{uuid.uuid4().hex[:12]}"))
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id
