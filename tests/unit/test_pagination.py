"""Pagination as a pure flow: every strategy, the stop rules, the loop guard and the one deadline, on a fake clock."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_campaign_provider.exceptions import (
    DeadlineExceededError,
    HostNotAllowedError,
    MappingConfigError,
    PaginationError,
)
from airflow_campaign_provider.flow import Send
from airflow_campaign_provider.pagination import (
    PageRequest,
    next_link,
    paginate_flow,
    parse_pagination,
    with_value_at,
)
from airflow_campaign_provider.request import build_request
from airflow_campaign_provider.settings import ConnectionSettings, parse_connection
from tests.support.flow_script import FakeClock, Run, drive, response

BASE = "https://api.example.com/v1"
ITEMS = [{"id": i} for i in range(23)]


def conn(**extra: Any) -> ConnectionSettings:
    login, password = extra.pop("login", None), extra.pop("password", None)
    return parse_connection(host=BASE, login=login, password=password, extra=extra)


def fetch(
    spec: dict[str, Any],
    api: Any,
    *,
    endpoint: str = "items",
    params: dict[str, Any] | None = None,
    body: Any = None,
    method: str = "GET",
    settings: ConnectionSettings | None = None,
    clock: FakeClock | None = None,
    run: Run | None = None,
    tokens: list[str] | None = None,
    send_seconds: float = 0.0,
) -> Run:
    settings = settings or conn()
    clock = clock or FakeClock()

    def build(page: PageRequest) -> Any:
        return build_request(settings, method, page.endpoint, params=page.params, json=page.json)

    flow = paginate_flow(
        parse_pagination(spec), PageRequest(endpoint, params, body), build, settings, clock.now, random.Random(1)
    )
    return drive(
        flow,
        clock,
        itertools.repeat(api),
        tokens=tokens or [],
        run=run,
        count=records_of,
        send_seconds=send_seconds,
    )


def records_of(document: Any) -> int:
    return len(document["data"]) if isinstance(document, dict) and isinstance(document.get("data"), list) else 0


def query(send: Send) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(send.request.url).query).items()}


def rows(run: Run) -> list[Any]:
    return [row for page in run.pages for row in page.document["data"]]


# Configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"type": "scroll"}, "pagination.type"),
        ({"type": "cursor", "cursor_param": "c"}, "pagination.cursor_path"),
        ({"type": "cursor", "cursor_path": "$.next"}, "pagination.cursor_param"),
        (
            {"type": "cursor", "cursor_path": "$.next", "cursor_param": "c", "cursor_body_path": "a"},
            "pagination.cursor_param",
        ),
        ({"type": "cursor", "cursor_path": "$.items[*].id", "cursor_param": "c"}, "pagination.cursor_path"),
        ({"type": "cursor", "cursor_path": "next", "cursor_param": "c"}, "pagination.cursor_path"),
        ({"type": "link_header", "cursor_path": "$.next"}, "pagination.cursor_path"),
        ({"type": "link_header", "max_pages": 0}, "pagination.max_pages"),
        ({"type": "link_header", "max_pages": 10_001}, "pagination.max_pages"),
        ({"type": "link_header", "on_max_pages": "ignore"}, "pagination.on_max_pages"),
        ({"type": "link_header", "timeout": 3601}, "pagination.timeout"),
        ({"type": "link_header", "concurrency": 2}, "pagination.concurrency"),
        ({"type": "offset", "limit": 10, "concurrency": 9}, "pagination.concurrency"),
        ({"type": "offset", "limit": 10, "concurrency": 4}, "pagination.concurrency"),
        ({"type": "offset"}, "pagination.limit"),
        ({"type": "offset", "limit": 10, "stop_on_empty_page": False}, "pagination"),
        ({"type": "page_number", "total_path": "$.total"}, "pagination.page_size"),
        ({"type": "page_number", "page_size_param": "per_page"}, "pagination.page_size"),
        ({"type": "json_link"}, "pagination.next_url_path"),
        ({"type": "header_cursor", "cursor_header": "X-Next"}, "pagination.cursor_param"),
        ({"type": "link_header", "max_records": 0}, "pagination.max_records"),
    ],
)
def test_a_bad_configuration_is_an_error_naming_the_key(spec: dict[str, Any], key: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        parse_pagination(spec)
    assert info.value.field == key


def test_a_complete_configuration_is_flat() -> None:
    config = parse_pagination({"type": "cursor", "cursor_path": "$.next", "cursor_param": "after"})
    assert (config.type, config.max_pages, config.on_max_pages, config.concurrency) == ("cursor", 100, "fail", 1)
    assert config.timeout == 600.0
    assert parse_pagination({"type": "offset", "limit": 5, "total_path": "$.total", "concurrency": 4}).concurrency == 4


@pytest.mark.parametrize(
    ("header", "target"),
    [
        ('<https://x.example/p?page=2>; rel="next"', "https://x.example/p?page=2"),
        ('<https://x.example/p?a=1,2>; rel="prev", </p?page=3>; rel="next"', "/p?page=3"),
        ('</p?page=3>; title="a, b"; rel="next last"', "/p?page=3"),
        ("</p?page=3>; rel=next", "/p?page=3"),
        ('</p?page=1>; rel="first"', None),
        ("", None),
    ],
)
def test_next_link_reads_rfc_8288(header: str, target: str | None) -> None:
    assert next_link(header) == target


def test_a_cursor_goes_into_a_copy_of_the_body() -> None:
    body = {"params": {"campaign": "spring"}, "data": [1]}
    assert with_value_at(body, "params.cursor", "c2") == {"params": {"campaign": "spring", "cursor": "c2"}, "data": [1]}
    assert body == {"params": {"campaign": "spring"}, "data": [1]}
    assert with_value_at(None, "a.b", 1) == {"a": {"b": 1}}


# Strategies -----------------------------------------------------------------------------------


def link_api(per_page: int = 10, total: int = 23, link_for: Any = None) -> Any:
    def api(send: Send) -> Any:
        page = int(query(send).get("page", "1"))
        data = ITEMS[(page - 1) * per_page : page * per_page][:total]
        headers = {}
        if page * per_page < total:
            headers["Link"] = link_for(page + 1) if link_for else f'<{BASE}/items?page={page + 1}>; rel="next"'
        return response(200, {"data": data}, headers=headers, url=send.request.url)

    return api


def test_link_header_fetches_every_page_over_one_deadline() -> None:
    run = fetch({"type": "link_header"}, link_api())
    assert rows(run) == ITEMS
    assert run.result.pages == 3
    assert (run.result.stopped_by, run.result.truncated, run.result.records) == ("no next link", False, 23)


def test_a_relative_next_link_resolves_against_the_page_url() -> None:
    run = fetch({"type": "link_header"}, link_api(link_for=lambda n: f'<items?page={n}>; rel="next"'))
    assert [send.request.url for send in run.sends] == [
        f"{BASE}/items",
        f"{BASE}/items?page=2",
        f"{BASE}/items?page=3",
    ]


def test_a_next_link_to_another_host_is_refused_before_sending() -> None:
    run = Run()
    with pytest.raises(HostNotAllowedError):
        fetch({"type": "link_header"}, link_api(link_for=lambda n: '<https://evil.example/x>; rel="next"'), run=run)
    assert len(run.sends) == 1


def test_a_next_link_back_to_an_earlier_page_is_a_loop() -> None:
    run = Run()
    with pytest.raises(PaginationError, match="pagination loop"):
        fetch({"type": "link_header"}, link_api(link_for=lambda n: f'<{BASE}/items>; rel="next"'), run=run)
    assert len(run.pages) == 1


def test_json_link() -> None:
    def api(send: Send) -> Any:
        page = int(query(send).get("page", "1"))
        links = {"next": f"/v1/items?page={page + 1}" if page < 3 else None}
        return response(200, {"data": ITEMS[(page - 1) * 10 : page * 10], "links": links}, url=send.request.url)

    run = fetch({"type": "json_link", "next_url_path": "$.links.next"}, api)
    assert rows(run) == ITEMS
    assert run.result.stopped_by == "no next link"


def cursor_api(*, has_more_false_at: int | None = None, repeat: bool = False) -> Any:
    def api(send: Send) -> Any:
        cursor = int(query(send).get("after", "0"))
        data = ITEMS[cursor : cursor + 10]
        nxt = cursor + 10 if cursor + 10 < len(ITEMS) else None
        if repeat:
            nxt = 10
        doc: dict[str, Any] = {"data": data, "meta": {"next": None if nxt is None else str(nxt)}}
        if has_more_false_at is not None:
            doc["has_more"] = cursor < has_more_false_at
        return response(200, doc, url=send.request.url)

    return api


def test_cursor_param() -> None:
    run = fetch({"type": "cursor", "cursor_path": "$.meta.next", "cursor_param": "after"}, cursor_api())
    assert rows(run) == ITEMS
    assert [query(s).get("after") for s in run.sends] == [None, "10", "20"]
    assert run.result.stopped_by == "no next cursor"


def test_has_more_false_beside_a_next_cursor_ends_the_fetch() -> None:
    spec = {"type": "cursor", "cursor_path": "$.meta.next", "cursor_param": "after", "has_more_path": "$.has_more"}
    run = fetch(spec, cursor_api(has_more_false_at=10))
    assert len(run.pages) == 2, "page 2 still had a next cursor, but has_more was false"
    assert run.result.stopped_by == "has_more false"


def test_a_repeated_cursor_is_a_loop() -> None:
    with pytest.raises(PaginationError, match="pagination loop"):
        fetch({"type": "cursor", "cursor_path": "$.meta.next", "cursor_param": "after"}, cursor_api(repeat=True))


def test_cursor_paging_of_a_post_body() -> None:
    def api(send: Send) -> Any:
        body = json.loads(send.request.body or b"{}")
        cursor = int(body["params"].get("cursor", "0"))
        nxt = str(cursor + 10) if cursor + 10 < 23 else None
        return response(200, {"data": ITEMS[cursor : cursor + 10], "next": nxt}, url=send.request.url)

    spec = {"type": "cursor", "cursor_path": "$.next", "cursor_body_path": "params.cursor"}
    body = {"params": {"campaign": "spring"}, "data": [{"zip": "20121"}]}
    run = fetch(spec, api, method="POST", body=body)
    assert rows(run) == ITEMS
    bodies = [json.loads(s.request.body or b"") for s in run.sends]
    assert [b["params"] for b in bodies] == [
        {"campaign": "spring"},
        {"campaign": "spring", "cursor": "10"},
        {"campaign": "spring", "cursor": "20"},
    ]
    assert all(b["data"] == [{"zip": "20121"}] for b in bodies)


def test_header_cursor() -> None:
    def api(send: Send) -> Any:
        cursor = int(query(send).get("cursor", "0"))
        headers = {"X-Next-Cursor": str(cursor + 10)} if cursor + 10 < 23 else {}
        return response(200, {"data": ITEMS[cursor : cursor + 10]}, headers=headers, url=send.request.url)

    run = fetch({"type": "header_cursor", "cursor_header": "X-Next-Cursor", "cursor_param": "cursor"}, api)
    assert rows(run) == ITEMS


def offset_api(*, total_on_first_only: bool = False, null_total: bool = False) -> Any:
    def api(send: Send) -> Any:
        q = query(send)
        offset, limit = int(q["offset"]), int(q["limit"])
        doc: dict[str, Any] = {"data": ITEMS[offset : offset + limit]}
        if null_total:
            doc["total"] = None
        elif not total_on_first_only or offset == 0:
            doc["total"] = len(ITEMS)
        return response(200, doc, url=send.request.url)

    return api


def test_offset_with_the_total_sent_only_on_the_first_page() -> None:
    run = fetch({"type": "offset", "limit": 10, "total_path": "$.total"}, offset_api(total_on_first_only=True))
    assert rows(run) == ITEMS
    assert [query(s)["offset"] for s in run.sends] == ["0", "10", "20"]
    assert run.result.stopped_by == "total reached", "a short last page did not end it: the total did"


def test_a_null_total_means_unknown_and_the_empty_page_ends_the_fetch() -> None:
    run = fetch({"type": "offset", "limit": 10, "total_path": "$.total"}, offset_api(null_total=True))
    assert rows(run) == ITEMS
    assert len(run.pages) == 4
    assert run.result.stopped_by == "empty page"


def test_a_short_page_does_not_end_the_fetch() -> None:
    def api(send: Send) -> Any:
        offset = int(query(send)["offset"])
        data = [] if offset >= 30 else ITEMS[:3]  # every page short
        return response(200, {"data": data}, url=send.request.url)

    run = fetch({"type": "offset", "limit": 10}, api)
    assert len(run.pages) == 4
    assert run.result.stopped_by == "empty page"


def test_an_empty_first_page() -> None:
    run = fetch({"type": "link_header"}, lambda send: response(200, {"data": []}, url=send.request.url))
    assert len(run.pages) == 1
    assert run.result.stopped_by == "empty page"


def test_page_number_with_total_pages() -> None:
    def api(send: Send) -> Any:
        q = query(send)
        page, size = int(q["page"]), int(q["per_page"])
        doc = {"data": ITEMS[(page - 1) * size : page * size], "meta": {"pages": 3}}
        return response(200, doc, url=send.request.url)

    spec = {
        "type": "page_number",
        "page_size": 10,
        "page_size_param": "per_page",
        "total_pages_path": "$.meta.pages",
    }
    run = fetch(spec, api)
    assert rows(run) == ITEMS
    assert [query(s)["page"] for s in run.sends] == ["1", "2", "3"]


# Limits ---------------------------------------------------------------------------------------


def test_max_pages_fails_by_default_when_there_is_more() -> None:
    with pytest.raises(PaginationError, match="page limit: 2 pages"):
        fetch({"type": "link_header", "max_pages": 2}, link_api())


def test_max_pages_with_stop_truncates_and_says_so() -> None:
    run = fetch({"type": "link_header", "max_pages": 2, "on_max_pages": "stop"}, link_api())
    assert len(run.pages) == 2
    assert (run.result.stopped_by, run.result.truncated) == ("max_pages", True)


def test_max_pages_exactly_reached_by_the_last_page_is_not_an_error() -> None:
    run = fetch({"type": "link_header", "max_pages": 3}, link_api())
    assert run.result.stopped_by == "no next link"


def test_max_records_stops_the_fetch() -> None:
    run = fetch({"type": "link_header", "max_records": 15}, link_api())
    assert len(run.pages) == 2
    assert (run.result.stopped_by, run.result.truncated) == ("max_records", True)


# One deadline, retries and tokens across pages -------------------------------------------------


def test_a_429_mid_fetch_waits_for_retry_after_under_the_one_deadline() -> None:
    api = link_api()
    calls = itertools.count()

    def limited(send: Send) -> Any:
        if next(calls) == 1:
            return response(429, headers={"Retry-After": "30"}, url=send.request.url)
        return api(send)

    run = fetch({"type": "link_header", "timeout": 100}, limited)
    assert rows(run) == ITEMS
    assert [s.seconds for s in run.sleeps] == [30.0]


def test_the_fetch_deadline_covers_every_page_and_wait() -> None:
    clock = FakeClock()
    run = Run()
    with pytest.raises(DeadlineExceededError):
        fetch({"type": "link_header", "timeout": 10}, link_api(), clock=clock, run=run, send_seconds=4)
    assert len(run.pages) == 2
    assert all(send.timeout <= 10 for send in run.sends)
    assert run.sends[-1].timeout == pytest.approx(2.0), "the third page got only what was left"


def test_a_token_that_expires_mid_fetch_is_refreshed_once() -> None:
    settings = conn(
        login="client", password="client-secret", auth_type="oauth2_client_credentials",
        token_url="https://auth.example.com/token",
    )  # fmt: skip
    api = link_api()

    def expiring(send: Send) -> Any:
        if send.request.headers["Authorization"] == "Bearer t-1" and "page=2" in send.request.url:
            return response(401, url=send.request.url)
        return api(send)

    # The runner's cache answers a page's first token request; only the refresh makes a new one.
    run = fetch({"type": "link_header"}, expiring, settings=settings, tokens=["t-1", "t-1", "t-2", "t-2"])
    assert rows(run) == ITEMS
    assert [(t.stale, t.refresh) for t in run.tokens] == [(None, False), (None, False), ("t-1", True), (None, False)]


def test_concurrent_pages_come_back_in_page_order() -> None:
    spec = {"type": "offset", "limit": 2, "total_path": "$.total", "concurrency": 4}
    run = fetch(spec, offset_api())
    assert rows(run) == ITEMS
    assert run.parallel == [4, 4, 3], "after page 1 gives the total, 11 more pages in windows of 4"
    assert [p.number for p in run.pages] == list(range(1, 13))


def test_rendered_template_strings_are_read_as_numbers_and_booleans() -> None:
    config = parse_pagination({"type": "link_header", "max_pages": "5", "timeout": "30", "stop_on_empty_page": "false"})
    assert (config.max_pages, config.timeout, config.stop_on_empty_page) == (5, 30.0, False)
