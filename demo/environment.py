"""The demo environment: a local CA, the campaign API, the SMTP sink and the audience DB, with their connections.

Everything lives under one state directory: ``ca/`` (kept between runs, so the
connections' ``verify`` path stays valid), ``outbox/`` (delivered mail), ``audience.sqlite3``
(the audience, loaded anew on each start) and ``demo.json`` (URLs, ports and paths of the
running environment).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_campaign_provider.settings import CONN_TYPE
from demo.audience import load_audience
from demo.audience_db import load_sqlite
from demo.campaign_api import API_KEY, API_KEY_HEADER, CLIENT_ID, CLIENT_SECRET, CampaignApi
from demo.smtp_sink import SmtpSink
from demo.tls import ensure_local_ca

OAUTH_CONN_ID = "campaign_demo_oauth"
API_KEY_CONN_ID = "campaign_demo_apikey"
SMTP_CONN_ID = "smtp_demo"
AUDIENCE_CONN_ID = "campaign_audience_db"
AUDIENCE_DB_FILE = "audience.sqlite3"
SMTP_HOST = "127.0.0.1"
FROM_EMAIL = "campaign@example.com"
STATE_FILE = "demo.json"


def demo_connections(base_url: str, smtp_port: int, ca_cert: Path, audience_db: Path) -> dict[str, dict[str, Any]]:
    """The Airflow connections (JSON form) for an API at ``base_url``, an SMTP sink and a SQLite audience.

    TLS is verified against the local CA; ``allow_private_hosts`` is needed because the API is on loopback.
    """
    tls = {"verify": str(ca_cert), "allow_private_hosts": True}
    # The port is also in the base URL; it is set on its own because Airflow 3.3's web UI sends
    # port 0 for an empty port when testing a stored connection, and then refuses the test.
    port = urlsplit(base_url).port
    return {
        OAUTH_CONN_ID: {
            "conn_type": CONN_TYPE,
            "host": f"{base_url}/v1",
            "port": port,
            "login": CLIENT_ID,
            "password": CLIENT_SECRET,
            "extra": {"auth_type": "oauth2_client_credentials", "token_url": f"{base_url}/oauth/token", **tls},
        },
        API_KEY_CONN_ID: {
            "conn_type": CONN_TYPE,
            "host": f"{base_url}/v1",
            "port": port,
            "password": API_KEY,
            "extra": {"auth_type": "api_key", "api_key_header": API_KEY_HEADER, **tls},
        },
        SMTP_CONN_ID: {
            "conn_type": "smtp",
            "host": SMTP_HOST,
            "port": smtp_port,
            # The sink speaks plain SMTP on loopback only. No in-session resend: a task retry
            # resumes from the delivery ledger instead, which never sends a message twice.
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": FROM_EMAIL, "retry_limit": 0},
        },
        AUDIENCE_CONN_ID: {"conn_type": "sqlite", "host": str(audience_db)},
    }


def connection_env_vars(connections: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` variables that define ``connections`` for any Airflow process."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in connections.items()}


class DemoEnvironment:
    """Run the campaign API and the SMTP sink under ``state_dir``; use it as a context manager.

    :param state_dir: where the CA, the outbox and ``demo.json`` live.
    :param api_port: the API's port; 0 picks a free one.
    :param smtp_port: the SMTP sink's port; 0 picks a free one.
    :param dedupe_message_ids: let the sink drop a message whose ``Message-ID`` it already stored (see ``smtp_sink``).
    """

    def __init__(
        self, state_dir: Path, *, api_port: int = 0, smtp_port: int = 0, dedupe_message_ids: bool = False
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.ca = ensure_local_ca(self.state_dir / "ca")
        self.api = CampaignApi(self.ca, api_port)
        self.smtp = SmtpSink(self.state_dir / "outbox", smtp_port, dedupe_message_ids=dedupe_message_ids)
        self.audience_db = self.state_dir / AUDIENCE_DB_FILE

    def __enter__(self) -> DemoEnvironment:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> DemoEnvironment:
        """Load the audience DB, start both servers and write ``demo.json``."""
        load_sqlite(self.audience_db, load_audience())
        self.api.start()
        try:
            self.smtp.start()
        except BaseException:
            self.api.stop()
            raise
        (self.state_dir / STATE_FILE).write_text(json.dumps(self.describe(), indent=2) + "\n", encoding="utf-8")
        return self

    def stop(self) -> None:
        self.smtp.stop()
        self.api.stop()

    def describe(self) -> dict[str, Any]:
        """What ``demo.json`` holds: URLs, ports and paths, no credentials."""
        return {
            "base_url": self.api.base_url,
            "api_port": self.api.port,
            "smtp_host": SMTP_HOST,
            "smtp_port": self.smtp.port,
            "ca_cert": str(self.ca.ca_cert),
            "outbox": str(self.smtp.outbox),
            "audience_db": str(self.audience_db),
        }

    def connections(self) -> dict[str, dict[str, Any]]:
        """The Airflow connections of this environment, by connection id."""
        return demo_connections(self.api.base_url, self.smtp.port, self.ca.ca_cert, self.audience_db)

    def env_vars(self) -> dict[str, str]:
        """The connections as ``AIRFLOW_CONN_<ID>`` environment variables."""
        return connection_env_vars(self.connections())
