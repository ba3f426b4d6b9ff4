"""A streamed response body: decoded as it arrives and refused as soon as it passes the size limit. Pure.

Both transports feed it the raw bytes they read. Decoded bytes are what count, and
the decompressor is never asked for more than the room left under the limit, so a
compression bomb stops at the limit instead of inflating in memory.
"""

from __future__ import annotations

import zlib

from airflow_campaign_provider.exceptions import TransportError
from airflow_campaign_provider.guardrails import check_response_size

READ_CHUNK_BYTES = 64 * 1024
"""Bytes a transport reads per step; a body is never buffered beyond the limit plus one chunk."""

_DECODERS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class BodyReader:
    """Collect one response body under ``limit`` decoded bytes.

    :param content_encoding: the response's ``Content-Encoding`` (identity, gzip or deflate).
    :param content_length: the response's ``Content-Length``; over the limit, the body is refused unread.
    :param limit: the connection's ``max_response_bytes``.
    :param url: the redacted URL, for error messages.
    """

    def __init__(self, content_encoding: str | None, content_length: str | None, limit: int, *, url: str) -> None:
        self.limit = limit
        self.url = url
        self.received = 0
        self._chunks: list[bytes] = []
        declared = (content_length or "").strip()
        if declared.isascii() and declared.isdecimal():
            check_response_size(int(declared), limit, url=url, declared=True)
        encoding = (content_encoding or "identity").strip().lower()
        if encoding not in ("identity", "", *_DECODERS):
            raise TransportError(
                f"transport: the response's Content-Encoding {encoding!r} was not asked for "
                "(only gzip and deflate are accepted)",
                url=url,
                kind="unsupported encoding",
                retryable=False,
            )
        self._encoding = encoding
        self._decoder = zlib.decompressobj(_DECODERS[encoding]) if encoding in _DECODERS else None

    def feed(self, chunk: bytes) -> None:
        """Add raw bytes from the wire."""
        if self._decoder is None:
            self._add(chunk)
            return
        data = chunk
        while data:
            try:
                out = self._decoder.decompress(data, self.limit - self.received + 1)
            except zlib.error:
                if self._encoding == "deflate" and self.received == 0 and self._decoder.unused_data == b"":
                    # Some servers send raw deflate without the zlib wrapper RFC 9110 asks for.
                    self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._encoding = "raw deflate"
                    continue
                raise self._corrupt() from None
            self._add(out)
            data = self._decoder.unconsumed_tail

    def finish(self) -> bytes:
        """The whole decoded body."""
        if self._decoder is not None:
            try:
                self._add(self._decoder.flush())
            except zlib.error:
                raise self._corrupt() from None
        return b"".join(self._chunks)

    def _add(self, data: bytes) -> None:
        if data:
            self.received += len(data)
            check_response_size(self.received, self.limit, url=self.url)
            self._chunks.append(data)

    def _corrupt(self) -> TransportError:
        return TransportError(
            f"transport: the {self._encoding} response body does not decode", url=self.url, kind="corrupt body"
        )
