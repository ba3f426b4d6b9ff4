"""Outbound mapping: pick the records in a JSON response, type the columns, reject bad rows. Pure.

This is the activity's "Outbound mapping" and "Column definition" tabs. A mapping
is validated and compiled once per task by :func:`compile_outbound` (JSONPath
expressions included), then applied with :meth:`OutboundPlan.map`.

Paths are RFC 9535 JSONPath, evaluated by the ``jsonpath-rfc9535`` library. Most
real paths are singular (``$.data``, ``code``, ``price.amount``); for those the
library's parsed query is turned into a tuple of keys and read with plain
lookups, because evaluating a library query per record is about 30 times
slower, and 47k records must map in tens of milliseconds.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from itertools import repeat, starmap
from typing import Any

from airflow_campaign_provider.exceptions import MappingConfigError, ResponseMappingError
from airflow_campaign_provider.guardrails import MAX_JSON_DEPTH, MAX_JSON_KEY_LENGTH

COLUMN_TYPES = ("text", "integer", "float", "boolean", "date", "time", "datetime", "json")
ON_ERROR = ("reject_row", "ignore_value", "use_default")
DEFAULT_MAX_LENGTH = 255
"""Default maximum length of a text column, as in the activity."""
MAX_COLUMNS = 150
"""Most columns a row may have (the activity's limit)."""
MAX_REJECTED_SAMPLES = 10

_OUTBOUND_KEYS = frozenset({"records", "flatten", "columns"})
_COLUMN_KEYS = frozenset({"name", "path", "type", "max_length", "on_error", "default", "required"})
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_MISSING: Any = object()


class _Reject(Exception):
    """A value that does not fit its column; ``on_error`` decides what happens."""


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:40] + "…"


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
    raise _Reject(f"cannot convert {_preview(value)} to integer")


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
    raise _Reject(f"cannot convert {_preview(value)} to float")


def _to_boolean(value: Any) -> bool:
    if type(value) is bool:
        return bool(value)
    if type(value) is int and value in (0, 1):
        return value == 1
    if type(value) is str and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _Reject(f"cannot convert {_preview(value)} to boolean")


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return datetime.fromisoformat(text).date()


_ISO_PARSERS: dict[str, Callable[[str], date | time | datetime]] = {
    "date": _parse_date,
    "time": time.fromisoformat,
    "datetime": datetime.fromisoformat,
}
"""ISO 8601 text to the canonical ISO string of each date and time column type."""


def _iso_text(kind: str, text: str) -> str:
    """The canonical ISO form of ``text`` as a ``kind`` value; raises ValueError when it is not one."""
    return _ISO_PARSERS[kind](text.strip()).isoformat()


def _iso(kind: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if type(value) is str:
            try:
                return _iso_text(kind, value)
            except ValueError:
                pass
        raise _Reject(f"cannot convert {_preview(value)} to {kind}")

    return convert


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
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if max_length is not None and len(text) > max_length:
            raise _Reject(f"{len(text)} characters is over max_length {max_length}")
        return text

    return convert


def _converter(column_type: str, max_length: int | None) -> Callable[[Any], Any]:
    converters: dict[str, Callable[[Any], Any]] = {
        "integer": _to_integer,
        "float": _to_float,
        "boolean": _to_boolean,
        "date": _iso("date"),
        "time": _iso("time"),
        "datetime": _iso("datetime"),
        "json": lambda value: value,
    }
    return _text_converter(max_length) if column_type == "text" else converters[column_type]


# JSONPath --------------------------------------------------------------------------------------


def _jsonpath_for(path: str) -> str:
    """A column path is JSONPath when it starts with ``$``; otherwise a dotted key path (``price.amount``)."""
    if path.startswith("$"):
        return path
    return "$" + "".join(f"[{json.dumps(part, ensure_ascii=False)}]" for part in path.split("."))


@dataclass(frozen=True)
class CompiledPath:
    """A JSONPath compiled once; singular queries are also kept as a tuple of keys for fast reads."""

    source: str
    query: Any
    keys: tuple[str | int, ...] | None
    wildcard_prefix: tuple[str | int, ...] | None

    def get_all(self, nodes: list[Any]) -> list[Any]:
        """:meth:`get` for many nodes; a singular path walks all of them one key at a time."""
        if self.keys is None:
            return [self.get(node) for node in nodes]
        for key in self.keys:
            if type(key) is str and set(map(type, nodes)) == {dict}:
                nodes = list(map(dict.get, nodes, repeat(key), repeat(_MISSING)))  # a C-level loop
            elif type(key) is int:
                nodes = [
                    node[key] if type(node) is list and -len(node) <= key < len(node) else _MISSING for node in nodes
                ]
            else:
                nodes = [node.get(key, _MISSING) if type(node) is dict else _MISSING for node in nodes]
        return nodes

    def get(self, node: Any) -> Any:
        """The value at this path, ``_MISSING`` when absent; a non-singular query gives a list of matches."""
        if self.keys is None:
            try:
                return self.query.find(node).values()
            except Exception as err:  # the library's own errors, e.g. recursion limits
                raise ResponseMappingError(f"outbound mapping: JSONPath {self.source!r} failed: {err}") from None
        return _walk(node, self.keys)


def _walk(node: Any, keys: tuple[str | int, ...]) -> Any:
    """Follow a singular path's keys from ``node``; ``_MISSING`` when a step is absent."""
    for key in keys:
        # A name selects in an object only, an index in an array only (never in a string).
        if type(node) is not (list if type(key) is int else dict):
            return _MISSING
        try:
            node = node[key]  # type: ignore[index]
        except (KeyError, IndexError):
            return _MISSING
    return node


def compile_path(path: str, where: str) -> CompiledPath:
    """Compile ``path`` with the JSONPath library; a syntax error is a :class:`MappingConfigError`."""
    import jsonpath_rfc9535
    from jsonpath_rfc9535.segments import JSONPathChildSegment
    from jsonpath_rfc9535.selectors import IndexSelector, NameSelector, WildcardSelector

    source = _jsonpath_for(path)
    try:
        query = jsonpath_rfc9535.compile(source)
    except jsonpath_rfc9535.JSONPathError as err:
        raise MappingConfigError(where, f"invalid JSONPath {path!r}: {err}") from None

    def singular_keys(segments: Sequence[Any]) -> tuple[str | int, ...] | None:
        keys: list[str | int] = []
        for segment in segments:
            if not isinstance(segment, JSONPathChildSegment) or len(segment.selectors) != 1:
                return None
            selector = segment.selectors[0]
            if isinstance(selector, NameSelector):
                keys.append(selector.name)
            elif isinstance(selector, IndexSelector):
                keys.append(selector.index)
            else:
                return None
        return tuple(keys)

    segments = query.segments
    keys = singular_keys(segments)
    prefix = None
    if keys is None and segments:
        last = segments[-1]
        if (
            isinstance(last, JSONPathChildSegment)
            and len(last.selectors) == 1
            and isinstance(last.selectors[0], WildcardSelector)
        ):
            prefix = singular_keys(segments[:-1])
    return CompiledPath(path, query, keys, prefix)


# Columns ---------------------------------------------------------------------------------------


_NONE_TYPE = type(None)
_MISSING_TYPE = type(_MISSING)


def _fast_values(column_type: str, max_length: int | None, raws: list[Any]) -> list[Any] | None:
    """Convert a whole column with C-speed builtins when every value already has its JSON type.

    Returns None when any value is empty or needs real conversion; the caller then
    converts value by value. Clean APIs hit this path for nearly every column.
    """
    kinds = set(map(type, raws))
    if _NONE_TYPE in kinds or _MISSING_TYPE in kinds:
        return None
    if column_type == "text":
        if kinds == {str}:
            lengths = set(map(len, raws))
            if 0 not in lengths and (max_length is None or max(lengths) <= max_length):
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
    elif kinds == {str}:
        # Dates and times repeat a lot in campaign data: parse each distinct value once.
        try:
            canonical = {value: _iso_text(column_type, value) for value in dict.fromkeys(raws)}
        except ValueError:
            return None
        return list(map(canonical.__getitem__, raws))
    return None


@dataclass(frozen=True)
class Column:
    """One output column: where its value comes from, its type, and what to do with a bad value."""

    name: str
    path: CompiledPath
    type: str
    max_length: int | None
    on_error: str
    default: Any
    required: bool
    convert: Callable[[Any], Any] = field(repr=False, compare=False)

    def values(self, records: list[Any], rejected: dict[int, tuple[str, str]]) -> list[Any]:
        """This column's value for every record; records it rejects are added to ``rejected``."""
        raws = self.path.get_all(records)
        fast = _fast_values(self.type, self.max_length, raws)
        if fast is not None:
            return fast
        out: list[Any] = []
        append = out.append
        for index, raw in enumerate(raws):
            if raw is _MISSING or raw is None or raw == "":
                if self.required and index not in rejected:
                    rejected[index] = (self.name, "required value is empty")
                append(None)
                continue
            try:
                append(self.convert(raw))
            except _Reject as problem:
                if self.on_error == "reject_row":
                    rejected.setdefault(index, (self.name, str(problem)))
                    append(None)
                else:
                    append(None if self.on_error == "ignore_value" else self.default)
        return out


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise MappingConfigError(where, "a column name must be a non-empty string")
    if len(name) > MAX_JSON_KEY_LENGTH:
        raise MappingConfigError(where, f"column names are at most {MAX_JSON_KEY_LENGTH} characters")
    return name


def _compile_column(spec: Any, where: str) -> Column:
    if not isinstance(spec, Mapping):
        raise MappingConfigError(where, f"expected an object with name, path and type, got {_preview(spec)}")
    unknown = set(spec) - _COLUMN_KEYS
    if unknown:
        raise MappingConfigError(where, f"unknown keys {sorted(unknown)}; allowed: {sorted(_COLUMN_KEYS)}")
    name = _check_name(spec.get("name"), f"{where}.name")
    column_type = spec.get("type", "text")
    if column_type not in COLUMN_TYPES:
        raise MappingConfigError(f"{where}.type", f"{column_type!r} is not one of {', '.join(COLUMN_TYPES)}")
    path = spec.get("path", name)
    if not isinstance(path, str) or not path:
        raise MappingConfigError(f"{where}.path", "expected a JSONPath or a dotted key path")
    max_length = spec.get("max_length", DEFAULT_MAX_LENGTH if column_type == "text" else None)
    if max_length is not None and (
        column_type != "text" or isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise MappingConfigError(f"{where}.max_length", "max_length is a positive integer, for text columns only")
    on_error = spec.get("on_error", "reject_row")
    if on_error not in ON_ERROR:
        raise MappingConfigError(f"{where}.on_error", f"{on_error!r} is not one of {', '.join(ON_ERROR)}")
    required = spec.get("required", False)
    if not isinstance(required, bool):
        raise MappingConfigError(f"{where}.required", "expected true or false")
    convert = _converter(column_type, max_length)
    default = spec.get("default")
    if on_error == "use_default":
        if "default" not in spec:
            raise MappingConfigError(f"{where}.default", "on_error 'use_default' needs a default value")
        if default is not None:
            try:
                default = convert(default)
            except _Reject as err:
                raise MappingConfigError(f"{where}.default", f"the default does not fit the column: {err}") from None
    elif "default" in spec:
        raise MappingConfigError(f"{where}.default", "a default is only used with on_error 'use_default'")
    return Column(
        name=name,
        path=compile_path(path, f"{where}.path"),
        type=column_type,
        max_length=max_length,
        on_error=on_error,
        default=default,
        required=required,
        convert=convert,
    )


_JSON_TYPE_TO_COLUMN = {str: "text", bool: "boolean", int: "integer", float: "float"}


def infer_columns(record: Any) -> list[Column]:
    """Columns from the first-level properties of the first record, typed from their JSON types.

    A value that is null, an object or an array gives a ``json`` column; a record that
    is not an object gives one column, ``value``.
    """
    if not isinstance(record, dict):
        return [_compile_column({"name": "value", "path": "$", "type": "json"}, "outbound.columns")]
    # The response, not the DAG, is at fault here: these are request failures, not configuration errors.
    if not record:
        raise ResponseMappingError("outbound mapping: the first record has no properties to infer columns from")
    if len(record) > MAX_COLUMNS:
        raise ResponseMappingError(
            f"outbound mapping: the first record has {len(record)} properties, the limit is {MAX_COLUMNS} columns"
        )
    blank = next((key for key in record if not key.strip()), None)
    if blank is not None:
        raise ResponseMappingError(f"outbound mapping: the first record's property {blank!r} cannot name a column")
    return [
        _compile_column(
            {
                "name": key,
                "path": f"$[{json.dumps(key)}]",
                "type": _JSON_TYPE_TO_COLUMN.get(type(value), "json"),
            },
            "outbound.columns",
        )
        for key, value in record.items()
    ]


# Flatten ---------------------------------------------------------------------------------------


def flatten(record: Any) -> dict[str, Any]:
    """One flat row from a nested value: ``parent_child`` names, ``tags_0``-style indexed arrays.

    :raises ResponseMappingError: deeper than 10 levels, a column id over 255 characters,
        more than 150 columns, or two properties mapping to the same column id.
    """
    row: dict[str, Any] = {}
    stack: list[tuple[str, Any, int]] = [("", record, 1)]
    while stack:
        prefix, node, depth = stack.pop()
        if type(node) is dict or type(node) is list:
            if depth > MAX_JSON_DEPTH:
                raise ResponseMappingError(f"outbound mapping: flatten nests deeper than {MAX_JSON_DEPTH} levels")
            items: Iterable[tuple[Any, Any]] = node.items() if type(node) is dict else enumerate(node)
            children = [(f"{prefix}_{key}" if prefix else str(key), value, depth + 1) for key, value in items]
            if children:
                stack.extend(reversed(children))
                continue
            node = None
        name = prefix or "value"
        if len(name) > MAX_JSON_KEY_LENGTH:
            raise ResponseMappingError(
                f"outbound mapping: flattened column id {name[:40]!r}… is over {MAX_JSON_KEY_LENGTH} characters"
            )
        if name in row:
            raise ResponseMappingError(f"outbound mapping: two properties flatten to the same column {name!r}")
        row[name] = node
        if len(row) > MAX_COLUMNS:
            raise ResponseMappingError(f"outbound mapping: flatten gives more than {MAX_COLUMNS} columns")
    return row


# The plan --------------------------------------------------------------------------------------


def _row_builder(names: tuple[str, ...]) -> Callable[..., dict[str, Any]]:
    """A function building one row dict from its column values, as a dict display.

    ``dict(zip(names, values))`` costs about twice as much per row, and rows are the
    largest cost of mapping. Only generated identifiers enter the source; the column
    names are passed in as values, so no text from a mapping or a response is evaluated.
    """
    params = ", ".join(f"v{i}" for i in range(len(names)))
    items = ", ".join(f"n{i}: v{i}" for i in range(len(names)))
    constants = {f"n{i}": name for i, name in enumerate(names)}
    build: Callable[..., dict[str, Any]] = eval(f"lambda {params}: {{{items}}}", constants)  # noqa: S307
    return build


@dataclass
class MappingResult:
    """Rows in record order, plus how many records were selected and rejected, and the first reasons.

    :ivar records: records selected from the response (mapped rows plus rejected records).
    """

    rows: list[dict[str, Any]]
    rejected: int = 0
    rejected_samples: list[dict[str, Any]] = field(default_factory=list)
    records: int = 0

    def extend(self, later: MappingResult) -> None:
        """Append the result of a later page: rows in order, record indexes counted across pages."""
        self.rows.extend(later.rows)
        room = MAX_REJECTED_SAMPLES - len(self.rejected_samples)
        self.rejected_samples.extend(
            {**sample, "index": sample["index"] + self.records} for sample in later.rejected_samples[:room]
        )
        self.rejected += later.rejected
        self.records += later.records


@dataclass(frozen=True)
class OutboundPlan:
    """A compiled outbound mapping. ``columns`` is None when they are inferred from the first record."""

    records: CompiledPath | None
    flatten: bool
    columns: tuple[Column, ...] | None

    def select_records(self, document: Any) -> list[Any]:
        """The records: from the ``records`` path, else by the activity's rules for an omitted mapping."""
        if self.records is None:
            if self.flatten or not isinstance(document, (list, dict)):
                return [document]
            if isinstance(document, list):
                return document
            arrays = [value for value in document.values() if isinstance(value, list)]
            return arrays[0] if len(arrays) == 1 else [document]
        path = self.records
        keys = path.keys if path.keys is not None else path.wildcard_prefix
        if keys is not None:
            container = _walk(document, keys)
            if container is _MISSING or container is None:
                raise ResponseMappingError(f"outbound mapping: the records path {path.source!r} matched nothing")
            if isinstance(container, list):
                return container
            if isinstance(container, dict) and path.wildcard_prefix is not None:
                return list(container.values())
            if path.wildcard_prefix is not None:
                raise ResponseMappingError(
                    f"outbound mapping: the records path {path.source!r} points at a "
                    f"{type(container).__name__}, not an array or object"
                )
            return [container]
        matches: list[Any] = path.get(document)
        return matches

    def map(self, document: Any) -> MappingResult:
        """Map a parsed response into typed rows. Raises only :class:`ResponseMappingError`.

        Works column by column (one pass of builtins per column when the values are
        clean), then zips the columns into row dicts.
        """
        records = self.select_records(document)
        if self.flatten:
            records = [flatten(record) for record in records]
        if not records:
            return MappingResult(rows=[])
        columns = self.columns if self.columns is not None else tuple(infer_columns(records[0]))
        rejected: dict[int, tuple[str, str]] = {}
        by_column = [column.values(records, rejected) for column in columns]
        build = _row_builder(tuple(column.name for column in columns))
        if rejected:
            rows = [build(*row) for index, row in enumerate(zip(*by_column, strict=True)) if index not in rejected]
        else:
            rows = list(starmap(build, zip(*by_column, strict=True)))
        samples = [
            {"index": index, "column": column, "reason": reason}
            for index, (column, reason) in sorted(rejected.items())[:MAX_REJECTED_SAMPLES]
        ]
        return MappingResult(rows=rows, rejected=len(rejected), rejected_samples=samples, records=len(records))


def has_template(value: Any) -> bool:
    """True when a value (or anything inside it) still holds Jinja: it is checked once rendered."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(has_template(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_template(v) for v in value)
    return False


def compile_outbound(spec: Mapping[str, Any] | None) -> OutboundPlan:
    """Validate and compile an ``outbound`` mapping (None means: the activity's defaults).

    :raises MappingConfigError: naming the key that is wrong.
    """
    if spec is None:
        return OutboundPlan(records=None, flatten=False, columns=None)
    if not isinstance(spec, Mapping):
        raise MappingConfigError("outbound", f"expected an object, got {type(spec).__name__}")
    unknown = set(spec) - _OUTBOUND_KEYS
    if unknown:
        raise MappingConfigError("outbound", f"unknown keys {sorted(unknown)}; allowed: {sorted(_OUTBOUND_KEYS)}")
    flatten_all = spec.get("flatten", False)
    if not isinstance(flatten_all, bool):
        raise MappingConfigError("outbound.flatten", "expected true or false")
    records = spec.get("records")
    if records is not None and not isinstance(records, str):
        raise MappingConfigError("outbound.records", "expected a JSONPath string such as '$.data[*]'")
    columns_spec = spec.get("columns")
    columns: tuple[Column, ...] | None = None
    if columns_spec is not None:
        if not isinstance(columns_spec, (list, tuple)) or not columns_spec:
            raise MappingConfigError("outbound.columns", "expected a non-empty list of column definitions")
        if len(columns_spec) > MAX_COLUMNS:
            raise MappingConfigError("outbound.columns", f"at most {MAX_COLUMNS} columns")
        columns = tuple(_compile_column(c, f"outbound.columns[{i}]") for i, c in enumerate(columns_spec))
        names = [c.name for c in columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise MappingConfigError("outbound.columns", f"duplicate column names {duplicates}")
    return OutboundPlan(
        records=None if records is None else compile_path(records, "outbound.records"),
        flatten=flatten_all,
        columns=columns,
    )


def validate_outbound(spec: Any) -> None:
    """Check an ``outbound`` mapping at DAG parse time; one still holding Jinja is checked once rendered."""
    if not has_template(spec):
        compile_outbound(spec)
