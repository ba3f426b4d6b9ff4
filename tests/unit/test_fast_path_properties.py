"""Property-based: the typed fast path and the parse-and-map path give identical rows, rejects and summaries.

And context columns (``$$`` root, ``%`` enclosing record) agree with an oracle built from
the JSONPath library's own node locations.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpath_rfc9535
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_campaign_provider.exceptions import ExternalApiError
from airflow_campaign_provider.outbound import COLUMN_TYPES, compile_outbound
from airflow_campaign_provider.response import ApiResponse, Headers
from airflow_campaign_provider.typed_mapping import compile_typed

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([10**400, 2**63, 0, 1, 1764618300])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", " 7 ", "2026-12-01", "2026-12-01T19:45:00Z", "true", "1.5", "x" * 12, "01/12/2026"])
    | st.text(max_size=8)
)
values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=8
)
record_keys = st.sampled_from(["code", "price", "tags", "when", "n"])
records = st.lists(
    st.dictionaries(record_keys, values | st.fixed_dictionaries({"amount": values}) | st.lists(values, max_size=3)),
    max_size=6,
)
documents = st.fixed_dictionaries(
    {"data": records | st.none() | values, "meta": st.fixed_dictionaries({}, optional={"when": values, "n": values})},
    optional={"a": st.fixed_dictionaries({"data": records})},
)

typed_columns = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["code", "amount", "first", "last", "when", "n", "root_when"]),
        "path": st.sampled_from(
            ["code", "price.amount", "$.tags[0]", "$.tags[-1]", "when", "n", "$$.meta.when", "$$.meta.n"]
        ),
        "type": st.sampled_from(COLUMN_TYPES),
        "on_error": st.sampled_from(["reject_row", "ignore_value"]),
        "required": st.booleans(),
    },
    optional={"max_length": st.integers(min_value=1, max_value=10)},
).filter(lambda c: "max_length" not in c or c["type"] == "text")
typed_specs = st.tuples(
    st.sampled_from(["$.data[*]", "$.data", "$.a.data[*]"]),
    st.lists(typed_columns, min_size=1, max_size=5, unique_by=lambda c: c["name"]),
    st.sampled_from([None, 0, "50%", "100%"]),
).map(lambda t: {"records": t[0], "columns": t[1], **({} if t[2] is None else {"max_rejected": t[2]})})


def response(document: Any) -> ApiResponse:
    body = json.dumps(document).encode()
    return ApiResponse(
        200,
        Headers([("Content-Type", "application/json")]),
        "https://api.example.com",
        body,
        "https://api.example.com",
        1.0,
    )


def outcome(run: Any) -> Any:
    try:
        result = run()
    except ExternalApiError as err:
        return type(err).__name__, str(err)
    return json.dumps(result.value), result.summary()


@settings(max_examples=500, deadline=None)
@given(spec=typed_specs, document=documents)
def test_the_typed_path_and_the_slow_path_agree(spec: dict[str, Any], document: Any) -> None:
    plan = compile_outbound(spec)
    assert compile_typed(plan) is not None, "every generated mapping compiles to the typed path"
    slow = outcome(lambda: compile_outbound(spec).map(response(document).json()))
    assert outcome(lambda: plan.map_response(response(document))) == slow


@settings(max_examples=200, deadline=None)
@given(
    spec=typed_specs,
    document=st.fixed_dictionaries(
        {
            "data": st.lists(
                st.fixed_dictionaries({"code": st.text(min_size=1, max_size=5), "n": st.integers()}), min_size=1
            )
        }
    ),
)
def test_clean_pages_take_the_typed_path(spec: dict[str, Any], document: Any) -> None:
    spec = {"records": "$.data[*]", "columns": [{"name": "code", "type": "text"}, {"name": "n", "type": "integer"}]}
    typed = compile_typed(compile_outbound(spec))
    assert typed is not None
    result = typed.map(json.dumps(document).encode(), url="https://api.example.com")
    assert result is not None
    assert result.rows == document["data"]


def test_a_deep_nesting_inside_an_ignored_field_is_a_typed_error_not_a_crash() -> None:
    plan = compile_outbound({"records": "$.data[*]", "columns": [{"name": "n", "type": "integer"}]})
    body = b'{"junk": ' + b"[" * 100_000 + b"]" * 100_000 + b', "data": [{"n": 1}]}'
    deep = ApiResponse(200, Headers([("Content-Type", "application/json")]), "u", body, "https://api.example.com", 1.0)
    error = outcome(lambda: plan.map_response(deep))
    assert error[0] == "InvalidJsonError"


def test_captured_values_keep_the_depth_limit_as_deep_as_they_sit() -> None:
    plan = compile_outbound({"records": "$.data[*]", "columns": [{"name": "v", "type": "json"}]})
    nested: Any = 1
    for _ in range(7):  # the record is level 3; v holds 7 more levels: 10 in all
        nested = [nested]
    assert plan.map_response(response({"data": [{"v": nested}]})).rows == [{"v": nested}]
    error = outcome(lambda: plan.map_response(response({"data": [{"v": [nested]}]})))
    assert error[0] == "JsonDepthError"


# Context columns against an oracle -----------------------------------------------------------------------

names = st.one_of(st.none(), st.text(max_size=4), st.integers())
players = st.lists(st.fixed_dictionaries({}, optional={"n": st.integers(0, 99), "name": names}), max_size=3)
teams = st.lists(st.fixed_dictionaries({"players": players}, optional={"name": names}), max_size=3)
leagues = st.lists(st.fixed_dictionaries({"teams": teams}, optional={"name": names}), max_size=3)


@settings(max_examples=300, deadline=None)
@given(document=st.fixed_dictionaries({"leagues": leagues}, optional={"season": names}))
def test_root_and_parent_columns_match_the_library_node_locations(document: Any) -> None:
    records = "$.leagues[*].teams[*].players[*]"
    spec = {
        "records": records,
        "columns": [
            {"name": "n", "type": "json"},
            {"name": "team", "path": "%.name", "type": "json"},
            {"name": "league", "path": "%.%.name", "type": "json"},
            {"name": "season", "path": "$$.season", "type": "json"},
        ],
        "max_rejected": "100%",
    }
    expected = []
    for node in jsonpath_rfc9535.find(records, document):
        league_index, team_index = node.location[1], node.location[3]
        league = document["leagues"][league_index]
        team = league["teams"][team_index]
        row = {
            "n": node.value.get("n"),  # type: ignore[attr-defined]
            "team": team.get("name"),
            "league": league.get("name"),
            "season": document.get("season"),
        }
        expected.append({key: None if value == "" else value for key, value in row.items()})
    assert compile_outbound(spec).map(document).rows == expected
