"""Pure helpers over rows (lists of dicts) to pick and enrich a campaign audience.

Each helper returns new lists and dicts and never changes its input, so the results
can go through XCom as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

Row = dict[str, Any]


def with_consent(profiles: Iterable[Mapping[str, Any]], consent_field: str = "email_consent") -> list[Row]:
    """The profiles whose ``consent_field`` is exactly ``True``; a missing field, ``"yes"`` or ``1`` is no consent."""
    return [dict(p) for p in profiles if p.get(consent_field) is True]


def distinct(rows: Iterable[Mapping[str, Any]], column: str) -> list[Any]:
    """The distinct non-None values of ``column``, in first-seen order (e.g. the zip codes to ask an API about)."""
    seen: dict[Hashable, None] = {}
    for row in rows:
        value = row.get(column)
        if value is not None:
            seen.setdefault(value, None)
    return list(seen)


def join_by(
    left: Iterable[Mapping[str, Any]],
    right: Iterable[Mapping[str, Any]],
    key: str,
    *,
    prefix: str = "",
) -> list[Row]:
    """Left join: every ``left`` row plus the columns of the ``right`` row with the same ``key``.

    The right columns (all but ``key``) are added as ``prefix + column``. A left row with
    no match is kept, with each of those columns set to None, and the number of such rows
    is logged; use :func:`partition` to route them elsewhere (e.g. a fallback template).
    Keys are compared as strings, so a zip code ``20121`` from an API matches ``"20121"``.

    :raises ValueError: two right rows share a key, or a right column would overwrite a left one.
    """
    matches: dict[str, Row] = {}
    columns: dict[str, None] = {}
    for row in right:
        value = str(row[key])
        if value in matches:
            raise ValueError(f"join_by: two rows on the right have {key}={value!r}; keep one per key first")
        matches[value] = {prefix + name: v for name, v in row.items() if name != key}
        columns.update(dict.fromkeys(matches[value]))

    joined: list[Row] = []
    unmatched = 0
    for row in left:
        clash = next((name for name in columns if name in row), None)
        if clash is not None:
            raise ValueError(f"join_by: column {clash!r} is on both sides; pass a prefix such as 'x_'")
        extra = matches.get(str(row.get(key)))
        if extra is None:
            unmatched += 1
            extra = dict.fromkeys(columns)
        joined.append({**row, **extra})
    if unmatched:
        log.warning(
            "join_by %r: %d of %d rows have no match; their joined columns are None", key, unmatched, len(joined)
        )
    return joined


def partition(rows: Iterable[Mapping[str, Any]], column: str) -> tuple[list[Row], list[Row]]:
    """Split rows into those where ``column`` has a value and those where it is None or missing."""
    with_value: list[Row] = []
    without: list[Row] = []
    for row in rows:
        (without if row.get(column) is None else with_value).append(dict(row))
    return with_value, without


def best_by(rows: Iterable[Mapping[str, Any]], group: str, score: str) -> list[Row]:
    """The row with the highest ``score`` in each ``group`` (e.g. the best offer per segment).

    Groups come in first-seen order, a tie keeps the first row, and rows without a score are ignored.
    """
    best: dict[Hashable, Row] = {}
    for row in rows:
        value = row.get(score)
        if value is None:
            continue
        current = best.get(row[group])
        if current is None or value > current[score]:
            best[row[group]] = dict(row)
    return list(best.values())
