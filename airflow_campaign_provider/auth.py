"""``requests`` auth classes for bearer tokens, API keys and OAuth2 client credentials.

No I/O here: :class:`OAuth2ClientCredentials` only caches a token and says when it
must be fetched again; the hook fetches it through its guarded transport, so the
token endpoint gets the same guardrails, retries and deadline as the API itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from requests import PreparedRequest
from requests.auth import AuthBase, HTTPBasicAuth

from airflow_campaign_provider.exceptions import TokenError
from airflow_campaign_provider.settings import AuthSettings

_MAX_EXPIRY_SKEW = 30.0


class BearerAuth(AuthBase):
    """Send ``Authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r


class ApiKeyAuth(AuthBase):
    """Send the API key in the header named by the connection's ``api_key_header``."""

    def __init__(self, header: str, key: str) -> None:
        self.header = header
        self._key = key

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers[self.header] = self._key
        return r


class OAuth2ClientCredentials(AuthBase):
    """OAuth2 client-credentials bearer auth with a token cache.

    The token is reused until ``expires_in`` minus a skew (10 % of the lifetime, at most
    30 s) so that it never expires in flight. :meth:`invalidate` drops it after a 401.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._token: str | None = None
        self._expires_at: float | None = None

    @property
    def has_valid_token(self) -> bool:
        """True while a token is cached and not about to expire."""
        return self._token is not None and (self._expires_at is None or self._clock() < self._expires_at)

    def store(self, token_response: Any) -> str:
        """Cache the token from a parsed token-endpoint response and return it.

        :raises TokenError: the response has no string ``access_token``, a token type
            other than bearer, or a malformed ``expires_in``.
        """
        if not isinstance(token_response, dict) or not isinstance(token_response.get("access_token"), str):
            raise TokenError("OAuth2 token: the token endpoint's response has no 'access_token'")
        token_type = token_response.get("token_type", "bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise TokenError(f"OAuth2 token: token_type {token_type!r} is not supported, only 'bearer'")
        expires_in = token_response.get("expires_in")
        if expires_in is not None and (
            isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in < 0
        ):
            raise TokenError(f"OAuth2 token: expires_in {expires_in!r} is not a number of seconds")
        self._token = token_response["access_token"]
        self._expires_at = (
            None if expires_in is None else self._clock() + expires_in - min(_MAX_EXPIRY_SKEW, expires_in * 0.1)
        )
        return self._token

    def invalidate(self) -> None:
        """Forget the cached token, so the next request fetches a new one."""
        self._token = None
        self._expires_at = None

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        if self._token is None:
            raise TokenError("OAuth2 token: no token has been fetched")
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r


def build_auth(settings: AuthSettings) -> AuthBase | None:
    """Return the auth object for a connection's auth settings (None for ``none``)."""
    if settings.type == "basic":
        return HTTPBasicAuth(settings.login or "", settings.secret or "")
    if settings.type == "bearer":
        return BearerAuth(settings.secret or "")
    if settings.type == "api_key":
        return ApiKeyAuth(settings.api_key_header, settings.secret or "")
    if settings.type == "oauth2_client_credentials":
        return OAuth2ClientCredentials()
    return None
