"""Shared fixtures: an isolated AIRFLOW_HOME, the local CA, scripted HTTPS servers and connections.

AIRFLOW_HOME is set before anything imports Airflow, so no test touches ``~/airflow``.
A loopback guard refuses, and fails the test for, any socket connect outside
127.0.0.0/8 and ::1, so a test that regresses can never send a packet elsewhere.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest


class LoopbackGuardError(ConnectionRefusedError):
    """A test tried to connect outside the loopback addresses."""


REFUSED_CONNECTS: list[str] = []


def is_loopback(address: Any) -> bool:
    """True for an AF_UNIX path or an (IP, port...) tuple on 127.0.0.0/8 or ::1 (a name only if 'localhost')."""
    if not isinstance(address, tuple):
        return True  # AF_UNIX and other non-IP families
    host = str(address[0]).split("%", 1)[0]
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name that would be resolved elsewhere
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _guarded(connect: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address):
            REFUSED_CONNECTS.append(repr(address))
            raise LoopbackGuardError(f"loopback guard: a test tried to connect to {address!r}")
        return connect(self, address)

    return guarded


socket.socket.connect = _guarded(socket.socket.connect)  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded(socket.socket.connect_ex)  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_connect_outside_loopback() -> Iterator[None]:
    """Fail the test even when the code under test swallowed the guard's error."""
    REFUSED_CONNECTS.clear()
    yield
    refused, REFUSED_CONNECTS[:] = list(REFUSED_CONNECTS), []
    assert not refused, f"the test tried to connect outside loopback: {refused}"


_HOME = Path(tempfile.mkdtemp(prefix="campaign-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
(_HOME / "dags").mkdir()

from demo.tls import LocalCA, ensure_local_ca  # noqa: E402
from tests.support.scripted_server import ScriptedServer  # noqa: E402

if TYPE_CHECKING:
    from airflow_campaign_provider.hooks.external_api import ExternalApiHook

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


@pytest.fixture
def hook(server: ScriptedServer, make_conn: ConnFactory) -> ExternalApiHook:
    """A hook on the default connection, pointed at the scripted server's ``/v1``."""
    from airflow_campaign_provider.hooks.external_api import ExternalApiHook

    make_conn(host=f"{server.base_url}/v1")
    return ExternalApiHook()


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
