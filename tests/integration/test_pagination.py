"""Pagination against the real local HTTPS server, through the hook and the operator; nothing mocks HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_campaign_provider.exceptions import (
    DeadlineExceededError,
    HostNotAllowedError,
    PaginationError,
    ResponseTooLargeError,
)
from airflow_campaign_provider.hooks.external_api import ExternalApiHook
from tests.conftest import read_task_output
from tests.support.airflow_run import install_dag, run_dag
from tests.support.scripted_server import ScriptedHandler, ScriptedServer, oauth_conn

pytestmark = pytest.mark.integration

OFFERS = [{"id": f"OFF-{i:03d}", "discount": i % 30} for i in range(1, 48)]
PER_PAGE = 10


def query(h: ScriptedHandler) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(h.path).query).items()}


def paged_api(style: str, *, total_only_on_first: bool = False) -> Callable[[ScriptedHandler], None]:
    """One catalogue, paged in every style the operator supports."""

    def respond(h: ScriptedHandler) -> None:
        q = query(h)
        path = urlsplit(h.path).path
        headers: dict[str, str] = {}
        doc: dict[str, Any]
        if style in ("link_header", "json_link", "page_number"):
            page = int(q.get("page", "1"))
            start = (page - 1) * PER_PAGE
            more = start + PER_PAGE < len(OFFERS)
            doc = {"data": OFFERS[start : start + PER_PAGE]}
            if style == "link_header" and more:
                headers["Link"] = f'<{path}?page={page + 1}>; rel="next", <{path}?page=1>; rel="first"'
            if style == "json_link":
                doc["links"] = {"next": f"{path}?page={page + 1}" if more else None}
            if style == "page_number":
                doc["meta"] = {"pages": -(-len(OFFERS) // PER_PAGE)}
        elif style in ("cursor", "header_cursor", "cursor_body"):
            if style == "cursor_body":
                cursor = int(json.loads(h.body or b"{}").get("params", {}).get("cursor", "0"))
            else:
                cursor = int(q.get("after", "0"))
            doc = {"data": OFFERS[cursor : cursor + PER_PAGE]}
            nxt = str(cursor + PER_PAGE) if cursor + PER_PAGE < len(OFFERS) else None
            if style == "header_cursor":
                headers.update({"X-Next-Cursor": nxt} if nxt else {})
            else:
                doc["meta"] = {"next_cursor": nxt}
        else:  # offset
            offset, limit = int(q["offset"]), int(q["limit"])
            doc = {"data": OFFERS[offset : offset + limit]}
            if not total_only_on_first or offset == 0:
                doc["total"] = len(OFFERS)
        h.send_json(200, doc, headers=headers)

    return respond


STYLES: dict[str, dict[str, Any]] = {
    "link_header": {"type": "link_header"},
    "json_link": {"type": "json_link", "next_url_path": "$.links.next"},
    "cursor": {"type": "cursor", "cursor_path": "$.meta.next_cursor", "cursor_param": "after"},
    "header_cursor": {"type": "header_cursor", "cursor_header": "X-Next-Cursor", "cursor_param": "after"},
    "offset": {"type": "offset", "limit": PER_PAGE, "total_path": "$.total"},
    "page_number": {"type": "page_number", "total_pages_path": "$.meta.pages"},
}


@pytest.fixture
def api(server: ScriptedServer, make_conn) -> ScriptedServer:
    make_conn(host=f"{server.base_url}/v1")
    return server


def page_records(pages: Any) -> list[Any]:
    return [record for page in pages for record in page.records]


# Through the hook ------------------------------------------------------------------------------


@pytest.mark.parametrize("style", sorted(STYLES))
def test_the_hook_pages_every_style_over_one_tls_connection(api, style) -> None:
    api.route("/v1/offers", paged_api(style, total_only_on_first=True))
    with ExternalApiHook() as hook:
        pages = hook.paginate("GET", "offers", pagination=STYLES[style], records_path="$.data[*]")
        assert page_records(pages) == OFFERS
    assert pages.summary is not None
    assert pages.summary.pages == 5
    assert pages.summary.records == len(OFFERS)
    assert api.script.connections == 1, "every page on one TLS connection"


def test_an_empty_first_page_and_a_null_total(api) -> None:
    api.route("/v1/offers", lambda h: h.send_json(200, {"data": [], "total": None}))
    pages = ExternalApiHook().paginate(
        "GET", "offers", pagination={"type": "offset", "limit": 10, "total_path": "$.total"}
    )
    assert page_records(pages) == []
    assert pages.summary is not None
    assert (pages.summary.pages, pages.summary.stopped_by) == (1, "empty page")


def test_has_more_false_beside_a_next_cursor(api) -> None:
    def respond(h: ScriptedHandler) -> None:
        h.send_json(200, {"data": OFFERS[:3], "meta": {"next_cursor": "abc"}, "has_more": False})

    api.route("/v1/offers", respond)
    spec = {**STYLES["cursor"], "has_more_path": "$.has_more"}
    pages = ExternalApiHook().paginate("GET", "offers", pagination=spec)
    assert len(list(pages)) == 1
    assert pages.summary is not None and pages.summary.stopped_by == "has_more false"


@pytest.mark.parametrize(
    ("respond", "spec", "sent"),
    [
        pytest.param(
            lambda h: h.send_json(200, {"data": [1], "meta": {"next_cursor": "same"}}),
            STYLES["cursor"],
            2,
            id="repeated-cursor",
        ),
        pytest.param(
            lambda h: h.send_json(200, {"data": [1]}, headers={"Link": '</v1/offers>; rel="next"'}),
            STYLES["link_header"],
            1,
            id="link-back",
        ),
    ],
)
def test_a_loop_is_a_pagination_error(api, respond, spec, sent) -> None:
    api.route("/v1/offers", respond)
    with pytest.raises(PaginationError, match="pagination loop"):
        list(ExternalApiHook().paginate("GET", "offers", pagination=spec))
    assert len(api.requests) == sent, "the loop is caught before the repeated page is requested"


def test_a_next_link_to_another_host_is_refused(api) -> None:
    api.route(
        "/v1/offers",
        lambda h: h.send_json(
            200, {"data": [1]}, headers={"Link": '<https://elsewhere.example/x?token=t0k-123>; rel="next"'}
        ),
    )
    with pytest.raises(HostNotAllowedError) as info:
        list(ExternalApiHook().paginate("GET", "offers", pagination=STYLES["link_header"]))
    assert "t0k-123" not in str(info.value)
    assert len(api.requests) == 1


def test_a_429_mid_fetch_waits_and_goes_on(api) -> None:
    served = paged_api("link_header")
    calls = iter(range(100))

    def respond(h: ScriptedHandler) -> None:
        if next(calls) == 2:
            h.send_json(429, {"error": "slow down"}, headers={"Retry-After": "0"})
        else:
            served(h)

    api.route("/v1/offers", respond)
    assert page_records(ExternalApiHook().paginate("GET", "offers", pagination=STYLES["link_header"])) == OFFERS
    assert len(api.requests) == 6


def test_the_one_deadline_covers_every_page(api) -> None:
    api.route("/v1/offers", lambda h: h.send_json(429, {}, headers={"Retry-After": "3"}))
    with pytest.raises(DeadlineExceededError, match=r"Retry-After asks a wait of 3\.0 s"):
        list(ExternalApiHook().paginate("GET", "offers", pagination={**STYLES["link_header"], "timeout": 2}))


def test_a_token_that_expires_mid_fetch_is_refreshed(server, make_conn) -> None:
    oauth_conn(server, make_conn)
    tokens = iter(["token-1", "token-2"])
    server.route("/oauth/token", lambda h: h.send_json(200, {"access_token": next(tokens), "token_type": "bearer"}))
    served = paged_api("link_header")

    def respond(h: ScriptedHandler) -> None:
        if h.headers["Authorization"] == "Bearer token-1" and "page=3" in h.path:
            h.send_json(401, {"error": "expired"})
        else:
            served(h)

    server.route("/v1/offers", respond)
    assert page_records(ExternalApiHook().paginate("GET", "offers", pagination=STYLES["link_header"])) == OFFERS
    assert len([r for r in server.requests if r.path == "/oauth/token"]) == 2


def test_a_page_over_the_size_limit(server, make_conn) -> None:
    make_conn(host=f"{server.base_url}/v1", max_response_bytes=2000)
    served = paged_api("link_header")

    def respond(h: ScriptedHandler) -> None:
        if "page=2" in h.path:
            h.send_json(200, {"data": ["x" * 5000]})
        else:
            served(h)

    server.route("/v1/offers", respond)
    with pytest.raises(ResponseTooLargeError, match="max_response_bytes"):
        list(ExternalApiHook().paginate("GET", "offers", pagination=STYLES["link_header"]))


def test_max_pages_fail_and_stop(api) -> None:
    api.route("/v1/offers", paged_api("link_header"))
    with pytest.raises(PaginationError, match="page limit: 2 pages"):
        list(ExternalApiHook().paginate("GET", "offers", pagination={**STYLES["link_header"], "max_pages": 2}))
    spec = {**STYLES["link_header"], "max_pages": 2, "on_max_pages": "stop"}
    pages = ExternalApiHook().paginate("GET", "offers", pagination=spec)
    assert len(page_records(pages)) == 2 * PER_PAGE
    assert pages.summary is not None and (pages.summary.stopped_by, pages.summary.truncated) == ("max_pages", True)


def test_max_records_cuts_the_last_page_to_the_limit(api) -> None:
    api.route("/v1/offers", paged_api("link_header"))
    spec = {**STYLES["link_header"], "max_records": 15}
    pages = ExternalApiHook().paginate("GET", "offers", pagination=spec, records_path="$.data[*]")
    assert page_records(pages) == OFFERS[:15], "the second page holds only the 5 records up to the limit"
    assert pages.summary is not None
    assert (pages.summary.pages, pages.summary.records, pages.summary.stopped_by) == (2, 15, "max_records")


# Through the operator --------------------------------------------------------------------------

OPERATOR_DAG = """
from airflow.sdk import dag, task
from airflow_campaign_provider.operators.external_api import ExternalApiOperator

STYLES = {styles!r}
COLUMNS = [{{"name": "id", "type": "text"}}, {{"name": "discount", "type": "integer"}}]


@dag(schedule=None)
def paged_offers():
    for style, spec in STYLES.items():
        ExternalApiOperator(
            task_id=f"fetch_{{style}}",
            conn_id="paged_api",
            endpoint="offers",
            outbound={{"records": "$.data[*]", "columns": COLUMNS}},
            pagination=spec,
        )

    ExternalApiOperator(
        task_id="too_many_pages",
        conn_id="paged_api",
        endpoint="offers",
        pagination={{"type": "link_header", "max_pages": 2}},
    )
    ExternalApiOperator(
        task_id="truncated",
        conn_id="paged_api",
        endpoint="offers",
        outbound={{"records": "$.data[*]", "columns": COLUMNS}},
        pagination={{"type": "link_header", "max_pages": 2, "on_max_pages": "stop"}},
    )
    ExternalApiOperator(
        task_id="to_file",
        conn_id="paged_api",
        endpoint="offers",
        outbound={{"records": "$.data[*]", "columns": COLUMNS}},
        pagination={{"type": "link_header"}},
        output_path={output_path!r},
    )
    ExternalApiOperator(
        task_id="xcom_too_small",
        conn_id="paged_api",
        endpoint="offers-small",
        pagination={{"type": "link_header"}},
        xcom_max_bytes=600,
    )

    @task
    def zips():
        return [{{"zip": "20121"}}, {{"zip": "75001"}}]

    ExternalApiOperator(
        task_id="coupons_cursor_body",
        conn_id="paged_api",
        endpoint="coupon-batches",
        inbound={{"rows": zips(), "columns": ["zip"], "params": {{"campaign": "spring"}}}},
        outbound={{"records": "$.data[*]"}},
        pagination={{"type": "cursor", "cursor_path": "$.meta.next_cursor", "cursor_body_path": "params.cursor"}},
    )

    loop = ExternalApiOperator(
        task_id="looping",
        conn_id="paged_api",
        endpoint="loop",
        pagination={{"type": "link_header"}},
        failure_branch="fallback",
    )

    @task
    def fallback():
        return "fallback"

    loop >> fallback()


paged_offers()
"""


def test_the_operator_pages_every_style_and_keeps_its_limits(
    airflow_db: Path, airflow_home: Path, api: ScriptedServer, make_conn, tmp_path, capfd
) -> None:
    make_conn("paged_api", host=f"{api.base_url}/v1")
    api.route("/v1/offers", paged_api("link_header"))
    for style in STYLES:
        api.route(f"/v1/offers-{style}", paged_api(style, total_only_on_first=True))

    api.route("/v1/offers-small", paged_api("link_header"))
    api.route("/v1/coupon-batches", paged_api("cursor_body"))
    api.route("/v1/loop", lambda h: h.send_json(200, {"data": [1]}, headers={"Link": '</v1/loop>; rel="next"'}))
    styles = {style: spec for style, spec in STYLES.items()}
    target = tmp_path / "offers.jsonl"
    source = OPERATOR_DAG.format(styles=styles, output_path=f"file://{target}")
    source = source.replace(
        'endpoint="offers",\n            outbound', 'endpoint=f"offers-{style}",\n            outbound'
    )
    result = run_dag(install_dag(airflow_db, "paged_offers", source), "paged_offers")

    expected = [{"id": o["id"], "discount": o["discount"]} for o in OFFERS]
    for style in STYLES:
        assert result.task_states[f"fetch_{style}"] == "success", (style, result.task_states)
        assert result.xcom(f"fetch_{style}") == expected, style
        summary = result.xcom(f"fetch_{style}", "summary")
        assert (summary["pages"], summary["rows"], summary["truncated"]) == (5, len(OFFERS), False), style

    assert result.task_states["too_many_pages"] == "failed"
    assert result.xcom("too_many_pages") is None and result.xcom("too_many_pages", "summary") is None
    assert result.xcom("truncated") == expected[: 2 * PER_PAGE]
    truncated = result.xcom("truncated", "summary")
    assert (truncated["truncated"], truncated["stopped_by"]) == (True, "max_pages")

    assert result.xcom("to_file") == {"path": f"file://{target}", "rows": len(OFFERS)}
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [o["id"] for o in OFFERS]

    assert result.task_states["xcom_too_small"] == "failed"
    output = read_task_output(capfd, airflow_home)
    assert "XComTooLargeError" in output
    assert "over xcom_max_bytes=600" in output
    small = [r for r in api.requests if r.path == "/v1/offers-small"]
    assert len(small) == 2, "the task failed on page 2, whose rows passed the limit, and fetched no more"

    coupon_bodies = [json.loads(r.body) for r in api.requests if r.path == "/v1/coupon-batches"]
    assert [b["params"].get("cursor") for b in coupon_bodies] == [None, "10", "20", "30", "40"]
    assert all(b["data"] == [{"zip": "20121"}, {"zip": "75001"}] for b in coupon_bodies)
    assert len(result.xcom("coupons_cursor_body")) == len(OFFERS)

    assert result.task_states["looping"] == "success"
    assert result.task_states["fallback"] == "success"
    assert result.xcom("looping", "error")["type"] == "PaginationError"
