"""``ExternalApiHook``: call a third-party REST API through the External API activity's guardrails.

The hook is a thin runner. It reads the connection into
:mod:`~airflow_campaign_provider.settings`, builds each call with
:mod:`~airflow_campaign_provider.request`, and drives the sans-I/O
:mod:`~airflow_campaign_provider.flow` with the sync
:mod:`~airflow_campaign_provider.transport`: it sends, sleeps, fetches OAuth2 tokens
(single-flight) and logs, and the flow decides everything else.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any, TypeVar

import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from airflow_campaign_provider.auth import OAuthToken
from airflow_campaign_provider.exceptions import (
    DeadlineExceededError,
    ExternalApiError,
    HttpStatusError,
    TransportError,
)
from airflow_campaign_provider.flow import CallState, GetToken, Send, Sleep, call_flow, token_flow
from airflow_campaign_provider.jobs import PollWait
from airflow_campaign_provider.log_scrubbing import scrubbed_log_records
from airflow_campaign_provider.pagination import (
    MAX_CONCURRENCY,
    Page,
    PageRequest,
    Pages,
    PaginationConfig,
    Parallel,
    paginate_flow,
    parse_pagination,
)
from airflow_campaign_provider.request import ApiRequest, build_request, resolve_url
from airflow_campaign_provider.response import ApiResponse, format_size
from airflow_campaign_provider.settings import CONN_TYPE, DEFAULT_CONN_ID, ConnectionSettings, settings_of
from airflow_campaign_provider.transport import SyncTransport, SystemClock

__all__ = ["ApiResponse", "ExternalApiHook", "WaitTooLong"]

T = TypeVar("T")


class WaitTooLong(Exception):
    """A flow asked to wait longer than the runner's ``wait_limit``; its state is kept for a deferred resume."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"a wait of {seconds:.0f} s")
        self.seconds = seconds


class ExternalApiHook(BaseHook):
    """Call a REST API safely: HTTPS only, size limits, one deadline, retries with Retry-After, OAuth2.

    One ``requests.Session`` serves every call of a hook instance, so pages and
    repeated calls reuse the TLS connection. Close it with :meth:`close` or use the
    hook as a context manager. A hook is thread-safe: threads may share one, and the
    OAuth2 token is then fetched once for all of them (and refreshed once after a 401).

    :param conn_id: the ``campaign_external_api`` connection to use.
    :param clock: the clock the calls run on (tests pass a fake one); real time by default.
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Campaign External API"

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, *, clock: Any = None) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.clock = clock or SystemClock()
        self._transport: SyncTransport | None = None
        self._transport_lock = threading.Lock()
        self._token: OAuthToken | None = None
        self._token_lock = threading.Lock()
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.conn_id!r})"

    def __enter__(self) -> ExternalApiHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection, read once and validated; its secrets are registered with Airflow's masker."""
        settings = settings_of(self.get_connection(self.conn_id))
        for secret in settings.secrets:
            mask_secret(secret)
        return settings

    @cached_property
    def _secrets(self) -> list[str]:
        """Every secret to scrub from text; per-call secrets and fetched tokens are appended as they come."""
        return list(self.settings.secrets)

    @property
    def transport(self) -> SyncTransport:
        """The sync transport, created on first use."""
        with self._transport_lock:
            if self._transport is None:
                self._transport = SyncTransport(self.settings)
            return self._transport

    def get_conn(self) -> requests.Session:
        """Return the hook's ``requests.Session``, creating it on first use."""
        return self.transport.session

    def close(self) -> None:
        """Close the session and its pooled connections."""
        if "_pool" in self.__dict__:
            self.__dict__.pop("_pool").shutdown(wait=False)
        with self._transport_lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def url_for(self, endpoint: str = "", params: Mapping[str, Any] | None = None) -> str:
        """Build the URL for ``endpoint`` and check it against the guardrails (see :func:`~.request.resolve_url`)."""
        return resolve_url(self.settings, endpoint, params)

    def request(
        self,
        method: str,
        endpoint: str = "",
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_non_idempotent: bool = False,
        state: CallState | None = None,
        wait_limit: float | None = None,
    ) -> ApiResponse:
        """Call the API and return the fully read response.

        :param method: HTTP method, e.g. ``GET`` or ``POST``.
        :param endpoint: path relative to the base URL, or an absolute URL on the same host.
        :param params: query parameters.
        :param json: JSON request body (at most 5 MiB serialized).
        :param headers: extra request headers; names must be RFC 9110 tokens, values free of CR/LF.
        :param retry_non_idempotent: also retry POST and PATCH after the request may have been sent.
        :param state: where the call stands, to resume one (attempt count and deadline); a new call by default.
        :param wait_limit: see :meth:`run`.
        :raises RequestFailedError: a guardrail, timeout, transport or HTTP error (see the README).
        :raises WaitTooLong: a wait longer than ``wait_limit``; ``state`` holds the call's progress.
        """
        request = self.build(method, endpoint, params=params, json=json, headers=headers, retry=retry_non_idempotent)
        self.log.info("Invoking API URL '%s'", request.display_url)
        state = state or CallState.start(self.clock.now(), self.settings.timeout)
        return self.run(call_flow(request, self.settings, state, self.clock.now, self._rng), wait_limit=wait_limit)

    def get_json(self, endpoint: str = "", **kwargs: Any) -> Any:
        """GET ``endpoint`` and return its parsed JSON; keyword arguments go to :meth:`request`."""
        return self.request("GET", endpoint, **kwargs).json()

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection from the UI's Test button: fetch a token if configured, then GET the base URL.

        Success means the server answered over verified TLS and did not reject the
        credentials. The message gives the status and latency, never a secret.
        """
        try:
            started = self.clock.now()
            response = self.request("GET")
            latency = (self.clock.now() - started) * 1000
            return True, f"Connected to {response.display_url}: HTTP {response.status_code} in {latency:.0f} ms"
        except HttpStatusError as err:
            if err.status in (401, 403):
                return False, f"The API rejected the credentials: HTTP {err.status} from {err.url}"
            if err.status is not None and err.status < 500:
                return True, f"Reached {err.url} (credentials not rejected): HTTP {err.status} on the base URL"
            return False, str(err)
        except ExternalApiError as err:
            return False, str(err)
        finally:
            self.close()

    def build(
        self,
        method: str,
        endpoint: str = "",
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = False,
    ) -> ApiRequest:
        """Build a checked request on this connection; its secrets are scrubbed and masked from then on."""
        request = build_request(
            self.settings, method, endpoint, params=params, json=json, headers=headers, retry_non_idempotent=retry
        )
        for value in request.secrets:
            self._remember_secret(value)
        return request

    def paginate(
        self,
        method: str,
        endpoint: str = "",
        *,
        pagination: Mapping[str, Any] | PaginationConfig,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        records_path: str | None = None,
    ) -> Pages:
        """Fetch every page of a paged endpoint over this hook's one session, one page at a time.

        Iterate the result for :class:`~.pagination.Page` objects (number, response, parsed
        document, selected records); once it is exhausted, its ``summary`` says how many
        pages were fetched and why the fetch stopped. See the README's "Pagination".

        :param pagination: the ``pagination`` dict (or a parsed :class:`~.pagination.PaginationConfig`).
        :param records_path: JSONPath of each page's records; by default the outbound mapping's
            rules (a top-level array, or the document's only array property).
        :raises PaginationError: a loop, or ``max_pages`` reached with more to fetch.
        :raises RequestFailedError: a page's call failed.
        """
        from airflow_campaign_provider.mapping_result import SINGLE_TABLE
        from airflow_campaign_provider.outbound import compile_outbound

        config = pagination if isinstance(pagination, PaginationConfig) else parse_pagination(pagination)
        table = compile_outbound(None if records_path is None else {"records": records_path}).tables[SINGLE_TABLE]

        def select(document: Any) -> list[Any]:
            return table.select(document)[0]

        def build(page: PageRequest) -> ApiRequest:
            return self.build(method, page.endpoint, params=page.params, json=page.json, headers=headers)

        flow = paginate_flow(
            config, PageRequest(endpoint, params, json), build, self.settings, self.clock.now, self._rng
        )
        return Pages(self._drive(flow, quiet=True), select, self.log)

    def run(self, flow: Generator[Any, Any, T], *, quiet: bool = False, wait_limit: float | None = None) -> T:
        """Drive a flow to its end with the sync transport: send, sleep and fetch tokens as it asks.

        :param wait_limit: longest wait to sleep through; a longer one raises :class:`WaitTooLong`
            before sleeping, with the flow's state as it is, so that a deferrable task can defer.
        """
        steps = self._drive(flow, quiet=quiet, wait_limit=wait_limit)
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        raise TypeError("a flow that yields pages runs with paginate()")

    def _drive(
        self, flow: Generator[Any, Any, T], *, quiet: bool = False, wait_limit: float | None = None
    ) -> Generator[Page, int, T]:
        """Carry out every action of ``flow`` but pages, which go up to the caller (who sends back a record count)."""
        action = next(flow)
        while True:
            reply: Any = None
            if isinstance(action, (Sleep, PollWait)) and wait_limit is not None and action.seconds > wait_limit:
                raise WaitTooLong(action.seconds)
            if isinstance(action, Page):
                reply = yield action
            elif isinstance(action, Send):
                reply = self._send(action, quiet)
            elif isinstance(action, PollWait):
                self.log.info("Job status %r: polling again in %.0f s", action.status, action.seconds)
                self.clock.sleep(action.seconds)
            elif isinstance(action, Sleep):
                self.log.info(
                    "Retrying API URL '%s' due to %s in %d ms, attempt %d/%d",
                    action.display_url,
                    action.reason,
                    action.seconds * 1000,
                    action.attempt,
                    action.attempts,
                )
                self.clock.sleep(action.seconds)
            elif isinstance(action, Parallel):
                reply = list(self._pool.map(lambda page_flow: self.run(page_flow, quiet=quiet), action.flows))
            else:
                reply = self._token_for(action)
            try:
                action = flow.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    @cached_property
    def _pool(self) -> ThreadPoolExecutor:
        """Threads for concurrent pages; the session's connection pool has room for each."""
        return ThreadPoolExecutor(max_workers=MAX_CONCURRENCY, thread_name_prefix="external-api-page")

    def _send(self, action: Send, quiet: bool = False) -> ApiResponse | TransportError:
        try:
            with scrubbed_log_records((*self._secrets, *action.request.secrets)):
                response = self.transport.send(action.request, action.timeout, action.budget)
        except TransportError as err:
            return err  # the flow decides whether to retry
        # Token fetches log their own line; pages log at DEBUG (a line costs about 1 ms of a page's time).
        if action.request.authenticate:
            self.log.log(
                logging.DEBUG if quiet else logging.INFO,
                "Transferred %s in %d ms (HTTP %d)",
                format_size(len(response.content)),
                response.elapsed_ms,
                response.status_code,
            )
        return response

    def _token_for(self, action: GetToken) -> str:
        """A fresh token other than ``action.stale``: one fetch at a time, shared by every thread of this hook."""
        if not self._token_lock.acquire(timeout=max(0.0, action.deadline - self.clock.now())):
            raise DeadlineExceededError("timeout: the deadline passed while another call fetched the OAuth2 token")
        try:
            token = self._token
            if token is not None and token.value != action.stale and token.is_fresh(self.clock.now()):
                return token.value
            token, response = self.run(token_flow(self.settings, action.deadline, self.clock.now, self._rng))
            self._remember_secret(token.value)
            self._token = token
        finally:
            self._token_lock.release()
        if action.refresh:
            self.log.info("OAuth2 token refreshed after HTTP - 401")
        else:
            self.log.info("OAuth2 token fetched (HTTP %d in %d ms)", response.status_code, response.elapsed_ms)
        return token.value

    def _remember_secret(self, value: str) -> None:
        """Scrub ``value`` from every message this hook writes, and mask it in Airflow's logs."""
        if value not in self._secrets:
            mask_secret(value)
            self._secrets.append(value)
