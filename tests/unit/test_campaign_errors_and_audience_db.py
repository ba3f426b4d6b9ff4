"""Campaign errors have their own base class; audience rows from SQL get strict booleans."""

from __future__ import annotations

import pytest

from airflow_campaign_provider.campaign.audience_db import as_boolean
from airflow_campaign_provider.campaign.delivery import DeliveryError, DuplicateProfileError
from airflow_campaign_provider.campaign.errors import AudienceDataError, CampaignConfigError, CampaignError
from airflow_campaign_provider.campaign.personalize import PersonalizationError, TemplateVariableError
from airflow_campaign_provider.exceptions import ExternalApiError


@pytest.mark.parametrize(
    "error",
    [DeliveryError, DuplicateProfileError, PersonalizationError, TemplateVariableError, AudienceDataError],
)
def test_campaign_errors_are_not_external_api_errors(error: type[Exception]) -> None:
    assert issubclass(error, CampaignError)
    assert not issubclass(error, ExternalApiError)


@pytest.mark.parametrize(("value", "expected"), [(True, True), (1, True), (False, False), (0, False), (None, False)])
def test_booleans_from_sql(value: object, expected: bool) -> None:
    assert as_boolean(value, "email_consent") is expected


@pytest.mark.parametrize("value", ["yes", "true", 2, 1.0, b"1"])
def test_anything_else_is_a_clear_data_error(value: object) -> None:
    with pytest.raises(AudienceDataError, match=r"Column 'email_consent' of audience row 7 is .*, not a boolean"):
        as_boolean(value, "email_consent", 7)


def test_a_connection_without_a_sql_hook_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_campaign_provider.campaign.sql import db_hook

    monkeypatch.setenv("AIRFLOW_CONN_NOT_SQL", '{"conn_type": "smtp", "host": "127.0.0.1"}')
    with pytest.raises(CampaignConfigError, match="'not_sql' is of a type whose hook \\(SmtpHook\\) is not a SQL hook"):
        db_hook("not_sql")
