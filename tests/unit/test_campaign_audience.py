"""Audience helpers: consent filter, distinct values, the enrichment join and best row per group."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_campaign_provider.campaign.audience import best_by, distinct, join_by, partition, with_consent

PROFILES: list[dict[str, Any]] = [
    {"id": "P1", "first_name": "Anna", "zip": "20121", "segment": "gold", "email_consent": True},
    {"id": "P2", "first_name": "Luc", "zip": "75001", "segment": "silver", "email_consent": False},
    {"id": "P3", "first_name": "Sem", "zip": "1011", "segment": "gold", "email_consent": "yes"},
    {"id": "P4", "first_name": "Emma", "zip": "20121", "segment": "bronze"},
    {"id": "P5", "first_name": "Noor", "zip": None, "segment": "gold", "email_consent": True},
]


def test_with_consent_keeps_only_an_explicit_true() -> None:
    assert [p["id"] for p in with_consent(PROFILES)] == ["P1", "P5"]
    assert with_consent([{"id": "X", "sms_ok": True}], consent_field="sms_ok") == [{"id": "X", "sms_ok": True}]


def test_distinct_keeps_first_seen_order_and_skips_none() -> None:
    assert distinct(PROFILES, "zip") == ["20121", "75001", "1011"]
    assert distinct(PROFILES, "missing") == []


def test_join_by_enriches_matches_and_keeps_unmatched_rows_with_none(caplog: pytest.LogCaptureFixture) -> None:
    coupons = [
        {"zip": 20121, "code": "MILANO10", "discount": 10},  # an API may send the zip as a number
        {"zip": "1011", "code": "AMS15", "discount": 15},
    ]
    with caplog.at_level(logging.WARNING):
        joined = join_by(PROFILES, coupons, "zip", prefix="coupon_")

    assert [(r["id"], r["coupon_code"], r["coupon_discount"]) for r in joined] == [
        ("P1", "MILANO10", 10),
        ("P2", None, None),
        ("P3", "AMS15", 15),
        ("P4", "MILANO10", 10),
        ("P5", None, None),
    ]
    assert joined[0]["zip"] == "20121"
    assert "coupon_zip" not in joined[0]
    assert "2 of 5 rows have no match" in caplog.text
    assert PROFILES[0].keys() == {"id", "first_name", "zip", "segment", "email_consent"}


def test_join_by_refuses_ambiguous_keys_and_column_clashes() -> None:
    with pytest.raises(ValueError, match="two rows on the right have zip='20121'"):
        join_by(PROFILES, [{"zip": "20121", "code": "A"}, {"zip": "20121", "code": "B"}], "zip")
    with pytest.raises(ValueError, match="column 'first_name' is on both sides"):
        join_by(PROFILES, [{"zip": "20121", "first_name": "x"}], "zip")


def test_partition_splits_on_a_missing_value() -> None:
    joined = join_by(PROFILES, [{"zip": "1011", "code": "AMS15"}], "zip", prefix="coupon_")
    with_coupon, without = partition(joined, "coupon_code")
    assert [r["id"] for r in with_coupon] == ["P3"]
    assert [r["id"] for r in without] == ["P1", "P2", "P4", "P5"]


def test_best_by_picks_the_highest_score_per_group() -> None:
    offers: list[dict[str, Any]] = [
        {"segment": "gold", "title": "Watch", "discount": 20},
        {"segment": "silver", "title": "Bag", "discount": 15},
        {"segment": "gold", "title": "Ring", "discount": 30},
        {"segment": "gold", "title": "Pen", "discount": 30},  # a tie keeps the first
        {"segment": "silver", "title": "Hat", "discount": None},
        {"segment": "bronze", "title": "Mug", "discount": None},
    ]
    assert best_by(offers, "segment", "discount") == [
        {"segment": "gold", "title": "Ring", "discount": 30},
        {"segment": "silver", "title": "Bag", "discount": 15},
    ]


def test_best_offer_per_segment_joins_back_onto_profiles() -> None:
    offers = [{"segment": "gold", "title": "Ring", "discount": 30}, {"segment": "gold", "title": "Pen", "discount": 5}]
    joined = join_by(PROFILES, best_by(offers, "segment", "discount"), "segment", prefix="offer_")
    assert {r["id"]: r["offer_title"] for r in joined} == {
        "P1": "Ring",
        "P2": None,
        "P3": "Ring",
        "P4": None,
        "P5": "Ring",
    }
