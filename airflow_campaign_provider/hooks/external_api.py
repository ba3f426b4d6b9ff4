"""``ExternalApiHook``: call a third-party REST API through the External API activity's guardrails.

The hook is thin: it reads the connection into :mod:`~airflow_campaign_provider.settings`,
builds each call with :mod:`~airflow_campaign_provider.request`, and has its
:mod:`~airflow_campaign_provider.runner` drive the sans-I/O :mod:`~airflow_campaign_provider.flow`
(or a paged fetch) over the sync :mod:`~airflow_campaign_provider.transport`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook

from airflow_campaign_provider.clock import Clock, SystemClock
from airflow_campaign_provider.exceptions import ExternalApiError, HttpStatusError
from airflow_campaign_provider.flow import CallState, call_flow
from airflow_campaign_provider.log_scrubbing import mask_secrets
from airflow_campaign_provider.pagination import PageRequest, Pages, PaginationConfig, paginate_flow, parse_pagination
from airflow_campaign_provider.request import ApiRequest, build_request, resolve_url
from airflow_campaign_provider.response import ApiResponse
from airflow_campaign_provider.runner import SyncRunner, WaitTooLong
from airflow_campaign_provider.settings import CONN_TYPE, DEFAULT_CONN_ID, ConnectionSettings, settings_of

__all__ = ["ApiResponse", "ExternalApiHook", "WaitTooLong"]


class ExternalApiHook(BaseHook):
    """Call a REST API safely: HTTPS only, size limits, one deadline, retries with Retry-After, OAuth2.

    One ``requests.Session`` serves every call of a hook instance, so pages and
    repeated calls reuse the TLS connection. Close it with :meth:`close` or use the
    hook as a context manager. A hook is thread-safe: threads may share one, and the
    OAuth2 token is then fetched once for all of them (and refreshed once after a 401).

    :param conn_id: the ``campaign_external_api`` connection to use.
    :param clock: ``now()`` and ``sleep()`` for the calls (tests pass a fake one); real time by default.
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Campaign External API"

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, *, clock: Clock | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.clock = clock or SystemClock()

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
        mask_secrets(settings.secrets)
        return settings

    @cached_property
    def runner(self) -> SyncRunner:
        """Drives the flows with the sync transport (see :mod:`~airflow_campaign_provider.runner`)."""
        return SyncRunner(self.settings, self.clock, self.log)

    def get_conn(self) -> requests.Session:
        """Return the hook's ``requests.Session``, creating it on first use."""
        return self.runner.transport.session

    def close(self) -> None:
        """Close the session and its pooled connections."""
        if "runner" in self.__dict__:
            self.runner.close()

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
        :param wait_limit: a wait longer than this raises :class:`WaitTooLong` (``state`` keeps the progress).
        :raises RequestFailedError: a guardrail, timeout, transport or HTTP error (see the README).
        """
        request = self.build(method, endpoint, params=params, json=json, headers=headers, retry=retry_non_idempotent)
        self.log.info("Invoking API URL '%s'", request.display_url)
        state = state or CallState.start(self.clock.now(), self.settings.timeout)
        flow = call_flow(request, self.settings, state, self.clock.now, self.runner.rng)
        return self.runner.run(flow, wait_limit=wait_limit)

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
            self.runner.remember(value)
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
        select: Callable[[Any], Sequence[Any]] | None = None,
    ) -> Pages:
        """Fetch every page of a paged endpoint over this hook's one session, one page at a time.

        Iterate the result for :class:`~.pagination.Page` objects (number, response, parsed
        document, selected records); once it is exhausted, its ``summary`` says how many
        pages were fetched and why the fetch stopped. See the README's "Pagination".

        :param pagination: the ``pagination`` dict (or a parsed :class:`~.pagination.PaginationConfig`).
        :param records_path: JSONPath of each page's records; by default the outbound mapping's
            rules (a top-level array, or the document's only array property).
        :param select: picks a page's records from its parsed document, instead of ``records_path``
            (the operator passes its mapping's, so that the fetch counts what it maps).
        :raises PaginationError: a loop, or ``max_pages`` reached with more to fetch.
        :raises RequestFailedError: a page's call failed.
        """
        from airflow_campaign_provider.outbound import compile_outbound

        config = pagination if isinstance(pagination, PaginationConfig) else parse_pagination(pagination)
        if select is None:
            select = compile_outbound(None if records_path is None else {"records": records_path}).records

        def build(page: PageRequest) -> ApiRequest:
            return self.build(method, page.endpoint, params=page.params, json=page.json, headers=headers)

        first = PageRequest(endpoint, params, json)
        flow = paginate_flow(config, first, build, self.settings, self.clock.now, self.runner.rng)
        return Pages(self.runner.drive(flow, quiet=True), select, self.log, config.max_records)
