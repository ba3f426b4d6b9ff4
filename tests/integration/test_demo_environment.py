"""The demo environment for real: ExternalApiHook over verified HTTPS to the campaign API, SmtpHook to the sink.

Connections come from ``DemoEnvironment.env_vars()``, exactly as the demo DAGs get them.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from airflow.providers.smtp.hooks.smtp import SmtpHook

from airflow_campaign_provider.campaign.audience_db import read_profiles
from airflow_campaign_provider.exceptions import DeadlineExceededError, HttpStatusError, TokenError
from airflow_campaign_provider.hooks.external_api import ApiResponse, ExternalApiHook
from demo import campaign_api, switch
from demo.audience import REGIONS, SEGMENTS, load_audience
from demo.environment import (
    API_KEY_CONN_ID,
    AUDIENCE_CONN_ID,
    FROM_EMAIL,
    OAUTH_CONN_ID,
    SMTP_CONN_ID,
    STATE_FILE,
    DemoEnvironment,
)

pytestmark = pytest.mark.integration

COUPON_BODY = {"params": {"campaign": "spring", "count": 2}, "data": [{"zip": "20121"}, {"zip": "SW1A"}]}
LINEUP_EVENT = "Milano Lions v Roma Wolves"
ENDPOINTS = [
    pytest.param(OAUTH_CONN_ID, "POST", "coupons", {}, COUPON_BODY, id="coupons"),
    pytest.param(OAUTH_CONN_ID, "GET", "offers", {}, None, id="offers"),
    pytest.param(API_KEY_CONN_ID, "GET", "weather", {"regions": "north,south"}, None, id="weather"),
    pytest.param(API_KEY_CONN_ID, "GET", "lineup", {"event": LINEUP_EVENT}, None, id="lineup"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEnvironment]:
    with DemoEnvironment(tmp_path_factory.mktemp("demo")) as env:
        yield env


@pytest.fixture
def conns(demo: DemoEnvironment, monkeypatch: pytest.MonkeyPatch) -> DemoEnvironment:
    for name, value in demo.env_vars().items():
        monkeypatch.setenv(name, value)
    return demo


@pytest.fixture
def api_log(demo: DemoEnvironment):
    """The requests the API answered since the test started."""
    start = len(demo.api.requests)
    return lambda: [(r.method, r.path, r.status) for r in demo.api.requests[start:]]


def variant(monkeypatch, demo: DemoEnvironment, conn_id: str, *, drop: tuple[str, ...] = (), **extra: Any) -> str:
    """Register a copy of a demo connection with ``extra`` changed and fields in ``drop`` removed."""
    conn = demo.connections()[conn_id]
    conn = {k: v for k, v in conn.items() if k not in drop}
    conn["extra"] = {**conn["extra"], **extra}
    new_id = f"{conn_id}_variant"
    monkeypatch.setenv(f"AIRFLOW_CONN_{new_id.upper()}", json.dumps(conn))
    return new_id


def call(
    conn_id: str, method: str, endpoint: str, params: dict[str, str], body: Any, *, fail: str | None = None
) -> ApiResponse:
    """Call the demo API through the hook; ``fail`` sets the failure switch header."""
    headers = None if fail is None else {switch.FAILURE_HEADER: fail}
    with ExternalApiHook(conn_id) as hook:
        return hook.request(method, endpoint, params=params, json=body, headers=headers)


def session(ca_cert: str) -> requests.Session:
    """A plain client for what the hook does not expose, verifying the demo CA and ignoring proxy variables."""
    raw = requests.Session()
    raw.trust_env = False
    raw.verify = ca_cert
    return raw


# The environment ---------------------------------------------------------------------------


def test_state_file_and_connections(demo) -> None:
    state = json.loads((demo.state_dir / STATE_FILE).read_text())
    assert state == demo.describe()
    assert state["base_url"] == f"https://localhost:{demo.api.port}"
    assert state["ca_cert"] == str(demo.state_dir / "ca" / "ca.pem")
    assert state["outbox"] == str(demo.state_dir / "outbox")
    conns = demo.connections()
    assert set(conns) == {OAUTH_CONN_ID, API_KEY_CONN_ID, SMTP_CONN_ID, AUDIENCE_CONN_ID}
    assert conns[AUDIENCE_CONN_ID] == {"conn_type": "sqlite", "host": state["audience_db"]}
    for conn_id in (OAUTH_CONN_ID, API_KEY_CONN_ID):
        assert conns[conn_id]["host"] == f"{demo.api.base_url}/v1"
        assert conns[conn_id]["extra"]["verify"] == state["ca_cert"]
        assert conns[conn_id]["extra"]["allow_private_hosts"] is True
    assert conns[OAUTH_CONN_ID]["extra"]["token_url"] == f"{demo.api.base_url}/oauth/token"
    assert conns[SMTP_CONN_ID]["port"] == demo.smtp.port
    assert demo.env_vars() == {f"AIRFLOW_CONN_{k.upper()}": json.dumps(v) for k, v in conns.items()}


def test_serve_and_env_commands(tmp_path) -> None:
    command = [sys.executable, "-m", "demo"]
    server = subprocess.Popen([*command, "serve", "--state-dir", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline() for _ in range(5)]
        assert banner[-1] == "Press Ctrl-C to stop.\n"
        exports = subprocess.run([*command, "env", "--state-dir", str(tmp_path)], capture_output=True, text=True)
        variables = dict(shlex.split(line)[1].split("=", 1) for line in exports.stdout.splitlines())
        oauth = json.loads(variables[f"AIRFLOW_CONN_{OAUTH_CONN_ID.upper()}"])
        assert oauth["host"] in banner[0]
        status = session(oauth["extra"]["verify"]).get(oauth["host"], timeout=10)
        assert status.json() == {"status": "ok", "service": "campaign demo API"}
    finally:
        server.send_signal(signal.SIGTERM)
        rest, _ = server.communicate(timeout=10)
    assert server.returncode == 0
    assert rest == "Demo environment stopped.\n"


@pytest.mark.parametrize("conn_id", [OAUTH_CONN_ID, API_KEY_CONN_ID])
def test_test_button_succeeds(conns, conn_id) -> None:
    ok, message = ExternalApiHook(conn_id).test_connection()
    assert ok, message
    assert "HTTP 200" in message


def test_test_button_reports_a_wrong_api_key(conns, monkeypatch) -> None:
    conn = conns.connections()[API_KEY_CONN_ID] | {"password": "not-the-key"}
    monkeypatch.setenv("AIRFLOW_CONN_WRONG_KEY", json.dumps(conn))
    ok, message = ExternalApiHook("wrong_key").test_connection()
    assert not ok
    assert "rejected the credentials: HTTP 401" in message


def test_the_audience_db_holds_the_audience_with_boolean_consent(conns) -> None:
    rows = read_profiles(AUDIENCE_CONN_ID, "SELECT * FROM campaign_profiles ORDER BY id")
    assert rows == [dict(profile) for profile in load_audience()]


# OAuth2 and API keys -----------------------------------------------------------------------


def test_offers_with_an_oauth_token_fetched_once(conns, api_log) -> None:
    with ExternalApiHook(OAUTH_CONN_ID) as hook:
        first = hook.get_json("offers")
        again = hook.get_json("offers")
        pages = hook.paginate("GET", "offers", pagination={"type": "link_header"}, records_path="$.offers[*]")
        catalogue = [offer for page in pages for offer in page.records]
    assert first == again == {"offers": list(campaign_api.OFFERS[:3])}, "the first page"
    assert catalogue == list(campaign_api.OFFERS)
    assert api_log()[:3] == [("POST", "/oauth/token", 200), ("GET", "/v1/offers", 200), ("GET", "/v1/offers", 200)]
    by_segment: dict[str, list[float]] = {}
    for offer in catalogue:
        assert set(offer) == {"id", "segment", "title", "discount", "valid_from", "valid_until"}
        by_segment.setdefault(offer["segment"], []).append(offer["discount"])
    assert set(by_segment) == set(SEGMENTS)
    assert all(len(set(discounts)) == len(discounts) > 1 for discounts in by_segment.values())


def test_a_revoked_token_is_refreshed_after_401(conns, api_log) -> None:
    with ExternalApiHook(OAUTH_CONN_ID) as hook:
        hook.get_json("offers")
        conns.api.revoke_tokens()
        hook.get_json("offers")
    assert api_log() == [
        ("POST", "/oauth/token", 200),
        ("GET", "/v1/offers", 200),
        ("GET", "/v1/offers", 401),
        ("POST", "/oauth/token", 200),
        ("GET", "/v1/offers", 200),
    ]


def test_coupons_one_per_audience_zip_and_deterministic(conns) -> None:
    zips = sorted({profile["zip"] for profile in load_audience()})
    body = {"params": {"campaign": "spring", "count": len(zips)}, "data": [{"zip": z} for z in zips]}
    first = call(OAUTH_CONN_ID, "POST", "coupons", {}, body).json()
    assert call(OAUTH_CONN_ID, "POST", "coupons", {}, body).json() == first
    assert first["count"] == len(zips)
    assert [record["zip"] for record in first["data"]] == zips
    for record in first["data"]:
        assert re.fullmatch(rf"SPRING-{record['zip']}-[0-9A-F]{{4}}", record["coupon"]["code"])
        assert record["coupon"]["discount"] in (5, 10, 15, 20, 25)
        assert record["valid_until"] == "2026-12-31"
    # Pinned, so that a change to the derivation shows up here and not in a campaign.
    assert first["data"][zips.index("20121")]["coupon"] == {"code": "SPRING-20121-DE23", "discount": 20}
    other = call(OAUTH_CONN_ID, "POST", "coupons", {}, {"params": {"campaign": "winter"}, "data": [{"zip": "20121"}]})
    assert other.json()["data"][0]["coupon"]["code"].startswith("WINTER-20121-")
    default = call(OAUTH_CONN_ID, "POST", "coupons", {}, {"data": [{"zip": "20121"}]})
    assert default.json()["data"][0]["coupon"]["code"].startswith("CAMPAIGN-20121-")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"params": {"count": 3}, "data": [{"zip": "20121"}]}, "'params.count' is 3 but 'data' has 1 rows"),
        ({"params": {"count": "1"}, "data": [{"zip": "20121"}]}, "'params.count' is '1'"),
        ({"data": "20121"}, "'data' must be a list"),
        ({"params": []}, "'params' must be an object"),
        ({"data": [{"postcode": "20121"}]}, "data[0].zip must be a string"),
        ({"data": [{"zip": 20121}]}, "data[0].zip must be a string"),
        ({"params": {"campaign": "spring sale"}, "data": []}, "'params.campaign' must be"),
        ([{"zip": "20121"}], "the body must be a JSON object"),
    ],
)
def test_coupons_reject_malformed_bodies(conns, body, problem) -> None:
    with pytest.raises(HttpStatusError) as caught:
        call(OAUTH_CONN_ID, "POST", "coupons", {}, body)
    assert caught.value.status == 400
    assert "invalid_request" in caught.value.message
    assert problem in caught.value.message


def test_weather_and_lineup_with_the_api_key(conns) -> None:
    with ExternalApiHook(API_KEY_CONN_ID) as hook:
        weather = hook.get_json("weather", params={"regions": ",".join(REGIONS) + ",North"})
        assert hook.get_json("weather", params={"regions": ",".join(REGIONS)}) == weather
        lineup = hook.get_json("lineup", params={"event": LINEUP_EVENT})
        assert hook.get_json("lineup", params={"event": LINEUP_EVENT}) == lineup
        other = hook.get_json("lineup", params={"event": "Paris Comets v Lyon Foxes"})
    assert [f["region"] for f in weather["forecasts"]] == list(REGIONS)
    for forecast in weather["forecasts"]:
        assert forecast["condition"] in ("sun", "cloud", "rain", "snow")
        assert isinstance(forecast["temp_c"], int)
        assert forecast["date"] == "2026-11-23"
    assert weather["forecasts"][0] == {"region": "north", "condition": "rain", "temp_c": 3, "date": "2026-11-23"}
    match = lineup["match"]
    assert match["event"] == LINEUP_EVENT
    assert match["kickoff"] == "2026-11-23T20:45:00+01:00"
    assert [team["side"] for team in match["teams"]] == ["home", "away"]
    assert [team["name"] for team in match["teams"]] == ["Milano Lions", "Roma Wolves"], "the teams the event names"
    assert match["teams"][0]["name"] != match["teams"][1]["name"]
    for team in match["teams"]:
        players = team["players"]
        assert len(players) == 11
        assert len({p["number"] for p in players}) == 11
        assert players[0]["position"] == "GK"
    assert other != lineup


@pytest.mark.parametrize(
    ("pagination", "endpoint"),
    [
        ({"type": "link_header"}, "offers"),
        ({"type": "cursor", "cursor_path": "$.next_cursor", "cursor_param": "cursor"}, "offers/by-cursor"),
        ({"type": "offset", "limit": 2, "total_path": "$.total"}, "offers/by-offset"),
    ],
)
def test_the_offers_catalogue_pages_in_three_styles(conns, pagination, endpoint) -> None:
    with ExternalApiHook(OAUTH_CONN_ID) as hook:
        pages = hook.paginate("GET", endpoint, pagination=pagination, records_path="$.offers[*]")
        assert [offer for page in pages for offer in page.records] == list(campaign_api.OFFERS)


def test_a_coupon_batch_is_an_async_job_whose_coupons_page(conns, demo) -> None:
    demo.api.job_seconds = 0.4
    zips = [f"{10000 + n}" for n in range(25)]
    body = {"params": {"campaign": "spring"}, "data": [{"zip": z} for z in zips]}
    created = call(OAUTH_CONN_ID, "POST", "coupon-batches", {}, body)
    assert created.status_code == 202
    status_url = urljoin(created.url, created.headers["Location"])
    with ExternalApiHook(OAUTH_CONN_ID) as hook:
        assert hook.get_json(status_url)["status"] in ("queued", "running")
        time.sleep(0.5)
        done = hook.get_json(status_url)
        assert done["status"] == "done"
        pages = hook.paginate("GET", urljoin(status_url, done["links"]["result"]), pagination={"type": "link_header"})
        coupons = [row for page in pages for row in page.records]
    assert [c["zip"] for c in coupons] == zips
    assert pages.summary is not None and pages.summary.pages == 3
    failing = call(OAUTH_CONN_ID, "POST", "coupon-batches", {}, body, fail="job_failed")
    time.sleep(0.5)
    with ExternalApiHook(OAUTH_CONN_ID) as hook:
        assert hook.get_json(urljoin(failing.url, failing.headers["Location"]))["status"] == "failed"


@pytest.mark.parametrize(("endpoint", "params"), [("weather", {}), ("weather", {"regions": " , "}), ("lineup", {})])
def test_api_key_endpoints_need_their_parameter(conns, endpoint, params) -> None:
    with pytest.raises(HttpStatusError) as caught:
        call(API_KEY_CONN_ID, "GET", endpoint, params, None)
    assert caught.value.status == 400
    assert "is required" in caught.value.message


@pytest.mark.parametrize(("conn_id", "method", "endpoint", "params", "body"), ENDPOINTS)
def test_every_endpoint_needs_credentials(conns, monkeypatch, conn_id, method, endpoint, params, body) -> None:
    anonymous = variant(monkeypatch, conns, conn_id, drop=("login", "password"), auth_type="none", token_url="")
    with pytest.raises(HttpStatusError) as caught:
        call(anonymous, method, endpoint, params, body)
    assert caught.value.status == 401
    # The other kind of credentials does not do either.
    other = API_KEY_CONN_ID if conn_id == OAUTH_CONN_ID else OAUTH_CONN_ID
    with pytest.raises(HttpStatusError) as caught:
        call(other, method, endpoint, params, body)
    assert caught.value.status == 401
    assert call(anonymous, "GET", "", {}, None).json() == {"status": "ok", "service": "campaign demo API"}


def test_wrong_client_secret_fails_the_token_request(conns, monkeypatch) -> None:
    conn = conns.connections()[OAUTH_CONN_ID] | {"password": "wrong"}
    monkeypatch.setenv("AIRFLOW_CONN_WRONG_SECRET", json.dumps(conn))
    with pytest.raises(TokenError) as caught:
        call("wrong_secret", "GET", "offers", {}, None)
    assert caught.value.status == 401
    assert "invalid_client" in caught.value.message


def test_token_endpoint_protocol(demo) -> None:
    raw = session(str(demo.ca.ca_cert))
    token_url = f"{demo.api.base_url}/oauth/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": campaign_api.CLIENT_ID,
        "client_secret": campaign_api.CLIENT_SECRET,
    }
    issued = raw.post(token_url, data=form)
    assert issued.status_code == 200
    assert issued.json()["token_type"] == "bearer"
    assert issued.json()["expires_in"] == 3600
    assert raw.post(token_url, data=form).json()["access_token"] != issued.json()["access_token"]
    bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert raw.get(f"{demo.api.base_url}/v1/offers", headers=bearer).status_code == 200

    wrong_grant = raw.post(token_url, data=form | {"grant_type": "password"})
    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")
    bad_client = raw.post(token_url, data={"grant_type": "client_credentials"}, auth=(campaign_api.CLIENT_ID, "nope"))
    assert (bad_client.status_code, bad_client.json()["error"]) == (401, "invalid_client")
    assert bad_client.headers["WWW-Authenticate"] == "Basic"
    assert raw.get(token_url).status_code == 405
    assert raw.get(f"{demo.api.base_url}/v2/offers").status_code == 404
    not_json = raw.post(
        f"{demo.api.base_url}/v1/coupons",
        data=b"{not json",
        headers=bearer | {"Content-Type": "application/json"},
    )
    assert (not_json.status_code, not_json.json()["error_description"]) == (400, "the body is not valid JSON")


# The failure switch -----------------------------------------------------------------------


@pytest.mark.parametrize(("conn_id", "method", "endpoint", "params", "body"), ENDPOINTS)
def test_demo_fail_500_on_every_endpoint(conns, api_log, conn_id, method, endpoint, params, body) -> None:
    with pytest.raises(HttpStatusError) as caught:
        call(conn_id, method, endpoint, params, body, fail="500")
    assert caught.value.status == 500
    assert "server_error" in caught.value.message
    assert [entry for entry in api_log() if entry[1] != "/oauth/token"] == [(method, f"/v1/{endpoint}", 500)]


def test_demo_fail_503_is_retried_at_once_per_retry_after(conns, api_log, capfd) -> None:
    capfd.readouterr()
    with pytest.raises(HttpStatusError) as caught:
        call(API_KEY_CONN_ID, "GET", "weather", {"regions": "north"}, None, fail="503")
    assert caught.value.status == 503
    assert api_log() == [("GET", "/v1/weather", 503)] * 4  # the first attempt and the default 3 retries
    out, err = capfd.readouterr()
    # Retry-After: 0 replaces the backoff, which would wait 250 ms or more.
    assert re.findall(r"due to HTTP - 503 in (\d+) ms", out + err) == ["0", "0", "0"]


def test_demo_fail_html_is_a_502_page(conns, monkeypatch) -> None:
    once = variant(monkeypatch, conns, API_KEY_CONN_ID, max_retries=0)
    with pytest.raises(HttpStatusError) as caught:
        call(once, "GET", "lineup", {"event": LINEUP_EVENT}, None, fail="html")
    assert caught.value.status == 502
    assert "<h1>502 Bad Gateway</h1>" in caught.value.message
    page = session(str(conns.ca.ca_cert)).get(f"{conns.api.base_url}/v1", headers={switch.FAILURE_HEADER: "html"})
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"


def test_demo_fail_invalid_drops_required_fields(conns) -> None:
    coupons = call(OAUTH_CONN_ID, "POST", "coupons", {}, COUPON_BODY, fail="invalid").json()
    assert coupons == {"data": [{"zip": "20121"}, {"zip": "SW1A"}]}
    offers = call(OAUTH_CONN_ID, "GET", "offers", {}, None, fail="invalid").json()
    assert offers == {"offers": [{"id": offer["id"]} for offer in campaign_api.OFFERS[:3]]}, "the first page"
    weather = call(API_KEY_CONN_ID, "GET", "weather", {"regions": "north"}, None, fail="invalid").json()
    assert weather == {"forecasts": [{"region": "north"}]}
    lineup = call(API_KEY_CONN_ID, "GET", "lineup", {"event": LINEUP_EVENT}, None, fail="invalid").json()
    assert lineup == {"match": {"id": lineup["match"]["id"]}}, "the teams are gone"


def test_demo_fail_slow_answers_late_and_trips_a_short_timeout(conns, monkeypatch) -> None:
    impatient = variant(monkeypatch, conns, API_KEY_CONN_ID, timeout=1)
    params = {"regions": "north"}
    with pytest.raises(DeadlineExceededError):
        call(impatient, "GET", "weather", params, None, fail="slow")
    started = time.monotonic()
    answer = call(API_KEY_CONN_ID, "GET", "weather", params, None, fail="slow").json()
    assert time.monotonic() - started >= switch.SLOW_SECONDS
    assert answer == call(API_KEY_CONN_ID, "GET", "weather", {"regions": "north"}, None).json()


def test_demo_fail_empty_is_normal_and_unknown_is_refused(conns) -> None:
    normal = call(OAUTH_CONN_ID, "GET", "offers", {}, None, fail="").json()
    assert normal == {"offers": list(campaign_api.OFFERS[:3])}
    with pytest.raises(HttpStatusError) as caught:
        call(OAUTH_CONN_ID, "GET", "offers", {}, None, fail="teapot")
    assert caught.value.status == 400
    assert "X-Demo-Fail must be one of 500, 503, html, invalid, slow, job_failed" in caught.value.message


# SMTP --------------------------------------------------------------------------------------


def test_smtp_hook_delivers_into_the_outbox(conns) -> None:
    subject = f"Spring offers {time.monotonic_ns()}"
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        hook.send_email_smtp(
            to="giulia.00001@example.com", subject=subject, html_content="<p>Ciao Giulia, -20% per te</p>"
        )
    delivered = [m for m in conns.smtp.messages() if m["Subject"] == subject]
    assert len(delivered) == 1
    message = delivered[0]
    assert message["From"] == FROM_EMAIL
    assert message["To"] == "giulia.00001@example.com"
    body = message.get_body(("html",))
    assert body is not None
    assert "Ciao Giulia, -20% per te" in body.get_content()
    assert list((conns.state_dir / "outbox").glob("*.eml"))
