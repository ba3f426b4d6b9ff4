"""Operator options that may arrive as rendered template strings: ``"true"``, ``"25"``, ``"2.5"``.

One reader per kind, so ``pagination`` and ``job`` accept the same forms and say the same thing
about a bad value, naming its key.
"""

from __future__ import annotations

from typing import Any

from airflow_campaign_provider.exceptions import MappingConfigError


def as_bool(value: Any, key: str) -> bool:
    """A boolean, or its rendered ``"true"``/``"false"``."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise MappingConfigError(key, "expected true or false")
    return value


def as_int(value: Any, key: str, low: int, high: int | None) -> int:
    """An integer from ``low`` to ``high`` (no upper bound when None), or its rendered digits."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdecimal():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low:,} to {high:,}" if high is not None else f"of at least {low:,}"
        raise MappingConfigError(key, f"expected an integer {bound}, got {value!r}")
    return value


def as_seconds(value: Any, key: str, high: float) -> float:
    """Seconds above 0 and at most ``high``, or their rendered digits."""
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdecimal():
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= high:
        raise MappingConfigError(key, f"expected seconds above 0 and at most {high:g}, got {value!r}")
    return float(value)
