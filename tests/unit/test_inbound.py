"""Inbound mapping: the activity's request body from upstream rows."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_campaign_provider.exceptions import InboundDataError, MappingConfigError
from airflow_campaign_provider.inbound import build_request_body, validate_inbound

ROWS = [{"zip": "20121", "email": "a@example.com"}, {"zip": "75001", "email": "b@example.com"}]


def test_selected_columns_params_and_count() -> None:
    body = build_request_body({"rows": ROWS, "columns": ["zip"], "params": {"campaign": "spring"}, "add_count": True})
    assert body == {
        "params": {"campaign": "spring", "count": 2},
        "data": [{"zip": "20121"}, {"zip": "75001"}],
    }


def test_all_columns_when_omitted_and_empty_params() -> None:
    assert build_request_body({"rows": ROWS}) == {"params": {}, "data": ROWS}


def test_empty_rows_with_count() -> None:
    assert build_request_body({"rows": [], "add_count": True}) == {"params": {"count": 0}, "data": []}


def test_a_row_without_a_selected_column_is_a_data_error() -> None:
    with pytest.raises(InboundDataError, match="row 1 has no column 'zip'"):
        build_request_body({"rows": [{"zip": "1"}, {"email": "x"}], "columns": ["zip"]})


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [({"path": "/x.jsonl", "rows": 3}, "must be a list of objects"), ([{"a": 1}, "b"], "row 1 is a str")],
)
def test_rows_must_be_objects(rows: Any, fragment: str) -> None:
    with pytest.raises(InboundDataError, match=fragment):
        build_request_body({"rows": rows})


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ([1, 2], "inbound"),
        ({"columns": ["zip"]}, "inbound.rows"),
        ({"rows": [], "extra": 1}, "inbound"),
        ({"rows": [], "columns": "zip"}, "inbound.columns"),
        ({"rows": [], "columns": []}, "inbound.columns"),
        ({"rows": [], "columns": ["zip", "zip"]}, "inbound.columns"),
        ({"rows": [], "params": [1]}, "inbound.params"),
        ({"rows": [], "add_count": "yes"}, "inbound.add_count"),
    ],
)
def test_bad_mappings_name_the_field(spec: Any, field: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        validate_inbound(spec)
    assert info.value.field == field
