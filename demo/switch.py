"""The demo API's test-only failure switch: what each value of the ``X-Demo-Fail`` request header does.

The sample DAGs carry it as a run parameter (``demo_fail``) rendered into that header; they
import nothing from here, and a test checks that their parameter offers exactly these values.
"""

from __future__ import annotations

SLOW_SECONDS = 5.0
"""How long ``demo_fail=slow`` holds the answer."""

FAILURES = {
    "500": "HTTP 500 with a JSON error",
    "503": "HTTP 503 with Retry-After: 0",
    "html": "HTTP 502 with an HTML page instead of JSON",
    "invalid": "HTTP 200 whose objects keep only their first field, so required fields are missing",
    "slow": f"the normal answer after {SLOW_SECONDS:g} s",
    "job_failed": "a coupon batch created with this header ends with status failed (other endpoints answer as usual)",
}
"""The values of the ``X-Demo-Fail`` header and what the demo API does; empty or absent means no failure."""

FAILURE_HEADER = "X-Demo-Fail"
"""The request header the demo API reads the switch from; a header keeps it out of the called URL."""
