"""Drive a sans-I/O flow with a fake clock and scripted outcomes: no sockets, no sleeping."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_campaign_provider.exceptions import DeadlineExceededError
from airflow_campaign_provider.flow import GetToken, Send, Sleep
from airflow_campaign_provider.jobs import PollWait
from airflow_campaign_provider.pagination import Page, Parallel
from airflow_campaign_provider.response import ApiResponse, Headers

START = 1_800_000_000.0  # 2027-01-15, an epoch time with nothing special about it


class FakeClock:
    """Epoch seconds that move only when the flow sleeps or a scripted send takes time."""

    def __init__(self, start: float = START) -> None:
        self.time = start

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.time += seconds


def response(
    status: int = 200,
    document: Any = None,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    url: str = "https://api.example.com/v1/x",
) -> ApiResponse:
    content = body if body is not None else json.dumps({"ok": True} if document is None else document).encode()
    return ApiResponse(
        status_code=status,
        headers=Headers({"Content-Type": "application/json", **(headers or {})}.items()),
        url=url,
        content=content,
        display_url=url,
        elapsed_ms=1.0,
    )


Outcome = ApiResponse | Exception | Callable[[Send], Any]


@dataclass
class Run:
    """What a flow asked for, in order, and what it returned."""

    sends: list[Send] = field(default_factory=list)
    sleeps: list[Sleep] = field(default_factory=list)
    tokens: list[GetToken] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)
    polls: list[PollWait] = field(default_factory=list)
    parallel: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    result: Any = None


def drive(
    flow: Generator[Any, Any, Any],
    clock: FakeClock,
    outcomes: Iterable[Outcome],
    *,
    tokens: Iterable[str] = (),
    send_seconds: float = 0.0,
    run: Run | None = None,
    count: Callable[[Any], int] = len,
) -> Run:
    """Run ``flow`` to its end; each send takes ``send_seconds`` on the fake clock and gets the next outcome.

    An outcome that is a callable gets the ``Send`` and returns the reply. A ``Page`` is
    answered with ``count(document)``; a ``Parallel`` batch runs its flows one by one.
    The flow's exception propagates; ``run`` (when given) still holds what happened before it.
    """
    run = run if run is not None else Run()
    outcomes = iter(outcomes)
    tokens = iter(tokens)
    action = next(flow)
    while True:
        reply: Any
        if isinstance(action, Send):
            run.sends.append(action)
            run.events.append(f"send {action.request.method} {action.request.url}")
            if send_seconds > action.timeout:
                clock.sleep(action.timeout)  # the transport's watchdog ends the attempt at the deadline
                raise DeadlineExceededError(f"timeout: no complete response within the {action.budget:g} s deadline")
            clock.sleep(send_seconds)
            outcome = next(outcomes)
            reply = outcome(action) if callable(outcome) else outcome
        elif isinstance(action, Page):
            run.pages.append(action)
            run.events.append(f"page {action.number}")
            reply = count(action.document)
        elif isinstance(action, Parallel):
            run.parallel.append(len(action.flows))
            reply = []
            for sub in action.flows:
                sub_run = drive(sub, clock, outcomes, tokens=tokens, send_seconds=send_seconds)
                run.sends.extend(sub_run.sends)
                run.sleeps.extend(sub_run.sleeps)
                reply.append(sub_run.result)
        elif isinstance(action, PollWait):
            run.polls.append(action)
            run.events.append(f"poll wait {action.seconds:g}")
            clock.sleep(action.seconds)
            reply = None
        elif isinstance(action, Sleep):
            run.sleeps.append(action)
            run.events.append(f"sleep {action.seconds:g}")
            clock.sleep(action.seconds)
            reply = None
        else:
            run.tokens.append(action)
            run.events.append("token")
            reply = next(tokens)
        try:
            action = flow.send(reply)
        except StopIteration as done:
            run.result = done.value
            return run
