"""TaskFlow tasks the sample DAGs share that belong to the demo, not to the provider."""

from __future__ import annotations

from typing import Any

from airflow.sdk import task


@task
def select_audience() -> list[dict[str, Any]]:
    """Every profile of the demo audience; consent is applied when choosing what to ask and whom to send to."""
    from airflow_campaign_provider.demo.audience import load_audience

    return [dict(profile) for profile in load_audience()]
