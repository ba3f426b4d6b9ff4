"""Outbound mapping: records, every type, every on_error, required, inference, flatten and the limits."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_campaign_provider.exceptions import MappingConfigError, ResponseMappingError
from airflow_campaign_provider.outbound import MAX_COLUMNS, compile_outbound, flatten


def rows(spec: dict[str, Any] | None, document: Any) -> list[dict[str, Any]]:
    return compile_outbound(spec).map(document).rows


def column(name: str = "v", **kw: Any) -> dict[str, Any]:
    return {"name": name, "path": kw.pop("path", name), **kw}


def one(column_type: str, value: Any, **kw: Any) -> Any:
    result = compile_outbound({"columns": [column("v", type=column_type, **kw)]}).map([{"v": value}])
    return result.rows[0]["v"] if result.rows else ("rejected", result.rejected_samples[0]["reason"])


# Records -------------------------------------------------------------------------------------


def test_records_path_and_record_order() -> None:
    doc = {"data": [{"code": "A"}, {"code": "B"}], "meta": {"n": 2}}
    assert rows({"records": "$.data[*]"}, doc) == [{"code": "A"}, {"code": "B"}]
    assert rows({"records": "$.data"}, doc) == [{"code": "A"}, {"code": "B"}]
    assert rows({"records": "$.meta"}, doc) == [{"n": 2}]
    assert rows({"records": "$.meta[*]"}, doc) == [{"value": 2}]


def test_general_jsonpath_records_use_the_library() -> None:
    doc = {"data": [{"code": "A", "ok": True}, {"code": "B", "ok": False}, {"code": "C", "ok": True}]}
    assert rows({"records": "$.data[?@.ok == true]", "columns": [column("code")]}, doc) == [
        {"code": "A"},
        {"code": "C"},
    ]
    assert rows({"records": "$..code", "columns": [column("code", path="$")]}, doc) == [
        {"code": "A"},
        {"code": "B"},
        {"code": "C"},
    ]


def test_missing_records_path_is_a_response_mapping_error() -> None:
    with pytest.raises(ResponseMappingError, match=r"records path '\$\.data\[\*\]' matched nothing"):
        rows({"records": "$.data[*]"}, {"items": []})
    with pytest.raises(ResponseMappingError, match=r"\$\.data is a string, not an array or object"):
        rows({"records": "$.data[*]"}, {"data": "nope"})


def test_empty_record_array_gives_no_rows() -> None:
    assert compile_outbound({"records": "$.data[*]"}).map({"data": []}).rows == []


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([{"a": 1}, {"a": 2}], [{"a": 1}, {"a": 2}]),
        ({"count": 2, "items": [{"a": 1}]}, [{"a": 1}]),
        ({"a": [1], "b": [2]}, [{"a": [1], "b": [2]}]),
        ({"temp": 12, "sky": "rain"}, [{"temp": 12, "sky": "rain"}]),
        ("just text", [{"value": "just text"}]),
    ],
)
def test_omitted_outbound_follows_the_activity(document: Any, expected: list[dict[str, Any]]) -> None:
    assert rows(None, document) == expected


# Inference -----------------------------------------------------------------------------------


def test_inferred_columns_come_from_the_first_record_with_json_types() -> None:
    plan = compile_outbound({"records": "$[*]"})
    result = plan.map(
        [
            {"s": "a", "i": 1, "f": 1.5, "b": True, "n": None, "o": {"x": 1}},
            {"s": 7, "i": "2", "f": 3, "b": "false", "n": 5, "o": [1], "extra": "ignored"},
            {"s": "c", "i": "x", "f": 1.0, "b": False, "n": None, "o": None},
        ]
    )
    assert result.rows == [
        {"s": "a", "i": 1, "f": 1.5, "b": True, "n": None, "o": {"x": 1}},
        {"s": "7", "i": 2, "f": 3.0, "b": False, "n": 5, "o": [1]},
    ]
    assert result.rejected == 1
    assert result.rejected_samples == [{"index": 2, "column": "i", "reason": 'cannot convert "x" to integer'}]


# Types ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column_type", "value", "expected"),
    [
        ("text", "abc", "abc"),
        ("text", 12, "12"),
        ("text", 1.5, "1.5"),
        ("text", True, "true"),
        ("integer", 7, 7),
        ("integer", 7.0, 7),
        ("integer", " -12 ", -12),
        ("float", 2, 2.0),
        ("float", "2.5e1", 25.0),
        ("boolean", True, True),
        ("boolean", "FALSE", False),
        ("boolean", 1, True),
        ("date", "2026-12-01", "2026-12-01"),
        ("date", "2026-12-01T10:00:00Z", "2026-12-01"),
        ("time", "10:30", "10:30:00"),
        ("datetime", "2026-12-01T10:00:00Z", "2026-12-01T10:00:00+00:00"),
        ("datetime", "2026-12-01 10:00", "2026-12-01T10:00:00"),
        ("json", {"nested": [1, 2]}, {"nested": [1, 2]}),
        ("json", 3, 3),
    ],
)
def test_types_convert(column_type: str, value: Any, expected: Any) -> None:
    assert one(column_type, value) == expected


@pytest.mark.parametrize(
    ("column_type", "value"),
    [
        ("integer", 7.5),
        ("integer", True),
        ("integer", "7a"),
        ("float", "nan"),
        ("float", "1e999"),
        ("float", False),
        ("float", [1]),
        ("boolean", "yes"),
        ("boolean", 2),
        ("date", "12/01/2026"),
        ("date", 20261201),
        ("time", "25:00"),
        ("datetime", "tomorrow"),
    ],
)
def test_unconvertible_values_reject_the_row_by_default(column_type: str, value: Any) -> None:
    assert one(column_type, value)[0] == "rejected"


def test_clean_and_mixed_columns_convert_the_same() -> None:
    """The whole-column fast path and the value-by-value path must agree."""
    spec = {
        "columns": [
            column("d", type="date"),
            column("f", type="float"),
            column("t", type="text", max_length=3),
        ]
    }
    clean = [{"d": "2026-01-02", "f": 1, "t": "ab"}, {"d": "2026-01-02", "f": 2.5, "t": "abc"}]
    mixed = [*clean, {"d": None, "f": None, "t": None}]
    assert rows(spec, clean) == rows(spec, mixed)[:2]
    assert rows(spec, mixed)[2] == {"d": None, "f": None, "t": None}


# on_error, max_length, required --------------------------------------------------------------


def test_max_length_is_255_for_text_by_default() -> None:
    assert one("text", "x" * 255) == "x" * 255
    assert one("text", "x" * 256) == ("rejected", "256 characters is over max_length 255")


@pytest.mark.parametrize(
    ("on_error", "extra", "expected"),
    [
        ("reject_row", {}, []),
        ("ignore_value", {}, [{"code": None, "n": 1}]),
        ("use_default", {"default": "N/A"}, [{"code": "N/A", "n": 1}]),
    ],
)
def test_on_error(on_error: str, extra: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    spec = {"columns": [column("code", max_length=3, on_error=on_error, **extra), column("n", type="integer")]}
    assert rows(spec, [{"code": "TOOLONG", "n": 1}]) == expected


def test_empty_values_are_null_unless_required() -> None:
    spec = {"columns": [column("a"), column("b", required=True)]}
    result = compile_outbound(spec).map([{"a": "", "b": "x"}, {"b": "y"}, {"a": "z", "b": None}, {"a": "q", "b": ""}])
    assert result.rows == [{"a": None, "b": "x"}, {"a": None, "b": "y"}]
    assert result.rejected == 2
    assert [s["reason"] for s in result.rejected_samples] == ["required value is empty"] * 2


def test_rejected_samples_are_capped_and_in_record_order() -> None:
    spec = {"columns": [column("n", type="integer")]}
    result = compile_outbound(spec).map([{"n": "bad"}] * 25 + [{"n": 1}])
    assert result.rejected == 25
    assert [s["index"] for s in result.rejected_samples] == list(range(10))
    assert result.rows == [{"n": 1}]


def test_nested_and_indexed_paths() -> None:
    spec = {
        "records": "$.items[*]",
        "columns": [
            column("amount", path="price.amount", type="float"),
            column("first_tag", path="$.tags[0]"),
            column("last_tag", path="$.tags[-1]"),
            column("all_tags", path="$.tags[*]", type="json"),
            column("odd", path="$['odd key']", type="integer"),
        ],
    }
    doc = {"items": [{"price": {"amount": "9.5"}, "tags": ["a", "b"], "odd key": 3}, {"price": 4, "tags": "ab"}]}
    assert rows(spec, doc) == [
        {"amount": 9.5, "first_tag": "a", "last_tag": "b", "all_tags": ["a", "b"], "odd": 3},
        {"amount": None, "first_tag": None, "last_tag": None, "all_tags": [], "odd": None},
    ]


# Flatten -------------------------------------------------------------------------------------


def test_flatten_makes_the_whole_document_one_row() -> None:
    doc: dict[str, Any] = {
        "event": "final",
        "home": {"name": "Milan", "players": ["A", "B"]},
        "tags": [],
        "score": None,
    }
    assert rows({"flatten": True}, doc) == [
        {
            "event": "final",
            "home_name": "Milan",
            "home_players_0": "A",
            "home_players_1": "B",
            "tags": None,
            "score": None,
        }
    ]


def test_flatten_with_columns_and_records() -> None:
    spec = {
        "records": "$.regions[*]",
        "flatten": True,
        "columns": [column("region"), column("t", path="temp_max")],
    }
    doc = {"regions": [{"region": "north", "temp": {"max": 3}}, {"region": "south", "temp": {"max": 20}}]}
    assert rows(spec, doc) == [{"region": "north", "t": "3"}, {"region": "south", "t": "20"}]


def test_flatten_limits() -> None:
    with pytest.raises(ResponseMappingError, match="more than 150 columns"):
        flatten({f"k{i}": i for i in range(MAX_COLUMNS + 1)})
    assert len(flatten({f"k{i}": i for i in range(MAX_COLUMNS)})) == MAX_COLUMNS
    with pytest.raises(ResponseMappingError, match="over 255 characters"):
        flatten({"a" * 200: {"b" * 60: 1}})
    deep: Any = 1
    for _ in range(11):
        deep = {"k": deep}
    with pytest.raises(ResponseMappingError, match="deeper than 10"):
        flatten(deep)
    with pytest.raises(ResponseMappingError, match="same column 'a_b'"):
        flatten({"a_b": 1, "a": {"b": 2}})


@pytest.mark.parametrize(
    ("column_type", "value"),
    [("float", 10**400), ("integer", "9" * 5000), ("text", {"big": 10**400})],
)
def test_huge_numbers_are_rejected_not_crashed_on(column_type: str, value: Any) -> None:
    mapped = compile_outbound({"columns": [column("v", type=column_type)]}).map([{"v": value}, {"v": 1}])
    assert (mapped.rejected, len(mapped.rows)) == (1, 1)


def test_inference_needs_usable_properties() -> None:
    with pytest.raises(ResponseMappingError, match="no properties"):
        compile_outbound(None).map([{}, {"a": 1}])
    with pytest.raises(ResponseMappingError, match="cannot name a column"):
        compile_outbound(None).map([{" ": 1}])


def test_a_records_path_pointing_at_null_matched_nothing() -> None:
    with pytest.raises(ResponseMappingError, match="matched nothing"):
        rows({"records": "$.data"}, {"data": None})


def test_inferred_columns_limit() -> None:
    with pytest.raises(ResponseMappingError, match="limit is 150 columns"):
        compile_outbound(None).map([{f"k{i}": i for i in range(MAX_COLUMNS + 1)}])


# Configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ([], "outbound"),
        ({"record": "$.data"}, "outbound"),
        ({"records": 5}, "outbound.records"),
        ({"records": "$.data[*"}, "outbound.records"),
        ({"flatten": "yes"}, "outbound.flatten"),
        ({"columns": []}, "outbound.columns"),
        ({"columns": ["code"]}, "outbound.columns[0]"),
        ({"columns": [{"name": ""}]}, "outbound.columns[0].name"),
        ({"columns": [{"name": "a", "type": "money"}]}, "outbound.columns['a'].type"),
        ({"columns": [{"name": "a", "path": "$.a["}]}, "outbound.columns['a'].path"),
        ({"columns": [{"name": "a", "on_error": "skip"}]}, "outbound.columns['a'].on_error"),
        ({"columns": [{"name": "a", "on_error": "use_default"}]}, "outbound.columns['a'].default"),
        (
            {"columns": [{"name": "a", "type": "integer", "on_error": "use_default", "default": "x"}]},
            "outbound.columns['a'].default",
        ),
        ({"columns": [{"name": "a", "default": 1}]}, "outbound.columns['a'].default"),
        ({"columns": [{"name": "a", "type": "integer", "max_length": 3}]}, "outbound.columns['a'].max_length"),
        ({"columns": [{"name": "a", "max_length": 0}]}, "outbound.columns['a'].max_length"),
        ({"columns": [{"name": "a", "required": "yes"}]}, "outbound.columns['a'].required"),
        ({"columns": [{"name": "a", "colour": "red"}]}, "outbound.columns['a']"),
        ({"columns": [{"name": "a"}, {"name": "a"}]}, "outbound.columns"),
        ({"columns": [{"name": f"c{i}"} for i in range(MAX_COLUMNS + 1)]}, "outbound.columns"),
    ],
)
def test_bad_mappings_name_the_field(spec: Any, field: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        compile_outbound(spec)
    assert info.value.field == field


def test_results_of_later_pages_extend_the_first_with_record_indexes_counted_across_pages() -> None:
    plan = compile_outbound({"columns": [{"name": "i", "type": "integer"}]})
    total = plan.map([{"i": 1}, {"i": "x"}])
    total.extend(plan.map([{"i": "y"}, {"i": 4}, {"i": 5}]))
    assert total.rows == [{"i": 1}, {"i": 4}, {"i": 5}]
    assert (total.records, total.rejected) == (5, 2)
    assert [s["index"] for s in total.rejected_samples] == [1, 2]
