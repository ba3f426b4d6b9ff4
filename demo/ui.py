"""``make ui``: a local Airflow web UI on the sample DAGs, with the demo API, SMTP server and connections.

It migrates a local ``AIRFLOW_HOME``, starts the demo environment, stores the demo
connections in the metadata DB (so the UI lists them and its Test button works), and
runs ``airflow standalone`` with ``AIRFLOW__CORE__TEST_CONNECTION=Enabled``.

``airflow standalone`` (3.3.2) does not stop its scheduler workers on one Ctrl-C, so it
runs in a process group of its own, and stopping sends SIGTERM to the whole group, then
SIGKILL to whatever is left after a grace period.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from demo.environment import DemoEnvironment

ADMIN_USER = "admin"
STOP_GRACE_SECONDS = 20.0


class UiStack:
    """Airflow standalone plus the demo environment; a context manager.

    :param dags_folder: the DAGs to serve (the repo's ``dags/``).
    :param airflow_home: a local ``AIRFLOW_HOME`` (SQLite metadata DB, logs, the admin password file).
    :param state_dir: the demo environment's state (CA, outbox).
    :param port: the API server and UI port.
    """

    def __init__(self, dags_folder: Path, airflow_home: Path, state_dir: Path, port: int = 8080) -> None:
        self.port = port
        self.airflow_home = airflow_home.resolve()
        self.demo = DemoEnvironment(state_dir)
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder.resolve()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            # airflow standalone starts its components as `airflow ...`: this interpreter's one.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.airflow_home / "standalone.log"

    def admin_password(self) -> str:
        """The admin password that Airflow's simple auth manager generated."""
        passwords = json.loads((self.airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
        return str(passwords[ADMIN_USER])

    def _airflow(self, *args: str) -> None:
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        with (self.airflow_home / "ui-setup.log").open("a") as log:
            subprocess.run(
                [sys.executable, "-m", "airflow", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, check=True
            )

    def _store_connections(self) -> None:
        """Write the demo connections into the metadata DB, replacing older copies."""
        connections = {
            conn_id: {**conn, "extra": json.dumps(conn.get("extra", {}))}
            for conn_id, conn in self.demo.connections().items()
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=self.airflow_home, delete=False) as file:
            json.dump(connections, file)
        try:
            self._airflow("connections", "import", "--overwrite", file.name)
        finally:
            Path(file.name).unlink()

    def start(self, timeout: float = 300.0) -> UiStack:
        """Start everything and wait until the UI answers and the scheduler is healthy."""
        self._airflow("db", "migrate")
        self.demo.start()
        self._store_connections()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "airflow", "standalone"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self._process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {self._process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Airflow UI did not come up within {timeout:.0f} s; see {self.log_path}")
            time.sleep(1)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as response:  # noqa: S310
                health = json.load(response)
        except (OSError, urllib.error.URLError, ValueError):
            return False
        components = ("metadatabase", "scheduler", "dag_processor")
        return all(health.get(name, {}).get("status") == "healthy" for name in components)

    def stop(self) -> None:
        """Stop airflow standalone's whole process group (SIGTERM, then SIGKILL), then the demo environment."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_GRACE_SECONDS)
        if process is not None:
            # Scheduler workers can outlive the standalone parent: the group goes either way.
            _signal_group(process.pid, signal.SIGKILL)
        self.demo.stop()

    def __enter__(self) -> UiStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags-folder", type=Path, default=Path("dags"))
    parser.add_argument("--airflow-home", type=Path, default=Path(".ui/airflow"))
    parser.add_argument("--state-dir", type=Path, default=Path(".ui/demo"))
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)

    stack = UiStack(args.dags_folder, args.airflow_home, args.state_dir, args.port)
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    sys.stdout.write(f"Starting Airflow on {stack.url} (about a minute); log: {stack.log_path}\n")
    sys.stdout.flush()
    stack.start()
    sys.stdout.write(
        f"\nAirflow UI:   {stack.url}\n"
        f"Login:        {ADMIN_USER} / {stack.admin_password()}\n"
        f"Demo API:     {stack.demo.api.base_url}   SMTP outbox: {stack.demo.smtp.outbox}\n"
        f"Connections:  {', '.join(stack.demo.connections())} (Admin > Connections)\n"
        "Press Ctrl-C to stop everything.\n"
    )
    sys.stdout.flush()
    try:
        while not stopping and stack._process is not None and stack._process.poll() is None:
            time.sleep(0.5)
    finally:
        sys.stdout.write("\nStopping Airflow and the demo environment ...\n")
        stack.stop()
        sys.stdout.write("Stopped.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
