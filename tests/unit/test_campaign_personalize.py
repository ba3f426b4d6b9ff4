"""Personalization: template convention, locale fallback, variants, strict variables and the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_campaign_provider.campaign.personalize import (
    TemplateNotFoundError,
    TemplateRenderError,
    TemplateVariableError,
    personalize,
)

SAMPLE_TEMPLATES = Path(__file__).resolve().parents[2] / "dags" / "templates"
LOCALES = ("it", "fr", "nl", "en")


def profile(pid: str = "P1", locale: str | None = "it", **fields: object) -> dict[str, object]:
    return {"id": pid, "email": f"{pid.lower()}@example.com", "first_name": "Anna", "locale": locale, **fields}


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    (tmp_path / "en.j2").write_text("Subject: Hello {{ first_name }}\n\nYour code: {{ code }}\n")
    (tmp_path / "it.j2").write_text("Subject: Ciao {{ first_name }}\nIl tuo codice: {{ code }}\n")
    return tmp_path


def test_renders_subject_and_body_per_locale(templates: Path) -> None:
    messages = personalize([profile(code="A1", email_consent=True)], templates)
    assert messages == [
        {
            "profile_id": "P1",
            "to": "p1@example.com",
            "locale": "it",
            "subject": "Ciao Anna",
            "body": "Il tuo codice: A1",
            "consent": True,
        }
    ]
    assert json.loads(json.dumps(messages)) == messages


def test_falls_back_to_the_language_then_to_english(templates: Path) -> None:
    profiles = [profile("P1", "IT-ch"), profile("P2", "de"), profile("P3", None), profile("P4", "../en")]
    messages = personalize(profiles, templates, context={"code": "C"})
    assert [m["locale"] for m in messages] == ["it", "en", "en", "en"]
    assert messages[1]["subject"] == "Hello Anna"
    assert messages[1]["body"] == "Your code: C"


def test_profile_fields_win_over_the_shared_context(templates: Path) -> None:
    messages = personalize([profile(code="OWN"), profile("P2")], templates, context={"code": "SHARED"})
    assert [m["body"] for m in messages] == ["Il tuo codice: OWN", "Il tuo codice: SHARED"]


def test_consent_is_true_only_when_exactly_true(templates: Path) -> None:
    profiles = [profile("P1", email_consent=True), profile("P2", email_consent="yes"), profile("P3")]
    assert [m["consent"] for m in personalize(profiles, templates, context={"code": "C"})] == [True, False, False]


def test_an_undefined_variable_names_the_template_and_the_variable(templates: Path) -> None:
    with pytest.raises(TemplateVariableError) as caught:
        personalize([profile("P7")], templates)
    assert caught.value.template == "it.j2"
    assert caught.value.variable == "code"
    assert "'it.j2'" in str(caught.value)
    assert "'code' is undefined" in str(caught.value)
    assert "P7" in str(caught.value)


def test_an_undefined_attribute_names_the_attribute(tmp_path: Path) -> None:
    (tmp_path / "en.j2").write_text("Subject: Hi\n{{ coupon.code }}")
    with pytest.raises(TemplateVariableError) as caught:
        personalize([profile(locale="en", coupon={})], tmp_path)
    assert caught.value.variable == "code"


def test_a_missing_english_fallback_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "it.j2").write_text("Subject: Ciao\nx")
    with pytest.raises(TemplateNotFoundError, match="No template for locale 'fr' nor 'en'"):
        personalize([profile(locale="fr")], tmp_path)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("Hello {{ first_name }}\nbody", "must start with a 'Subject:' line"),
        ("Subject: {{ '' }}\nbody", "empty subject"),
        ("Subject: {% if %}\nbody", "failed for profile P1"),
        ("Subject: x\n{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    ],
)
def test_malformed_or_unsafe_templates_fail(tmp_path: Path, source: str, match: str) -> None:
    (tmp_path / "en.j2").write_text(source)
    with pytest.raises(TemplateRenderError, match=match):
        personalize([profile(locale="en")], tmp_path)


def test_profile_data_cannot_add_lines_to_the_subject(tmp_path: Path) -> None:
    (tmp_path / "en.j2").write_text("Subject: Hi {{ first_name }}\nBody")
    [message] = personalize([profile(locale="en", first_name="Anna\rBcc: x@example.com")], tmp_path)
    assert message["subject"] == "Hi Anna Bcc: x@example.com"


def test_variant_field_picks_a_sub_folder(tmp_path: Path) -> None:
    for variant in ("rain", "sun"):
        (tmp_path / variant).mkdir()
        (tmp_path / variant / "en.j2").write_text(f"Subject: {variant}\nBody")
    profiles = [profile("P1", weather="sun"), profile("P2", weather="rain")]
    assert [m["subject"] for m in personalize(profiles, tmp_path, variant_field="weather")] == ["sun", "rain"]
    with pytest.raises(TemplateNotFoundError, match="fog"):
        personalize([profile(weather="fog")], tmp_path, variant_field="weather")


SAMPLE_FIELDS: dict[str, dict[str, object]] = {
    "coupons": {"coupon_code": "MILANO10", "coupon_discount": 10, "coupon_valid_until": "2026-12-31"},
    "coupons_fallback": {},
    "weather": {"weather_temp_c": -3},
    "offers": {"offer_title": "Ring", "offer_discount": 12.5},
}


@pytest.mark.parametrize("template_set", sorted(SAMPLE_FIELDS))
def test_every_sample_template_renders_in_every_locale(template_set: str) -> None:
    variants = ("rain", "sun", "snow", "cloud") if template_set == "weather" else ("",)
    profiles = [
        profile(f"{locale}-{variant}", locale, weather_condition=variant, **SAMPLE_FIELDS[template_set])
        for locale in LOCALES
        for variant in variants
    ]
    messages = personalize(
        profiles,
        SAMPLE_TEMPLATES / template_set,
        variant_field="weather_condition" if template_set == "weather" else None,
    )
    assert [m["locale"] for m in messages] == [p["locale"] for p in profiles]
    assert len({m["subject"] for m in messages}) == len(messages)
    for message in messages:
        assert "Anna" in message["subject"]
        assert message["body"].count("\n") >= 2
    if template_set == "coupons":
        assert all("MILANO10" in m["body"] and "2026-12-31" in m["body"] for m in messages)
    if template_set == "offers":
        assert all("12.5" in m["subject"] and "12.5" in m["body"] for m in messages)
    if template_set == "weather":
        assert all("-3 °C" in m["body"] for m in messages)
