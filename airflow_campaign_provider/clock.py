"""The clock a runner passes into the code that has timing rules: ``now()`` and ``sleep()``.

Rule-holding code never reads the time itself. The hook, the delivery task and the ledger
take a :class:`Clock`, real time by default, and tests pass a fake one that moves only when
it is told to, so every timing rule is tested without waiting.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Epoch seconds and a blocking sleep."""

    def now(self) -> float:
        """Seconds since the epoch: a deadline or a claim time means the same in another process."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        ...


class SystemClock:
    """The real clock."""

    @staticmethod
    def now() -> float:
        return time.time()

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)
