"""What a mapping produced, table by table, and the data-quality guards that judge it. Pure.

A result can be extended with a later page's result, so pagination merges pages
before anything is judged: empty columns and the guards are decided over all pages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_campaign_provider.exceptions import DataQualityError, MappingConfigError, ResponseMappingError

MAX_REJECTED_SAMPLES = 10
"""Rejected records whose reason is kept (record index, column, reason)."""

SINGLE_TABLE = ""
"""The key of the one table of an ``outbound`` mapping without ``tables``."""

GUARD_KEYS = frozenset({"min_rows", "max_rejected", "strict_columns"})
_RATIO = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


@dataclass(frozen=True)
class Guards:
    """A table's data-quality guards.

    :ivar min_rows: fewest rows the table may have.
    :ivar max_rejected: most rejected records, as a count (int) or a share of the records
        (``ratio``); None means any number but all of them.
    :ivar strict_columns: a column found in no record is an error, not a warning.
    :ivar origins: for each guard set, the mapping key it was set in (tables inherit from ``outbound``).
    """

    min_rows: int = 0
    max_rejected: int | None = None
    ratio: float | None = None
    strict_columns: bool = False
    origins: Mapping[str, str] = field(default_factory=dict)

    def where(self, key: str) -> str:
        """The mapping key a guard was set at: ``outbound.min_rows`` or ``outbound.tables['players'].min_rows``."""
        return f"{self.origins.get(key, 'outbound')}.{key}"

    @property
    def max_rejected_text(self) -> str:
        """The limit as the mapping gives it: ``3`` or ``'5%'``."""
        return repr(f"{self.ratio * 100:g}%") if self.ratio is not None else str(self.max_rejected)


def parse_guards(spec: Mapping[str, Any], where: str, inherited: Guards | None = None) -> Guards:
    """Validate ``min_rows``, ``max_rejected`` and ``strict_columns``; unset keys keep the ``inherited`` values."""
    base = inherited or Guards()
    min_rows = spec.get("min_rows", base.min_rows)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 0:
        raise MappingConfigError(f"{where}.min_rows", "expected a whole number of rows, 0 or more")
    max_rejected, ratio = base.max_rejected, base.ratio
    if "max_rejected" in spec:
        value = spec["max_rejected"]
        ratio_match = _RATIO.fullmatch(value) if isinstance(value, str) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            max_rejected, ratio = value, None
        elif ratio_match and float(ratio_match.group(1)) <= 100:
            max_rejected, ratio = None, float(ratio_match.group(1)) / 100
        else:
            raise MappingConfigError(
                f"{where}.max_rejected", f"expected a count such as 10 or a share such as '5%', got {value!r}"
            )
    strict = spec.get("strict_columns", base.strict_columns)
    if not isinstance(strict, bool):
        raise MappingConfigError(f"{where}.strict_columns", "expected true or false")
    origins = {**base.origins, **{key: where for key in GUARD_KEYS if key in spec}}
    return Guards(min_rows, max_rejected, ratio, strict, origins)


@dataclass
class TableResult:
    """One table's rows in record order, how many records were selected and rejected, and the first reasons.

    :ivar records: records selected from the response (mapped rows plus rejected records).
    :ivar columns: the column names, in order.
    :ivar present: the columns whose path was found in at least one record.
    :ivar hints: for a column found in no record, where its path would have matched.
    :ivar handed_over: rows already handed to an output (see :meth:`hand_over`).
    """

    rows: list[dict[str, Any]]
    rejected: int = 0
    rejected_samples: list[dict[str, Any]] = field(default_factory=list)
    records: int = 0
    columns: tuple[str, ...] = ()
    present: set[str] = field(default_factory=set)
    hints: dict[str, str] = field(default_factory=dict)
    handed_over: int = 0

    @property
    def row_count(self) -> int:
        """Rows mapped so far, those handed over included."""
        return self.handed_over + len(self.rows)

    def hand_over(self) -> None:
        """Forget the rows (an output keeps them), but keep counting them."""
        self.handed_over += len(self.rows)
        self.rows = []

    def extend(self, later: TableResult) -> None:
        """Append a later page's result: rows in order, record indexes counted across pages."""
        self.rows.extend(later.rows)
        self.handed_over += later.handed_over
        room = MAX_REJECTED_SAMPLES - len(self.rejected_samples)
        self.rejected_samples.extend(
            {**sample, "index": sample["index"] + self.records} for sample in later.rejected_samples[:room]
        )
        self.rejected += later.rejected
        self.records += later.records
        self.columns += tuple(name for name in later.columns if name not in self.columns)
        self.present |= later.present
        self.hints = {**later.hints, **self.hints}

    @property
    def empty_columns(self) -> list[str]:
        """Columns whose path was absent from every record (none when there were no records)."""
        return [name for name in self.columns if name not in self.present] if self.records else []


@dataclass
class MappingResult:
    """The result of an ``outbound`` mapping: one table, or several named ``tables``.

    ``rows``, ``rejected``, ``rejected_samples`` and ``records`` read the one table; with
    named tables, ``rejected`` and ``records`` are totals and each sample names its table.
    """

    tables: dict[str, TableResult]
    guards: dict[str, Guards] = field(default_factory=dict, repr=False)

    @property
    def named(self) -> bool:
        return SINGLE_TABLE not in self.tables

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows of the one table; with named tables, read ``tables[name].rows`` or :attr:`value`."""
        if self.named:
            raise TypeError("this mapping has named tables: read result.tables[name].rows or result.value")
        return self.tables[SINGLE_TABLE].rows

    @property
    def rejected(self) -> int:
        return sum(table.rejected for table in self.tables.values())

    @property
    def records(self) -> int:
        return sum(table.records for table in self.tables.values())

    @property
    def rejected_samples(self) -> list[dict[str, Any]]:
        if not self.named:
            return self.tables[SINGLE_TABLE].rejected_samples
        samples = [{"table": name, **s} for name, table in self.tables.items() for s in table.rejected_samples]
        return samples[:MAX_REJECTED_SAMPLES]

    @property
    def empty_columns(self) -> list[str]:
        """Columns found in no record; with named tables, as ``table.column``."""
        if not self.named:
            return self.tables[SINGLE_TABLE].empty_columns
        return [f"{name}.{column}" for name, table in self.tables.items() for column in table.empty_columns]

    @property
    def value(self) -> list[dict[str, Any]] | dict[str, list[dict[str, Any]]]:
        """The XCom return value: the rows, or ``{table: rows}`` with named tables."""
        return {name: table.rows for name, table in self.tables.items()} if self.named else self.rows

    def extend(self, later: MappingResult) -> None:
        """Merge a later page's result, table by table."""
        for name, table in later.tables.items():
            if name in self.tables:
                self.tables[name].extend(table)
            else:
                self.tables[name] = table

    def summary(self) -> dict[str, Any]:
        """The mapping's part of XCom ``summary``: totals, and with named tables one entry per table."""
        summary: dict[str, Any] = {
            "rows": sum(table.row_count for table in self.tables.values()),
            "records": self.records,
            "rejected": self.rejected,
            "rejected_samples": self.rejected_samples,
            "empty_columns": self.empty_columns,
        }
        if self.named:
            summary["tables"] = {
                name: {
                    "rows": table.row_count,
                    "records": table.records,
                    "rejected": table.rejected,
                    "rejected_samples": table.rejected_samples,
                    "empty_columns": table.empty_columns,
                }
                for name, table in self.tables.items()
            }
        return summary

    def report(self) -> tuple[list[str], list[str]]:
        """Log lines for the operator: (info lines, warning lines); warnings name rejections and empty columns."""
        info: list[str] = []
        warnings: list[str] = []
        for name, table in self.tables.items():
            label = f"table {name!r}: " if name else ""
            info.append(f"Mapped {label}{table.row_count:,} rows, rejected {table.rejected:,}")
            if table.rejected:
                warnings.append(f"{label}rejected {table.rejected:,} of {table.records:,} records{_reasons(table)}")
            for column in table.empty_columns:
                hint = table.hints.get(column, "")
                warnings.append(f"{label}column {column!r} was found in no record, so it is null in every row{hint}")
        return info, warnings

    def check_quality(self) -> None:
        """Apply each table's guards after the last page.

        :raises ResponseMappingError: ``strict_columns`` and a column found in no record.
        :raises DataQualityError: fewer rows than ``min_rows``, or more rejections than
            ``max_rejected`` (by default: every record rejected).
        """
        for name, table in self.tables.items():
            guards = self.guards.get(name, Guards())
            label = f"table {name!r}" if name else "the mapping"
            if guards.strict_columns and table.empty_columns:
                raise ResponseMappingError(
                    f"outbound mapping: in {label}, columns {table.empty_columns} were found in no record "
                    f"({guards.where('strict_columns')})"
                )
            if table.row_count < guards.min_rows:
                raise DataQualityError(
                    f"data quality: {label} has {table.row_count:,} rows, fewer than "
                    f"{guards.where('min_rows')}={guards.min_rows:,}{_reasons(table)}"
                )
            if _too_many_rejected(table, guards):
                limit = (
                    f"over {guards.where('max_rejected')}={guards.max_rejected_text}"
                    if guards.max_rejected is not None or guards.ratio is not None
                    else f"every record (set {guards.where('max_rejected')} to allow it)"
                )
                raise DataQualityError(
                    f"data quality: {label} rejected {table.rejected:,} of {table.records:,} records, "
                    f"{limit}{_reasons(table)}"
                )


def _too_many_rejected(table: TableResult, guards: Guards) -> bool:
    if guards.ratio is not None:
        return table.rejected > guards.ratio * table.records
    if guards.max_rejected is not None:
        return table.rejected > guards.max_rejected
    return table.records > 0 and table.rejected == table.records


def _reasons(table: TableResult) -> str:
    if not table.rejected_samples:
        return ""
    reasons = "; ".join(
        f"record {s['index']} column {s['column']!r}: {s['reason']}" for s in table.rejected_samples[:3]
    )
    return f" (first reasons: {reasons})"
