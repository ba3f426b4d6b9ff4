"""Inbound mapping: build the activity's request body from upstream rows. Pure.

``{"rows": [...], "columns": ["zip"], "params": {"campaign": "spring"}, "add_count": True}``
becomes ``{"params": {"campaign": "spring", "count": 2}, "data": [{"zip": "20121"}, ...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_campaign_provider.exceptions import InboundDataError, MappingConfigError
from airflow_campaign_provider.suggestions import unknown_keys_message

_INBOUND_KEYS = frozenset({"rows", "columns", "params", "add_count"})


def validate_inbound(spec: Any) -> None:
    """Check the shape of an ``inbound`` mapping at DAG parse time (``rows`` may still be an XComArg)."""
    if not isinstance(spec, Mapping):
        raise MappingConfigError("inbound", f"expected an object with 'rows', got {type(spec).__name__}")
    unknown = set(spec) - _INBOUND_KEYS
    if unknown:
        raise MappingConfigError("inbound", unknown_keys_message(unknown, _INBOUND_KEYS))
    if "rows" not in spec:
        raise MappingConfigError("inbound.rows", "required: the upstream rows (a list of objects or an XComArg)")
    columns = spec.get("columns")
    if columns is not None:
        if not isinstance(columns, (list, tuple)) or not columns or not all(isinstance(c, str) and c for c in columns):
            raise MappingConfigError("inbound.columns", "expected a non-empty list of column names")
        if len(set(columns)) != len(columns):
            raise MappingConfigError("inbound.columns", "column names must be unique")
    params = spec.get("params", {})
    if not isinstance(params, (Mapping, str)):
        raise MappingConfigError("inbound.params", "expected an object of custom parameters")
    if not isinstance(spec.get("add_count", False), bool):
        raise MappingConfigError("inbound.add_count", "expected true or false")


def build_request_body(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Build ``{"params": ..., "data": [...]}`` from a rendered ``inbound`` mapping.

    :raises MappingConfigError: the mapping itself is wrong.
    :raises InboundDataError: ``rows`` is not a list of objects, or a row lacks a selected column.
    """
    validate_inbound(spec)
    rows = spec["rows"]
    if not isinstance(rows, (list, tuple)):
        raise InboundDataError(
            f"inbound data: 'rows' must be a list of objects, got {type(rows).__name__} "
            "(an upstream task that wrote its rows to output_path cannot feed inbound)"
        )
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise MappingConfigError("inbound.params", "expected an object once rendered")
    columns = spec.get("columns")
    data: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InboundDataError(f"inbound data: row {index} is a {type(row).__name__}, not an object")
        if columns is None:
            data.append(dict(row))
            continue
        missing = [column for column in columns if column not in row]
        if missing:
            raise InboundDataError(
                f"inbound data: row {index} has no column {missing[0]!r} (selected columns: {list(columns)})"
            )
        data.append({column: row[column] for column in columns})
    body_params = dict(params)
    if spec.get("add_count", False):
        body_params["count"] = len(data)
    return {"params": body_params, "data": data}
