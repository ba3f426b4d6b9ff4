"""The wheel holds the provider and nothing else: no demo, no test servers, no CSV, no demo credentials."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from demo import campaign_api

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: hatchling comes from the dev extra, so the build needs no index.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [path] = out.glob("airflow_campaign_provider-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_only_the_provider_package(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    dist_info = re.compile(r"airflow_campaign_provider-[^/]+\.dist-info/")
    strays = [n for n in names if not (n.startswith("airflow_campaign_provider/") or dist_info.match(n))]
    assert strays == []
    assert not [n for n in names if "/demo/" in n or n.startswith("demo/") or n.endswith((".csv", ".pem"))]
    modules = {n for n in names if n.endswith(".py")}
    assert {
        "airflow_campaign_provider/hooks/external_api.py",
        "airflow_campaign_provider/operators/external_api.py",
        "airflow_campaign_provider/campaign/delivery.py",
        "airflow_campaign_provider/campaign/ledger.py",
    } <= modules
    assert "airflow_campaign_provider/py.typed" in names


def test_the_wheel_carries_no_demo_credentials_or_demo_connection_ids(wheel: zipfile.ZipFile) -> None:
    for name in wheel.namelist():
        text = wheel.read(name).decode("utf-8", errors="replace")
        for secret in (campaign_api.CLIENT_SECRET, campaign_api.API_KEY):
            assert secret not in text, f"the demo credential {secret!r} is in {name}"
        if name.endswith(".py"):  # METADATA holds the README, which documents the demo's connections
            assert "smtp_demo" not in text and "campaign_demo_" not in text, f"{name} names a demo connection"


def test_the_campaign_extra_declares_the_providers_it_uses(wheel: zipfile.ZipFile) -> None:
    [metadata] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [line for line in wheel.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    campaign = " ".join(line for line in requires if "extra == 'campaign'" in line)
    assert "apache-airflow-providers-smtp" in campaign
    assert "apache-airflow-providers-common-sql" in campaign
