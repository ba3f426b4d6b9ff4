"""ExternalApiOperator at DAG parse time: argument checks with clear errors, dependencies, UI metadata."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_campaign_provider.exceptions import MappingConfigError
from airflow_campaign_provider.links import ExternalApiLink
from airflow_campaign_provider.operators.external_api import ExternalApiOperator


def make(**kw: Any) -> ExternalApiOperator:
    with DAG("construction", schedule=None):
        return ExternalApiOperator(task_id="api", **kw)


def test_defaults() -> None:
    op = make()
    assert (op.conn_id, op.method, op.endpoint, op.xcom_max_bytes) == (
        "campaign_external_api_default",
        "GET",
        "",
        2**20,
    )


def test_inbound_implies_post_and_an_xcomarg_sets_the_dependency() -> None:
    with DAG("deps", schedule=None):

        @task
        def audience() -> list[dict[str, str]]:
            return [{"zip": "20121"}]

        rows = audience()
        op = ExternalApiOperator(task_id="api", inbound={"rows": rows, "columns": ["zip"]})
    assert op.method == "POST"
    assert op.upstream_task_ids == {"audience"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "DELETE"}, "method"),
        ({"method": "GET", "body": {"a": 1}}, "method"),
        ({"method": "GET", "inbound": {"rows": []}}, "method"),
        ({"body": {"a": 1}, "inbound": {"rows": []}}, "body"),
        ({"inbound": {"rows": [], "columns": "zip"}}, "inbound.columns"),
        ({"outbound": {"records": "$.data[*"}}, "outbound.records"),
        ({"outbound": {"columns": [{"name": "a", "type": "money"}]}}, "outbound.columns['a'].type"),
        ({"response_schema": "schema.yaml"}, "response_schema"),
        ({"headers": {"X-A": "a\r\nB: c"}}, "headers"),
        ({"headers": ["X-A"]}, "headers"),
        ({"failure_branch": ""}, "failure_branch"),
        ({"failure_branch": "api"}, "failure_branch"),
        ({"xcom_max_bytes": 0}, "xcom_max_bytes"),
        ({"endpoint": 5}, "endpoint"),
        ({"pagination": {"type": "cursor", "cursor_param": "after"}}, "pagination.cursor_path"),
        ({"pagination": {"type": "link_header", "max_pages": 0}}, "pagination.max_pages"),
        (
            {
                "pagination": {"type": "link_header", "max_records": 5},
                "outbound": {"tables": {"a": {"records": "$.a[*]"}, "b": {"records": "$.b[*]"}}},
            },
            "pagination.max_records",
        ),
        ({"job": {"status_path": "$.items[*].status"}}, "job.status_path"),
        ({"job": {"done": []}}, "job.done"),
        ({"job": {"done": ["done"], "failed": ["done"]}}, "job.failed"),
        ({"job": {"poll_interval": 0}}, "job.poll_interval"),
        ({"job": {"timeout": 10, "poll_interval": 20}}, "job.poll_interval"),
        ({"job": {"status_url": "Location"}}, "job.status_url"),
        ({"job": {"statusurl": "header:Location"}}, "job.statusurl"),
        ({"deferrable": "yes"}, "deferrable"),
        ({"idempotency_key": 1}, "idempotency_key"),
    ],
)
def test_bad_arguments_fail_at_parse_time_naming_the_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        make(**kwargs)
    assert info.value.field == field


def test_templated_outbound_and_pagination_are_checked_once_rendered() -> None:
    make(outbound={"records": "{{ params.records_path }}"})
    make(pagination={"type": "link_header", "max_pages": "{{ params.max_pages }}"})


def test_ui_metadata() -> None:
    assert set(ExternalApiOperator.template_fields_renderers) == {
        "body",
        "query_params",
        "headers",
        "inbound",
        "outbound",
        "pagination",
        "job",
    }
    assert set(ExternalApiOperator.template_fields_renderers) <= set(ExternalApiOperator.template_fields)
    assert ExternalApiOperator.ui_color.startswith("#")
    assert isinstance(ExternalApiOperator.operator_extra_links[0], ExternalApiLink)
    assert ExternalApiOperator.operator_extra_links[0].name == "External API"


def test_every_parameter_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        ExternalApiOperator("api")  # type: ignore[call-arg]


def test_on_failure_branch_takes_notifiers_and_callables() -> None:
    from airflow.sdk.bases.notifier import BaseNotifier

    class Quiet(BaseNotifier):
        def notify(self, context: Any) -> None:
            return None

    make(on_failure_branch=Quiet())
    make(on_failure_branch=[Quiet(), lambda context, error: None])
    with pytest.raises(MappingConfigError) as info:
        make(on_failure_branch=["ops@example.com"])
    assert info.value.field == "on_failure_branch"
    assert "expected an Airflow notifier (such as SmtpNotifier) or a callable, got str" in str(info.value)


def test_a_response_schema_file_is_read_at_parse_time(tmp_path: Any) -> None:
    schema = tmp_path / "lineup.schema.json"
    schema.write_text('{"type": "object"}')
    make(response_schema=str(schema))
    with pytest.raises(MappingConfigError, match=r"cannot read .*lineup.shema.json.*No such file"):
        make(response_schema=str(tmp_path / "lineup.shema.json"))
    schema.write_text("{not json")
    with pytest.raises(MappingConfigError, match="is not valid JSON"):
        make(response_schema=str(schema))
