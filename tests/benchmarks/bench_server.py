"""The benchmark's HTTPS server, run in its own process so that it never competes for the client's GIL.

Usage: ``python -m tests.benchmarks.bench_server CA_DIR PORT_FILE``. It serves
``/v1/big`` (about 5 MiB of flat JSON records), ``/v1/nested`` (about 5 MiB of records
that nest an object and an array) and ``/v1/records?n=N`` (N flat offer records).
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

from demo.https_server import JsonRequestHandler, LocalHttpsServer
from demo.tls import ensure_local_ca


@cache
def records_body(count: int) -> bytes:
    """``{"data": [...]}`` with ``count`` offer records of about 100 bytes each."""
    data = [
        {
            "code": f"OFFER-{i:06d}",
            "segment": ("gold", "silver", "bronze")[i % 3],
            "discount": round((i % 40) * 0.5, 1),
            "valid_until": f"2026-12-{1 + i % 28:02d}",
            "zip": f"{10000 + i % 9000}",
        }
        for i in range(count)
    ]
    return json.dumps({"data": data}).encode()


def big_body() -> bytes:
    """About 5 MiB of flat records, just under the default response size limit."""
    return records_body(47_000)


@cache
def nested_body() -> bytes:
    """About 5 MiB of coupon records that nest an object and an array, as many real APIs do."""
    data = [
        {
            "zip": f"{10000 + i % 9000}",
            "coupon": {"code": f"C{i:06d}", "discount": (i % 40) * 0.5},
            "tags": ["spring", ("gold", "silver")[i % 2]],
            "valid_until": f"2026-12-{1 + i % 28:02d}",
        }
        for i in range(40_000)
    ]
    return json.dumps({"data": data}).encode()


class BenchHandler(JsonRequestHandler):
    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/v1/big":
            self.send_bytes(200, big_body())
        elif path == "/v1/nested":
            self.send_bytes(200, nested_body())
        elif path == "/v1/records":
            count = int(dict(p.split("=") for p in query.split("&") if p).get("n", "10000"))
            self.send_bytes(200, records_body(count))
        else:
            self.send_json(404, {"error": "not found"})


def main() -> None:
    ca = ensure_local_ca(Path(sys.argv[1]))
    server = LocalHttpsServer(BenchHandler, ca)
    big_body(), nested_body()  # build once before announcing the port
    Path(sys.argv[2]).write_text(str(server.port))
    server.serve_forever()


if __name__ == "__main__":
    main()
