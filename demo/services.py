"""Throwaway PostgreSQL and Redis servers on 127.0.0.1, for ``make scale`` and the tests.

Each runs from a temporary directory with a free port, in a process group of its own, and
is stopped (SIGTERM, then SIGKILL for the whole group) when its ``with`` block ends, even on
failure. Debian's ``postgresql`` and ``redis-server`` packages provide the binaries; ``make
scale-deps`` installs them when they are missing. Run as root, PostgreSQL runs as the
``postgres`` user, since ``initdb`` refuses root.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TypeVar

STOP_GRACE_SECONDS = 15.0


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to a process group; a group that is gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(
    process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, grace: float = STOP_GRACE_SECONDS
) -> None:
    """Send ``sig`` to the process group, wait up to ``grace`` s for all of it to exit, then SIGKILL the rest."""
    stop_groups([process], sig, grace)


def stop_groups(
    processes: Sequence[subprocess.Popen[bytes]],
    sig: signal.Signals = signal.SIGTERM,
    grace: float = STOP_GRACE_SECONDS,
) -> None:
    """:func:`stop_group` for several groups at once: one grace period for all of them, not one each."""
    for process in processes:
        signal_group(process.pid, sig)
    deadline = time.monotonic() + grace
    running = list(processes)
    while running and time.monotonic() < deadline:
        for process in list(running):
            process.poll()  # reap the leader, so that it does not keep the group alive as a zombie
            try:
                os.killpg(process.pid, 0)
            except (ProcessLookupError, PermissionError):
                running.remove(process)
        time.sleep(0.1)
    # Whatever did not stop in time goes; children can outlive their leader.
    for process in processes:
        signal_group(process.pid, signal.SIGKILL)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)


def start_group(command: Sequence[str], log: IO[bytes], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session (its own process group), its output appended to ``log``."""
    return subprocess.Popen(  # noqa: S603 - commands are built here, never from input
        list(command), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it listened on port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


_S = TypeVar("_S", bound="Service")


class Service:
    """A server with ``start`` and ``stop``, as a context manager; a start that fails half-way stops what it began."""

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb``."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make scale-deps` (Debian's postgresql package)")
    return found[-1].parent


class LocalPostgres(Service):
    """A PostgreSQL cluster in a new temporary directory, on 127.0.0.1 only, with password authentication.

    The directory is made directly under the system's temporary folder, so that the ``postgres``
    user can reach it when run as root, and it is removed on :meth:`stop`.

    :param log_dir: where ``postgres.log`` goes.
    :param settings: extra server settings, ``-c name=value``.
    """

    user = "campaign"

    def __init__(self, log_dir: Path, *, settings: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir.resolve()
        self.root = Path(tempfile.mkdtemp(prefix="campaign-postgres-"))
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.settings = settings or {}
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def url(self, database: str, driver: str = "postgresql") -> str:
        """A SQLAlchemy-style URL of ``database`` (e.g. ``postgresql+psycopg2``)."""
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connection(self, database: str) -> dict[str, object]:
        """An Airflow connection (JSON form) to ``database``."""
        return {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": self.port,
            "login": self.user,
            "password": self.password,
            "schema": database,
        }

    def _as_owner(self, command: Sequence[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def start(self) -> LocalPostgres:
        """``initdb`` and start the server; return once it accepts connections."""
        bin_dir = postgres_bin_dir()
        data, sockets = self.root / "data", self.root / "sockets"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        sockets.mkdir(exist_ok=True)
        password_file = self.root / "pwfile"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(sockets, "postgres")
            shutil.chown(password_file, "postgres")
        password_file.chmod(0o600)
        self._log = (self.log_dir / "postgres.log").open("ab")
        subprocess.run(  # noqa: S603 - fixed command
            self._as_owner(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", self.user, "--auth=scram-sha-256",
                 f"--pwfile={password_file}", "-E", "UTF8", "--no-sync"]
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            check=True,
        )  # fmt: skip
        password_file.unlink()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(sockets),
            "max_connections": "200",
            **self.settings,
        }
        command = [str(bin_dir / "postgres"), "-D", str(data)]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        self._process = start_group(self._as_owner(command), self._log)
        _wait_for_port(self.port, self._process, "PostgreSQL")
        self._wait_until_ready()
        return self

    def _wait_until_ready(self, timeout: float = 60.0) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.url("postgres")).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (owned by :attr:`user`); return its name."""
        import psycopg2

        conn = psycopg2.connect(self.url("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return name

    def stop(self) -> None:
        """Stop the server (PostgreSQL's fast shutdown), remove its directory and close its log."""
        process, self._process = self._process, None
        if process is not None:
            stop_group(process, signal.SIGINT)  # PostgreSQL's fast shutdown; SIGTERM would wait for clients
        shutil.rmtree(self.root, ignore_errors=True)
        if self._log is not None:
            self._log.close()
            self._log = None


class LocalRedis(Service):
    """A Redis server on 127.0.0.1 without persistence, from ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LocalRedis:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError("redis-server is not installed: run `make scale-deps` (Debian's redis-server package)")
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = (self.root / "redis.log").open("ab")
        self._process = start_group(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--protected-mode", "yes",
             "--save", "", "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
            self._log,
        )  # fmt: skip
        _wait_for_port(self.port, self._process, "Redis")
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_group(process)
        if self._log is not None:
            self._log.close()
            self._log = None
