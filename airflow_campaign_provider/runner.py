"""The sync runner: drives the sans-I/O flows with the sync transport, for the hook.

It sends, sleeps, fetches OAuth2 tokens (one fetch at a time for every thread of a
hook), runs concurrent pages in threads and logs; the flows decide everything else.
The trigger's :class:`~airflow_campaign_provider.triggers.external_api.AsyncRunner` is
its async twin.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from airflow_campaign_provider.auth import OAuthToken
from airflow_campaign_provider.clock import Clock
from airflow_campaign_provider.exceptions import DeadlineExceededError, TransportError
from airflow_campaign_provider.flow import GetToken, Send, Sleep, token_flow
from airflow_campaign_provider.jobs import PollWait
from airflow_campaign_provider.log_scrubbing import remember_secret, scrubbed_log_records
from airflow_campaign_provider.pagination import MAX_CONCURRENCY, Page, Parallel
from airflow_campaign_provider.response import ApiResponse, format_size
from airflow_campaign_provider.settings import ConnectionSettings
from airflow_campaign_provider.transport import SyncTransport

T = TypeVar("T")


class WaitTooLong(Exception):
    """A flow asked to wait longer than the runner's ``wait_limit``; its state is kept for a deferred resume."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"a wait of {seconds:.0f} s")
        self.seconds = seconds


class SyncRunner:
    """Run flows over one sync transport; thread-safe, so threads may share it (and its token).

    :param settings: the connection.
    :param clock: ``now()`` (epoch seconds) and ``sleep(seconds)``.
    :param log: where the activity's log lines go.
    """

    def __init__(self, settings: ConnectionSettings, clock: Clock, log: Any) -> None:
        self.settings = settings
        self.clock = clock
        self.log = log
        self.rng = random.Random()
        self.secrets = list(settings.secrets)
        self._transport: SyncTransport | None = None
        self._transport_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._token: OAuthToken | None = None
        self._token_lock = threading.Lock()

    @property
    def transport(self) -> SyncTransport:
        """The sync transport, created on first use."""
        with self._transport_lock:
            if self._transport is None:
                self._transport = SyncTransport(self.settings)
            return self._transport

    def close(self) -> None:
        """Close the transport's connections and the page threads; the token stays cached."""
        with self._transport_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def remember(self, secret: str) -> None:
        """Scrub ``secret`` from everything written from now on, and mask it in Airflow's logs."""
        remember_secret(self.secrets, secret)

    def run(self, flow: Generator[Any, Any, T], *, quiet: bool = False, wait_limit: float | None = None) -> T:
        """Drive a flow to its end: send, sleep and fetch tokens as it asks.

        :param quiet: log each transfer at DEBUG (pages: a log line costs about as much as a page).
        :param wait_limit: longest wait to sleep through; a longer one raises :class:`WaitTooLong`
            before sleeping, with the flow's state as it is, so that a deferrable task can defer.
        """
        steps = self.drive(flow, quiet=quiet, wait_limit=wait_limit)
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        raise TypeError("a flow that yields pages runs with ExternalApiHook.paginate()")

    def drive(
        self, flow: Generator[Any, Any, T], *, quiet: bool = False, wait_limit: float | None = None
    ) -> Generator[Page, int, T]:
        """Carry out every action of ``flow`` but pages, which go up to the caller (who sends back a record count)."""
        action = next(flow)
        while True:
            reply: Any = None
            if isinstance(action, (Sleep, PollWait)):
                if wait_limit is not None and action.seconds > wait_limit:
                    raise WaitTooLong(action.seconds)
                self.log.info("%s", action.describe())
                self.clock.sleep(action.seconds)
            elif isinstance(action, Page):
                reply = yield action
            elif isinstance(action, Send):
                reply = self._send(action, quiet)
            elif isinstance(action, Parallel):
                reply = list(self._threads().map(lambda page: self.run(page, quiet=quiet), action.flows))
            else:
                reply = self._token_for(action)
            try:
                action = flow.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _threads(self) -> ThreadPoolExecutor:
        with self._transport_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=MAX_CONCURRENCY, thread_name_prefix="external-api-page")
            return self._pool

    def _send(self, action: Send, quiet: bool) -> ApiResponse | TransportError:
        try:
            with scrubbed_log_records((*self.secrets, *action.request.secrets)):
                response = self.transport.send(action.request, action.timeout, action.budget)
        except TransportError as err:
            return err  # the flow decides whether to retry
        if action.request.authenticate:  # a token fetch logs its own line
            self.log.log(
                logging.DEBUG if quiet else logging.INFO,
                "Transferred %s in %d ms (HTTP %d)",
                format_size(len(response.content)),
                response.elapsed_ms,
                response.status_code,
            )
        return response

    def _token_for(self, action: GetToken) -> str:
        """A fresh token other than ``action.stale``: one fetch at a time, shared by every thread."""
        if not self._token_lock.acquire(timeout=max(0.0, action.deadline - self.clock.now())):
            raise DeadlineExceededError("timeout: the deadline passed while another call fetched the OAuth2 token")
        try:
            token = self._token
            if token is not None and token.value != action.stale and token.is_fresh(self.clock.now()):
                return token.value
            token, response = self.run(token_flow(self.settings, action.deadline, self.clock.now, self.rng))
            self.remember(token.value)
            self._token = token
        finally:
            self._token_lock.release()
        if action.refresh:
            self.log.info("OAuth2 token refreshed after HTTP - 401")
        else:
            self.log.info("OAuth2 token fetched (HTTP %d in %d ms)", response.status_code, response.elapsed_ms)
        return token.value
