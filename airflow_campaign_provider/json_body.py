"""Parse a response body into JSON under the guardrails, with the cyclic garbage collector paused.

In a process with Airflow loaded, about 170k objects are tracked by the collector.
A large ``json.loads`` allocates enough containers to trigger several full
collections, each walking all of them: measured here, 5 MiB parses in 145 ms with
the collector on and 58 ms with it paused. The parse allocates no cycles, so
pausing it is safe; the collector runs again as soon as we leave.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(content: bytes, content_type: str | None, *, url: str, status: int | None = None) -> Any:
    """Parse a JSON response body: JSON content type, strict UTF-8, no NaN/Infinity, depth and key limits."""
    check_json_content_type(content_type, url=url, status=status)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidJsonError(
            f"malformed JSON: the body is not valid UTF-8 (byte {err.start})", url=url, status=status
        ) from None
    with gc_paused():
        try:
            document = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as err:
            raise InvalidJsonError(f"malformed JSON: {err}", url=url, status=status) from None
        check_json_shape(document, url=url)
    return document
