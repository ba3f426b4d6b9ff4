"""One call's policy as a sans-I/O flow: the one deadline, retries, backoff, Retry-After, status rules, OAuth2.

A flow is a generator. It yields what it needs done and is sent what happened:

* ``Send(request, timeout)``: send the request; the runner sends back an
  :class:`~airflow_campaign_provider.response.ApiResponse`, or the retryable
  :class:`~airflow_campaign_provider.exceptions.TransportError` it caught.
* ``Sleep(seconds)``: wait before the next attempt; the runner sends back None.
* ``GetToken(stale)``: an OAuth2 access token other than ``stale``; the runner sends back
  the token, fetching one with :func:`token_flow` if its cache has none.

The flow returns the final response or raises the typed error. It never touches a
socket or a clock of its own: ``now`` (seconds since the epoch) is passed in, so a
unit test drives it with a script and a fake clock, the hook with ``requests`` and
the trigger with an async client. Its progress lives in a :class:`CallState` of plain
data, so a deferred task can carry it to the triggerer and back (httpx's
``Auth.auth_flow`` and h11 are the models).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from airflow_campaign_provider.auth import OAuthToken, auth_headers, parse_token_response, token_request
from airflow_campaign_provider.exceptions import (
    DeadlineExceededError,
    ExternalApiError,
    HttpStatusError,
    RedirectNotFollowedError,
    TokenError,
    TransportError,
)
from airflow_campaign_provider.redaction import excerpt, redact_url
from airflow_campaign_provider.request import ApiRequest
from airflow_campaign_provider.response import ApiResponse
from airflow_campaign_provider.retry import RetryPolicy, parse_retry_after
from airflow_campaign_provider.settings import ConnectionSettings

Now = Callable[[], float]
"""Seconds since the epoch (``time.time`` in production): deadlines must mean the same in another process."""


T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    """Send ``request`` and read its whole response within ``timeout`` seconds (the call's ``budget`` in all)."""

    request: ApiRequest
    timeout: float
    budget: float


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before attempt ``attempt`` of ``attempts``, because of ``reason``."""

    seconds: float
    reason: str
    attempt: int
    attempts: int
    display_url: str

    def describe(self) -> str:
        """The activity's log line for this wait."""
        return (
            f"Retrying API URL '{self.display_url}' due to {self.reason} in {self.seconds * 1000:.0f} ms, "
            f"attempt {self.attempt}/{self.attempts}"
        )


@dataclass(frozen=True)
class GetToken:
    """Provide an OAuth2 access token other than ``stale`` (the one the API just refused), before ``deadline``."""

    stale: str | None = field(repr=False)
    deadline: float
    refresh: bool


Action = Send | Sleep | GetToken
Flow = Generator[Action, Any, T]


@dataclass
class CallState:
    """Where one call stands: plain data that survives serialization (see :meth:`to_dict`).

    :ivar deadline: when the call must be over, on the runner's clock (epoch seconds).
    :ivar timeout: the call's whole budget in seconds, for messages.
    :ivar retries_done: retries spent so far.
    :ivar refreshed: the one token refresh after a 401 is spent.
    """

    deadline: float
    timeout: float
    retries_done: int = 0
    refreshed: bool = False

    @classmethod
    def start(cls, now: float, timeout: float, *, deadline: float | None = None) -> CallState:
        """A new call of ``timeout`` seconds from ``now``, never past an outer ``deadline`` (of a paged fetch)."""
        if deadline is not None and deadline < now + timeout:
            return cls(deadline=deadline, timeout=max(0.0, deadline - now))
        return cls(deadline=now + timeout, timeout=timeout)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallState:
        """The inverse of :meth:`to_dict`."""
        return cls(
            deadline=float(data["deadline"]),
            timeout=float(data["timeout"]),
            retries_done=int(data["retries_done"]),
            refreshed=bool(data["refreshed"]),
        )


@dataclass(frozen=True)
class _Failure:
    """A failed attempt the retry policy may retry."""

    reason: str
    error: ExternalApiError
    sent: bool
    retry_after: float | None = None


def call_flow(
    request: ApiRequest,
    settings: ConnectionSettings,
    state: CallState,
    now: Now,
    rng: random.Random,
    *,
    accept: frozenset[int] = frozenset(),
) -> Flow[ApiResponse]:
    """Run one call, from its first attempt to its final response; see the module docstring.

    Retried: transport failures (unless the request may have been processed and is not
    safe to repeat) and the connection's ``retry_statuses``, after ``Retry-After`` or an
    exponential backoff with jitter, never past the deadline. A 3xx is never followed.
    With OAuth2, a 401 refreshes the token once, outside the retry budget. Statuses in
    ``accept`` are returned as they are (a job poll treats a 429 as a longer wait).

    :raises RequestFailedError: the typed error of the failure that ended the call.
    """
    policy = RetryPolicy(settings.max_retries, settings.retry_statuses)
    oauth = request.authenticate and settings.auth.type == "oauth2_client_credentials"
    token: str | None = None
    while True:
        if oauth and token is None:
            token = yield GetToken(stale=None, deadline=state.deadline, refresh=False)
        remaining = state.deadline - now()
        if remaining <= 0:
            raise DeadlineExceededError(f"timeout: the {state.timeout:g} s deadline passed", url=request.display_url)
        sent = request.with_headers(auth_headers(settings.auth, token)) if request.authenticate else request
        secrets = (*request.secrets, *([token] if token else []))
        outcome = yield Send(sent, timeout=remaining, budget=state.timeout)
        if isinstance(outcome, TransportError):
            if not outcome.retryable:
                raise outcome
            failure = _Failure(outcome.kind, outcome, sent=outcome.sent)
        else:
            response: ApiResponse = outcome
            status = response.status_code
            if 300 <= status < 400:
                location = redact_url(response.headers.get("Location", "(none)"), secrets)
                raise RedirectNotFollowedError(
                    f"redirects not followed: HTTP {status} to Location '{location}'",
                    url=request.display_url,
                    status=status,
                )
            if status < 200:
                raise TransportError(
                    f"transport: HTTP {status} is not a final response", url=request.display_url, retryable=False
                )
            if status in accept:
                return response
            if status == 401 and oauth and not state.refreshed:
                state.refreshed = True
                token = yield GetToken(stale=token, deadline=state.deadline, refresh=True)
                continue
            if status not in policy.retry_statuses:
                if status >= 400:
                    raise status_error(response, secrets)
                return response
            when = datetime.fromtimestamp(now(), timezone.utc)
            failure = _Failure(
                f"HTTP - {status}",
                status_error(response, secrets),
                sent=True,
                retry_after=parse_retry_after(response.headers.get("Retry-After"), when),
            )
        yield from _wait_before_retry(failure, request, policy, state, now, rng)


def _wait_before_retry(
    failure: _Failure,
    request: ApiRequest,
    policy: RetryPolicy,
    state: CallState,
    now: Now,
    rng: random.Random,
) -> Flow[None]:
    """Spend one retry and wait for it, or raise the failure's error when no retry is allowed."""
    if not policy.may_retry(state.retries_done, request_sent=failure.sent, repeatable=request.repeatable):
        raise failure.error
    state.retries_done += 1
    wait = failure.retry_after if failure.retry_after is not None else policy.backoff(state.retries_done, rng)
    remaining = state.deadline - now()
    if wait >= remaining:
        asked = "Retry-After asks" if failure.retry_after is not None else "the backoff needs"
        raise DeadlineExceededError(
            f"timeout: {failure.reason}; {asked} a wait of {wait:.1f} s but only "
            f"{max(remaining, 0):.1f} s of the {state.timeout:g} s timeout are left",
            url=request.display_url,
            status=failure.error.status,
        )
    yield Sleep(wait, failure.reason, state.retries_done + 1, policy.max_retries + 1, request.display_url)


def status_error(response: ApiResponse, secrets: tuple[str, ...]) -> HttpStatusError:
    """The error for an error status, with a short excerpt of the body, scrubbed of secrets."""
    detail = excerpt(response.content, secrets) or "(empty body)"
    return HttpStatusError(
        f"HTTP - {response.status_code}: {detail}", url=response.display_url, status=response.status_code
    )


def token_flow(
    settings: ConnectionSettings, deadline: float, now: Now, rng: random.Random
) -> Flow[tuple[OAuthToken, ApiResponse]]:
    """Fetch an OAuth2 client-credentials token under the same guardrails, retries and deadline as the call.

    Returns the token and the token endpoint's response (for the log line; its body holds the token).

    :raises TokenError: the endpoint refused the client or answered no usable token.
    """
    request = token_request(settings)
    state = CallState(deadline=deadline, timeout=settings.timeout)
    try:
        response = yield from call_flow(request, settings, state, now, rng)
    except HttpStatusError as err:
        raise TokenError(
            f"OAuth2 token: the token endpoint answered {err.message}", url=request.display_url, status=err.status
        ) from None
    return parse_token_response(response.json(), now()), response
