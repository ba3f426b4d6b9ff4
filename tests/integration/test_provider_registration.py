"""The provider is discoverable: valid provider info, entry point, CLI listing, and a cheap, inert import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_campaign_provider.get_provider_info import get_provider_info

pytestmark = pytest.mark.integration


def test_provider_info_validates_against_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_connection_type_metadata() -> None:
    (conn,) = get_provider_info()["connection-types"]
    assert conn["connection-type"] == "campaign_external_api"
    assert conn["hook-name"] == "Campaign External API"
    assert conn["hook-class-name"] == "airflow_campaign_provider.hooks.external_api.ExternalApiHook"
    fields = conn["conn-fields"]
    assert fields["auth_type"]["schema"]["enum"][:5] == [
        "none",
        "basic",
        "bearer",
        "api_key",
        "oauth2_client_credentials",
    ]
    assert fields["timeout"]["schema"]["maximum"] == 600
    assert fields["max_retries"]["schema"]["minimum"] == 0
    for field in fields.values():
        jsonschema.Draft7Validator.check_schema(field["schema"])
    assert set(conn["ui-field-behaviour"]["relabeling"]) >= {"login", "password"}


def test_providers_manager_loads_our_form_without_importing_the_hook() -> None:
    code = (
        "import sys\n"
        "from airflow.providers_manager import ProvidersManager\n"
        "pm = ProvidersManager()\n"
        "pm.initialize_providers_hooks()\n"
        "widgets = [k for k in pm.connection_form_widgets if k.startswith('extra__campaign_external_api__')]\n"
        "print(sorted(widgets))\n"
        "print(pm.field_behaviours['campaign_external_api']['relabeling']['password'])\n"
        "print('airflow_campaign_provider.hooks.external_api' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert "extra__campaign_external_api__token_url" in lines[-3]
    assert lines[-2] == "Password / secret"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["providers", "list"], "airflow-campaign-provider"),
        (["providers", "hooks"], "campaign_external_api"),
    ],
)
def test_airflow_cli_lists_the_provider(command: list[str], expected: str) -> None:
    out = subprocess.run([sys.executable, "-m", "airflow", *command], capture_output=True, text=True, check=True).stdout
    assert expected in out


def test_importing_the_package_is_inert() -> None:
    code = (
        "import sys, threading\n"
        "before = set(sys.modules)\n"
        "import airflow_campaign_provider, airflow_campaign_provider.get_provider_info\n"
        "new = set(sys.modules) - before\n"
        "heavy = sorted(m for m in new if m.split('.')[0] in ('airflow', 'requests', 'urllib3', 'jsonschema'))\n"
        "print(heavy, threading.active_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] 1"
