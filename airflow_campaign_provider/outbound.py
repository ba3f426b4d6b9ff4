"""Outbound mapping: pick the records in a JSON response, type the columns, reject bad rows. Pure.

This is the activity's "Outbound mapping" and "Column definition" tabs. A mapping is
validated and compiled once per task by :func:`compile_outbound`, then applied with
:meth:`OutboundPlan.map` (a parsed document) or :meth:`OutboundPlan.map_response`
(the raw response: the typed fast path of :mod:`~airflow_campaign_provider.typed_mapping`
where the mapping allows it).

One mapping gives one table of rows, or several named ``tables`` from the same
response. Paths are described in :mod:`~airflow_campaign_provider.json_paths`, types in
:mod:`~airflow_campaign_provider.column_types`, results and guards in
:mod:`~airflow_campaign_provider.mapping_result`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import starmap
from typing import TYPE_CHECKING, Any

from airflow_campaign_provider.column_types import (
    COLUMN_TYPES,
    MISSING,
    Reject,
    TypeOptions,
    converter,
    fast_values,
    preview,
    type_options,
)
from airflow_campaign_provider.exceptions import MappingConfigError, ResponseMappingError
from airflow_campaign_provider.guardrails import MAX_JSON_DEPTH, MAX_JSON_KEY_LENGTH
from airflow_campaign_provider.json_paths import Chain, CompiledPath, compile_path, select_records, walk
from airflow_campaign_provider.mapping_result import (
    GUARD_KEYS,
    MAX_REJECTED_SAMPLES,
    SINGLE_TABLE,
    Guards,
    MappingResult,
    TableResult,
    parse_guards,
)
from airflow_campaign_provider.suggestions import unknown_keys_message

if TYPE_CHECKING:
    from airflow_campaign_provider.response import ApiResponse

__all__ = [
    "COLUMN_TYPES",
    "MAX_COLUMNS",
    "ON_ERROR",
    "Column",
    "MappingResult",
    "OutboundPlan",
    "TablePlan",
    "TableResult",
    "compile_outbound",
    "flatten",
    "validate_outbound",
]

ON_ERROR = ("reject_row", "ignore_value", "use_default")
MAX_COLUMNS = 150
"""Most columns a row may have (the activity's limit)."""

RESERVED_TABLE_NAMES = frozenset({"return_value", "summary", "error"})
"""Each table is also pushed under its name as an XCom key: these keys are the operator's own."""
_TABLE_KEYS = frozenset({"records", "flatten", "columns"}) | GUARD_KEYS
_OUTBOUND_KEYS = _TABLE_KEYS | {"tables"}
_COLUMN_KEYS = frozenset(
    {"name", "path", "type", "max_length", "on_error", "default", "required", "format", "timezone"}
)


# Columns ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One output column: where its value comes from, its type, and what to do with a bad value."""

    name: str
    path: CompiledPath
    options: TypeOptions
    on_error: str
    default: Any
    required: bool
    convert: Callable[[Any], Any] = field(repr=False, compare=False)

    @property
    def type(self) -> str:
        return self.options.type

    def values(self, raws: list[Any], rejected: dict[int, tuple[str, str]]) -> tuple[list[Any], bool]:
        """This column's value for each raw value (one per record), and whether any raw value was present.

        Records it rejects are added to ``rejected``.
        """
        fast = fast_values(self.options, self.convert, raws)
        if fast is not None:
            return fast, True  # fast values are never MISSING
        out: list[Any] = []
        append = out.append
        missing = 0
        for index, raw in enumerate(raws):
            if raw is MISSING or raw is None or raw == "":
                missing += raw is MISSING
                if self.required and index not in rejected:
                    rejected[index] = (self.name, "required value is empty")
                append(None)
                continue
            try:
                append(self.convert(raw))
            except Reject as problem:
                if self.on_error == "reject_row":
                    rejected.setdefault(index, (self.name, str(problem)))
                    append(None)
                else:
                    append(None if self.on_error == "ignore_value" else self.default)
        return out, missing < len(raws)


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise MappingConfigError(where, "a column name must be a non-empty string")
    if len(name) > MAX_JSON_KEY_LENGTH:
        raise MappingConfigError(where, f"column names are at most {MAX_JSON_KEY_LENGTH} characters")
    return name


def _compile_column(spec: Any, where: str, *, by_index: str | None = None) -> Column:
    """Compile one column; errors name it by name (``columns['kickoff']``) once the name is known."""
    if not isinstance(spec, Mapping):
        raise MappingConfigError(by_index or where, f"expected an object with name, path and type, got {preview(spec)}")
    name = _check_name(spec.get("name"), f"{by_index or where}.name")
    if by_index is not None:
        where = f"{where}[{name!r}]"
    unknown = set(spec) - _COLUMN_KEYS
    if unknown:
        raise MappingConfigError(where, unknown_keys_message(unknown, _COLUMN_KEYS))
    options = type_options(spec, where)
    path = spec.get("path", name)
    if not isinstance(path, str) or not path:
        raise MappingConfigError(f"{where}.path", "expected a JSONPath, a dotted key path, or a $$ or % context path")
    on_error = spec.get("on_error", "reject_row")
    if on_error not in ON_ERROR:
        raise MappingConfigError(f"{where}.on_error", f"{on_error!r} is not one of {', '.join(ON_ERROR)}")
    required = spec.get("required", False)
    if not isinstance(required, bool):
        raise MappingConfigError(f"{where}.required", "expected true or false")
    convert = converter(options)
    default = spec.get("default")
    if on_error == "use_default":
        if "default" not in spec:
            raise MappingConfigError(f"{where}.default", "on_error 'use_default' needs a default value")
        if default is not None:
            try:
                default = convert(default)
            except Reject as err:
                raise MappingConfigError(f"{where}.default", f"the default does not fit the column: {err}") from None
    elif "default" in spec:
        raise MappingConfigError(f"{where}.default", "a default is only used with on_error 'use_default'")
    return Column(
        name=name,
        path=compile_path(path, f"{where}.path", columns=True),
        options=options,
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
            {"name": key, "path": f"$[{json.dumps(key)}]", "type": _JSON_TYPE_TO_COLUMN.get(type(value), "json")},
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


# Tables ----------------------------------------------------------------------------------------


def _row_builder(names: tuple[str, ...]) -> Callable[..., dict[str, Any]]:
    """A function building one row dict from its column values, as a dict display.

    Kept because ``make bench`` measured it 10 to 18 % faster end to end than
    ``dict(zip(names, values))`` wherever rows are zipped from columns (the slow path,
    and the typed path with nested columns). Only generated identifiers enter the
    source; the column names are passed in as values, so no text from a mapping or a
    response is evaluated.
    """
    params = ", ".join(f"v{i}" for i in range(len(names)))
    items = ", ".join(f"n{i}: v{i}" for i in range(len(names)))
    constants = {f"n{i}": name for i, name in enumerate(names)}
    build: Callable[..., dict[str, Any]] = eval(f"lambda {params}: {{{items}}}", constants)  # noqa: S307
    return build


def build_rows(names: tuple[str, ...], by_column: list[list[Any]], rejected: Iterable[int]) -> list[dict[str, Any]]:
    """Zip column value lists into row dicts, leaving out the rejected record indexes."""
    build = _row_builder(names)
    skip = set(rejected)
    if not skip:
        return list(starmap(build, zip(*by_column, strict=True)))
    return [build(*row) for index, row in enumerate(zip(*by_column, strict=True)) if index not in skip]


def assemble(
    columns: tuple[Column, ...],
    raws: list[list[Any]],
    records: int,
    rows_as_decoded: Callable[[], list[dict[str, Any]]] | None = None,
) -> TableResult:
    """Type each column's raw values, reject bad records, and zip the rows: the end both paths share.

    :param rows_as_decoded: builds the rows straight from the decoded records; used when
        no record is rejected and no value changed in typing.
    """
    rejected: dict[int, tuple[str, str]] = {}
    typed = [column.values(values, rejected) for column, values in zip(columns, raws, strict=True)]
    by_column = [values for values, _ in typed]
    present = {column.name for column, (_, found) in zip(columns, typed, strict=True) if found}
    names = tuple(column.name for column in columns)
    unchanged = not rejected and all(typed is raw for typed, raw in zip(by_column, raws, strict=True))
    rows = rows_as_decoded() if rows_as_decoded is not None and unchanged else build_rows(names, by_column, rejected)
    samples = [
        {"index": index, "column": column, "reason": reason}
        for index, (column, reason) in sorted(rejected.items())[:MAX_REJECTED_SAMPLES]
    ]
    return TableResult(
        rows=rows,
        rejected=len(rejected),
        rejected_samples=samples,
        records=records,
        columns=names,
        present=present,
    )


@dataclass
class TablePlan:
    """One compiled table: its records path, flatten flag, columns (None: inferred) and guards."""

    records: CompiledPath | None
    flatten: bool
    columns: tuple[Column, ...] | None
    guards: Guards = field(default_factory=Guards)

    @property
    def needs_parents(self) -> bool:
        return any(column.path.context == "parent" for column in self.columns or ())

    def select(self, document: Any) -> tuple[list[Any], list[Chain] | None]:
        """The records (by the ``records`` path, else the activity's rules) and, if needed, their enclosing records."""
        if self.records is None:
            if self.flatten or not isinstance(document, (list, dict)):
                return [document], None
            if isinstance(document, list):
                return document, None
            arrays = [value for value in document.values() if isinstance(value, list)]
            return (arrays[0] if len(arrays) == 1 else [document]), None
        return select_records(document, self.records, parents=self.needs_parents)

    def map(self, document: Any) -> TableResult:
        """Map a parsed response into this table's typed rows. Raises only :class:`ResponseMappingError`."""
        records, chains = self.select(document)
        if self.flatten:
            records = [flatten(record) for record in records]
        if not records:
            return TableResult(rows=[], columns=tuple(c.name for c in self.columns or ()))
        columns = self.columns if self.columns is not None else tuple(infer_columns(records[0]))
        raws = [self._raws(column, records, chains, document) for column in columns]
        result = assemble(columns, raws, len(records))
        for column in columns:
            if column.name not in result.present:
                if chains is None and self.records is not None and self.records.record_levels:
                    chains = select_records(document, self.records, parents=True)[1]
                hint = _context_hint(column.path, document, chains)
                if hint:
                    result.hints[column.name] = hint
        return result

    @staticmethod
    def _raws(column: Column, records: list[Any], chains: list[Chain] | None, document: Any) -> list[Any]:
        path = column.path
        if path.context == "root":
            return [path.get(document)] * len(records)
        if path.context == "parent":
            assert chains is not None
            return [path.get(chain[-path.levels]) for chain in chains]
        return path.get_all(records)


def _context_hint(path: CompiledPath, document: Any, chains: list[Chain] | None) -> str:
    """For a record path found in no record: say so when it would match from the root or the enclosing record."""
    if path.context != "record" or path.keys is None or not path.keys:
        return ""
    relative = path.source[1:] if path.source.startswith("$") else "." + path.source
    if walk(document, path.keys) is not MISSING:
        return f" (column paths are relative to the record; from the document root use '$${relative}')"
    if chains and chains[0] and walk(chains[0][-1], path.keys) is not MISSING:
        return f" (column paths are relative to the record; from the enclosing record use '%{relative}')"
    return ""


# The plan --------------------------------------------------------------------------------------


@dataclass
class OutboundPlan:
    """A compiled ``outbound`` mapping: one table (key ``""``) or several named ones."""

    tables: dict[str, TablePlan]
    _typed: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def named(self) -> bool:
        return SINGLE_TABLE not in self.tables

    def records(self, document: Any) -> list[Any]:
        """The records this mapping maps from a parsed response: the table's, or every named table's together."""
        return [record for table in self.tables.values() for record in table.select(document)[0]]

    def map(self, document: Any) -> MappingResult:
        """Map a parsed response into typed rows, table by table. Raises only :class:`ResponseMappingError`."""
        return MappingResult(
            tables={name: table.map(document) for name, table in self.tables.items()},
            guards={name: table.guards for name, table in self.tables.items()},
        )

    def map_response(self, response: ApiResponse) -> MappingResult:
        """Map a raw response: decode straight into typed records where the mapping allows, else parse and map.

        The result is the same either way; the typed path skips building the fields the
        mapping ignores and checks the depth and key limits on what it captures.
        :raises RequestFailedError: the content type, malformed JSON, a guardrail or the mapping.
        """
        from airflow_campaign_provider.guardrails import check_json_content_type
        from airflow_campaign_provider.typed_mapping import compile_typed

        check_json_content_type(
            response.headers.get("Content-Type"), url=response.display_url, status=response.status_code
        )
        if self._typed is None:
            self._typed = compile_typed(self) or False
        if self._typed:
            result: MappingResult | None = self._typed.map(response.content, url=response.display_url)
            if result is not None:
                return result
        return self.map(response.json())


def has_template(value: Any) -> bool:
    """True when a value (or anything inside it) still holds Jinja: it is checked once rendered."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(has_template(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_template(v) for v in value)
    return False


def _compile_table(spec: Mapping[str, Any], where: str, inherited: Guards | None) -> TablePlan:
    flatten_all = spec.get("flatten", False)
    if not isinstance(flatten_all, bool):
        raise MappingConfigError(f"{where}.flatten", "expected true or false")
    records_spec = spec.get("records")
    if records_spec is not None and not isinstance(records_spec, str):
        raise MappingConfigError(f"{where}.records", "expected a JSONPath string such as '$.data[*]'")
    records = None if records_spec is None else compile_path(records_spec, f"{where}.records")
    columns_spec = spec.get("columns")
    columns: tuple[Column, ...] | None = None
    if columns_spec is not None:
        if not isinstance(columns_spec, (list, tuple)) or not columns_spec:
            raise MappingConfigError(f"{where}.columns", "expected a non-empty list of column definitions")
        if len(columns_spec) > MAX_COLUMNS:
            raise MappingConfigError(f"{where}.columns", f"at most {MAX_COLUMNS} columns")
        columns = tuple(
            _compile_column(c, f"{where}.columns", by_index=f"{where}.columns[{i}]") for i, c in enumerate(columns_spec)
        )
        names = [c.name for c in columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise MappingConfigError(f"{where}.columns", f"duplicate column names {duplicates}")
        for column in columns:
            _check_context(column, records, f"{where}.columns[{column.name!r}].path")
    return TablePlan(records, flatten_all, columns, parse_guards(spec, where, inherited))


def _check_context(column: Column, records: CompiledPath | None, where: str) -> None:
    """A ``%`` column needs as many enclosing records as it climbs, which only a nested records path gives."""
    path = column.path
    if path.context != "parent":
        return
    if records is not None and any(step.descendant for step in records.steps):
        raise MappingConfigError(where, f"{path.source!r} needs a records path without '..', whose levels are known")
    available = 0 if records is None else records.record_levels
    if path.levels > available:
        shown = "no records path" if records is None else f"the records path {records.source!r}"
        raise MappingConfigError(
            where,
            f"{path.source!r} climbs {path.levels} enclosing record(s), and {shown} gives each record {available} "
            "(records nested in records, such as '$.teams[*].players[*]', give one: the team)",
        )


def compile_outbound(spec: Mapping[str, Any] | None) -> OutboundPlan:
    """Validate and compile an ``outbound`` mapping (None means: the activity's defaults).

    :raises MappingConfigError: naming the key that is wrong.
    """
    if spec is None:
        return OutboundPlan({SINGLE_TABLE: TablePlan(None, False, None)})
    if not isinstance(spec, Mapping):
        raise MappingConfigError("outbound", f"expected an object, got {type(spec).__name__}")
    unknown = set(spec) - _OUTBOUND_KEYS
    if unknown:
        raise MappingConfigError("outbound", unknown_keys_message(unknown, _OUTBOUND_KEYS))
    if "tables" not in spec:
        return OutboundPlan({SINGLE_TABLE: _compile_table(spec, "outbound", None)})
    shared = sorted(set(spec) & {"records", "flatten", "columns"})
    if shared:
        raise MappingConfigError("outbound", f"give {shared} inside each table, not beside 'tables'")
    tables_spec = spec["tables"]
    if not isinstance(tables_spec, Mapping) or not tables_spec:
        raise MappingConfigError("outbound.tables", "expected an object of table names and table mappings")
    inherited = parse_guards(spec, "outbound")
    tables: dict[str, TablePlan] = {}
    for name, table_spec in tables_spec.items():
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_JSON_KEY_LENGTH:
            raise MappingConfigError("outbound.tables", f"a table name is a non-empty string, got {name!r}")
        if name in RESERVED_TABLE_NAMES or name.startswith("_"):
            raise MappingConfigError(
                "outbound.tables", f"{name!r} is an XCom key of the operator; name the table otherwise"
            )
        where = f"outbound.tables[{name!r}]"
        if not isinstance(table_spec, Mapping):
            raise MappingConfigError(where, "expected an object with records and columns")
        unknown = set(table_spec) - _TABLE_KEYS
        if unknown:
            raise MappingConfigError(where, unknown_keys_message(unknown, _TABLE_KEYS))
        tables[name] = _compile_table(table_spec, where, inherited)
    return OutboundPlan(tables)


def validate_outbound(spec: Any) -> None:
    """Check an ``outbound`` mapping at DAG parse time; one still holding Jinja is checked once rendered."""
    if not has_template(spec):
        compile_outbound(spec)
