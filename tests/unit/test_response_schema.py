"""Schema violations are reported reason and path first, with at most a short, scrubbed excerpt of a value."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_campaign_provider.exceptions import ResponseSchemaError
from airflow_campaign_provider.response_schema import build_validator, validate_response

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["match"],
    "properties": {
        "match": {
            "type": "object",
            "properties": {
                "teams": {"type": "array", "minItems": 2},
                "code": {"type": "string", "pattern": "^M-"},
                "status": {"enum": ["scheduled", "live"]},
            },
        }
    },
}


def violations(document: Any, secrets: tuple[str, ...] = ()) -> str:
    with pytest.raises(ResponseSchemaError) as info:
        validate_response(build_validator(SCHEMA), document, url="https://api.example.com", secrets=secrets)
    return info.value.message


def test_the_reason_and_the_path_come_first_never_the_document() -> None:
    teams = [{"name": "Inter", "players": [{"name": f"player {i}" * 20} for i in range(50)]}]
    message = violations({"match": {"teams": teams}})
    assert message == "response schema: 1 violation(s): expected at least 2 item(s) at $.match.teams"
    assert "player" not in message


def test_scalar_values_get_a_short_scrubbed_excerpt() -> None:
    message = violations({"match": {"code": "token-SECRET-1234" + "x" * 100, "status": "postponed"}}, ("SECRET-1234",))
    assert 'expected matching the pattern "^M-" at $.match.code (value "token-***' in message
    assert "SECRET-1234" not in message
    assert len(message) < 300
    assert 'expected one of ["scheduled", "live"] at $.match.status (value "postponed")' in message


def test_required_and_type_reasons() -> None:
    assert violations({}) == "response schema: 1 violation(s): 'match' is a required property at $"
    assert violations({"match": []}) == 'response schema: 1 violation(s): expected type "object" at $.match'
