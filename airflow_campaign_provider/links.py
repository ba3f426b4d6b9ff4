"""The "External API" extra link: opens the URL the operator called, query secrets redacted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator


class ExternalApiLink(BaseOperatorLink):
    """Link to the API URL that the task called.

    Airflow evaluates it in the worker when the task ends and stores the result in
    XCom, so the web UI never needs the connection to show it.
    """

    name = "External API"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:  # type: ignore[override]
        return str(getattr(operator, "called_url", "") or "")
