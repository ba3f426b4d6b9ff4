"""Alerts when the failure branch is taken: Airflow notifiers or plain callables, so an outage is never silently green.

Imports nothing from Airflow at module top: a notifier is recognised by its ``notify``
method, so checking the argument at DAG parse time stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from airflow_campaign_provider.exceptions import MappingConfigError, RequestFailedError

Alert = Callable[..., Any]


class _Log(Protocol):
    def exception(self, event: Any, *args: Any, **kw: Any) -> Any: ...


def check_alerts(value: Any) -> tuple[Alert, ...]:
    """Parse-time check of ``on_failure_branch``: a notifier (``BaseNotifier``) or callable, or a list of them."""
    if value is None:
        return ()
    alerts = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (value,)
    for alert in alerts:
        if not callable(alert):
            raise MappingConfigError(
                "on_failure_branch",
                f"expected an Airflow notifier (such as SmtpNotifier) or a callable, got {type(alert).__name__}",
            )
    return alerts


def send_alerts(alerts: tuple[Alert, ...], context: Mapping[str, Any], error: RequestFailedError, log: _Log) -> None:
    """Call each alert with the error; one that fails is logged and the others still run.

    A notifier gets the task context with ``exception`` set to the error, as Airflow's
    failure callbacks do, so its templates can say ``{{ exception }}``. A plain callable
    is called as ``alert(context, error)``.
    """
    for alert in alerts:
        try:
            if hasattr(alert, "notify"):
                alert({**context, "exception": error})
            else:
                alert(context, error)
        except Exception:
            # The failure branch must still run: the alert's own failure is logged, not raised.
            log.exception("The on_failure_branch alert %r failed", alert)
