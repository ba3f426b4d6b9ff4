"""Retry policy: which failures are retried, how long to wait, and Retry-After. Pure.

The hook asks this module two questions after every failed attempt, "may I retry?"
and "how long do I wait?", and does the waiting itself against one deadline.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""RFC 9110 §9.2.2: repeating these has the same effect as sending them once."""

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
"""With this header the server de-duplicates, so a POST or PATCH may be sent again."""


def is_repeatable(method: str, header_names: Iterable[str], retry_non_idempotent: bool = False) -> bool:
    """True when sending a request twice is safe: an idempotent method, an opt-in, or an idempotency key."""
    return (
        method.upper() in IDEMPOTENT_METHODS
        or retry_non_idempotent
        or any(name.lower() == IDEMPOTENCY_KEY_HEADER.lower() for name in header_names)
    )


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry and how long to back off.

    :param max_retries: retries after the first attempt (so ``max_retries + 1`` attempts at most).
    :param retry_statuses: HTTP statuses that are retried.
    :param backoff_base: the first backoff, in seconds; it doubles on each retry.
    :param backoff_cap: the longest backoff, in seconds, before jitter.
    """

    max_retries: int
    retry_statuses: frozenset[int]
    backoff_base: float = 0.5
    backoff_cap: float = 30.0

    def may_retry(self, retries_done: int, *, request_sent: bool, repeatable: bool) -> bool:
        """Return True when another attempt is allowed.

        A request that may have been processed is repeated only when that is safe
        (``repeatable``: an idempotent method, an opt-in or an idempotency key); one
        that provably never left (a failed connect) always may be.
        """
        if retries_done >= self.max_retries:
            return False
        return repeatable or not request_sent

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Exponential backoff with jitter: half fixed, half random, so retries spread out but still grow."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** max(retry_number - 1, 0))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the wait a ``Retry-After`` header asks for, in seconds, or None if absent or unreadable.

    Both forms of RFC 9110 §10.2.3 are read: delay-seconds and an HTTP-date.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdecimal():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())
