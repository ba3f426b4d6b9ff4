"""Async jobs: create with one request, poll a status URL until done or failed, then fetch the result. Pure.

The ``job`` argument is validated at DAG parse time (:func:`parse_job`). :func:`poll_flow`
is a sans-I/O flow over the call flow: it polls, reads the status, and either returns,
raises :class:`~airflow_campaign_provider.exceptions.JobFailedError`, or asks for a
:class:`PollWait` (the poll interval, or a longer ``Retry-After``). The worker runs it
with the sync hook and sleeps; the deferrable trigger runs the same flow and awaits.
Its progress is a :class:`JobState` of plain data, so a restarted triggerer resumes it.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from airflow_campaign_provider.exceptions import DeadlineExceededError, JobFailedError, MappingConfigError
from airflow_campaign_provider.guardrails import check_headers
from airflow_campaign_provider.json_paths import read_path, singular_path
from airflow_campaign_provider.options import as_seconds
from airflow_campaign_provider.redaction import excerpt
from airflow_campaign_provider.retry import parse_retry_after

if TYPE_CHECKING:  # the flow itself is imported when a job runs, not when a DAG file is parsed
    from airflow_campaign_provider.flow import Action, Now
    from airflow_campaign_provider.request import ApiRequest
    from airflow_campaign_provider.response import ApiResponse
    from airflow_campaign_provider.settings import ConnectionSettings

DEFAULTS: dict[str, Any] = {
    "status_url": "header:Location",
    "status_path": "$.status",
    "done": ["done", "succeeded"],
    "failed": ["failed", "error", "cancelled"],
    "result_url": None,
    "poll_interval": 10,
    "timeout": 3600,
}
MAX_JOB_TIMEOUT = 7 * 24 * 3600.0
MIN_POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class JobConfig:
    """A validated ``job`` argument; see the README's "Deferrable mode and async jobs"."""

    status_url: str
    status_path: str
    done: tuple[str, ...]
    failed: tuple[str, ...]
    result_url: str | None
    poll_interval: float
    timeout: float

    def to_dict(self) -> dict[str, Any]:
        """The plain form, for trigger kwargs."""
        return {**asdict(self), "done": list(self.done), "failed": list(self.failed)}


def parse_job(spec: Any) -> JobConfig:
    """Validate a ``job`` dict (defaults filled in); every error names its key, e.g. ``job.status_path``."""
    if not isinstance(spec, Mapping):
        raise MappingConfigError("job", f"expected an object, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(DEFAULTS))
    if unknown:
        raise MappingConfigError(f"job.{unknown[0]}", f"unknown key; the keys are {', '.join(DEFAULTS)}")
    values = {**DEFAULTS, **{key: value for key, value in spec.items() if value is not None}}
    status_url = values["status_url"]
    if not isinstance(status_url, str) or not (status_url.startswith("header:") or status_url.startswith("$")):
        raise MappingConfigError("job.status_url", "expected 'header:<Name>' or a JSONPath such as '$.links.status'")
    if status_url.startswith("header:"):
        try:
            check_headers({status_url.removeprefix("header:").strip(): ""})
        except Exception:
            raise MappingConfigError("job.status_url", f"{status_url!r} does not name a valid header") from None
    else:
        singular_path(status_url, "job.status_url")
    singular_path(values["status_path"], "job.status_path")
    if values["result_url"] is not None:
        singular_path(values["result_url"], "job.result_url")
    done, failed = _statuses(values["done"], "job.done"), _statuses(values["failed"], "job.failed")
    if not done:
        raise MappingConfigError("job.done", "at least one status value must mean done")
    both = sorted(set(done) & set(failed))
    if both:
        raise MappingConfigError("job.failed", f"{both} are in both done and failed")
    timeout = as_seconds(values["timeout"], "job.timeout", MAX_JOB_TIMEOUT)
    interval = as_seconds(values["poll_interval"], "job.poll_interval", timeout)
    if interval < MIN_POLL_INTERVAL:
        raise MappingConfigError("job.poll_interval", f"at least {MIN_POLL_INTERVAL} s")
    return JobConfig(status_url, values["status_path"], done, failed, values["result_url"], interval, timeout)


def _statuses(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise MappingConfigError(key, "expected a list of status values (strings)")
    return tuple(value)


def status_url_of(config: JobConfig, created: ApiResponse, document: Any) -> str | None:
    """The status URL from the create response (a header or a JSONPath), resolved against its URL."""
    if config.status_url.startswith("header:"):
        link = created.headers.get(config.status_url.removeprefix("header:").strip())
    else:
        link = read_path(config.status_url, document)
    if not isinstance(link, str) or not link:
        return None
    return urljoin(created.url, link)


def result_url_of(config: JobConfig, status: ApiResponse, document: Any) -> str | None:
    """The result URL in the final status document, resolved against the status URL (None: no ``result_url``)."""
    if config.result_url is None:
        return None
    link = read_path(config.result_url, document)
    if not isinstance(link, str) or not link:
        raise JobFailedError(
            f"job: the final status document has no result URL at {config.result_url!r}", url=status.display_url
        )
    return urljoin(status.url, link)


@dataclass
class JobState:
    """Where polling stands: plain data, so a restarted triggerer resumes it.

    :ivar deadline: when the job must have its result (epoch seconds): created + ``job.timeout``.
    :ivar polls: status requests made so far.
    :ivar last_status: the last status value seen.
    """

    deadline: float
    polls: int = 0
    last_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobState:
        last = data.get("last_status")
        return cls(deadline=float(data["deadline"]), polls=int(data["polls"]), last_status=last and str(last))


@dataclass(frozen=True)
class PollWait:
    """Wait ``seconds`` before the next status request (``status`` is the job's status now)."""

    seconds: float
    status: str | None

    def describe(self) -> str:
        """The log line for this wait."""
        return f"Job status {self.status!r}: polling again in {self.seconds:.0f} s"


@dataclass(frozen=True)
class JobDone:
    """The job ended well: its final status response and parsed document."""

    response: ApiResponse
    document: Any


if TYPE_CHECKING:
    PollFlow = Generator[Action | PollWait, Any, JobDone]


def poll_flow(
    config: JobConfig,
    status: ApiRequest,
    state: JobState,
    settings: ConnectionSettings,
    now: Now,
    rng: random.Random,
) -> PollFlow:
    """Poll ``status`` (a GET) until the job's status is done or failed, or ``job.timeout`` passes.

    Each poll is one call (its own retries, within the connection's timeout). A retried
    status (429, 503 …) on a poll is no error: its ``Retry-After`` becomes the wait.

    :raises JobFailedError: the status is one of ``job.failed``; the message has a short, scrubbed excerpt.
    :raises DeadlineExceededError: ``job.timeout`` passed first.
    """
    from airflow_campaign_provider.flow import CallState, call_flow

    while True:
        call = CallState.start(now(), settings.timeout, deadline=state.deadline)
        response = yield from call_flow(status, settings, call, now, rng, accept=settings.retry_statuses)
        state.polls += 1
        when = datetime.fromtimestamp(now(), timezone.utc)
        wait = max(config.poll_interval, parse_retry_after(response.headers.get("Retry-After"), when) or 0.0)
        if response.status_code < 300:
            document = response.json()
            value = read_path(config.status_path, document)
            state.last_status = None if value is None else str(value)
            if state.last_status in config.done:
                return JobDone(response, document)
            if state.last_status in config.failed:
                detail = excerpt(response.content, status.secrets)
                raise JobFailedError(
                    f"job failed: status {state.last_status!r} after {state.polls} polls: {detail}",
                    url=status.display_url,
                    status=response.status_code,
                )
        if now() + wait >= state.deadline:  # no time left for another poll after the wait
            raise DeadlineExceededError(
                f"timeout: the job did not finish within job.timeout={config.timeout:g} s "
                f"(last status {state.last_status!r} after {state.polls} polls)",
                url=status.display_url,
            )
        yield PollWait(wait, state.last_status)


def idempotency_key(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """An opaque ``Idempotency-Key``: the same on every try of one task instance, different on any other."""
    import hashlib

    digest = hashlib.sha256("\x1f".join((dag_id, run_id, task_id, str(map_index))).encode()).hexdigest()
    return f"airflow-{digest[:40]}"
