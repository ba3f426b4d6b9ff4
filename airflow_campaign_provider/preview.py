"""Preview a mapping on a sample response: the activity's "Parse" button, for notebooks, tests and the CLI.

:func:`preview` maps a sample document with a given ``outbound`` mapping, or with one
inferred from the sample (:func:`infer_mapping`), and keeps the rows, the rejects and
the empty columns. :meth:`Preview.render` prints them with ``rich`` (shipped with
Airflow), imported only when something is printed.
"""

from __future__ import annotations

import json
import pprint
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from airflow_campaign_provider.column_types import DEFAULT_MAX_LENGTH
from airflow_campaign_provider.exceptions import ExternalApiError
from airflow_campaign_provider.mapping_result import MappingResult
from airflow_campaign_provider.outbound import MAX_COLUMNS, compile_outbound

SAMPLED_RECORDS = 100
"""Records the inference looks at: enough to see a value's type vary, few enough to stay instant."""

NESTING = 3
"""Nested objects are expanded into dotted-path columns this many levels deep; deeper ones are json."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Preview:
    """What a mapping makes of a sample.

    :ivar mapping: the ``outbound`` mapping used, inferred or given.
    :ivar inferred: True when the mapping was inferred from the sample.
    :ivar result: the mapped rows, rejects and empty columns; None when mapping failed.
    :ivar error: the mapping or data-quality error, if any.
    """

    mapping: dict[str, Any]
    inferred: bool
    result: MappingResult | None
    error: str | None = None

    def mapping_source(self, style: str = "python") -> str:
        """The mapping, ready to paste into a DAG (``python``) or a JSON file (``json``)."""
        if style == "json":
            return json.dumps(self.mapping, indent=2, ensure_ascii=False)
        prefix = "outbound = "
        text = pprint.pformat(self.mapping, sort_dicts=False, width=100 - len(prefix))
        return prefix + text.replace("\n", "\n" + " " * len(prefix))

    def render(self, *, rows: int = 10, style: str = "python", console: Any = None) -> None:
        """Print the mapping, the first ``rows`` rows of each table, the rejects and the empty columns."""
        from rich.console import Console
        from rich.syntax import Syntax
        from rich.table import Table

        console = console or Console()
        title = "Inferred outbound mapping, ready to paste" if self.inferred else "Outbound mapping"
        console.rule(title)
        console.print(Syntax(self.mapping_source(style), "json" if style == "json" else "python", word_wrap=True))
        if self.result is None:
            console.print(f"[bold red]Mapping failed:[/] {self.error}", markup=True, highlight=False)
            return
        for name, table in self.result.tables.items():
            label = f"table {name!r}: " if name else ""
            console.rule(f"{label}{len(table.rows):,} rows, {table.rejected:,} rejected of {table.records:,} records")
            grid = Table(*table.columns, show_lines=False)
            for row in table.rows[:rows]:
                grid.add_row(*(_cell(row.get(column)) for column in table.columns))
            console.print(grid)
            if len(table.rows) > rows:
                console.print(f"… {len(table.rows) - rows:,} more rows")
            if table.rejected_samples:
                rejects = Table("record", "column", "reason", title="Rejected records (first reasons)")
                for sample in table.rejected_samples:
                    rejects.add_row(str(sample["index"]), sample["column"], sample["reason"])
                console.print(rejects)
            for column in table.empty_columns:
                hint = table.hints.get(column, "")
                console.print(f"Column {column!r} was found in no record: null in every row{hint}", highlight=False)
        if self.error:
            console.print(f"[bold red]{self.error}[/]", markup=True, highlight=False)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:60] + "…"


def preview(outbound: Mapping[str, Any] | None, document: Any, *, records: str | None = None) -> Preview:
    """Map ``document`` with ``outbound``, or with a mapping inferred from it (for ``records`` if given).

    Never raises for a bad sample: a mapping or data-quality error is kept in
    :attr:`Preview.error`, beside whatever rows were mapped. A bad ``outbound`` raises
    :class:`~airflow_campaign_provider.exceptions.MappingConfigError`, as at DAG parse time.
    """
    inferred = outbound is None
    mapping = dict(outbound) if outbound is not None else infer_mapping(document, records)
    plan = compile_outbound(mapping)
    try:
        result = plan.map(document)
    except ExternalApiError as err:
        return Preview(mapping, inferred, None, err.message)
    try:
        result.check_quality()
    except ExternalApiError as err:
        return Preview(mapping, inferred, result, err.message)
    return Preview(mapping, inferred, result)


def infer_mapping(document: Any, records: str | None = None) -> dict[str, Any]:
    """An explicit ``outbound`` mapping for a sample: its records path and typed columns.

    The records are those of ``records``, else the activity's rules (a top-level array,
    the only array property, or the whole document). Columns come from every key of
    the first records, in order of appearance; nested objects become dotted paths
    (``coupon.code`` named ``coupon_code``); a type is the one every sampled value fits.
    """
    path = records or _default_records_path(document)
    selected = compile_outbound({"records": path}).tables[""].select(document)[0]
    values: dict[tuple[str, ...], list[Any]] = {}
    for record in selected[:SAMPLED_RECORDS]:
        for key_path, value in _leaves(record, ()):
            values.setdefault(key_path, []).append(value)
    columns = [_column(key_path, seen) for key_path, seen in list(values.items())[:MAX_COLUMNS]]
    mapping: dict[str, Any] = {"records": path}
    if columns:
        mapping["columns"] = columns
    return mapping


def _default_records_path(document: Any) -> str:
    if isinstance(document, list):
        return "$[*]"
    if isinstance(document, dict):
        arrays = [key for key, value in document.items() if isinstance(value, list)]
        if len(arrays) == 1:
            return f"{_jsonpath_key(arrays[0])}[*]"
    return "$"


def _jsonpath_key(key: str) -> str:
    return f"$.{key}" if _IDENTIFIER.fullmatch(key) else f"$[{json.dumps(key, ensure_ascii=False)}]"


def _leaves(value: Any, prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    """(key path, value) for each value to map: objects expand into their keys, up to :data:`NESTING` levels."""
    if not isinstance(value, dict):
        return [(prefix or ("value",), value)]
    found: list[tuple[tuple[str, ...], Any]] = []
    for key, child in value.items():
        if isinstance(child, dict) and child and len(prefix) + 1 < NESTING:
            found += _leaves(child, (*prefix, key))
        else:
            found.append(((*prefix, key), child))
    return found


def _column(key_path: tuple[str, ...], seen: list[Any]) -> dict[str, Any]:
    """A column for the values ``seen`` at ``key_path``: named ``parent_child``, typed by what every value fits."""
    name = "_".join(key_path)
    if key_path == ("value",):
        path = "$"
    elif all(_IDENTIFIER.fullmatch(part) for part in key_path):
        path = ".".join(key_path)
    else:
        path = "$" + "".join(f"[{json.dumps(part, ensure_ascii=False)}]" for part in key_path)
    column: dict[str, Any] = {"name": name} if path == name else {"name": name, "path": path}
    column["type"] = _type_of([value for value in seen if value is not None and value != ""])
    longest = max((len(value) for value in seen if isinstance(value, str)), default=0)
    if column["type"] == "text" and longest > DEFAULT_MAX_LENGTH:
        column["max_length"] = longest
    return column


def _type_of(values: list[Any]) -> str:
    kinds = {type(value) for value in values}
    if not kinds or kinds & {dict, list}:
        return "json"
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "integer"
    if kinds <= {int, float}:
        return "float"
    if kinds == {str}:
        for kind, parse in (("date", date.fromisoformat), ("datetime", datetime.fromisoformat)):
            try:
                for value in values:
                    parse(value)
            except ValueError:
                continue
            return kind
    return "text"
