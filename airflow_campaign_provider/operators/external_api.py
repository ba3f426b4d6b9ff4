"""``ExternalApiOperator``: Adobe Campaign's External API activity as an Airflow operator.

Thin Airflow glue over the pure core: :mod:`~airflow_campaign_provider.inbound`
builds the body, the hook calls the API, :mod:`~airflow_campaign_provider.response_schema`
validates and :mod:`~airflow_campaign_provider.outbound` maps the response into rows.

The DAG processor constructs operators constantly, so this module imports
neither ``requests`` nor ``jsonschema``; the hook, the JSON Schema validator and
the JSONPath library are imported when a task runs (JSONPath also when a mapping
is checked at parse time).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.bases.branch import BranchMixIn
from airflow.sdk.configuration import conf

from airflow_campaign_provider.exceptions import (
    ExternalApiError,
    JobFailedError,
    MappingConfigError,
    RequestFailedError,
    ResponseMappingError,
    error_from_payload,
)
from airflow_campaign_provider.failure_alerts import check_alerts, send_alerts
from airflow_campaign_provider.guardrails import check_headers
from airflow_campaign_provider.inbound import build_request_body, validate_inbound
from airflow_campaign_provider.jobs import idempotency_key, parse_job
from airflow_campaign_provider.links import ExternalApiLink
from airflow_campaign_provider.outbound import compile_outbound, has_template, validate_outbound
from airflow_campaign_provider.pagination import Page, parse_pagination
from airflow_campaign_provider.redaction import secret_values
from airflow_campaign_provider.response_schema import (
    build_validator,
    check_schema_argument,
    load_schema,
    validate_response,
)
from airflow_campaign_provider.retry import IDEMPOTENCY_KEY_HEADER
from airflow_campaign_provider.settings import DEFAULT_CONN_ID

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from airflow_campaign_provider.hooks.external_api import ExternalApiHook
    from airflow_campaign_provider.jobs import JobConfig
    from airflow_campaign_provider.outbound import MappingResult, OutboundPlan
    from airflow_campaign_provider.pagination import FetchSummary, PaginationConfig
    from airflow_campaign_provider.response import ApiResponse

METHODS = ("GET", "POST", "PUT", "PATCH")
DEFAULT_XCOM_MAX_BYTES = 1024 * 1024
DEFER_LONGER_THAN = 30.0
"""With ``deferrable``, a wait longer than this is spent deferred rather than asleep on a worker."""
DEFER_GRACE = 60.0
"""Seconds a deferred job poll may outlive ``job.timeout`` before Airflow times the deferral out."""


@dataclass(frozen=True)
class _PreparedCall:
    """What :meth:`ExternalApiOperator._prepare` checked and built; plain, so a resumed task can rebuild it."""

    plan: OutboundPlan
    validator: Any
    branches: list[str]
    body: Any
    headers: dict[str, str]
    pagination: PaginationConfig | None
    job: JobConfig | None
    started: float


@dataclass(frozen=True)
class _Resume:
    """Where a resumed task picks up: a call's state after a long wait, or a job polled to its end."""

    call_state: dict[str, Any] | None = None
    status_url: str | None = None
    job_state: dict[str, Any] | None = None


class ExternalApiOperator(BaseOperator, BranchMixIn):
    """Call a third-party REST API safely and map its JSON response into typed rows in XCom.

    The return value is the list of row dicts (or ``{"path", "rows"}`` with ``output_path``);
    XCom key ``summary`` says what was called and how it went. See the README's
    "Using the operator" for the mappings.

    :param conn_id: ``campaign_external_api`` connection id. (templated)
    :param endpoint: path relative to the connection's base URL, or an absolute URL on the
        same host. (templated)
    :param method: ``GET`` (default), ``POST``, ``PUT`` or ``PATCH``; ``inbound`` implies ``POST``.
    :param query_params: query parameters. (templated)
    :param headers: extra request headers; values of authorization, cookie, API-key and
        token/secret/key/password headers are masked in logs and the UI. (templated)
    :param body: JSON request body; native types survive templating. (templated)
    :param inbound: the activity's inbound mapping: ``{"rows", "columns", "params", "add_count"}``;
        ``rows`` may be an XComArg, which also sets the task dependency. (templated)
    :param outbound: the activity's outbound mapping: ``{"records", "flatten", "columns"}``. (templated)
    :param response_schema: JSON Schema dict, or path of a ``.json`` file (relative to the DAG
        file's folder); the response is validated before mapping.
    :param failure_branch: task id(s) to follow when the request fails; every other direct
        downstream task is skipped. On success, the failure branch is skipped instead.
    :param on_failure_branch: Airflow notifier(s) (``BaseNotifier``, such as ``SmtpNotifier``) or
        callable(s) ``(context, error)`` called when the failure branch is taken, so an outage
        never stays silently green.
    :param xcom_max_bytes: largest serialized rows allowed in XCom without ``output_path``.
    :param output_path: ``ObjectStoragePath`` URI (``file://``, ``s3://`` ...); rows are written
        there as JSON Lines, page by page, and XCom gets ``{"path": ..., "rows": n}``. (templated)
    :param pagination: fetch every page of a paged endpoint: ``{"type": "link_header"}``, ``json_link``,
        ``cursor``, ``header_cursor``, ``offset`` or ``page_number`` with their keys, and the stop
        rules and limits (see the README's "Pagination"). (templated)
    :param job: the request creates an async job: poll its status URL until done, then fetch its
        result (``status_url``, ``status_path``, ``done``, ``failed``, ``result_url``, ``poll_interval``,
        ``timeout``; see the README's "Deferrable mode and async jobs"). (templated)
    :param deferrable: wait in the triggerer instead of on a worker: job polls, and any wait longer
        than 30 s (a long ``Retry-After``). Defaults to ``[operators] default_deferrable``.
    :param idempotency_key: send ``Idempotency-Key`` with POST and PATCH, the same on every try of the
        task instance; the request may then be retried even after it was sent.
    """

    template_fields: Sequence[str] = (
        "conn_id",
        "endpoint",
        "query_params",
        "headers",
        "body",
        "inbound",
        "outbound",
        "output_path",
        "pagination",
        "job",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "pagination": "json",
        "job": "json",
        "body": "json",
        "query_params": "json",
        "headers": "json",
        "inbound": "json",
        "outbound": "json",
    }
    ui_color = "#fde6d2"
    ui_fgcolor = "#5a2d0c"
    operator_extra_links = (ExternalApiLink(),)
    inherits_from_skipmixin = True

    def __init__(
        self,
        *,
        conn_id: str = DEFAULT_CONN_ID,
        endpoint: str = "",
        method: str | None = None,
        query_params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        inbound: Mapping[str, Any] | None = None,
        outbound: Mapping[str, Any] | None = None,
        response_schema: Mapping[str, Any] | str | None = None,
        failure_branch: str | Sequence[str] | None = None,
        on_failure_branch: Any = None,
        xcom_max_bytes: int = DEFAULT_XCOM_MAX_BYTES,
        output_path: str | None = None,
        pagination: Mapping[str, Any] | None = None,
        job: Mapping[str, Any] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        idempotency_key: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.endpoint = endpoint
        self.method = self._check_method(method, inbound, body)
        self.query_params = query_params
        self.headers = headers
        self.body = body
        self.inbound = inbound
        self.outbound = outbound
        self.response_schema = response_schema
        self.failure_branch = failure_branch
        self.on_failure_branch = on_failure_branch
        self.xcom_max_bytes = xcom_max_bytes
        self.output_path = output_path
        self.pagination = pagination
        self.job = job
        self.deferrable = deferrable
        self.idempotency_key = idempotency_key
        self.called_url: str | None = None
        self._job_summary: dict[str, Any] = {}
        self._hook: ExternalApiHook | None = None
        self._check_arguments()

    @staticmethod
    def _check_method(method: str | None, inbound: Any, body: Any) -> str:
        chosen = (method or ("POST" if inbound is not None else "GET")).upper()
        if chosen not in METHODS:
            raise MappingConfigError("method", f"{method!r} is not one of {', '.join(METHODS)}")
        if inbound is not None and body is not None:
            raise MappingConfigError("body", "give either body or inbound, not both: inbound builds the body")
        if chosen == "GET" and (inbound is not None or body is not None):
            raise MappingConfigError("method", "a GET request carries no body; use POST, PUT or PATCH")
        return chosen

    def _check_arguments(self) -> None:
        """Parse-time checks: cheap, pure, and with a clear error naming the argument."""
        if not isinstance(self.endpoint, str):
            raise MappingConfigError("endpoint", "expected a path or an absolute URL string")
        if self.inbound is not None:
            validate_inbound(self.inbound)
        validate_outbound(self.outbound)
        check_schema_argument(self.response_schema, self._dag_folder())
        check_alerts(self.on_failure_branch)
        if self.pagination is not None and not has_template(self.pagination):
            _check_paged_mapping(parse_pagination(self.pagination), self.outbound)
        if self.job is not None and not has_template(self.job):
            parse_job(self.job)
        for name in ("deferrable", "idempotency_key"):
            if not isinstance(getattr(self, name), bool):
                raise MappingConfigError(name, "expected true or false")
        if self.headers is not None:
            if not isinstance(self.headers, Mapping):
                raise MappingConfigError("headers", "expected an object of header names and values")
            try:
                check_headers(self.headers)
            except ExternalApiError as err:
                raise MappingConfigError("headers", err.message) from None
        if self.query_params is not None and not isinstance(self.query_params, (Mapping, str)):
            raise MappingConfigError("query_params", "expected an object of query parameters")
        branches = self._failure_branches()
        if self.task_id in branches:
            raise MappingConfigError("failure_branch", "a task cannot be its own failure branch")
        if isinstance(self.xcom_max_bytes, bool) or not isinstance(self.xcom_max_bytes, int) or self.xcom_max_bytes < 1:
            raise MappingConfigError("xcom_max_bytes", "expected a positive number of bytes")

    def _failure_branches(self) -> list[str]:
        branch = self.failure_branch
        if branch is None:
            return []
        branches = [branch] if isinstance(branch, str) else list(branch)
        if not branches or not all(isinstance(b, str) and b for b in branches):
            raise MappingConfigError("failure_branch", "expected a task id or a list of task ids")
        return branches

    def _get_hook(self) -> ExternalApiHook:
        from airflow_campaign_provider.hooks.external_api import ExternalApiHook

        if self._hook is None:
            self._hook = ExternalApiHook(self.conn_id)
        return self._hook

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render, then register secret header and query values with the masker before Airflow stores them."""
        super().render_template_fields(context, jinja_env)
        from airflow_campaign_provider.log_scrubbing import mask_secrets

        api_key_header: list[str] = []
        # A broken connection fails the task in execute, with its own clear error.
        with contextlib.suppress(ExternalApiError):
            api_key_header.append(self._get_hook().settings.auth.api_key_header)
        params = self.query_params if isinstance(self.query_params, Mapping) else None
        headers = self.headers if isinstance(self.headers, Mapping) else None
        endpoint = self.endpoint if isinstance(self.endpoint, str) else None
        mask_secrets(secret_values(headers, params, endpoint, api_key_header))

    def execute(self, context: Context) -> Any:
        return self._run(context, _Resume())

    def execute_resume(self, context: Context, event: dict[str, Any]) -> Any:
        """Go on after a long wait spent deferred: the call resumes with its attempt count and deadline."""
        return self._run(context, _Resume(call_state=event["call_state"]))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Go on after the trigger polled the job to its end: fetch and map the result, or fail."""
        if event.get("status") != "done":
            err = error_from_payload(event.get("error") or {})
            if not isinstance(err, RequestFailedError):
                raise err
            return self._request_failed(context, err, self._failure_branches())
        return self._run(context, _Resume(status_url=event["status_url"], job_state=event["job"]))

    def _run(self, context: Context, resume: _Resume) -> Any:
        call = self._prepare(context)
        hook = self._get_hook()
        try:
            with hook:
                pages = self._fetch(hook, call, resume) if call.job is None else self._job_result(hook, call, resume)
                return self._finish(context, call, pages)
        except RequestFailedError as err:
            return self._request_failed(context, err, call.branches)

    def _prepare(self, context: Context) -> _PreparedCall:
        """Everything a call needs that can be checked before sending: a resumed task prepares again."""
        plan = compile_outbound(self.outbound)
        pagination = None if self.pagination is None else parse_pagination(self.pagination)
        if pagination is not None:
            _check_paged_mapping(pagination, self.outbound)
        validator = self._schema_validator()
        branches = self._failure_branches()
        missing = [b for b in branches if b not in self.downstream_task_ids]
        if missing:
            raise MappingConfigError("failure_branch", f"{missing} are not direct downstream tasks of this task")
        for name, value in (("query_params", self.query_params), ("headers", self.headers)):
            if value is not None and not isinstance(value, Mapping):
                raise MappingConfigError(name, f"expected an object once rendered, got {type(value).__name__}")
        headers = dict(self.headers or {})
        if self.idempotency_key and self.method in ("POST", "PATCH"):
            ti = context["ti"]
            map_index = ti.map_index if ti.map_index is not None else -1
            headers[IDEMPOTENCY_KEY_HEADER] = idempotency_key(ti.dag_id, ti.run_id, ti.task_id, map_index)
        return _PreparedCall(
            plan=plan,
            validator=validator,
            branches=branches,
            body=build_request_body(self.inbound) if self.inbound is not None else self.body,
            headers=headers,
            pagination=pagination,
            job=None if self.job is None else parse_job(self.job),
            started=self._get_hook().clock.now(),
        )

    def _fetch(self, hook: ExternalApiHook, call: _PreparedCall, resume: _Resume) -> Iterable[Page]:
        """The pages to map: one unparsed page for a single call, or every page of a paged fetch."""
        if call.pagination is None:
            return [Page(1, self._call(hook, call, resume), None)]
        return hook.paginate(
            self.method,
            self.endpoint,
            pagination=call.pagination,
            params=self.query_params,
            json=call.body,
            headers=call.headers,
            select=call.plan.records,
        )

    def _call(self, hook: ExternalApiHook, call: _PreparedCall, resume: _Resume) -> ApiResponse:
        """The operator's own request; when deferrable, a wait over 30 s is spent deferred, not asleep."""
        from airflow_campaign_provider.flow import CallState
        from airflow_campaign_provider.runner import WaitTooLong

        state = CallState.from_dict(resume.call_state) if resume.call_state else None
        state = state or CallState.start(hook.clock.now(), hook.settings.timeout)
        try:
            return hook.request(
                self.method,
                self.endpoint,
                params=self.query_params,
                json=call.body,
                headers=call.headers,
                state=state,
                wait_limit=DEFER_LONGER_THAN if self.deferrable else None,
            )
        except WaitTooLong as wait:
            from airflow_campaign_provider.triggers.external_api import WaitTrigger

            self.log.info(
                "Waiting %.0f s deferred, then resuming the call (attempt count and deadline kept)", wait.seconds
            )
            self.defer(
                trigger=WaitTrigger(until=hook.clock.now() + wait.seconds, call_state=state.to_dict()),
                method_name="execute_resume",
            )

    def _job_result(self, hook: ExternalApiHook, call: _PreparedCall, resume: _Resume) -> Iterable[Page]:
        """Create the job (unless resumed after polling), poll its status to the end, and fetch its result."""
        from airflow_campaign_provider.jobs import JobState, poll_flow, result_url_of, status_url_of
        from airflow_campaign_provider.triggers.external_api import ExternalApiTrigger

        assert call.job is not None
        config = call.job
        if resume.status_url is not None:  # the trigger polled it to its end
            # The job was created before the task deferred: the link and summary still show where.
            self.called_url = hook.build(self.method, self.endpoint, params=self.query_params).display_url
            status_url, state = resume.status_url, JobState.from_dict(resume.job_state or {})
            final = hook.request("GET", status_url)
            document = final.json()
        else:
            created = self._call(hook, call, resume)
            self.called_url = created.display_url
            found = status_url_of(config, created, created.json() if config.status_url.startswith("$") else None)
            if found is None:
                raise JobFailedError(
                    f"job: the create response has no status URL at {config.status_url!r}",
                    url=created.display_url,
                    status=created.status_code,
                )
            status_url, state = found, JobState(deadline=call.started + config.timeout)
            status = hook.build("GET", status_url)
            if self.deferrable and status.url == status.display_url:
                self.log.info(
                    "Job created (HTTP %d); polling %s in the triggerer", created.status_code, status.display_url
                )
                self.defer(
                    trigger=ExternalApiTrigger(
                        conn_id=self.conn_id, status_url=status_url, job=config.to_dict(), state=state.to_dict()
                    ),
                    method_name="execute_complete",
                    timeout=timedelta(seconds=max(1.0, state.deadline - hook.clock.now()) + DEFER_GRACE),
                )
            if self.deferrable:
                self.log.warning(
                    "The job's status URL carries a secret, which trigger kwargs must not: polling on the worker"
                )
            done = hook.runner.run(poll_flow(config, status, state, hook.settings, hook.clock.now, hook.runner.rng))
            final, document = done.response, done.document
        self._job_summary = {"status": state.last_status, "polls": state.polls}
        result_url = result_url_of(config, final, document)
        if result_url is None:
            return [Page(1, final, document)]
        if call.pagination is None:
            return [Page(1, hook.request("GET", result_url), None)]
        return hook.paginate("GET", result_url, pagination=call.pagination, select=call.plan.records)

    def _finish(self, context: Context, call: _PreparedCall, pages: Iterable[Page]) -> Any:
        """Parse, validate and map every page into the output, then push the rows and the summary.

        Nothing is pushed if anything fails, and a partly written ``output_path`` file is removed.
        """
        from airflow_campaign_provider.output import RowOutput

        output = RowOutput(self.output_path, self.xcom_max_bytes)
        total: MappingResult | None = None
        last: ApiResponse | None = None
        received = 0
        cap = call.pagination.max_records if call.pagination is not None else None
        try:
            for page in pages:
                response = page.response
                self.called_url = self.called_url or response.display_url
                last = response
                received += len(response.content)
                result = self._map(call, page)
                for name, table in result.tables.items():
                    rows = table.rows if cap is None else table.rows[: max(0, cap - output.count)]
                    output.add(name if result.named else None, rows)
                    table.hand_over()  # the rows live in the output now, one page in memory at most
                if total is None:
                    total = result
                else:
                    total.extend(result)
            if total is None or last is None:
                raise ResponseMappingError("outbound mapping: the fetch gave no page to map")
            self._log_mapping(total)
            total.check_quality()
            value = output.value()
        except BaseException:
            output.discard()
            raise
        elapsed_ms = round((self._get_hook().clock.now() - call.started) * 1000)
        fetch: FetchSummary | None = getattr(pages, "summary", None)
        ti = context["ti"]
        ti.xcom_push(
            key="summary",
            value={
                "url": self.called_url,
                "method": self.method,
                "status": last.status_code,
                "bytes": received,
                "elapsed_ms": elapsed_ms,
                **total.summary(),
                "pages": fetch.pages if fetch else 1,
                "truncated": fetch.truncated if fetch else False,
                "stopped_by": fetch.stopped_by if fetch else None,
                **({"job": self._job_summary} if call.job is not None else {}),
            },
        )
        # Named tables also go under their own XCom keys, so that op.output["players"] feeds a task.
        self.multiple_outputs = total.named
        if not call.branches:
            return value
        # The branching helper ends the task by raising, so the rows go to XCom first.
        if self.do_xcom_push:
            ti.xcom_push(key="return_value", value=value)
            for table, rows in value.items() if total.named else ():
                ti.xcom_push(key=table, value=rows)
        self.do_branch(context, [t for t in self.downstream_task_ids if t not in call.branches] or None)
        return None

    def _schema_validator(self) -> Any:
        if self.response_schema is None:
            return None
        return build_validator(load_schema(self.response_schema, self._dag_folder()))

    def _dag_folder(self) -> Path | None:
        """The DAG file's folder, from which a relative ``response_schema`` path is read."""
        fileloc = self.dag.fileloc if self.has_dag() else None  # type: ignore[no-untyped-call]
        return Path(fileloc).parent if fileloc else None

    def _request_failed(self, context: Context, err: RequestFailedError, branches: list[str]) -> None:
        """The activity's "if request failed" transition: follow the failure branch, or fail the task."""
        self.called_url = err.url
        if not branches:
            raise err
        self.log.error("Request failed (%s), following the failure branch %s: %s", err.rule, branches, err)
        context["ti"].xcom_push(
            key="error",
            value={"type": type(err).__name__, "message": str(err), "url": err.url, "status": err.status},
        )
        send_alerts(check_alerts(self.on_failure_branch), context, err, self.log)
        self.do_branch(context, branches)
        return None

    def _log_mapping(self, result: MappingResult) -> None:
        """One INFO line per table; rejections and empty columns at WARNING, with the first reasons."""
        info, warnings = result.report()
        for line in info:
            self.log.info("%s", line)
        for line in warnings:
            self.log.warning("%s", line)

    def _map(self, call: _PreparedCall, page: Page) -> MappingResult:
        """Map one page: the typed fast path straight from the bytes when nothing needs the parsed document."""
        from airflow_campaign_provider.json_body import gc_paused

        response = page.response
        # Parsing and mapping create many objects and no cycles: keep the collector out.
        with gc_paused():
            if call.validator is None and page.document is None:
                return call.plan.map_response(response)
            document = response.json() if page.document is None else page.document
            if call.validator is not None:
                secrets = self._get_hook().settings.secrets
                validate_response(call.validator, document, url=response.display_url, secrets=secrets)
            return call.plan.map(document)


def _check_paged_mapping(pagination: PaginationConfig, outbound: Any) -> None:
    """``max_records`` caps the rows of one table; across named tables it would have no clear meaning."""
    if pagination.max_records is not None and isinstance(outbound, Mapping) and "tables" in outbound:
        raise MappingConfigError(
            "pagination.max_records",
            "caps the rows of one table, not of named tables; limit the fetch with max_pages and "
            "on_max_pages: 'stop' instead",
        )
