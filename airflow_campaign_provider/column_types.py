"""Column types of the outbound mapping: one converter per type, and the whole-column shortcut. Pure.

A converter turns one JSON value into the column's value or raises :class:`Reject`;
the column's ``on_error`` policy then decides what happens. Dates and times come out
as ISO 8601 strings, so XCom stays JSON-native.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from airflow_campaign_provider.exceptions import MappingConfigError

COLUMN_TYPES = ("text", "integer", "float", "boolean", "date", "time", "datetime", "json")
TEMPORAL_TYPES = ("date", "time", "datetime")
EPOCH_FORMATS = ("epoch_s", "epoch_ms")
DEFAULT_MAX_LENGTH = 255
"""Default maximum length of a text column, as in the activity."""

MISSING: Any = msgspec.UNSET
"""A path that is absent from a record. msgspec's own marker, so the typed fast path needs no translation."""

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NONE_TYPE = type(None)
_MISSING_TYPE = type(MISSING)


class Reject(Exception):
    """A value that does not fit its column; ``on_error`` decides what happens."""


def preview(value: Any, limit: int = 40) -> str:
    """A short JSON rendering of a value for a reason or an error; never the whole of a large value."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class TypeOptions:
    """A column's type and the options that shape its conversion.

    :ivar format: for date, time and datetime: ``iso``, ``epoch_s``, ``epoch_ms`` or a strftime pattern.
    :ivar timezone: for date and datetime: aware values are converted to it, naive ones interpreted in it.
    """

    type: str
    max_length: int | None = None
    format: str = "iso"
    timezone: tzinfo | None = None


def type_options(spec: Mapping[str, Any], where: str) -> TypeOptions:
    """Validate a column's ``type``, ``max_length``, ``format`` and ``timezone`` (``where`` names the column)."""
    column_type = spec.get("type", "text")
    if column_type not in COLUMN_TYPES:
        raise MappingConfigError(f"{where}.type", f"{column_type!r} is not one of {', '.join(COLUMN_TYPES)}")
    max_length = spec.get("max_length", DEFAULT_MAX_LENGTH if column_type == "text" else None)
    if max_length is not None and (
        column_type != "text" or isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise MappingConfigError(f"{where}.max_length", "max_length is a positive integer, for text columns only")
    fmt = spec.get("format", "iso")
    if "format" in spec and column_type not in TEMPORAL_TYPES:
        raise MappingConfigError(f"{where}.format", "format applies to date, time and datetime columns only")
    if not isinstance(fmt, str) or (fmt not in ("iso", *EPOCH_FORMATS) and "%" not in fmt):
        raise MappingConfigError(
            f"{where}.format",
            f"expected 'iso', 'epoch_s', 'epoch_ms' or a strftime pattern such as '%d/%m/%Y', got {fmt!r}",
        )
    if column_type == "time" and fmt in EPOCH_FORMATS:
        raise MappingConfigError(f"{where}.format", "a time of day has no epoch form; use a datetime column")
    zone = None
    if "timezone" in spec:
        if column_type not in ("date", "datetime"):
            raise MappingConfigError(
                f"{where}.timezone", "timezone applies to date and datetime columns (a time alone cannot be converted)"
            )
        zone = _zone(spec["timezone"], f"{where}.timezone")
    return TypeOptions(column_type, max_length, fmt, zone)


def _zone(name: Any, where: str) -> tzinfo:
    if name in ("UTC", "Z"):
        return timezone.utc
    if not isinstance(name, str) or not name:
        raise MappingConfigError(where, "expected an IANA time zone name such as 'UTC' or 'Europe/Rome'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingConfigError(where, f"{name!r} is not an IANA time zone name such as 'Europe/Rome'") from None


# Converters ------------------------------------------------------------------------------------


def _to_integer(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float and value.is_integer():
        return int(value)
    if kind is str and _INT.fullmatch(value.strip()):
        try:
            return int(value)
        except ValueError:  # more digits than Python converts
            pass
    raise Reject(f"cannot convert {preview(value)} to integer")


def _to_float(value: Any) -> float:
    kind = type(value)
    try:
        if kind is float or kind is int:
            return float(value)
        if kind is str and _FLOAT.fullmatch(value.strip()):
            number = float(value)
            if math.isfinite(number):
                return number
    except OverflowError:  # an integer beyond the float range
        pass
    raise Reject(f"cannot convert {preview(value)} to float")


def _to_boolean(value: Any) -> bool:
    if type(value) is bool:
        return bool(value)
    if type(value) is int and value in (0, 1):
        return value == 1
    if type(value) is str and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Reject(f"cannot convert {preview(value)} to boolean")


def _to_json(value: Any) -> Any:
    return value


def _text_converter(max_length: int | None) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        kind = type(value)
        if kind is str:
            text: str = value
        elif kind is bool:
            text = "true" if value else "false"
        elif kind is int or kind is float:
            text = str(value)
        else:
            # Silently JSON-encoding a list or object into text hides a wrong path or a changed API.
            what = "a list" if kind is list else "an object"
            raise Reject(f"{what} is not text (use type 'json' for structured values)")
        if max_length is not None and len(text) > max_length:
            raise Reject(f"{len(text)} characters is over max_length {max_length}")
        return text

    return convert


def _instant(options: TypeOptions, value: Any) -> datetime | date | time:
    """Parse ``value`` by the column's format into a datetime (or a date or time for ISO text of those)."""
    fmt = options.format
    if fmt in EPOCH_FORMATS:
        kind = type(value)
        if kind is str and _FLOAT.fullmatch(value.strip()):
            value = float(value)
        elif kind is not int and kind is not float:
            raise ValueError
        seconds = value / 1000 if fmt == "epoch_ms" else value
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError) as err:
            raise ValueError from err
    if type(value) is not str:
        raise ValueError
    text = value.strip()
    if fmt != "iso":
        # Naive stays naive unless the column names a timezone.
        return datetime.strptime(text, fmt)
    if options.type == "time":
        return time.fromisoformat(text)
    if options.type == "date":
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    return datetime.fromisoformat(text)


def _temporal_converter(options: TypeOptions) -> Callable[[Any], str]:
    zone = options.timezone

    def convert(value: Any) -> str:
        try:
            parsed = _instant(options, value)
        except (ValueError, OverflowError):
            how = "" if options.format == "iso" else f" with format {options.format!r}"
            raise Reject(f"cannot convert {preview(value)} to {options.type}{how}") from None
        if isinstance(parsed, datetime):
            if zone is not None:
                parsed = parsed.astimezone(zone) if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)
            if options.type == "date":
                return parsed.date().isoformat()
            if options.type == "time":
                return parsed.timetz().isoformat()
        return parsed.isoformat()

    return convert


def converter(options: TypeOptions) -> Callable[[Any], Any]:
    """The function converting one non-empty JSON value to the column's value; raises :class:`Reject`."""
    if options.type == "text":
        return _text_converter(options.max_length)
    if options.type in TEMPORAL_TYPES:
        return _temporal_converter(options)
    simple: dict[str, Callable[[Any], Any]] = {
        "integer": _to_integer,
        "float": _to_float,
        "boolean": _to_boolean,
        "json": _to_json,
    }
    return simple[options.type]


# Whole columns -----------------------------------------------------------------------------------


def fast_values(options: TypeOptions, convert: Callable[[Any], Any], raws: list[Any]) -> list[Any] | None:
    """Convert a whole column with C-speed builtins when every value already has its JSON type.

    Returns ``raws`` itself when no value changes, a new list when values convert, and
    None when any value is empty or needs real conversion; the caller then converts
    value by value. Clean APIs hit this path for nearly every column.
    """
    kinds = set(map(type, raws))
    if _NONE_TYPE in kinds or _MISSING_TYPE in kinds:
        return None
    column_type = options.type
    if column_type == "text":
        if kinds == {str}:
            lengths = set(map(len, raws))
            if 0 not in lengths and (options.max_length is None or max(lengths) <= options.max_length):
                return raws
    elif column_type == "integer":
        if kinds == {int}:
            return raws
    elif column_type == "float":
        if kinds == {float}:
            return raws
        if kinds <= {int, float}:
            try:
                return list(map(float, raws))
            except OverflowError:
                return None
    elif column_type == "boolean":
        if kinds == {bool}:
            return raws
    elif column_type == "json":
        if str not in kinds or "" not in raws:
            return raws
    elif kinds == {str} or (options.format in EPOCH_FORMATS and kinds <= {int, float}):
        # Dates and times repeat a lot in campaign data: convert each distinct value once.
        try:
            canonical = {value: convert(value) for value in dict.fromkeys(raws)}
        except Reject:
            return None
        if all(value == text for value, text in canonical.items()):
            return raws
        return list(map(canonical.__getitem__, raws))
    return None
