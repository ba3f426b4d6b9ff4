"""The web UI in a real browser: the connection form and its Test button, a triggered campaign, XCom, the link.

A real ``airflow standalone`` (the same stack as ``make ui``) runs the repo's sample DAGs
against the demo API and SMTP server; headless Debian Chromium drives it through
Playwright. Screenshots of every step land in ``tests/ui/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from demo import campaign_api
from demo.smtp_sink import free_port
from demo.ui import ADMIN_USER, UiStack

pytestmark = [pytest.mark.ui, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# What this machine's closed network needs (see the README): no sandbox as root, no GPU,
# and none of Chromium's own background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CLOSED_PORT_SECRET = "closed-port-secret-4711"
SECRETS = (campaign_api.CLIENT_SECRET, campaign_api.API_KEY, CLOSED_PORT_SECRET)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiStack]:
    root = tmp_path_factory.mktemp("ui")
    with UiStack(REPO / "dags", root / "airflow", root / "demo", port=free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make ui-deps` (Debian's chromium package)"
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(stack: UiStack, browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.goto(stack.url)
    tab.get_by_label("Username").fill(ADMIN_USER)
    tab.get_by_label("Password").fill(stack.admin_password())
    tab.get_by_role("button", name="Sign in").click()
    tab.get_by_test_id("nav-dags-link").wait_for()
    yield tab
    context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_form_and_test_button(stack: UiStack, page: Page) -> None:
    page.goto(f"{stack.url}/connections")
    shot(page, "01-connections-list")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").first.click()
    page.keyboard.type("Campaign")
    expect(page.get_by_role("option", name="Campaign External API")).to_be_visible()
    shot(page, "02-connection-type-listed")
    page.get_by_role("option", name="Campaign External API").click()

    for label in ("Base URL", "Username / client id", "Password / secret", "Port"):
        expect(dialog.get_by_text(label, exact=True)).to_be_visible()
    expect(dialog.locator("input[name=password]")).to_have_attribute("type", "password")
    expect(dialog.locator("input[name=schema]")).to_have_count(0)
    shot(page, "03-standard-fields")

    port = closed_port()
    dialog.locator("input[name=connection_id]").fill("campaign_closed_port")
    dialog.locator("input[name=host]").fill(f"https://localhost:{port}/v1")
    dialog.locator("input[name=port]").fill(str(port))
    dialog.locator("input[name=password]").fill(CLOSED_PORT_SECRET)
    dialog.get_by_text("Standard Fields").click()
    dialog.get_by_text("Extra Fields", exact=True).click()
    for label in (
        "Auth type",
        "API key header",
        "OAuth2 token URL",
        "OAuth2 scope",
        "Timeout (seconds)",
        "Response size limit (bytes)",
        "Max retries",
        "Retried HTTP statuses",
        "TLS verification",
        "Default headers",
        "Allow private hosts",
        "Proxies",
    ):
        expect(dialog.get_by_text(label, exact=True)).to_be_visible()
    expect(dialog.locator("input[name=element_timeout]")).to_have_value("60")
    expect(dialog.locator("input[name=element_max_response_bytes]")).to_have_value("5242880")
    dialog.locator("#element_auth_type").click()
    page.get_by_role("option", name="Bearer token (in Password)").click()
    dialog.locator("input[name=element_verify]").fill(str(stack.demo.ca.ca_cert))
    dialog.locator("label:has(input[name=element_allow_private_hosts])").click()
    shot(page, "04-extra-fields-filled")
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator("tr").filter(has_text="campaign_closed_port")).to_be_visible()

    toasts = page.locator("[data-scope=toast][data-part=root]")
    page.locator("tr").filter(has_text="campaign_demo_oauth").get_by_role("button", name="Test Connection").click()
    success = toasts.filter(has_text="Test Connection Successful")
    expect(success).to_contain_text(f"Connected to {stack.demo.api.base_url}/v1: HTTP 200 in")
    messages = [success.inner_text()]  # toasts fade: read them while they show
    shot(page, "05-test-success")

    page.locator("tr").filter(has_text="campaign_closed_port").get_by_role("button", name="Test Connection").click()
    failure = toasts.filter(has_text="Test Connection Failed")
    expect(failure).to_contain_text("transport: connect failure (Connection refused)")
    messages.append(failure.inner_text())
    shot(page, "06-test-failure")

    for message in messages:
        for secret in SECRETS:
            assert secret not in message


def wait_for_run(stack: UiStack, run_id: str, timeout: float = 240.0) -> str:
    """The final state of a DAG run, read from the metadata DB the UI serves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(stack.airflow_home / "airflow.db") as db:
            row = db.execute("SELECT state FROM dag_run WHERE run_id = ?", (run_id,)).fetchone()
        if row and row[0] in ("success", "failed"):
            return str(row[0])
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not finish within {timeout:.0f} s")


def trigger(stack: UiStack, page: Page, failure: str | None = None) -> str:
    page.goto(f"{stack.url}/dags/campaign_coupons")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Demo API failure switch")).to_be_visible()
    if failure:
        dialog.locator("#element_demo_fail").click()
        page.get_by_role("option", name=failure).click()
    shot(page, f"07-trigger-{'failure' if failure else 'normal'}")
    dialog.get_by_role("button", name="Trigger").click()
    page.wait_for_url("**/runs/**")
    return page.url.rsplit("/runs/", 1)[1].split("/")[0]


def test_triggered_campaign_shows_rendered_fields_xcom_and_link(stack: UiStack, page: Page) -> None:
    run_id = trigger(stack, page)
    assert wait_for_run(stack, run_id) == "success"
    task = f"{stack.url}/dags/campaign_coupons/runs/{run_id}/tasks/fetch_coupons"

    page.goto(task)
    page.get_by_role("link", name="Rendered Templates").click()
    expect(page.get_by_text('"campaign": "spring"')).to_be_visible()
    expect(page.get_by_text('"add_count": true')).to_be_visible()
    expect(page.get_by_text('"X-Demo-Fail": ""')).to_be_visible()
    shot(page, "08-rendered-templates")

    page.get_by_role("link", name="Storage").click()
    page.get_by_role("link", name="XCom").click()
    page.get_by_test_id("expand-all-button").click()
    for key in ("return_value", "summary", "_link_ExternalApiLink"):
        expect(page.get_by_text(key, exact=True)).to_be_visible()
    expect(page.get_by_text('"rejected_samples"')).to_be_visible()
    expect(page.get_by_text('"code"').first).to_be_visible()
    expect(page.get_by_text(f'"{stack.demo.api.base_url}/v1/coupon-batches"').first).to_be_visible()
    shot(page, "09-xcom")

    page.get_by_role("link", name="Details").click()
    link = page.get_by_role("link", name="External API")
    expect(link).to_have_attribute("href", f"{stack.demo.api.base_url}/v1/coupon-batches")
    shot(page, "10-extra-link")
    body = page.content()
    for secret in SECRETS:
        assert secret not in body


def test_failure_switch_takes_the_failure_branch_in_the_grid(stack: UiStack, page: Page) -> None:
    run_id = trigger(stack, page, failure="500")
    assert wait_for_run(stack, run_id) == "success"
    page.goto(f"{stack.url}/dags/campaign_coupons/runs/{run_id}")
    expected = {
        "fetch_coupons": "Success",
        "plan_coupon_batches": "Skipped",
        "deliver_coupons": "Skipped",
        "plan_fallback_batches": "Success",
        "deliver_fallback": "Success",
    }
    for task_id, state in expected.items():
        row = page.locator("tr").filter(has=page.get_by_role("link", name=task_id, exact=True))
        expect(row).to_contain_text(state)
    for task_id in ("plan_coupon_batches", "deliver_coupons"):
        expect(page.get_by_test_id(f"grid-{run_id}-{task_id}")).to_be_visible()
    shot(page, "11-failure-branch-grid")
    page.goto(f"{stack.url}/dags/campaign_coupons")
    page.get_by_role("button", name="Show Graph (Press g)").click()
    expect(page.get_by_text("ExternalApiOperator").first).to_be_visible()
    shot(page, "12-graph")
