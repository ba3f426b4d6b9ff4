"""The sample DAGs' test-only failure switch: a run parameter passed to the demo API in a request header.

Kept free of heavy imports, since every sample DAG file imports it at parse time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Param

SLOW_SECONDS = 5.0
"""How long ``demo_fail=slow`` holds the answer."""

FAILURES = {
    "500": "HTTP 500 with a JSON error",
    "503": "HTTP 503 with Retry-After: 0",
    "html": "HTTP 502 with an HTML page instead of JSON",
    "invalid": "HTTP 200 whose objects keep only their first field, so required fields are missing",
    "slow": f"the normal answer after {SLOW_SECONDS:g} s",
}
"""The values of the ``X-Demo-Fail`` header and what the demo API does; empty or absent means no failure."""

FAILURE_HEADER = "X-Demo-Fail"
"""The request header the demo API reads the switch from; a header keeps it out of the called URL."""

FAILURE_HEADERS = {FAILURE_HEADER: "{{ params.demo_fail or '' }}"}
"""The operator ``headers`` that pass the run's switch on to the demo API."""


def failure_switch() -> Param:
    """A run parameter choosing how the demo API fails; left empty, it does not fail."""
    from airflow.sdk import Param

    return Param(
        None,
        type=["null", "string"],
        enum=[None, *FAILURES],
        title="Demo API failure switch",
        description="Make the demo API fail, to see the operator's failure branch. Leave empty for a normal run.",
        values_display={"null": "No failure", **FAILURES},
    )
