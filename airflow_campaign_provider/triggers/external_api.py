"""``ExternalApiTrigger``: poll an async job's status in the triggerer, with the worker's flow and guardrails.

The trigger runs :func:`~airflow_campaign_provider.jobs.poll_flow`, the same sans-I/O
flow the worker runs, with the async transport: HTTPS only, pinned addresses, the size
cap, retries with ``Retry-After``, OAuth2, one deadline (``job.timeout``). It sends the
API nothing but GET requests (the job was created on the worker); its one other request
is the OAuth2 token request, which changes nothing. Its kwargs hold no secret (it
reads the connection itself) and its events are a few small JSON fields: the result is
fetched and mapped on the worker once the task resumes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Generator
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_campaign_provider.async_transport import AsyncTransport
from airflow_campaign_provider.auth import OAuthToken
from airflow_campaign_provider.exceptions import ExternalApiError, TransportError, error_payload
from airflow_campaign_provider.flow import GetToken, Send, Sleep, token_flow
from airflow_campaign_provider.jobs import JobState, PollWait, parse_job, poll_flow
from airflow_campaign_provider.log_scrubbing import mask_secrets, remember_secret, scrubbed_log_records
from airflow_campaign_provider.request import build_request
from airflow_campaign_provider.response import ApiResponse
from airflow_campaign_provider.settings import ConnectionSettings, settings_of

T = TypeVar("T")


class AsyncRunner:
    """Drive a flow with the async transport: the async twin of the hook's runner (send, sleep, tokens)."""

    def __init__(self, settings: ConnectionSettings, transport: AsyncTransport, log: Any) -> None:
        self.settings = settings
        self.transport = transport
        self.log = log
        self.secrets = list(settings.secrets)
        self._token: OAuthToken | None = None
        self._token_lock = asyncio.Lock()
        self._rng = random.Random()

    async def run(self, flow: Generator[Any, Any, T]) -> T:
        action = next(flow)
        while True:
            reply: Any = None
            if isinstance(action, Send):
                reply = await self._send(action)
            elif isinstance(action, (Sleep, PollWait)):
                self.log.info("%s", action.describe())
                await asyncio.sleep(action.seconds)
            elif isinstance(action, GetToken):
                reply = await self._token_for(action)
            else:
                raise TypeError(f"the trigger cannot run a {type(action).__name__}")
            try:
                action = flow.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def _send(self, action: Send) -> ApiResponse | TransportError:
        if action.request.method != "GET" and action.request.authenticate:
            # Only the OAuth2 token request, which changes nothing, may be a POST: a job is never created here.
            raise TypeError("the trigger sends the API nothing but GET requests")
        try:
            with scrubbed_log_records((*self.secrets, *action.request.secrets)):
                return await self.transport.send(action.request, action.timeout, action.budget)
        except TransportError as err:
            return err

    async def _token_for(self, action: GetToken) -> str:
        async with self._token_lock:
            cached = self._token
            if cached is not None and cached.value != action.stale and cached.is_fresh(time.time()):
                return cached.value
            token, _ = await self.run(token_flow(self.settings, action.deadline, time.time, self._rng))
            remember_secret(self.secrets, token.value)
            self._token = token
            self.log.info("OAuth2 token %s", "refreshed after HTTP - 401" if action.refresh else "fetched")
            return token.value


class ExternalApiTrigger(BaseTrigger):
    """Poll a job's status URL until it is done or failed, then fire one small event.

    :param conn_id: the ``campaign_external_api`` connection; the trigger reads it itself.
    :param status_url: the job's status URL (checked to carry no secret before deferring).
    :param job: the operator's ``job`` argument (plain data).
    :param state: the :class:`~airflow_campaign_provider.jobs.JobState` (its deadline survives a restart).
    """

    def __init__(self, *, conn_id: str, status_url: str, job: dict[str, Any], state: dict[str, Any]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.conn_id = conn_id
        self.status_url = status_url
        self.job = job
        self.state = state

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"conn_id": self.conn_id, "status_url": self.status_url, "job": self.job, "state": self.state},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        state = JobState.from_dict(self.state)
        try:
            settings = await self._settings()
            config = parse_job(self.job)
            status = build_request(settings, "GET", self.status_url)
            self.log.info("Polling job status at '%s' every %g s", status.display_url, config.poll_interval)
            async with AsyncTransport(settings) as transport:
                await AsyncRunner(settings, transport, self.log).run(
                    poll_flow(config, status, state, settings, time.time, random.Random())
                )
        except ExternalApiError as err:
            self.log.error("Job polling ended with %s: %s", type(err).__name__, err)
            yield _event({"status": "error", "error": error_payload(err), "job": state.to_dict()})
            return
        self.log.info("Job done (status %r after %d polls); resuming the task", state.last_status, state.polls)
        # The status URL rides in the event: dag.test() resumes with the event alone, without the defer kwargs.
        yield _event({"status": "done", "job": state.to_dict(), "status_url": self.status_url})

    async def _settings(self) -> ConnectionSettings:
        from airflow.providers.common.compat.connection import get_async_connection

        settings = settings_of(await get_async_connection(self.conn_id))
        mask_secrets(settings.secrets)
        return settings


class WaitTrigger(BaseTrigger):
    """Spend a long wait of the worker's call (a ``Retry-After: 120``, say) in the triggerer.

    :param until: when to fire, in epoch seconds.
    :param call_state: the call's :class:`~airflow_campaign_provider.flow.CallState`, handed back in the event.
    """

    def __init__(self, *, until: float, call_state: dict[str, Any]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.until = until
        self.call_state = call_state

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "until": self.until,
            "call_state": self.call_state,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(max(0.0, self.until - time.time()))
        yield _event({"status": "waited", "call_state": self.call_state})


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]
