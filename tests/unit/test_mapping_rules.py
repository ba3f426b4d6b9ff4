"""The mapping rules of "no silent bad data": loud paths, context columns, tables, guards, stricter types."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_campaign_provider.exceptions import DataQualityError, MappingConfigError, ResponseMappingError
from airflow_campaign_provider.outbound import compile_outbound
from tests.support.lineup import MATCH, PLAYERS, lineup


def column(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "path": kw.pop("path", name), **kw}


# Loud paths ----------------------------------------------------------------------------------


def test_a_typo_in_a_nested_records_path_is_an_error_naming_the_member_and_the_close_match() -> None:
    plan = compile_outbound({**PLAYERS, "records": "$.match.team[*].players[*]"})
    with pytest.raises(ResponseMappingError) as info:
        plan.map(lineup())
    assert "member 'team' is absent at $.match (did you mean 'teams'?)" in str(info.value)


def test_an_empty_array_or_an_unmatched_filter_is_no_records_not_an_error() -> None:
    document = lineup()
    for team in document["match"]["teams"]:
        team["players"] = []
    assert compile_outbound(PLAYERS).map(document).rows == []
    plan = compile_outbound({**PLAYERS, "records": "$.match.teams[?@.side == 'neutral'].players[*]"})
    assert plan.map(lineup()).rows == []


def test_a_records_path_through_a_scalar_or_null_says_what_it_met() -> None:
    with pytest.raises(ResponseMappingError, match=r"\$\.match is a string, not an object"):
        compile_outbound({"records": "$.match.teams[*]"}).map({"match": "tonight"})
    with pytest.raises(ResponseMappingError, match=r"\$\.match\.teams is null, not an array or object"):
        compile_outbound({"records": "$.match.teams[*]"}).map({"match": {"teams": None}})


def test_a_column_found_in_no_record_is_listed_and_strict_columns_makes_it_an_error() -> None:
    spec = {**PLAYERS, "columns": [*PLAYERS["columns"], column("shirt", path="shrit")]}
    result = compile_outbound(spec).map(lineup())
    assert result.empty_columns == ["shirt"]
    assert result.summary()["empty_columns"] == ["shirt"]
    assert all(row["shirt"] is None for row in result.rows)
    result.check_quality()  # a warning, not an error, by default
    strict = compile_outbound({**spec, "strict_columns": True}).map(lineup())
    with pytest.raises(ResponseMappingError, match=r"\['shirt'\] were found in no record \(outbound.strict_columns\)"):
        strict.check_quality()


def test_a_null_value_is_present_and_one_absent_record_is_not_an_empty_column() -> None:
    result = compile_outbound({"columns": [column("a"), column("b")]}).map([{"a": None, "b": 1}, {"a": None}])
    assert result.empty_columns == []


def test_an_absolute_path_found_in_no_record_hints_at_the_root_syntax() -> None:
    spec = {**PLAYERS, "columns": [column("player", path="name"), column("kickoff", path="$.match.kickoff")]}
    result = compile_outbound(spec).map(lineup())
    assert result.empty_columns == ["kickoff"]
    _, warnings = result.report()
    assert any("from the document root use '$$.match.kickoff'" in line for line in warnings)


def test_empty_columns_are_decided_over_all_pages() -> None:
    plan = compile_outbound({"columns": [column("a"), column("b")]})
    total = plan.map([{"a": 1}])
    assert total.empty_columns == ["b"]
    total.extend(plan.map([{"a": 2, "b": 3}]))
    assert total.empty_columns == []


# Context columns -----------------------------------------------------------------------------


def test_root_and_enclosing_record_columns() -> None:
    rows = compile_outbound(PLAYERS).map(lineup()).rows
    assert len(rows) == 24
    assert rows[0] == {
        "player": "Inter Player 1",
        "number": 1,
        "position": "DF",
        "team": "Inter",
        "kickoff": "2026-12-01T20:45:00+01:00",
    }
    assert rows[-1]["team"] == "Milan"


def test_two_levels_up_and_a_parent_under_a_filter() -> None:
    document = {"leagues": [{"name": "A", "teams": [{"name": "Inter", "players": [{"n": 1}]}]}]}
    spec = {
        "records": "$.leagues[*].teams[?@.name].players[*]",
        "columns": [column("n", type="integer"), column("team", path="%.name"), column("league", path="%.%.name")],
    }
    assert compile_outbound(spec).map(document).rows == [{"n": 1, "team": "Inter", "league": "A"}]


@pytest.mark.parametrize(
    ("records", "path", "message"),
    [
        ("$.match.teams[*]", "%.name", "climbs 1 enclosing record(s), and the records path '$.match.teams[*]' gives"),
        (None, "%.name", "no records path gives each record 0"),
        ("$.match.teams[*].players[*]", "%.%.name", "climbs 2"),
        ("$..players[*]", "%.name", "without '..'"),
        ("$.match.teams[*].players[*]", "%name", "invalid JSONPath"),
        ("$.match.teams[*].players[*]", "$$match", "invalid JSONPath"),
    ],
)
def test_context_paths_are_checked_at_parse_time(records: str | None, path: str, message: str) -> None:
    spec: dict[str, Any] = {"columns": [column("team", path=path)]}
    if records:
        spec["records"] = records
    with pytest.raises(MappingConfigError) as info:
        compile_outbound(spec)
    assert info.value.field == "outbound.columns['team'].path"
    assert message in str(info.value)


def test_a_root_column_with_a_top_level_array() -> None:
    result = compile_outbound({"columns": [column("a"), column("all", path="$$", type="json")]}).map([{"a": 1}])
    assert result.rows == [{"a": "1", "all": [{"a": 1}]}]


# Tables --------------------------------------------------------------------------------------


def test_tables_from_one_response_with_a_summary_per_table() -> None:
    plan = compile_outbound({"tables": {"match": MATCH, "players": PLAYERS}, "min_rows": 1})
    result = plan.map(lineup())
    assert set(result.value) == {"match", "players"}
    assert result.value["match"] == [  # type: ignore[call-overload]
        {"id": "M-2026-1201", "competition": "Serie A", "venue": "San Siro", "kickoff": "2026-12-01T19:45:00+00:00"}
    ]
    assert len(result.value["players"]) == 24  # type: ignore[call-overload]
    summary = result.summary()
    assert summary["rows"] == 25
    assert summary["tables"]["players"] == {
        "rows": 24,
        "records": 24,
        "rejected": 0,
        "rejected_samples": [],
        "empty_columns": [],
    }
    with pytest.raises(TypeError, match="named tables"):
        _ = result.rows


def test_tables_extend_page_by_page() -> None:
    plan = compile_outbound({"tables": {"match": MATCH, "players": PLAYERS}})
    total = plan.map(lineup(1))
    total.extend(plan.map(lineup(2)))
    assert [len(t.rows) for t in total.tables.values()] == [2, 6]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"tables": {}}, "outbound.tables"),
        ({"tables": {"p": PLAYERS}, "records": "$.x"}, "outbound"),
        ({"tables": {"p": {**PLAYERS, "colums": []}}}, "outbound.tables['p']"),
        (
            {"tables": {"p": {**PLAYERS, "columns": [column("n", type="money")]}}},
            "outbound.tables['p'].columns['n'].type",
        ),
        ({"tables": {"p": PLAYERS}, "min_rows": -1}, "outbound.min_rows"),
        ({"tables": {"p": {**PLAYERS, "max_rejected": "5"}}}, "outbound.tables['p'].max_rejected"),
        ({"max_rejected": "120%"}, "outbound.max_rejected"),
        ({"strict_columns": "yes"}, "outbound.strict_columns"),
    ],
)
def test_bad_tables_and_guards_name_the_key(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        compile_outbound(spec)
    assert info.value.field == field


def test_unknown_keys_suggest_the_closest_name() -> None:
    with pytest.raises(MappingConfigError, match=r"'colums' \(did you mean 'columns'\?\)"):
        compile_outbound({"colums": []})
    with pytest.raises(MappingConfigError, match=r"'requird' \(did you mean 'required'\?\)"):
        compile_outbound({"columns": [column("a", requird=True)]})


# Guards --------------------------------------------------------------------------------------


def test_min_rows_per_table_and_inherited() -> None:
    plan = compile_outbound({"tables": {"match": MATCH, "players": {**PLAYERS, "min_rows": 30}}, "min_rows": 1})
    with pytest.raises(DataQualityError, match=r"table 'players' has 24 rows, fewer than outbound.tables\['players'\]"):
        plan.map(lineup()).check_quality()
    document = lineup()
    document["match"]["teams"] = []
    plan = compile_outbound({"tables": {"match": MATCH, "players": PLAYERS}, "min_rows": 1})
    with pytest.raises(DataQualityError, match=r"table 'players' has 0 rows, fewer than outbound.min_rows=1"):
        plan.map(document).check_quality()


@pytest.mark.parametrize(
    ("max_rejected", "bad", "fails"),
    [(None, 23, False), (None, 24, True), (2, 2, False), (2, 3, True), ("10%", 2, False), ("10%", 3, True)],
)
def test_max_rejected_as_a_count_a_share_or_by_default_not_all(max_rejected: Any, bad: int, fails: bool) -> None:
    spec: dict[str, Any] = {"columns": [column("n", type="integer")]}
    if max_rejected is not None:
        spec["max_rejected"] = max_rejected
    result = compile_outbound(spec).map([{"n": "x"}] * bad + [{"n": 1}] * (24 - bad))
    if fails:
        with pytest.raises(DataQualityError, match=r"rejected \d+ of 24 records, .*first reasons: record 0 column 'n'"):
            result.check_quality()
    else:
        result.check_quality()


# Types ---------------------------------------------------------------------------------------


def one(value: Any, **kw: Any) -> Any:
    result = compile_outbound({"columns": [column("v", **kw)]}).map([{"v": value}, {"v": None}])
    return result.rows[0]["v"] if len(result.rows) == 2 else ("rejected", result.rejected_samples[0]["reason"])


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        (["Inter"], {"type": "text"}, ("rejected", "a list is not text (use type 'json' for structured values)")),
        ({"a": 1}, {"type": "text", "on_error": "ignore_value"}, None),
        (["Inter"], {"type": "json"}, ["Inter"]),
        (1764618300, {"type": "datetime", "format": "epoch_s"}, "2025-12-01T19:45:00+00:00"),
        (1764618300000, {"type": "datetime", "format": "epoch_ms"}, "2025-12-01T19:45:00+00:00"),
        (
            "1764618300",
            {"type": "datetime", "format": "epoch_s", "timezone": "Europe/Rome"},
            "2025-12-01T20:45:00+01:00",
        ),
        ("2026-12-01T19:45:00Z", {"type": "datetime", "timezone": "Europe/Rome"}, "2026-12-01T20:45:00+01:00"),
        ("2026-12-01 19:45", {"type": "datetime", "timezone": "UTC"}, "2026-12-01T19:45:00+00:00"),
        ("2026-12-01 19:45", {"type": "datetime"}, "2026-12-01T19:45:00"),
        ("01/12/2026 19:45", {"type": "datetime", "format": "%d/%m/%Y %H:%M"}, "2026-12-01T19:45:00"),
        ("2026-12-01T23:30:00Z", {"type": "date", "timezone": "Europe/Rome"}, "2026-12-02"),
        (1764618300, {"type": "date", "format": "epoch_s"}, "2025-12-01"),
        ("01/12/2026", {"type": "date", "format": "%d/%m/%Y"}, "2026-12-01"),
        ("7.45 pm", {"type": "time", "format": "%I.%M %p"}, "19:45:00"),
        (
            "tomorrow",
            {"type": "datetime", "format": "epoch_s"},
            ("rejected", "cannot convert \"tomorrow\" to datetime with format 'epoch_s'"),
        ),
        (
            10**20,
            {"type": "datetime", "format": "epoch_s"},
            ("rejected", "cannot convert 100000000000000000000 to datetime with format 'epoch_s'"),
        ),
        (
            True,
            {"type": "datetime", "format": "epoch_s"},
            ("rejected", "cannot convert true to datetime with format 'epoch_s'"),
        ),
    ],
)
def test_stricter_types_formats_and_time_zones(value: Any, options: dict[str, Any], expected: Any) -> None:
    assert one(value, **options) == expected


def test_date_columns_with_formats_convert_alike_in_bulk_and_one_by_one() -> None:
    spec = {"columns": [column("t", type="datetime", format="epoch_ms", timezone="UTC")]}
    clean = [{"t": 1764618300000}, {"t": 1764618300000}]
    assert compile_outbound(spec).map(clean).rows == compile_outbound(spec).map([*clean, {"t": None}]).rows[:2]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"type": "text", "format": "iso"}, "format"),
        ({"type": "datetime", "format": "unix"}, "format"),
        ({"type": "time", "format": "epoch_s"}, "format"),
        ({"type": "time", "timezone": "UTC"}, "timezone"),
        ({"type": "datetime", "timezone": "Mars/Olympus"}, "timezone"),
        ({"type": "datetime", "on_error": "use_default", "default": "soon"}, "default"),
    ],
)
def test_type_options_are_checked_at_parse_time(options: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        compile_outbound({"columns": [column("kickoff", **options)]})
    assert info.value.field == f"outbound.columns['kickoff'].{field}"
