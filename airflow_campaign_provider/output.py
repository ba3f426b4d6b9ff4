"""Where mapped rows go, page by page: XCom under a size cap, or JSON Lines in object storage.

Rows are handed over a page at a time, so XCom mode fails as soon as the rows so far
pass ``xcom_max_bytes`` (not after fetching every page), and ``output_path`` mode keeps
only one page in memory. A failed task leaves no half-written file behind.
"""

from __future__ import annotations

import json
from typing import IO, Any

from airflow_campaign_provider.exceptions import XComTooLargeError

Row = dict[str, Any]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class RowSink:
    """Collect rows for XCom, or stream them to ``output_path`` as JSON Lines.

    :param output_path: an ``ObjectStoragePath`` URI (``file://``, ``s3://`` …), or None for XCom.
    :param xcom_max_bytes: the largest serialized rows allowed in XCom.
    """

    def __init__(self, output_path: str | None, xcom_max_bytes: int) -> None:
        self.output_path = output_path
        self.xcom_max_bytes = xcom_max_bytes
        self.count = 0
        self._rows: list[Row] = []
        self._size = 2  # the brackets of the JSON array
        self._path: Any = None
        self._file: IO[str] | None = None

    def add(self, rows: list[Row]) -> None:
        """Take one page's rows, in order.

        :raises XComTooLargeError: in XCom mode, the rows so far serialize to more than ``xcom_max_bytes``.
        """
        if not rows:
            return
        if self.output_path:
            out = self._open()
            out.writelines(_dumps(row) + "\n" for row in rows)
        else:
            # Each row's JSON plus its separating comma: the size of the array XCom will store.
            self._size += len(_dumps(rows).encode()) - 2 + (1 if self.count else 0)
            if self._size > self.xcom_max_bytes:
                raise XComTooLargeError(
                    f"XCom size limit: the {self.count + len(rows):,} rows mapped so far serialize to "
                    f"{self._size:,} bytes, over xcom_max_bytes={self.xcom_max_bytes:,}. Set output_path (for "
                    "example 'file:///data/{{ run_id }}.jsonl' or an s3:// URI) to write them to object "
                    "storage, or raise xcom_max_bytes."
                )
            self._rows.extend(rows)
        self.count += len(rows)

    def value(self) -> Any:
        """The XCom return value: the rows, or ``{"path", "rows"}`` once the file is complete."""
        if not self.output_path:
            return self._rows
        self._open()  # an empty result still writes an (empty) file
        assert self._file is not None
        self._file.close()
        self._file = None
        return {"path": str(self._path), "rows": self.count}

    def discard(self) -> None:
        """After a failure: close and remove a partly written file."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._path.unlink(missing_ok=True)

    def _open(self) -> IO[str]:
        if self._file is None:
            from airflow.sdk import ObjectStoragePath

            self._path = ObjectStoragePath(str(self.output_path))
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("w", encoding="utf-8")
        return self._file
