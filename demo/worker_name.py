"""``[core] hostname_callable`` for ``make scale``'s Celery workers: each names itself, so reports can tell them apart.

Both workers run on one machine, where Airflow's default (the FQDN) would give them one name.
"""

from __future__ import annotations

import os
import socket

WORKER_NAME_VARIABLE = "CAMPAIGN_WORKER_NAME"


def hostname() -> str:
    """``$CAMPAIGN_WORKER_NAME``, else the machine's FQDN."""
    return os.environ.get(WORKER_NAME_VARIABLE) or socket.getfqdn()
