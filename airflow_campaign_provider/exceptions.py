"""Typed errors: one class for each rule, each message naming the rule, the limit and the URL.

Two families matter to the operator:

* :class:`RequestFailedError` and its subclasses are the failures the Adobe activity's
  "if request failed" transition covers (timeouts, guardrails, HTTP errors, invalid JSON,
  schema violations). With ``failure_branch`` set, the operator follows the branch.
* Everything else (:class:`ConfigurationError`, :class:`InboundDataError`,
  :class:`XComTooLargeError`) is a mistake in the DAG or its data and always fails the task.

Messages never carry secrets: URLs are redacted before they get here and body
excerpts are scrubbed by the caller.
"""

from __future__ import annotations

from typing import Any


class ExternalApiError(Exception):
    """Base class of every error raised by this provider.

    :param message: human-readable text; it names the rule and the limit.
    :param url: the URL concerned, with query secrets already redacted.
    :param status: the HTTP status, when a response was received.
    """

    rule: str = "external API"

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        self.url = url
        self.status = status
        self.message = message
        super().__init__(f"{message} (URL '{url}')" if url else message)


class ConfigurationError(ExternalApiError):
    """The connection or the operator is configured wrongly; it names the field."""

    rule = "configuration"

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"Invalid {field!r}: {problem}")


class ConnectionConfigError(ConfigurationError):
    """A connection field or extra is unknown, of the wrong type or out of range."""

    rule = "connection configuration"


class MappingConfigError(ConfigurationError):
    """An ``inbound``/``outbound`` mapping, schema or other operator argument is invalid."""

    rule = "mapping configuration"


class InboundDataError(ExternalApiError):
    """Upstream rows do not fit the inbound mapping (a data error, never a request failure)."""

    rule = "inbound data"


class XComTooLargeError(ExternalApiError):
    """The mapped rows are larger than ``xcom_max_bytes`` and no ``output_path`` is set."""

    rule = "XCom size limit"


class RequestFailedError(ExternalApiError):
    """The call failed: the errors that the activity's "if request failed" transition covers."""

    rule = "request failed"


class GuardrailError(RequestFailedError):
    """A guardrail of the External API activity refused the request or the response."""


class InsecureUrlError(GuardrailError):
    """The URL is not ``https://``."""

    rule = "HTTPS only"


class HostNotAllowedError(GuardrailError):
    """The host is ``localhost``, an IP literal, resolves to a non-public address, or is off-host."""

    rule = "host not allowed"


class PathNotAllowedError(GuardrailError):
    """A relative endpoint climbs out of the connection's base path (``../admin``)."""

    rule = "path not allowed"


class RedirectNotFollowedError(GuardrailError):
    """The server answered with a 3xx redirect; redirects are never followed."""

    rule = "redirects not followed"


class InvalidHeaderError(GuardrailError):
    """A header name is not an RFC 9110 token, a value has CR/LF, or the header is reserved."""

    rule = "invalid header"


class RequestTooLargeError(GuardrailError):
    """The JSON request body is over the request size limit."""

    rule = "request body size limit"


class ResponseTooLargeError(GuardrailError):
    """The response body is over ``max_response_bytes``."""

    rule = "response size limit"


class ContentTypeError(GuardrailError):
    """The response is not ``application/json`` (or ``*+json``)."""

    rule = "JSON content type"


class JsonDepthError(GuardrailError):
    """The JSON document nests deeper than the depth limit."""

    rule = "JSON depth limit"


class JsonKeyLengthError(GuardrailError):
    """A JSON object key is longer than the key length limit."""

    rule = "JSON key length limit"


class InvalidJsonError(RequestFailedError):
    """The response body is not valid UTF-8 JSON."""

    rule = "malformed JSON"


class DeadlineExceededError(RequestFailedError):
    """The call, retries included, did not finish within the connection's ``timeout``."""

    rule = "timeout"


class TransportError(RequestFailedError):
    """The connection failed, reset or timed out, and retries are exhausted or not allowed.

    :param kind: what failed, as the retry log names it (``connect failure``, ``connection broken``).
    :param sent: the request may have reached the server (False only when it provably did not).
    :param retryable: another attempt could succeed (False for a TLS verification failure).
    """

    rule = "transport"

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        kind: str = "transport failure",
        sent: bool = True,
        retryable: bool = True,
    ) -> None:
        super().__init__(message, url=url, status=status)
        self.kind = kind
        self.sent = sent
        self.retryable = retryable

    @classmethod
    def attempt_failed(cls, kind: str, detail: str, *, url: str) -> TransportError:
        """An attempt that failed in a way worth retrying; only a failed connect or lookup proves nothing was sent."""
        return cls(f"transport: {kind} ({detail})", url=url, kind=kind, sent=kind not in _NOT_SENT)

    @classmethod
    def tls_failed(cls, detail: str, *, url: str) -> TransportError:
        """TLS failed; a certificate that does not verify will not verify on the next attempt either."""
        return cls(
            f"transport: TLS handshake or verification failed ({detail}); if the API's certificate comes from "
            "a private CA, set the connection's verify extra to that CA's bundle file",
            url=url,
            kind="TLS",
            retryable=False,
        )


_NOT_SENT = frozenset({"connect failure", "name resolution"})


class HttpStatusError(RequestFailedError):
    """The final response has an error status (4xx or 5xx)."""

    rule = "HTTP status"


class TokenError(RequestFailedError):
    """The OAuth2 token endpoint refused the client credentials or sent no usable token."""

    rule = "OAuth2 token"


class PaginationError(RequestFailedError):
    """A paged fetch looped back to a page it had, or reached ``max_pages`` with more to fetch."""

    rule = "pagination"


class JobFailedError(RequestFailedError):
    """An async job ended with a ``failed`` status, or its final status lacks the result URL."""

    rule = "job failed"


class ResponseSchemaError(RequestFailedError):
    """The parsed response does not match ``response_schema``."""

    rule = "response schema"


class ResponseMappingError(RequestFailedError):
    """The response does not have the shape the outbound mapping needs, or breaks a flatten limit."""

    rule = "outbound mapping"


class DataQualityError(RequestFailedError):
    """The mapped rows break a data-quality guard (``min_rows``, ``max_rejected``): the API gave data
    the campaign cannot use, so the failure branch applies."""

    rule = "data quality"


def error_payload(err: ExternalApiError) -> dict[str, Any]:
    """A typed error as small plain data, e.g. for a trigger event (messages and URLs are already free of secrets)."""
    return {"type": type(err).__name__, "message": err.message, "url": err.url, "status": err.status}


def error_from_payload(payload: dict[str, Any]) -> ExternalApiError:
    """Rebuild a typed error from its plain form (``type``, ``message``, ``url``, ``status``), e.g. a trigger event.

    A request failure comes back as its own class, so the failure branch applies as it would
    on the worker; anything else comes back as an :class:`ExternalApiError`.
    """
    kind = globals().get(str(payload.get("type")))
    message = str(payload.get("message") or "the trigger failed")
    url, status = payload.get("url"), payload.get("status")
    if isinstance(kind, type) and issubclass(kind, RequestFailedError):
        return kind(message, url=url, status=status)
    return ExternalApiError(f"{payload.get('type', 'error')}: {message}", url=url, status=status)
