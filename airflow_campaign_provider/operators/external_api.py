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
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.bases.branch import BranchMixIn

from airflow_campaign_provider.exceptions import (
    ExternalApiError,
    MappingConfigError,
    RequestFailedError,
    XComTooLargeError,
)
from airflow_campaign_provider.failure_alerts import check_alerts, send_alerts
from airflow_campaign_provider.guardrails import check_headers
from airflow_campaign_provider.inbound import build_request_body, validate_inbound
from airflow_campaign_provider.links import ExternalApiLink
from airflow_campaign_provider.outbound import compile_outbound, validate_outbound
from airflow_campaign_provider.redaction import secret_values
from airflow_campaign_provider.response_schema import (
    build_validator,
    check_schema_argument,
    load_schema,
    validate_response,
)
from airflow_campaign_provider.settings import DEFAULT_CONN_ID

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from airflow_campaign_provider.hooks.external_api import ExternalApiHook
    from airflow_campaign_provider.outbound import MappingResult, OutboundPlan
    from airflow_campaign_provider.response import ApiResponse

METHODS = ("GET", "POST", "PUT", "PATCH")
DEFAULT_XCOM_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class _PreparedCall:
    """What :meth:`ExternalApiOperator._prepare` checked and built; plain, so a resumed task can rebuild it."""

    plan: OutboundPlan
    validator: Any
    branches: list[str]
    body: Any
    started: float


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
        there as JSON Lines and XCom gets ``{"path": ..., "rows": n}``. (templated)
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
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
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
        self.called_url: str | None = None
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
        from airflow.sdk.log import mask_secret

        api_key_header: list[str] = []
        # A broken connection fails the task in execute, with its own clear error.
        with contextlib.suppress(ExternalApiError):
            api_key_header.append(self._get_hook().settings.auth.api_key_header)
        params = self.query_params if isinstance(self.query_params, Mapping) else None
        headers = self.headers if isinstance(self.headers, Mapping) else None
        endpoint = self.endpoint if isinstance(self.endpoint, str) else None
        for value in secret_values(headers, params, endpoint, api_key_header):
            mask_secret(value)

    def execute(self, context: Context) -> Any:
        call = self._prepare()
        hook = self._get_hook()
        try:
            with hook:
                response = hook.request(
                    self.method, self.endpoint, params=self.query_params, json=call.body, headers=self.headers
                )
                return self._finish(context, call, response)
        except RequestFailedError as err:
            return self._request_failed(context, err, call.branches)

    def _prepare(self) -> _PreparedCall:
        """Everything a call needs that can be checked before sending: a resumed task prepares again."""
        plan = compile_outbound(self.outbound)
        validator = self._schema_validator()
        branches = self._failure_branches()
        missing = [b for b in branches if b not in self.downstream_task_ids]
        if missing:
            raise MappingConfigError("failure_branch", f"{missing} are not direct downstream tasks of this task")
        for name, value in (("query_params", self.query_params), ("headers", self.headers)):
            if value is not None and not isinstance(value, Mapping):
                raise MappingConfigError(name, f"expected an object once rendered, got {type(value).__name__}")
        body = build_request_body(self.inbound) if self.inbound is not None else self.body
        return _PreparedCall(plan, validator, branches, body, self._get_hook().clock.now())

    def _finish(self, context: Context, call: _PreparedCall, response: ApiResponse) -> Any:
        """Parse, validate and map a response, then push the rows and the summary (nothing if anything fails)."""
        from airflow_campaign_provider.json_body import gc_paused

        self.called_url = response.display_url
        # Parsing and mapping create many objects and no cycles: keep the collector out.
        with gc_paused():
            if call.validator is None:
                result = call.plan.map_response(response)
            else:
                document = response.json()
                secrets = self._get_hook().settings.secrets
                validate_response(call.validator, document, url=response.display_url, secrets=secrets)
                result = call.plan.map(document)
        elapsed_ms = round((self._get_hook().clock.now() - call.started) * 1000)
        self._log_mapping(result)
        result.check_quality()
        value = self._output(result)
        ti = context["ti"]
        ti.xcom_push(
            key="summary",
            value={
                "url": response.display_url,
                "method": self.method,
                "status": response.status_code,
                "bytes": len(response.content),
                "elapsed_ms": elapsed_ms,
                **result.summary(),
            },
        )
        # Named tables also go under their own XCom keys, so that op.output["players"] feeds a task.
        self.multiple_outputs = result.named
        if not call.branches:
            return value
        # The branching helper ends the task by raising, so the rows go to XCom first.
        if self.do_xcom_push:
            ti.xcom_push(key="return_value", value=value)
            for table, rows in value.items() if result.named else ():
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

    def _output(self, result: MappingResult) -> Any:
        """Rows for XCom, bounded by ``xcom_max_bytes``, or written to ``output_path`` as JSON Lines.

        With named tables each table gets its own file, the table name before the suffix
        (``lineup.jsonl`` gives ``lineup.players.jsonl``), and the value is keyed by table.
        """
        if self.output_path:
            if not result.named:
                return self._write_rows(self.output_path, result.rows)
            return {name: self._write_rows(self.output_path, t.rows, name) for name, t in result.tables.items()}
        value = result.value
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        if size > self.xcom_max_bytes:
            rows = sum(len(table.rows) for table in result.tables.values())
            raise XComTooLargeError(
                f"XCom size limit: the {rows:,} mapped rows serialize to {size:,} bytes, over "
                f"xcom_max_bytes={self.xcom_max_bytes:,}. Set output_path (for example "
                "'file:///data/{{ run_id }}.jsonl' or an s3:// URI) to write them to object storage, "
                "or raise xcom_max_bytes."
            )
        return value

    def _write_rows(self, uri: str, rows: list[dict[str, Any]], table: str | None = None) -> dict[str, Any]:
        from airflow.sdk import ObjectStoragePath

        path = ObjectStoragePath(uri)
        if table is not None:
            path = path.with_name(f"{path.stem}.{table}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:  # type: ignore[no-untyped-call]
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.log.info("Wrote %s rows to %s", f"{len(rows):,}", path)
        return {"path": str(path), "rows": len(rows)}
