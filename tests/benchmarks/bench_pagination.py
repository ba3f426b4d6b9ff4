"""Pagination side by side, in one run: ExternalApiHook/Operator against HttpOperator and a plain requests loop.

Run with ``make bench`` (or ``.venv/bin/python -m tests.benchmarks.bench_pagination``). The HTTPS
server runs in its own process on 127.0.0.1 and counts the TLS connections each approach opens.
The clients run in a process with Airflow imported. Figures are medians; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from tests.benchmarks.bench_external_api import configure_env, start_server, time_rounds, vm_hwm_kib
from tests.benchmarks.bench_paging_server import BIG_PAGES, LATENCY, PAGES, PER_PAGE

ROUNDS = 7
COLUMNS = {
    "records": "$.data[*]",
    "columns": [
        {"name": "code", "type": "text", "max_length": 64},
        {"name": "segment", "type": "text"},
        {"name": "discount", "type": "float"},
        {"name": "valid_until", "type": "date"},
        {"name": "zip", "type": "text"},
    ],
}


def requests_loop(ca: str, port: int) -> list[Any]:
    """The hand-written baseline: one ``requests.Session``, following ``Link: rel="next"``."""
    import requests

    records: list[Any] = []
    url: str | None = f"https://localhost:{port}/v1/pages"
    with requests.Session() as session:
        while url:
            response = session.get(url, verify=ca, timeout=60)
            response.raise_for_status()
            records.extend(response.json()["data"])
            link = response.links.get("next", {}).get("url")
            url = urljoin(url, link) if link else None
    return records


def http_operator() -> list[Any]:
    """``HttpOperator`` with a ``pagination_function``, as its documentation shows."""
    from airflow.providers.http.operators.http import HttpOperator

    def next_page(response: Any) -> dict[str, str] | None:
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        parts = urlsplit(link)
        return {"endpoint": f"{parts.path.lstrip('/')}?{parts.query}"}

    operator = HttpOperator(
        task_id="paged",
        http_conn_id="bench_http",
        method="GET",
        endpoint="v1/pages",
        pagination_function=next_page,
        response_filter=lambda responses: [r for response in responses for r in response.json()["data"]],
        log_response=False,
    )
    records: list[Any] = operator.execute(context={})
    return records


def hook_paginate(endpoint: str = "pages", pagination: dict[str, Any] | None = None) -> list[Any]:
    from airflow_campaign_provider.hooks.external_api import ExternalApiHook

    with ExternalApiHook("bench") as hook:
        pages = hook.paginate("GET", endpoint, pagination=pagination or {"type": "link_header", "max_pages": 1000})
        return [record for page in pages for record in page.records]


def operator_core(endpoint: str, pagination: dict[str, Any], output_path: str | None = None) -> Any:
    """What ExternalApiOperator does for a paged fetch: every page parsed, mapped and handed to the output."""
    from airflow_campaign_provider.hooks.external_api import ExternalApiHook
    from airflow_campaign_provider.json_body import gc_paused
    from airflow_campaign_provider.mapping_result import SINGLE_TABLE
    from airflow_campaign_provider.outbound import compile_outbound
    from airflow_campaign_provider.output import RowOutput

    plan = compile_outbound(COLUMNS)
    output = RowOutput(output_path, 1 << 40)
    total = None
    with ExternalApiHook("bench") as hook:
        for page in hook.paginate("GET", endpoint, pagination=pagination, records_path="$.data[*]"):
            with gc_paused():
                result = plan.map(page.document)
            table = result.tables[SINGLE_TABLE]
            output.add(None, table.rows)
            table.hand_over()
            if total is None:
                total = result
            else:
                total.extend(result)
    assert total is not None
    total.check_quality()
    return output.value()


def connections(ca: str, port: int) -> int:
    import requests

    return int(requests.get(f"https://localhost:{port}/v1/connections", verify=ca, timeout=10).json()["connections"])


def count_connections(ca: str, port: int, run: Callable[[], Any]) -> int:
    """Connections one run opens (the counting request itself opens one more)."""
    before = connections(ca, port)
    run()
    return connections(ca, port) - before - 1


def speed(ca: str, port: int) -> dict[str, Any]:
    import airflow.providers.http.operators.http  # noqa: F401 - load everything a worker has loaded

    import airflow_campaign_provider.hooks.external_api  # noqa: F401

    link_header = {"type": "link_header", "max_pages": 1000}
    approaches: dict[str, Callable[[], Any]] = {
        "requests loop, one Session": lambda: requests_loop(ca, port),
        "HttpOperator + pagination_function": http_operator,
        "ExternalApiHook.paginate()": hook_paginate,
        "ExternalApiOperator core: paginate + parse + map": lambda: operator_core("pages", link_header),
    }
    expected = PAGES * PER_PAGE
    for name, run in approaches.items():
        result = run()
        count = len(result) if isinstance(result, list) else result["rows"]
        assert count == expected, f"{name} returned {count} records, not {expected}"
    pages = time_rounds(approaches, ROUNDS)
    conns = {name: count_connections(ca, port, run) for name, run in approaches.items()}

    offset = {"type": "offset", "limit": PER_PAGE, "total_path": "$.total", "max_pages": 1000}
    sequential = {**offset, "concurrency": 1}
    concurrent = {**offset, "concurrency": 4}
    in_order = [r["code"] for r in hook_paginate("slow", concurrent)]
    assert in_order == [f"OFFER-{i:06d}" for i in range(expected)], "rows must keep page order"
    latency = time_rounds(
        {
            "concurrency 1": lambda: operator_core("slow", sequential),
            "concurrency 4": lambda: operator_core("slow", concurrent),
        },
        3,
    )
    return {"pages": pages, "connections": conns, "latency": latency}


def memory_child(ca: str, port: int, output: str) -> None:
    """Print the peak-RSS increase of a 100-page, 1-MiB-a-page fetch to output_path, in this fresh process."""
    import airflow_campaign_provider.hooks.external_api  # noqa: F401

    link_header = {"type": "link_header", "max_pages": 1000}
    hook_paginate("pages", {**link_header, "max_pages": 2, "on_max_pages": "stop"})  # warm-up: imports, TLS
    before = vm_hwm_kib()
    value = operator_core("big", link_header, output)
    after = vm_hwm_kib()
    page_bytes = Path(output.removeprefix("file://")).stat().st_size / BIG_PAGES
    print(json.dumps({"peak_mib": (after - before) / 1024, "rows": value["rows"], "page_mib": page_bytes / 2**20}))


def report(results: dict[str, Any], memory: dict[str, Any]) -> str:
    pages, conns = results["pages"], results["connections"]
    base = pages["requests loop, one Session"]
    http_operator_ms = pages["HttpOperator + pagination_function"]
    lines = [
        f"| {PAGES} pages x {PER_PAGE} records, local TLS | median ms | vs requests loop | vs HttpOperator "
        "| TLS connections |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {ms:.0f} | {ms / base:.2f}x | {ms / http_operator_ms:.2f}x | {conns[name]} |"
        for name, ms in pages.items()
    ]
    one, four = results["latency"]["concurrency 1"], results["latency"]["concurrency 4"]
    lines += [
        "",
        f"| {PAGES} pages, {LATENCY * 1000:.0f} ms server latency a page, operator core "
        "| median ms | vs concurrency 1 |",
        "|---|---:|---:|",
        f"| concurrency 1 | {one:.0f} | 1.00x |",
        f"| concurrency 4 | {four:.0f} | {four / one:.2f}x |",
        "",
        f"| {BIG_PAGES} pages of {memory['page_mib']:.1f} MiB to output_path | peak RSS over baseline | bound |",
        "|---|---:|---:|",
        f"| operator core, {memory['rows']:,} rows | {memory['peak_mib']:.0f} MiB "
        f"| {64 + 4 * memory['page_mib']:.0f} MiB (64 MiB + 4x one page) |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-child", nargs=3, metavar=("CA", "PORT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    # One line per page would measure the console, not the fetch: keep INFO logs out of the timings.
    logging.getLogger("airflow.task").setLevel(logging.WARNING)
    if args.memory_child:
        ca, port, output = args.memory_child
        memory_child(ca, int(port), output)
        return
    with tempfile.TemporaryDirectory(prefix="campaign-bench-paging-") as tmp:
        workdir = Path(tmp)
        proc, port = start_server(workdir, "tests.benchmarks.bench_paging_server")
        try:
            ca = configure_env(workdir, port)
            results = speed(ca, port)
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.benchmarks.bench_pagination",
                    "--memory-child",
                    ca,
                    str(port),
                    f"file://{workdir / 'big.jsonl'}",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            memory = json.loads(out.strip().splitlines()[-1])
        finally:
            proc.terminate()
            proc.wait()
    print(report(results, memory))


if __name__ == "__main__":
    main()
