"""Provider metadata for Airflow's ProvidersManager, including the connection form.

Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour`` from here without
importing the hook, so the web UI's connection form costs no hook import. Each
``conn-fields`` entry is a JSON schema the UI renders as a form field; its
values are stored in the connection's ``extra`` under the plain field name.
"""

from __future__ import annotations

from typing import Any

from airflow_campaign_provider import __version__
from airflow_campaign_provider.guardrails import DEFAULT_MAX_RESPONSE_BYTES, MAX_RESPONSE_BYTES_CEILING
from airflow_campaign_provider.settings import (
    AUTH_TYPES,
    CONN_TYPE,
    DEFAULT_API_KEY_HEADER,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_STATUSES,
    DEFAULT_TIMEOUT,
    MAX_MAX_RETRIES,
    MAX_TIMEOUT,
)

INTEGRATION = "Campaign External API"


def _conn_fields() -> dict[str, Any]:
    return {
        "auth_type": {
            "label": "Auth type",
            "description": "Where the credentials go. The secret is always the Password field.",
            "schema": {
                "type": ["string", "null"],
                "enum": [*AUTH_TYPES, None],
                "values_display": {
                    "null": "Automatic: basic if a username is set, else none",
                    "none": "None",
                    "basic": "Basic: username and password",
                    "bearer": "Bearer token (in Password)",
                    "api_key": "API key (in Password), sent in the API key header",
                    "oauth2_client_credentials": "OAuth2 client credentials: client id and secret",
                },
            },
        },
        "api_key_header": {
            "label": "API key header",
            # No default in the form: Airflow masks the values of fields whose name contains
            # "api_key", so a default would show and save as "***".
            "description": f"Header that carries the API key with auth type api_key. Blank: {DEFAULT_API_KEY_HEADER}.",
            "schema": {"type": ["string", "null"]},
        },
        "token_url": {
            "label": "OAuth2 token URL",
            "description": "HTTPS token endpoint for oauth2_client_credentials.",
            "schema": {"type": ["string", "null"]},
        },
        "scope": {
            "label": "OAuth2 scope",
            "description": "Space-separated scopes requested with oauth2_client_credentials (optional).",
            "schema": {"type": ["string", "null"]},
        },
        "timeout": {
            "label": "Timeout (seconds)",
            "description": "One deadline for the whole call, retries and token fetch included.",
            "schema": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": int(MAX_TIMEOUT),
                "default": int(DEFAULT_TIMEOUT),
            },
        },
        "max_response_bytes": {
            "label": "Response size limit (bytes)",
            "description": "Larger responses are refused; the body is streamed and cut off at the limit.",
            "schema": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_RESPONSE_BYTES_CEILING,
                "default": DEFAULT_MAX_RESPONSE_BYTES,
            },
        },
        "max_retries": {
            "label": "Max retries",
            "description": "Retries on connection errors, timeouts and the retried statuses.",
            "schema": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": MAX_MAX_RETRIES,
                "default": DEFAULT_MAX_RETRIES,
            },
        },
        "retry_statuses": {
            "label": "Retried HTTP statuses",
            "description": "JSON list of statuses to retry, e.g. [429, 502, 503, 504]. Add 500 to retry it.",
            "schema": {
                "type": ["array", "null"],
                "items": {"type": "integer", "minimum": 400, "maximum": 599},
                "default": sorted(DEFAULT_RETRY_STATUSES),
            },
        },
        "verify": {
            "label": "TLS verification",
            "description": "true, false, or the path of a CA bundle file on the workers.",
            # A text field: the form renders a value of several JSON types as a large JSON editor.
            "schema": {"type": ["string", "null"], "default": "true"},
        },
        "headers": {
            "label": "Default headers",
            "description": 'JSON object of headers sent with every request, e.g. {"X-Tenant": "acme"}.',
            "schema": {"type": ["object", "null"]},
        },
        "allow_private_hosts": {
            "label": "Allow private hosts",
            "description": (
                "Allow localhost, IP literals and hosts resolving to loopback, private or link-local "
                "addresses. Leave off unless the API is on your own network."
            ),
            "schema": {"type": ["boolean", "null"], "default": False},
        },
        "allow_insecure_http": {
            "label": "Allow plain HTTP to loopback",
            "description": (
                "For local mocks without TLS: permits http:// to localhost, 127.0.0.0/8 or ::1 only, "
                "and only together with Allow private hosts."
            ),
            "schema": {"type": ["boolean", "null"], "default": False},
        },
        "proxies": {
            "label": "Proxies",
            "description": 'requests-style proxies, e.g. {"https": "http://proxy.example:3128"}.',
            "schema": {"type": ["object", "null"]},
        },
    }


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-campaign-provider",
        "name": INTEGRATION,
        "description": (
            "Campaign-level data from third-party REST APIs, with the guardrails and mappings of "
            "Adobe Campaign's External API activity."
        ),
        "versions": [__version__],
        "integrations": [{"integration-name": INTEGRATION, "tags": ["protocol"]}],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_campaign_provider.hooks.external_api"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_campaign_provider.operators.external_api"],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_campaign_provider.triggers.external_api"],
            }
        ],
        "extra-links": ["airflow_campaign_provider.links.ExternalApiLink"],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_campaign_provider.hooks.external_api.ExternalApiHook",
                "hook-name": "Campaign External API",
                "ui-field-behaviour": {
                    # The base URL carries the scheme.
                    "hidden-fields": ["schema"],
                    "relabeling": {
                        "host": "Base URL",
                        "login": "Username / client id",
                        "password": "Password / secret",
                    },
                    "placeholders": {
                        "host": "https://api.example.com/v1",
                        "login": "username, or the OAuth2 client id",
                        "password": "password, bearer token, API key or client secret",
                        "port": "443",
                    },
                },
                "conn-fields": _conn_fields(),
            }
        ],
    }
