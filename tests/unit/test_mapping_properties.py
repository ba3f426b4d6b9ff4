"""Property-based: on arbitrary JSON, parsing and mapping raise nothing but this provider's typed errors."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_campaign_provider.exceptions import ExternalApiError, ResponseMappingError
from airflow_campaign_provider.inbound import build_request_body
from airflow_campaign_provider.json_body import parse_json
from airflow_campaign_provider.outbound import COLUMN_TYPES, ON_ERROR, compile_outbound

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 2**63])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
keys = st.sampled_from(["code", "data", "items", "price", "amount", "tags", "a", "b", "a_b", ""]) | st.text()
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=40,
)

column_specs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["code", "amount", "tags", "a", "x"]),
        "path": st.sampled_from(["code", "price.amount", "$.tags[0]", "$.tags[*]", "$", "a", "$..a", "a_b"]),
        "type": st.sampled_from(COLUMN_TYPES),
        "on_error": st.sampled_from([e for e in ON_ERROR if e != "use_default"]),
        "required": st.booleans(),
    }
)
outbound_specs = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "records": st.sampled_from(["$.data[*]", "$.items", "$[*]", "$..items[*]", "$.data[?@.a]", "$", "$.data"]),
        "flatten": st.booleans(),
        "columns": st.lists(column_specs, min_size=1, max_size=4, unique_by=lambda c: c["name"]),
    },
)


@settings(max_examples=400, deadline=None)
@given(spec=outbound_specs, document=json_values)
def test_mapping_raises_only_typed_errors(spec: dict[str, Any] | None, document: Any) -> None:
    plan = compile_outbound(spec)
    try:
        result = plan.map(document)
    except ResponseMappingError:  # the response's fault: a request failure, which can take a failure branch
        return
    json.dumps(result.rows, allow_nan=False)
    assert result.rejected >= 0
    assert len(result.rejected_samples) <= 10
    if spec and spec.get("columns"):
        names = [c["name"] for c in spec["columns"]]
        assert all(list(row) == names for row in result.rows)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_parsing_raises_only_typed_errors(body: bytes) -> None:
    with contextlib.suppress(ExternalApiError):
        parse_json(body, "application/json", url="https://api.example.com")


@settings(max_examples=200, deadline=None)
@given(
    rows=json_values,
    columns=st.none() | st.lists(st.sampled_from(["zip", "a", "code"]), min_size=1, unique=True),
)
def test_inbound_raises_only_typed_errors(rows: Any, columns: list[str] | None) -> None:
    spec: dict[str, Any] = {"rows": rows, "add_count": True}
    if columns:
        spec["columns"] = columns
    try:
        body = build_request_body(spec)
    except ExternalApiError:
        return
    assert body["params"]["count"] == len(body["data"])
