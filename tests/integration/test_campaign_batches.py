"""Batches cut in the database (SQLite and PostgreSQL): exact sizes, gaps in the keys, each row in one batch."""

from __future__ import annotations

from contextlib import closing

import pytest

from airflow_campaign_provider.campaign.batches import plan_batches, read_batch
from airflow_campaign_provider.campaign.errors import AudienceDataError, CampaignConfigError
from airflow_campaign_provider.campaign.sql import db_hook

pytestmark = pytest.mark.integration

AUDIENCE = "SELECT id, email, email_consent FROM profiles"


def fill(conn_id: str, ids: list[int], consent: str = "TRUE") -> None:
    hook = db_hook(conn_id)
    with closing(hook.get_conn()) as conn, closing(conn.cursor()) as cursor:
        cursor.execute("CREATE TABLE profiles (id INTEGER PRIMARY KEY, email TEXT, email_consent BOOLEAN)")
        for number in ids:
            cursor.execute(f"INSERT INTO profiles VALUES ({number}, 'p{number}@example.com', {consent})")  # noqa: S608
        conn.commit()


def test_batches_hold_batch_size_rows_whatever_the_gaps(sql_conn: str) -> None:
    ids = [*range(1, 8), *range(100, 110), 5000]
    fill(sql_conn, ids)
    batches = plan_batches(sql_conn, AUDIENCE, 5)
    assert batches == [
        {"number": 0, "first_key": 1, "last_key": 5, "size": 5},
        {"number": 1, "first_key": 6, "last_key": 102, "size": 5},
        {"number": 2, "first_key": 103, "last_key": 107, "size": 5},
        {"number": 3, "first_key": 108, "last_key": 5000, "size": 3},
    ]
    read = [read_batch(sql_conn, AUDIENCE, batch) for batch in batches]
    assert [len(rows) for rows in read] == [5, 5, 5, 3]
    assert [row["id"] for rows in read for row in rows] == ids, "every row once, in key order"
    assert {row["email_consent"] for rows in read for row in rows} == {True}


def test_one_batch_for_a_small_audience_and_none_for_an_empty_one(sql_conn: str) -> None:
    fill(sql_conn, [3, 4])
    assert plan_batches(sql_conn, AUDIENCE, 5000) == [{"number": 0, "first_key": 3, "last_key": 4, "size": 2}]
    assert plan_batches(sql_conn, AUDIENCE + " WHERE id > 10", 5000) == []


def test_a_consent_that_is_not_a_boolean_is_a_data_error(sql_conn: str) -> None:
    hook = db_hook(sql_conn)
    with closing(hook.get_conn()) as conn, closing(conn.cursor()) as cursor:
        cursor.execute("CREATE TABLE profiles (id INTEGER PRIMARY KEY, email TEXT, email_consent TEXT)")
        cursor.execute("INSERT INTO profiles VALUES (1, 'a@example.com', 'yes')")
        conn.commit()
    [batch] = plan_batches(sql_conn, AUDIENCE, 10)
    with pytest.raises(AudienceDataError, match="'email_consent' of audience row 1 is 'yes'"):
        read_batch(sql_conn, AUDIENCE, batch)


@pytest.mark.parametrize(
    ("sql", "size", "key", "problem"),
    [
        (AUDIENCE, 0, "id", "from 1 to 100,000"),
        (AUDIENCE, 100_001, "id", "from 1 to 100,000"),
        (AUDIENCE, True, "id", "whole number"),
        (AUDIENCE + ";", 10, "id", "without a trailing semicolon"),
        ("  ", 10, "id", "one SELECT statement"),
        (AUDIENCE, 10, "id; DROP TABLE profiles", "plain column name"),
    ],
)
def test_bad_plans_are_clear_errors(sql: str, size: int, key: str, problem: str) -> None:
    with pytest.raises(CampaignConfigError, match=problem):
        plan_batches("not_used", sql, size, key=key)


def test_query_rows_refuses_a_result_too_large_for_xcom(sql_conn: str) -> None:
    from airflow_campaign_provider.campaign.tasks import query_rows

    fill(sql_conn, [1, 2, 3])
    assert query_rows.function("SELECT id FROM profiles ORDER BY id", sql_conn, max_rows=3) == [
        {"id": 1},
        {"id": 2},
        {"id": 3},
    ]
    with pytest.raises(CampaignConfigError, match="returned 3 rows, more than max_rows=2"):
        query_rows.function("SELECT id FROM profiles", sql_conn, max_rows=2)


@pytest.mark.parametrize(("value", "expected"), [(5000, 5000), ("5000", 5000), (" 12 ", 12)])
def test_a_rendered_batch_size_is_read_as_a_whole_number(value: int | str, expected: int) -> None:
    from airflow_campaign_provider.campaign.tasks import _whole_number

    assert _whole_number(value) == expected


@pytest.mark.parametrize("value", ["5e3", "-1", "", "five", 2.5, True])
def test_anything_else_is_not_a_batch_size(value: object) -> None:
    from airflow_campaign_provider.campaign.tasks import _whole_number

    with pytest.raises(CampaignConfigError, match="whole number"):
        _whole_number(value)  # type: ignore[arg-type]
