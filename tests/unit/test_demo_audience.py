"""The synthetic audience: committed CSV in sync with its generator, realistic shape, in line with the demo API."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from demo import campaign_api
from demo.audience import (
    AUDIENCE_CSV,
    COLUMNS,
    LOCALES,
    REGIONS,
    SEGMENTS,
    ZIPS,
    generate_audience,
    load_audience,
    main,
    render_csv,
)


@pytest.fixture(scope="module")
def audience():
    return load_audience()


def test_committed_csv_is_what_the_generator_produces() -> None:
    assert AUDIENCE_CSV.read_text(encoding="utf-8") == render_csv(generate_audience()), (
        "regenerate it: python -m demo.audience --write"
    )


def test_generator_is_deterministic_per_seed() -> None:
    assert generate_audience() == generate_audience()
    assert generate_audience(size=50, seed=1) != generate_audience(size=50, seed=2)


def test_load_gives_typed_rows(audience) -> None:
    assert audience == generate_audience()
    assert AUDIENCE_CSV.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    first = audience[0]
    assert list(first) == list(COLUMNS)
    assert isinstance(first["id"], int)
    assert all(isinstance(p["email_consent"], bool) for p in audience)


def test_load_round_trips_any_path(tmp_path) -> None:
    profiles = generate_audience(size=20, seed=7)
    path = tmp_path / "small.csv"
    path.write_text(render_csv(profiles), encoding="utf-8", newline="")
    assert load_audience(path) == profiles


def test_main_prints_the_csv(capsys) -> None:
    main([])
    assert capsys.readouterr().out == AUDIENCE_CSV.read_text(encoding="utf-8")


def test_audience_shape(audience) -> None:
    assert len(audience) >= 1000
    assert [p["id"] for p in audience] == list(range(1, len(audience) + 1))
    assert len({p["email"] for p in audience}) == len(audience)
    assert all(re.fullmatch(r"[a-z]+\.\d{5}@example\.com", p["email"]) for p in audience)
    assert {p["locale"] for p in audience} == set(LOCALES)
    assert {p["segment"] for p in audience} == set(SEGMENTS)
    assert {p["region"] for p in audience} == set(REGIONS)
    consent = sum(p["email_consent"] for p in audience) / len(audience)
    assert 0.8 < consent < 0.9
    # Accents survive in names (the CSV is UTF-8), never in addresses.
    assert any(not p["first_name"].isascii() for p in audience)


def test_zip_codes_repeat_and_each_has_one_locale_and_region(audience) -> None:
    zips = Counter(p["zip"] for p in audience)
    assert 20 <= len(zips) <= 40
    assert min(zips.values()) > 10, "every zip code is shared by many profiles, so de-duplication pays"
    placed = {(p["zip"], p["locale"], p["region"]) for p in audience}
    assert len(placed) == len(zips)
    assert placed == {(code, locale, region) for locale, codes in ZIPS.items() for code, region in codes}
    assert {"20121", "00184", "75001", "69001", "1012", "3011", "SW1A", "M1"} <= set(zips)


def test_the_demo_api_covers_every_segment_region_and_zip(audience) -> None:
    assert {offer["segment"] for offer in campaign_api.OFFERS} == set(SEGMENTS)
    for segment in SEGMENTS:
        discounts = [o["discount"] for o in campaign_api.OFFERS if o["segment"] == segment]
        assert len(discounts) >= 2 and len(set(discounts)) == len(discounts)
    forecasts = campaign_api.weather(",".join(REGIONS))["forecasts"]
    assert [f["region"] for f in forecasts] == list(REGIONS)
    zips = sorted({p["zip"] for p in audience})
    coupons = campaign_api.coupons({"params": {"campaign": "spring"}, "data": [{"zip": z} for z in zips]})
    assert [c["zip"] for c in coupons["data"]] == zips
