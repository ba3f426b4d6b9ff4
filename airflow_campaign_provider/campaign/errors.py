"""The campaign building blocks' errors: mistakes in campaign data, templates, connections or delivery.

They are not External API errors (:mod:`airflow_campaign_provider.exceptions`): nothing here calls
an API, so an operator's ``failure_branch`` never catches them.
"""

from __future__ import annotations


class CampaignError(Exception):
    """Base class of every error raised by :mod:`airflow_campaign_provider.campaign`; ``rule`` names what broke."""

    rule: str = "campaign"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class CampaignConfigError(CampaignError):
    """A campaign task is configured wrongly: a connection of the wrong type, a bad batch size, a bad query."""

    rule = "campaign configuration"


class AudienceDataError(CampaignError):
    """An audience row does not fit what the campaign needs (a missing column, a consent that is not a boolean)."""

    rule = "audience data"
