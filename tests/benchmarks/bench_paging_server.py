"""The pagination benchmark's HTTPS server, in its own process. It counts the TLS connections it accepts.

Usage: ``python -m tests.benchmarks.bench_paging_server CA_DIR PORT_FILE``. Endpoints:

* ``/v1/pages?page=N``: 200 pages of 50 offer records, each with a ``Link: rel="next"`` header.
* ``/v1/slow?offset=O&limit=L``: the same records by offset, with ``total``, 20 ms per page.
* ``/v1/big?page=N``: 100 pages of about 1 MiB each, with ``Link`` headers.
* ``/v1/connections``: how many connections were accepted so far.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from demo.https_server import JsonRequestHandler, LocalHttpsServer
from demo.tls import ensure_local_ca

PAGES = 200
PER_PAGE = 50
BIG_PAGES = 100
BIG_PER_PAGE = 9_500  # about 1 MiB of JSON a page
LATENCY = 0.020

_connections = 0
_lock = threading.Lock()


def record(i: int) -> dict[str, Any]:
    return {
        "code": f"OFFER-{i:06d}",
        "segment": ("gold", "silver", "bronze")[i % 3],
        "discount": round((i % 40) * 0.5, 1),
        "valid_until": f"2026-12-{1 + i % 28:02d}",
        "zip": f"{10000 + i % 9000}",
    }


@cache
def page_body(page: int, per_page: int) -> bytes:
    start = (page - 1) * per_page
    return json.dumps({"data": [record(i) for i in range(start, start + per_page)]}).encode()


class PagingHandler(JsonRequestHandler):
    def setup(self) -> None:
        global _connections
        super().setup()
        with _lock:
            _connections += 1

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/v1/pages":
            self._page(parts.path, int(query.get("page", "1")), PAGES, PER_PAGE)
        elif parts.path == "/v1/big":
            self._page(parts.path, int(query.get("page", "1")), BIG_PAGES, BIG_PER_PAGE)
        elif parts.path == "/v1/slow":
            time.sleep(LATENCY)
            offset, limit = int(query["offset"]), int(query["limit"])
            data = [record(i) for i in range(offset, min(offset + limit, PAGES * PER_PAGE))]
            self.send_json(200, {"data": data, "total": PAGES * PER_PAGE})
        elif parts.path == "/v1/connections":
            self.send_json(200, {"connections": _connections})
        else:
            self.send_json(404, {"error": "not found"})

    def _page(self, path: str, page: int, pages: int, per_page: int) -> None:
        headers = {"Link": f'<{path}?page={page + 1}>; rel="next"'} if page < pages else {}
        self.send_bytes(200, page_body(page, per_page), headers=headers)


def main() -> None:
    ca = ensure_local_ca(Path(sys.argv[1]))
    server = LocalHttpsServer(PagingHandler, ca)
    for page in range(1, PAGES + 1):
        page_body(page, PER_PAGE)
    Path(sys.argv[2]).write_text(str(server.port))
    server.serve_forever()


if __name__ == "__main__":
    main()
