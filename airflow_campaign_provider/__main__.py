"""Command line: ``python -m airflow_campaign_provider preview SAMPLE.json`` (see the README, "Preview")."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_campaign_provider.exceptions import ExternalApiError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status: 0 when the sample maps cleanly, 1 on any error."""
    parser = argparse.ArgumentParser(prog="python -m airflow_campaign_provider")
    commands = parser.add_subparsers(dest="command", required=True)
    preview = commands.add_parser(
        "preview",
        help="map a sample response and show the mapping, the first rows, the rejects and the empty columns",
        description="The External API activity's Parse button: map a sample response file, or a live one "
        "fetched through the hook (every guardrail applies), and show what the mapping makes of it.",
    )
    preview.add_argument("sample", nargs="?", type=Path, help="a JSON file holding a sample response")
    preview.add_argument("--records", help="the records path, e.g. '$.match.teams[*].players[*]' (else inferred)")
    preview.add_argument("--mapping", type=Path, help="a JSON file holding an outbound mapping (else inferred)")
    preview.add_argument("--conn-id", help="fetch a live sample with this campaign_external_api connection")
    preview.add_argument("--endpoint", default="", help="the endpoint to GET with --conn-id")
    preview.add_argument("--format", choices=("python", "json"), default="python", help="how to print the mapping")
    preview.add_argument("--rows", type=int, default=10, help="rows to show per table (default 10)")
    args = parser.parse_args(argv)
    if (args.sample is None) == (args.conn_id is None):
        parser.error("give either a sample file or --conn-id (with --endpoint)")
    try:
        return _preview(args)
    except (ExternalApiError, OSError, ValueError) as err:
        sys.stderr.write(f"{type(err).__name__}: {err}\n")
        return 1


def _preview(args: argparse.Namespace) -> int:
    from airflow_campaign_provider.preview import preview

    outbound: Any = None
    if args.mapping is not None:
        outbound = json.loads(args.mapping.read_text(encoding="utf-8"))
        if args.records:
            outbound = {**outbound, "records": args.records}
    shown = preview(outbound, _sample(args), records=args.records)
    shown.render(rows=args.rows, style=args.format)
    return 0 if shown.error is None else 1


def _sample(args: argparse.Namespace) -> Any:
    if args.sample is not None:
        from airflow_campaign_provider.json_body import parse_json

        return parse_json(args.sample.read_bytes(), "application/json", url=str(args.sample))
    from airflow_campaign_provider.hooks.external_api import ExternalApiHook

    with ExternalApiHook(args.conn_id) as hook:
        return hook.request("GET", args.endpoint).json()


if __name__ == "__main__":
    sys.exit(main())
