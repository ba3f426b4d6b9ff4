"""Run the demo environment, or print its connections for a shell.

``python -m demo serve --state-dir .demo`` serves until Ctrl-C or SIGTERM;
``eval "$(python -m demo env --state-dir .demo)"`` then gives another
shell (an Airflow scheduler, say) the ``AIRFLOW_CONN_*`` variables of the running environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from demo.environment import (
    STATE_FILE,
    DemoEnvironment,
    connection_env_vars,
    demo_connections,
)


def serve(state_dir: Path, api_port: int, smtp_port: int, dedupe_message_ids: bool = False) -> None:
    """Start the environment, print where it is, and block until SIGINT or SIGTERM."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops as cleanly as Ctrl-C
    with (
        contextlib.suppress(KeyboardInterrupt),
        DemoEnvironment(
            state_dir, api_port=api_port, smtp_port=smtp_port, dedupe_message_ids=dedupe_message_ids
        ) as env,
    ):
        state = env.describe()
        sys.stdout.write(
            f"Campaign demo API  {state['base_url']}/v1  (token URL {state['base_url']}/oauth/token)\n"
            f"SMTP sink          {state['smtp_host']}:{state['smtp_port']}  (messages in {state['outbox']})\n"
            f"Local CA           {state['ca_cert']}\n"
            f"Connections        {', '.join(env.connections())}  (see `env`; state in {env.state_dir / STATE_FILE})\n"
            "Press Ctrl-C to stop.\n"
        )
        sys.stdout.flush()
        threading.Event().wait()
    sys.stdout.write("Demo environment stopped.\n")


def print_env(state_dir: Path) -> None:
    """Print ``export AIRFLOW_CONN_...`` lines for the environment described by ``state_dir/demo.json``."""
    state = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
    connections = demo_connections(
        state["base_url"], state["smtp_port"], Path(state["ca_cert"]), Path(state["audience_db"])
    )
    for name, value in connection_env_vars(connections).items():
        sys.stdout.write(f"export {name}={shlex.quote(value)}\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the campaign API and the SMTP sink until stopped")
    env_parser = commands.add_parser("env", help="print the connections of a running `serve` as shell exports")
    for sub in (serve_parser, env_parser):
        sub.add_argument("--state-dir", type=Path, default=Path(".demo"), help="default: .demo")
    serve_parser.add_argument("--api-port", type=int, default=0, help="default: a free port")
    serve_parser.add_argument("--smtp-port", type=int, default=0, help="default: a free port")
    serve_parser.add_argument(
        "--dedupe-message-ids", action="store_true", help="drop a message whose Message-ID was stored already"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.state_dir, args.api_port, args.smtp_port, args.dedupe_message_ids)
    else:
        print_env(args.state_dir)


if __name__ == "__main__":
    main()
