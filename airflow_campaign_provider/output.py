"""Where mapped rows go, page by page: XCom under a size cap, or JSON Lines in object storage.

Rows are handed over a page at a time, so XCom mode fails as soon as the rows so far
pass ``xcom_max_bytes`` (not after fetching every page), and ``output_path`` mode keeps
only one page in memory. With named tables, XCom gets ``{table: rows}`` and each table
gets its own file. A failed task leaves no half-written file behind.
"""

from __future__ import annotations

import json
from typing import IO, Any

from airflow_campaign_provider.exceptions import XComTooLargeError

Row = dict[str, Any]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class RowOutput:
    """Collect rows for XCom, or stream them to ``output_path`` as JSON Lines.

    :param output_path: an ``ObjectStoragePath`` URI (``file://``, ``s3://`` …), or None for XCom.
        A named table writes next to it, the table name before the suffix:
        ``lineup.jsonl`` gives ``lineup.players.jsonl``.
    :param xcom_max_bytes: the largest serialized rows allowed in XCom.
    """

    def __init__(self, output_path: str | None, xcom_max_bytes: int) -> None:
        self.output_path = output_path
        self.xcom_max_bytes = xcom_max_bytes
        self.count = 0
        self._tables: dict[str | None, list[Row]] = {}
        self._counts: dict[str | None, int] = {}
        self._size = 2  # the brackets (or braces) of the value
        self._files: dict[str | None, tuple[Any, IO[str]]] = {}

    def add(self, table: str | None, rows: list[Row]) -> None:
        """Take one page's rows of ``table`` (None: the one table of a mapping without tables), in order.

        :raises XComTooLargeError: in XCom mode, the rows so far serialize to more than ``xcom_max_bytes``.
        """
        if table not in self._counts:
            self._counts[table] = 0
            self._tables[table] = []
            if table is not None and not self.output_path:
                self._size += len(_dumps(table).encode()) + 4  # "name":[] and a comma
        if self.output_path:
            self._open(table)[1].writelines(_dumps(row) + "\n" for row in rows)
        elif rows:
            # Each row's JSON plus its separating comma: the size of what XCom will store.
            self._size += len(_dumps(rows).encode()) - 2 + (1 if self._counts[table] else 0)
            if self._size > self.xcom_max_bytes:
                raise XComTooLargeError(
                    f"XCom size limit: the {self.count + len(rows):,} rows mapped so far serialize to "
                    f"{self._size:,} bytes, over xcom_max_bytes={self.xcom_max_bytes:,}. Set output_path (for "
                    "example 'file:///data/{{ run_id }}.jsonl' or an s3:// URI) to write them to object "
                    "storage, or raise xcom_max_bytes."
                )
            self._tables[table].extend(rows)
        self._counts[table] += len(rows)
        self.count += len(rows)

    def value(self) -> Any:
        """The XCom return value: rows (or ``{table: rows}``), or where the files are once complete."""
        if not self.output_path:
            return self._tables.get(None, []) if None in self._tables else dict(self._tables)
        done: dict[str | None, Any] = {}
        for table in self._counts or [None]:
            path, out = self._open(table)  # an empty result still writes an (empty) file
            out.close()
            done[table] = {"path": str(path), "rows": self._counts.get(table, 0)}
        self._files.clear()
        return done.get(None, done)

    def discard(self) -> None:
        """After a failure: close and remove the files written so far."""
        for path, out in self._files.values():
            out.close()
            path.unlink(missing_ok=True)
        self._files.clear()

    def _open(self, table: str | None) -> tuple[Any, IO[str]]:
        if table not in self._files:
            from airflow.sdk import ObjectStoragePath

            path = ObjectStoragePath(str(self.output_path))
            if table is not None:
                path = path.with_name(f"{path.stem}.{table}{path.suffix}")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files[table] = (path, path.open("w", encoding="utf-8"))  # type: ignore[no-untyped-call]
        return self._files[table]
