"""Parse a response body into JSON under the guardrails, with the cyclic garbage collector paused.

Parsing uses ``msgspec`` (already a dependency of Airflow itself): with the collector
paused it decodes about three times faster than the standard library, and it is
stricter (no NaN, no out-of-range numbers, no lone surrogates).

In a process with Airflow loaded, about 170k objects are tracked by the collector.
A large parse allocates enough containers to trigger collections that walk all of
them; the parse allocates no cycles, so pausing the collector is safe, and it runs
again as soon as we leave.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from airflow_campaign_provider.exceptions import InvalidJsonError
from airflow_campaign_provider.guardrails import check_json_content_type, check_json_shape


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block; nested use is safe."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_json(content: bytes, content_type: str | None, *, url: str, status: int | None = None) -> Any:
    """Parse a JSON response body: JSON content type, strict UTF-8 JSON, then the depth and key limits."""
    check_json_content_type(content_type, url=url, status=status)
    with gc_paused():
        try:
            document = msgspec.json.decode(content)
        except UnicodeDecodeError as err:
            raise InvalidJsonError(
                f"malformed JSON: the body is not valid UTF-8 ({err.reason})", url=url, status=status
            ) from None
        except (ValueError, RecursionError) as err:
            raise InvalidJsonError(f"malformed JSON: {err}", url=url, status=status) from None
        check_json_shape(document, url=url)
    return document
