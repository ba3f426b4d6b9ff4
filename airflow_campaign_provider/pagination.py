"""Pagination for every common API style, as a sans-I/O flow over the call flow. Pure.

One small class per strategy (dlt's paginators are the model): it makes the
first page's request, reads what it needs from each page, and makes the next
request or says why the fetch is over. :func:`paginate_flow` loops send → page →
update under one deadline and the stop rules, with a loop guard and a page limit
that are never silently exceeded.

A strategy's state is plain data; the whole configuration is validated at DAG
parse time by :func:`parse_pagination`, with errors that name the key.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urljoin

from airflow_campaign_provider.exceptions import MappingConfigError, PaginationError
from airflow_campaign_provider.json_paths import read_compiled, singular_path
from airflow_campaign_provider.options import as_bool, as_int, as_seconds

if TYPE_CHECKING:  # the flow itself is imported when a fetch runs, not when a DAG file is parsed
    from airflow_campaign_provider.flow import Action, Flow, Now
    from airflow_campaign_provider.request import ApiRequest
    from airflow_campaign_provider.response import ApiResponse
    from airflow_campaign_provider.settings import ConnectionSettings

DEFAULT_MAX_PAGES = 100
MAX_MAX_PAGES = 10_000
DEFAULT_TIMEOUT = 600.0
MAX_TIMEOUT = 3600.0
MAX_CONCURRENCY = 8

PaginationType = Literal["link_header", "json_link", "cursor", "header_cursor", "offset", "page_number"]

_COMMON_KEYS = frozenset(
    {"type", "stop_on_empty_page", "max_pages", "on_max_pages", "max_records", "concurrency", "timeout"}
)
_TYPE_KEYS: dict[str, frozenset[str]] = {
    "link_header": frozenset(),
    "json_link": frozenset({"next_url_path"}),
    "cursor": frozenset({"cursor_path", "cursor_param", "cursor_body_path", "has_more_path"}),
    "header_cursor": frozenset({"cursor_header", "cursor_param"}),
    "offset": frozenset({"limit", "offset_param", "limit_param", "start", "total_path", "has_more_path"}),
    "page_number": frozenset(
        {"page_param", "start", "page_size", "page_size_param", "total_pages_path", "total_path", "has_more_path"}
    ),
}


# Configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaginationConfig:
    """A validated ``pagination`` argument (see the README's "Pagination" for every key)."""

    type: PaginationType
    options: Mapping[str, Any] = field(default_factory=dict)
    stop_on_empty_page: bool = True
    max_pages: int = DEFAULT_MAX_PAGES
    on_max_pages: Literal["fail", "stop"] = "fail"
    max_records: int | None = None
    concurrency: int = 1
    timeout: float = DEFAULT_TIMEOUT


def parse_pagination(spec: Any) -> PaginationConfig:
    """Validate a ``pagination`` dict into a :class:`PaginationConfig`; every error names its key.

    :raises MappingConfigError: an unknown key or type, a missing strategy key, a value of the
        wrong type or out of range, or a configuration that could never stop on its own.
    """
    if not isinstance(spec, Mapping):
        raise MappingConfigError("pagination", f"expected an object with a 'type', got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in _TYPE_KEYS:
        raise MappingConfigError("pagination.type", f"{kind!r} is not one of {', '.join(_TYPE_KEYS)}")
    unknown = sorted(set(spec) - _COMMON_KEYS - _TYPE_KEYS[kind])
    if unknown:
        allowed = sorted(_COMMON_KEYS | _TYPE_KEYS[kind])
        raise MappingConfigError(f"pagination.{unknown[0]}", f"not a key of {kind!r} pagination; allowed: {allowed}")
    config = PaginationConfig(
        type=kind,
        options={key: spec[key] for key in _TYPE_KEYS[kind] if spec.get(key) is not None},
        stop_on_empty_page=_bool(spec, "stop_on_empty_page", True),
        max_pages=_int(spec, "max_pages", DEFAULT_MAX_PAGES, 1, MAX_MAX_PAGES),
        on_max_pages=_choice(spec, "on_max_pages", ("fail", "stop"), "fail"),
        max_records=_int(spec, "max_records", None, 1, None),
        concurrency=_int(spec, "concurrency", 1, 1, MAX_CONCURRENCY),
        timeout=_seconds(spec, "timeout", DEFAULT_TIMEOUT, MAX_TIMEOUT),
    )
    paginator_for(config, PageRequest(""))  # the strategy checks its own keys
    if config.concurrency > 1 and not (
        config.type in ("offset", "page_number")
        and any(key in config.options for key in ("total_path", "total_pages_path"))
    ):
        raise MappingConfigError(
            "pagination.concurrency",
            "above 1 only for offset or page_number pagination with a total_path or total_pages_path: "
            "concurrent pages need the page count up front",
        )
    return config


def _bool(spec: Mapping[str, Any], key: str, default: bool) -> bool:
    return as_bool(spec.get(key, default), f"pagination.{key}")


def _int(spec: Mapping[str, Any], key: str, default: int | None, low: int, high: int | None) -> Any:
    value = spec.get(key, default)
    return None if value is None else as_int(value, f"pagination.{key}", low, high)


def _seconds(spec: Mapping[str, Any], key: str, default: float, high: float) -> float:
    return as_seconds(spec.get(key, default), f"pagination.{key}", high)


def _choice(spec: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> Any:
    value = spec.get(key, default)
    if value not in choices:
        raise MappingConfigError(f"pagination.{key}", f"{value!r} is not one of {', '.join(choices)}")
    return value


def _singular_path(options: Mapping[str, Any], key: str) -> Any:
    """A compiled singular JSONPath (one value per page: a link, a cursor, a total)."""
    return singular_path(options[key], f"pagination.{key}")


def _name(options: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = options.get(key, default)
    if not isinstance(value, str) or not value:
        raise MappingConfigError(f"pagination.{key}", "expected a non-empty name")
    return value


# One small class per strategy ----------------------------------------------------------------


@dataclass(frozen=True)
class PageRequest:
    """What to ask for one page: an endpoint (or an absolute next link), query parameters and a JSON body."""

    endpoint: str
    params: Mapping[str, Any] | None = None
    json: Any = None


@dataclass(frozen=True)
class PageView:
    """What a strategy may read of a page: its URL, headers and parsed document."""

    url: str
    headers: Mapping[str, str]
    document: Any


class Paginator:
    """Base of the strategies: ``update`` reads a page, ``next_request`` says what comes next (or None).

    ``stop_reason`` is set when a page ends the fetch for a strategy-specific reason.
    """

    no_next: ClassVar[str] = "no next page"

    def __init__(self, config: PaginationConfig, first: PageRequest) -> None:
        self.config = config
        self.options = config.options
        self.first = first
        self.stop_reason: str | None = None
        self.has_more = _singular_path(self.options, "has_more_path") if "has_more_path" in self.options else None

    def first_request(self) -> PageRequest:
        return self.first

    def update(self, page: PageView) -> None:
        if self.has_more is not None and read_compiled(self.has_more, page.document) is False:
            self.stop_reason = "has_more false"

    def next_request(self) -> PageRequest | None:
        raise NotImplementedError

    def remaining_requests(self) -> list[PageRequest] | None:
        """Every page still to fetch when the count is known (offset and page numbers with a total), else None."""
        return None


class LinkHeaderPaginator(Paginator):
    """RFC 8288 ``Link: <…>; rel="next"``; a relative link resolves against the page's URL."""

    no_next = "no next link"

    def __init__(self, config: PaginationConfig, first: PageRequest) -> None:
        super().__init__(config, first)
        self._next: str | None = None

    def update(self, page: PageView) -> None:
        super().update(page)
        link = next_link(page.headers.get("Link", ""))
        self._next = urljoin(page.url, link) if link else None

    def next_request(self) -> PageRequest | None:
        return PageRequest(self._next) if self._next else None


class JsonLinkPaginator(LinkHeaderPaginator):
    """The next page's URL at ``next_url_path`` in the document."""

    def __init__(self, config: PaginationConfig, first: PageRequest) -> None:
        super().__init__(config, first)
        self.path = _singular_path(self.options, "next_url_path")

    def update(self, page: PageView) -> None:
        Paginator.update(self, page)
        link = read_compiled(self.path, page.document)
        if link is not None and not isinstance(link, str):
            raise PaginationError(f"pagination: next_url_path gave a {type(link).__name__}, not a URL", url=page.url)
        self._next = urljoin(page.url, link) if link else None


class CursorPaginator(Paginator):
    """A cursor from the document (``cursor_path``), sent as a query parameter or inside the JSON body."""

    no_next = "no next cursor"

    def __init__(self, config: PaginationConfig, first: PageRequest) -> None:
        super().__init__(config, first)
        self._cursor: str | None = None
        self._read_cursor = self._cursor_reader()
        self.param: str | None = self.options.get("cursor_param")
        self.body_path: str | None = self.options.get("cursor_body_path")
        if (self.param is None) == (self.body_path is None):
            raise MappingConfigError("pagination.cursor_param", "give exactly one of cursor_param or cursor_body_path")
        if self.param is not None:
            _name(self.options, "cursor_param")
        elif not isinstance(self.body_path, str) or not all(self.body_path.split(".")):
            raise MappingConfigError("pagination.cursor_body_path", "expected a dotted path such as 'params.cursor'")

    def _cursor_reader(self) -> Callable[[PageView], Any]:
        path = _singular_path(self.options, "cursor_path")
        return lambda page: read_compiled(path, page.document)

    def update(self, page: PageView) -> None:
        super().update(page)
        cursor = self._read_cursor(page)
        if isinstance(cursor, bool) or not isinstance(cursor, (str, int, type(None))):
            raise PaginationError(f"pagination: the cursor is a {type(cursor).__name__}", url=page.url)
        self._cursor = None if cursor in (None, "") else str(cursor)

    def next_request(self) -> PageRequest | None:
        if self._cursor is None:
            return None
        if self.param is not None:
            return replace(self.first, params={**(self.first.params or {}), self.param: self._cursor})
        assert self.body_path is not None
        return replace(self.first, json=with_value_at(self.first.json, self.body_path, self._cursor))


class HeaderCursorPaginator(CursorPaginator):
    """A cursor from a response header (``cursor_header``), sent as ``cursor_param``."""

    no_next = "no next cursor header"

    def _cursor_reader(self) -> Callable[[PageView], Any]:
        header = _name(self.options, "cursor_header")
        return lambda page: page.headers.get(header)


class _CountingPaginator(Paginator):
    """Offsets and page numbers: the position is a counter, so it can neither repeat nor loop."""

    def __init__(self, config: PaginationConfig, first: PageRequest) -> None:
        super().__init__(config, first)
        self.total_path = _singular_path(self.options, "total_path") if "total_path" in self.options else None
        self.total: int | None = None
        self.fetched = 0
        # total_pages_path is a total too; only page_number accepts that key.
        has_total = self.total_path is not None or "total_pages_path" in self.options
        if not (has_total or self.has_more is not None or config.stop_on_empty_page):
            raise MappingConfigError(
                "pagination", f"{config.type} pagination needs a stop condition: a total, has_more_path or "
                "stop_on_empty_page"
            )  # fmt: skip

    def _remember_total(self, path: Any, document: Any, key: str, url: str) -> int | None:
        value = read_compiled(path, document)
        if value is None:
            return None  # unknown, not an error: maybe a later page says
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PaginationError(f"pagination: {key} gave {value!r}, not a count", url=url)
        return value

    def update(self, page: PageView) -> None:
        super().update(page)
        self.fetched += 1
        if self.total is None and self.total_path is not None:
            self.total = self._remember_total(self.total_path, page.document, "total_path", page.url)

    def _with(self, params: Mapping[str, Any]) -> PageRequest:
        return replace(self.first, params={**(self.first.params or {}), **params})


class OffsetPaginator(_CountingPaginator):
    """``offset_param``/``limit_param`` query parameters, ``limit`` records a page, from ``start``."""

    no_next = "total reached"

    def __init__(self, config: PaginationConfig, first: PageRequest) -> None:
        super().__init__(config, first)
        self.limit = _int(self.options, "limit", None, 1, None)
        if self.limit is None:
            raise MappingConfigError("pagination.limit", "required: the number of records a page holds")
        self.start = _int(self.options, "start", 0, 0, None)
        self.offset_param = _name(self.options, "offset_param", "offset")
        self.limit_param = _name(self.options, "limit_param", "limit")

    def _request(self, index: int) -> PageRequest:
        return self._with({self.offset_param: self.start + index * self.limit, self.limit_param: self.limit})

    def first_request(self) -> PageRequest:
        return self._request(0)

    def next_request(self) -> PageRequest | None:
        if self.total is not None and self.fetched * self.limit >= self.total:
            return None
        return self._request(self.fetched)

    def remaining_requests(self) -> list[PageRequest] | None:
        if self.total is None:
            return None
        return [self._request(i) for i in range(self.fetched, math.ceil(self.total / self.limit))]


class PageNumberPaginator(_CountingPaginator):
    """``page_param`` from ``start``, with ``page_size`` sent as ``page_size_param`` when both are set."""

    no_next = "total reached"

    def __init__(self, config: PaginationConfig, first: PageRequest) -> None:
        super().__init__(config, first)
        self.pages_path = (
            _singular_path(self.options, "total_pages_path") if "total_pages_path" in self.options else None
        )
        self.total_pages: int | None = None
        self.start = _int(self.options, "start", 1, 0, None)
        self.page_param = _name(self.options, "page_param", "page")
        self.page_size = _int(self.options, "page_size", None, 1, None)
        if "page_size_param" in self.options:
            _name(self.options, "page_size_param")
            if self.page_size is None:
                raise MappingConfigError("pagination.page_size", "required with page_size_param")
        if self.total_path is not None and self.page_size is None:
            raise MappingConfigError("pagination.page_size", "required with total_path, to count the pages")

    def update(self, page: PageView) -> None:
        super().update(page)
        if self.total_pages is None and self.pages_path is not None:
            self.total_pages = self._remember_total(self.pages_path, page.document, "total_pages_path", page.url)
        if self.total_pages is None and self.total is not None and self.page_size:
            self.total_pages = math.ceil(self.total / self.page_size)

    def _request(self, index: int) -> PageRequest:
        params: dict[str, Any] = {self.page_param: self.start + index}
        if "page_size_param" in self.options:
            params[self.options["page_size_param"]] = self.page_size
        return self._with(params)

    def first_request(self) -> PageRequest:
        return self._request(0)

    def next_request(self) -> PageRequest | None:
        if self.total_pages is not None and self.fetched >= self.total_pages:
            return None
        return self._request(self.fetched)

    def remaining_requests(self) -> list[PageRequest] | None:
        if self.total_pages is None:
            return None
        return [self._request(i) for i in range(self.fetched, self.total_pages)]


_PAGINATORS: dict[str, type[Paginator]] = {
    "link_header": LinkHeaderPaginator,
    "json_link": JsonLinkPaginator,
    "cursor": CursorPaginator,
    "header_cursor": HeaderCursorPaginator,
    "offset": OffsetPaginator,
    "page_number": PageNumberPaginator,
}


def paginator_for(config: PaginationConfig, first: PageRequest) -> Paginator:
    """A fresh strategy object for one fetch."""
    try:
        return _PAGINATORS[config.type](config, first)
    except KeyError as err:  # a key a strategy requires
        raise MappingConfigError(f"pagination.{err.args[0]}", f"required for {config.type!r} pagination") from None


def next_link(header: str) -> str | None:
    """The target of the ``rel="next"`` link in an RFC 8288 ``Link`` header, if any."""
    for link in _split_links(header):
        target, _, params = link.partition(">")
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').lower().split():
                return target.strip().lstrip("<").strip()
    return None


def _split_links(header: str) -> list[str]:
    """Split a Link header on the commas between links, not those inside ``<…>`` or quotes."""
    links: list[str] = []
    current: list[str] = []
    in_url = in_quotes = False
    for char in header:
        if char == "<" and not in_quotes:
            in_url = True
        elif char == ">" and not in_quotes:
            in_url = False
        elif char == '"' and not in_url:
            in_quotes = not in_quotes
        elif char == "," and not (in_url or in_quotes):
            links.append("".join(current))
            current = []
            continue
        current.append(char)
    links.append("".join(current))
    return [link.strip() for link in links if link.strip().startswith("<")]


def with_value_at(body: Any, dotted: str, value: Any) -> dict[str, Any]:
    """A copy of the JSON object ``body`` with ``value`` at ``dotted`` (``params.cursor``), creating objects."""
    if body is not None and not isinstance(body, Mapping):
        raise MappingConfigError("pagination.cursor_body_path", "the request body must be a JSON object")
    copy: dict[str, Any] = dict(body or {})
    node = copy
    *parents, last = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if child is not None and not isinstance(child, Mapping):
            raise MappingConfigError("pagination.cursor_body_path", f"{key!r} in the body is not an object")
        node[key] = dict(child or {})
        node = node[key]
    node[last] = value
    return copy


# The paged fetch ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One fetched page: its number (from 1), response, parsed document and selected records.

    The flow hands pages to the runner without records; the runner selects them and
    sends back how many there are. ``document`` is None for a response not parsed yet.
    """

    number: int
    response: ApiResponse
    document: Any
    records: Sequence[Any] = field(default=(), repr=False)


@dataclass(frozen=True)
class Parallel:
    """Run these call flows at once (each page's own retries and token handling) and send back their responses."""

    flows: list[Flow[ApiResponse]]


@dataclass(frozen=True)
class FetchSummary:
    """How a paged fetch ended."""

    pages: int
    records: int
    stopped_by: str
    truncated: bool


if TYPE_CHECKING:
    PagedFlow = Generator[Action | Page | Parallel, Any, FetchSummary]


def paginate_flow(
    config: PaginationConfig,
    first: PageRequest,
    build: Callable[[PageRequest], ApiRequest],
    settings: ConnectionSettings,
    now: Now,
    rng: random.Random,
) -> PagedFlow:
    """Fetch every page under one deadline (``config.timeout``), each page also within the connection's timeout.

    Yields the call flow's actions, :class:`Parallel` batches and a :class:`Page` per page,
    in page order; the runner answers a ``Page`` with its record count. Returns a
    :class:`FetchSummary`.

    :raises PaginationError: a loop (a next link, cursor or page seen before), or ``max_pages``
        reached with more to fetch under ``on_max_pages: "fail"``.
    :raises RequestFailedError: any page's call failed.
    """
    from airflow_campaign_provider.flow import CallState, call_flow

    deadline = now() + config.timeout
    paginator = paginator_for(config, first)
    seen: set[str] = set()
    pages = records = 0
    pending: list[PageRequest] = [paginator.first_request()]
    while True:
        batch = [_checked(request, build, seen) for request in pending]
        calls = [
            call_flow(request, settings, CallState.start(now(), settings.timeout, deadline=deadline), now, rng)
            for request in batch
        ]
        responses = [(yield from calls[0])] if len(calls) == 1 else (yield Parallel(calls))
        for request, response in zip(batch, responses, strict=True):
            document = response.json()
            pages += 1
            count = yield Page(pages, response, document)
            records += count
            paginator.update(PageView(request.url, response.headers, document))
            stop = _stop_reason(config, paginator, records, count)
            if stop is not None:
                return FetchSummary(pages, records, stop, truncated=stop == "max_records")
        pending = _next_batch(config, paginator)
        if not pending:
            return FetchSummary(pages, records, paginator.no_next, truncated=False)
        if pages >= config.max_pages:
            if config.on_max_pages == "stop":
                return FetchSummary(pages, records, "max_pages", truncated=True)
            raise PaginationError(
                f"page limit: {pages:,} pages fetched and the API has more; raise pagination.max_pages "
                f"(at most {MAX_MAX_PAGES:,}) or set on_max_pages to 'stop'",
                url=batch[-1].display_url,
            )
        pending = pending[: config.max_pages - pages]


def _stop_reason(config: PaginationConfig, paginator: Paginator, records: int, count: int) -> str | None:
    if config.max_records is not None and records >= config.max_records:
        return "max_records"
    if paginator.stop_reason is not None:
        return paginator.stop_reason
    if count == 0 and config.stop_on_empty_page:
        return "empty page"
    return None


def _next_batch(config: PaginationConfig, paginator: Paginator) -> list[PageRequest]:
    """The next page, or with ``concurrency`` above 1 and a known count, up to that many pages at once."""
    if config.concurrency > 1:
        remaining = paginator.remaining_requests()
        if remaining is not None:
            return remaining[: config.concurrency]
    request = paginator.next_request()
    return [] if request is None else [request]


def _checked(request: PageRequest, build: Callable[[PageRequest], ApiRequest], seen: set[str]) -> ApiRequest:
    """Build a page's request under every guardrail, refusing one this fetch has already made."""
    api_request = build(request)
    key = f"{api_request.url} {api_request.body!r}"
    if key in seen:
        raise PaginationError(
            f"pagination loop: the API pointed back at a page already fetched ({api_request.display_url})",
            url=api_request.display_url,
        )
    seen.add(key)
    return api_request


class Pages(Iterator[Page]):
    """The pages of one fetch, in order, with their records; ``summary`` is set once the last one is read.

    :param steps: the runner's drive of :func:`paginate_flow`, which yields the pages.
    :param select: picks a page's records from its document.
    :param log: where the first URL and the closing line go.
    :param max_records: the fetch's ``max_records``: the page that reaches it holds only the records up to it.
    """

    def __init__(
        self,
        steps: Generator[Page, int, FetchSummary],
        select: Callable[[Any], Sequence[Any]],
        log: Any,
        max_records: int | None = None,
    ) -> None:
        self._steps = steps
        self._select = select
        self._log = log
        self._left = max_records
        self._last: Page | None = None
        self.summary: FetchSummary | None = None

    def __next__(self) -> Page:
        if self.summary is not None:
            raise StopIteration
        try:
            page = next(self._steps) if self._last is None else self._steps.send(len(self._last.records))
        except StopIteration as done:
            self.summary = summary = done.value
            self._log.info(
                "Fetched %d pages, %s records (stopped by: %s%s)",
                summary.pages,
                f"{summary.records:,}",
                summary.stopped_by,
                ", truncated" if summary.truncated else "",
            )
            raise StopIteration from None
        if page.number == 1:
            self._log.info("Invoking API URL '%s' (paged)", page.response.display_url)
        records = self._select(page.document)
        if self._left is not None:
            records = records[: self._left]
            self._left -= len(records)
        self._last = replace(page, records=records)
        return self._last
