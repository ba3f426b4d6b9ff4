"""Scrub secrets from every log record created while a call runs, whoever creates it.

With Python logging at DEBUG, urllib3 logs each request line with its query string,
and httpx logs every URL at INFO. Airflow's masker does not see what ``dag.test()``
prints, and it only knows registered values. So while a call runs, a log record
factory rewrites any record created in the call's context (thread or task): known
secrets in any common encoding, and the values of secret-looking query parameters,
become ``***``. Records created elsewhere are left alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from airflow_campaign_provider.redaction import redact_query_values, scrub

_SECRETS: ContextVar[tuple[str, ...] | None] = ContextVar("campaign_external_api_log_secrets", default=None)
_INSTALL_LOCK = threading.Lock()
_installed = False


def mask_secrets(values: Iterable[str]) -> None:
    """Register ``values`` with Airflow's masker, which hides them in task logs and rendered fields."""
    from airflow.sdk.log import mask_secret

    for value in values:
        mask_secret(value)


def remember_secret(secrets: list[str], secret: str) -> None:
    """Add a secret learnt mid-call (a token) to a runner's ``secrets``, which it scrubs, and to the masker."""
    if secret not in secrets:
        mask_secrets([secret])
        secrets.append(secret)


@contextmanager
def scrubbed_log_records(secrets: Iterable[str]) -> Iterator[None]:
    """Within the block, log records created in this context carry none of ``secrets``."""
    _install()
    token = _SECRETS.set(tuple(secrets))
    try:
        yield
    finally:
        _SECRETS.reset(token)


def _install() -> None:
    """Wrap the current log record factory once per process."""
    global _installed
    with _INSTALL_LOCK:
        if not _installed:
            logging.setLogRecordFactory(_scrubbing_factory(logging.getLogRecordFactory()))
            _installed = True


def _scrubbing_factory(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        secrets = _SECRETS.get()
        if secrets is not None:
            try:
                message = record.getMessage()
            except Exception:  # a record whose arguments do not fit its format: keep only the format
                message = str(record.msg)
            cleaned = redact_query_values(scrub(message, secrets))
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return record

    return factory
