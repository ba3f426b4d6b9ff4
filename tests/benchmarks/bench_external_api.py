"""Side-by-side benchmarks, in one run: ExternalApiHook/Operator against HttpHook and plain requests.

Run with ``make bench`` (or ``.venv/bin/python -m tests.benchmarks.bench_external_api``).
The HTTPS server runs in its own process on 127.0.0.1; every client runs in a
process that has Airflow imported, as a worker has. Figures are medians; compare
the ratios, not the absolute times, which depend on the machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROUNDS = 15
BODIES = {
    "flat": (
        "big",
        {
            "records": "$.data[*]",
            "columns": [
                {"name": "code", "path": "code", "type": "text", "max_length": 64},
                {"name": "segment", "path": "segment", "type": "text"},
                {
                    "name": "discount",
                    "path": "discount",
                    "type": "float",
                    "on_error": "use_default",
                    "default": 0.0,
                },
                {"name": "valid_until", "path": "valid_until", "type": "date"},
                {"name": "zip", "path": "zip", "type": "text"},
            ],
        },
    ),
    "nested": (
        "nested",
        {
            "records": "$.data[*]",
            "columns": [
                {"name": "zip", "path": "zip", "type": "text"},
                {"name": "code", "path": "coupon.code", "type": "text", "max_length": 64},
                {"name": "discount", "path": "coupon.discount", "type": "float"},
                {"name": "tier", "path": "$.tags[1]", "type": "text"},
                {"name": "valid_until", "path": "valid_until", "type": "date"},
            ],
        },
    ),
}
MAPPING_SPEC = BODIES["flat"][1]


def vm_hwm_kib() -> int:
    """Peak RSS of this process (VmHWM); ru_maxrss would include the parent's peak after fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_rounds(approaches: dict[str, Callable[[], Any]], rounds: int = ROUNDS) -> dict[str, float]:
    """Interleave the approaches round by round so that drift hits all of them alike.

    Each call starts from the same collector state (a full collection, untimed, and
    the previous result freed), so no approach pays for garbage another one left.
    """
    for run in approaches.values():
        run()  # warm-up: imports, first TLS handshake, caches
    samples: dict[str, list[float]] = {name: [] for name in approaches}
    for _ in range(rounds):
        for name, run in approaches.items():
            gc.collect()
            started = time.perf_counter()
            result = run()
            samples[name].append(time.perf_counter() - started)
            del result
    return {name: median_ms(values) for name, values in samples.items()}


def clients(ca: str, port: int, endpoint: str, spec: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """Each way to fetch and parse one body, with a fresh client per call, plus our operator's core path."""
    import requests
    from airflow.providers.http.hooks.http import HttpHook

    from airflow_campaign_provider.hooks.external_api import ExternalApiHook

    url = f"https://localhost:{port}/v1/{endpoint}"
    return {
        "requests.get().json()": lambda: requests.get(url, verify=ca, timeout=60).json(),
        "HttpHook.run().json()": lambda: HttpHook("GET", http_conn_id="bench_http").run(f"v1/{endpoint}").json(),
        "ExternalApiHook.get_json()": lambda: ExternalApiHook("bench").get_json(endpoint),
        "ExternalApiOperator core: fetch + typed decode + map": lambda: fetch_and_map(endpoint, spec, typed=True),
        "ExternalApiOperator core, slow path: fetch + parse + map": lambda: fetch_and_map(endpoint, spec, typed=False),
    }


def fetch_and_map(endpoint: str, spec: dict[str, Any], *, typed: bool) -> Any:
    """What ExternalApiOperator does between the request and XCom, collector paused.

    ``typed``: ``map_response``, the operator's path without a response schema (msgspec
    decodes straight into typed records). Otherwise parse the whole document, then map,
    as with a response schema.
    """
    from airflow_campaign_provider.hooks.external_api import ExternalApiHook
    from airflow_campaign_provider.json_body import gc_paused
    from airflow_campaign_provider.outbound import compile_outbound

    plan = compile_outbound(spec)
    with ExternalApiHook("bench") as hook:
        response = hook.request("GET", endpoint)
        with gc_paused():
            result = plan.map_response(response) if typed else plan.map(response.json())
            return result.value


def speed(ca: str, port: int) -> dict[str, Any]:
    import airflow.providers.http.hooks.http  # noqa: F401 - load everything a worker has loaded

    import airflow_campaign_provider.hooks.external_api  # noqa: F401

    tracked = len(gc.get_objects())
    fetch = {body: time_rounds(clients(ca, port, *BODIES[body])) for body in BODIES}

    import requests

    from airflow_campaign_provider.json_body import gc_paused, parse_json
    from airflow_campaign_provider.outbound import compile_outbound
    from airflow_campaign_provider.typed_mapping import compile_typed

    body = requests.get(f"https://localhost:{port}/v1/records?n=10000", verify=ca, timeout=60).content
    plan = compile_outbound(MAPPING_SPEC)
    typed = compile_typed(plan)
    assert typed is not None, "the benchmark mapping compiles to the typed path"
    document = json.loads(body)

    def loads_paused() -> Any:
        with gc_paused():
            return json.loads(body)

    def map_paused() -> Any:
        with gc_paused():
            return plan.map(document)

    def parse_and_map() -> Any:
        with gc_paused():
            return plan.map(parse_json(body, "application/json", url="bench"))

    mapping = time_rounds(
        {
            "json.loads, 10k records": loads_paused,
            "map a parsed document, 10k records": map_paused,
            "parse_json + map (slow path), 10k records": parse_and_map,
            "typed decode + map (fast path), 10k records": lambda: typed.map(body, url="bench"),
        }
    )
    return {"tracked_objects": tracked, "fetch": fetch, "mapping": mapping, "body_10k": len(body)}


def memory_child(body: str, approach: str, ca: str, port: int) -> None:
    """Print the peak-RSS increase of one call in this fresh process."""
    import airflow.providers.http.hooks.http  # noqa: F401

    import airflow_campaign_provider.hooks.external_api  # noqa: F401

    run = clients(ca, port, *BODIES[body])[approach]
    before = vm_hwm_kib()
    result = run()
    after = vm_hwm_kib()
    del result
    print(json.dumps({"peak_mib": (after - before) / 1024}))


def import_ms(module: str, repeats: int = 7) -> float:
    """Median incremental import time of ``module`` after ``airflow.sdk`` (python -X importtime)."""
    samples = []
    for _ in range(repeats):
        err = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-c",
                f"import airflow.sdk, airflow.sdk.bases.operator\nimport {module}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        pattern = re.compile(rf"import time:\s+\d+ \|\s+(\d+) \|\s*{re.escape(module)}$", re.MULTILINE)
        samples.append(int(pattern.findall(err)[-1]) / 1_000_000)
    return median_ms(samples)


def start_server(workdir: Path, module: str = "tests.benchmarks.bench_server") -> tuple[subprocess.Popen[bytes], int]:
    """Start a benchmark server module in its own process; return it and its port."""
    port_file = workdir / "port"
    proc = subprocess.Popen([sys.executable, "-m", module, str(workdir / "ca"), str(port_file)])
    for _ in range(600):
        if port_file.exists() and port_file.read_text():
            return proc, int(port_file.read_text())
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the benchmark server did not start")


def configure_env(workdir: Path, port: int) -> str:
    ca = str(workdir / "ca" / "ca.pem")
    os.environ["AIRFLOW_HOME"] = str(workdir / "airflow")
    # One log line per call would interleave with the tables and time the logging too.
    os.environ["AIRFLOW__LOGGING__NAMESPACE_LEVELS"] = "airflow.task.hooks=WARNING"
    os.environ["AIRFLOW_CONN_BENCH"] = json.dumps(
        {
            "conn_type": "campaign_external_api",
            "host": f"https://localhost:{port}/v1",
            "extra": {"verify": ca, "allow_private_hosts": True},
        }
    )
    os.environ["AIRFLOW_CONN_BENCH_HTTP"] = json.dumps(
        {"conn_type": "http", "host": "localhost", "schema": "https", "port": port, "extra": {"verify": ca}}
    )
    return ca


def report(results: dict[str, Any], memory: dict[tuple[str, str], float], imports: dict[str, float]) -> str:
    lines = [f"Objects tracked by the GC in the client process: {results['tracked_objects']:,}"]
    for body, timings in results["fetch"].items():
        base = timings["requests.get().json()"]
        http_hook = timings["HttpHook.run().json()"]
        lines += [
            "",
            f"| {body} body, about 5 MiB: fetch + parse | median ms | vs requests | vs HttpHook | peak RSS MiB |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {name} | {ms:.0f} | {ms / base:.2f}x | {ms / http_hook:.2f}x | {memory[body, name]:.0f} |"
            for name, ms in timings.items()
        ]
    mapping = results["mapping"]
    loads = mapping["json.loads, 10k records"]
    lines += [
        "",
        f"| 10,000 flat records ({results['body_10k']:,} bytes), collector paused | median ms | vs json.loads |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {ms:.1f} | {ms / loads:.2f}x |" for name, ms in mapping.items()]
    lines += ["", "| import after airflow.sdk (python -X importtime) | median ms |", "|---|---:|"]
    lines += [f"| {module} | {ms:.0f} |" for module, ms in imports.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-child", nargs=4, metavar=("BODY", "APPROACH", "CA", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        body, approach, ca, port = args.memory_child
        memory_child(body, approach, ca, int(port))
        return

    with tempfile.TemporaryDirectory(prefix="campaign-bench-") as tmp:
        workdir = Path(tmp)
        proc, port = start_server(workdir)
        try:
            ca = configure_env(workdir, port)
            results = speed(ca, port)
            memory = {}
            for body, timings in results["fetch"].items():
                for approach in timings:
                    out = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "tests.benchmarks.bench_external_api",
                            "--memory-child",
                            body,
                            approach,
                            ca,
                            str(port),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    memory[body, approach] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
            imports = {
                module: import_ms(module)
                for module in (
                    "airflow_campaign_provider.hooks.external_api",
                    "airflow.providers.http.hooks.http",
                    "airflow_campaign_provider.operators.external_api",
                    "airflow.providers.http.operators.http",
                )
            }
        finally:
            proc.terminate()
            proc.wait()
    print(report(results, memory, imports))


if __name__ == "__main__":
    main()
