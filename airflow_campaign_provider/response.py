"""The response value every transport returns: status, headers and the fully read, size-checked body. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_campaign_provider.json_body import parse_json


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive response headers; a repeated header's values are joined with ``", "``.

    Both transports build it, so the policy never depends on a library's header class.
    """

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        merged: dict[str, tuple[str, str]] = {}
        for name, value in items:
            key = name.lower()
            if key in merged:
                value = f"{merged[key][1]}, {value}"
            merged[key] = (name, value)
        self._items = merged

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __repr__(self) -> str:
        # Header values can carry cookies and tokens: only the names are shown.
        return f"Headers({sorted(self)})"


@dataclass(frozen=True)
class ApiResponse:
    """A fully read, size-checked API response.

    :ivar status_code: the HTTP status.
    :ivar headers: the response headers (case-insensitive).
    :ivar url: the final URL that was called.
    :ivar content: the raw body bytes (at most the connection's ``max_response_bytes``), decoded
        from gzip or deflate.
    :ivar display_url: ``url`` with query secrets redacted, safe for logs and XCom.
    :ivar elapsed_ms: time from sending the request to the end of the body, in milliseconds.
    """

    status_code: int
    # Kept out of repr: a printed response must not carry a body, cookies or query secrets.
    headers: Mapping[str, str] = field(repr=False)
    url: str = field(repr=False)
    content: bytes = field(repr=False)
    display_url: str
    elapsed_ms: float

    def json(self) -> Any:
        """Parse the body as JSON under the guardrails.

        :raises ContentTypeError: the Content-Type is not JSON.
        :raises InvalidJsonError: the body is not valid UTF-8 JSON.
        :raises JsonDepthError: nesting deeper than 10 levels.
        :raises JsonKeyLengthError: a key longer than 255 characters.
        """
        return parse_json(self.content, self.headers.get("Content-Type"), url=self.display_url, status=self.status_code)


def format_size(size: int) -> str:
    """Render a byte count the way the activity's logs do: ``512 B``, ``1.2 KiB``, ``5.0 MiB``."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"
