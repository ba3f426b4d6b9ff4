"""The auth strategies: the headers each auth type sends, and the OAuth2 client-credentials token. Pure.

No I/O here. The token request is built like any other request and runs through
the same call flow (guardrails, retries, the one deadline); what comes back is
checked and cached as an :class:`OAuthToken`. The runner decides when a fetch
happens and makes it single-flight; the call flow decides when a token is needed.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from airflow_campaign_provider.exceptions import TokenError
from airflow_campaign_provider.redaction import redact_url
from airflow_campaign_provider.request import TRANSPORT_HEADERS, ApiRequest, check_connection_url
from airflow_campaign_provider.settings import AuthSettings, ConnectionSettings

_MAX_EXPIRY_SKEW = 30.0
_NOT_A_HEADER_VALUE = re.compile(r"[^\x20-\x7e\x80-\xff]")  # controls, DEL, beyond ISO-8859-1


@dataclass(frozen=True)
class OAuthToken:
    """A cached access token; ``expires_at`` is on the runner's clock (None: until a 401)."""

    value: str = field(repr=False)
    expires_at: float | None

    def is_fresh(self, now: float) -> bool:
        """True while the token is not about to expire."""
        return self.expires_at is None or now < self.expires_at


def parse_token_response(document: Any, now: float) -> OAuthToken:
    """Check a parsed token-endpoint response (RFC 6749 §5.1) and return the token.

    The token is reused until ``expires_in`` minus a skew (10 % of the lifetime, at
    most 30 s), so that it never expires in flight.

    :raises TokenError: no string ``access_token``, one a header cannot carry, a token type
        other than bearer, or a malformed ``expires_in``. The message never quotes the token.
    """
    if not isinstance(document, dict) or not isinstance(document.get("access_token"), str):
        raise TokenError("OAuth2 token: the token endpoint's response has no 'access_token'")
    value: str = document["access_token"]
    if not value or _NOT_A_HEADER_VALUE.search(value):
        raise TokenError(
            "OAuth2 token: the token endpoint's 'access_token' is empty or has characters an HTTP header "
            "cannot carry (control characters or characters outside ISO-8859-1)"
        )
    token_type = document.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenError(f"OAuth2 token: token_type {_short(token_type)} is not supported, only 'bearer'")
    expires_in = document.get("expires_in")
    if expires_in is not None and (
        isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in < 0
    ):
        raise TokenError(f"OAuth2 token: expires_in {_short(expires_in)} is not a number of seconds")
    expires_at = None if expires_in is None else now + expires_in - min(_MAX_EXPIRY_SKEW, expires_in * 0.1)
    return OAuthToken(value, expires_at)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def auth_headers(auth: AuthSettings, token: str | None = None) -> Mapping[str, str]:
    """The headers that authenticate a request; ``token`` is the OAuth2 access token."""
    if auth.type == "basic":
        credentials = f"{auth.login or ''}:{auth.secret or ''}".encode("latin-1")
        return {"Authorization": f"Basic {base64.b64encode(credentials).decode()}"}
    if auth.type == "bearer":
        return {"Authorization": f"Bearer {auth.secret or ''}"}
    if auth.type == "api_key":
        return {auth.api_key_header: auth.secret or ""}
    if auth.type == "oauth2_client_credentials":
        if token is None:
            raise TokenError("OAuth2 token: no token has been fetched")
        return {"Authorization": f"Bearer {token}"}
    return {}


def token_request(settings: ConnectionSettings) -> ApiRequest:
    """The client-credentials token request (RFC 6749 §4.4): a form POST, the client in HTTP Basic.

    Client id and secret are form-urlencoded before Basic encoding (RFC 6749 §2.3.1).
    Asking for a token changes nothing on the server, so the request is retryable.
    """
    auth = settings.auth
    url = auth.token_url or ""
    shown = redact_url(url, settings.secrets)
    check_connection_url(settings, url, shown)
    form = {"grant_type": "client_credentials"}
    if auth.scope:
        form["scope"] = auth.scope
    client = base64.b64encode(":".join(auth.client_credentials).encode()).decode()
    return ApiRequest(
        method="POST",
        url=url,
        display_url=shown,
        headers={
            **TRANSPORT_HEADERS,
            **settings.headers,
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Basic {client}",
        },
        body=urlencode(form).encode(),
        secrets=settings.secrets,
        retry_non_idempotent=True,
        authenticate=False,
    )
