"""The deadline watchdog: what counts as "the deadline passed", and the socket it shuts."""

from __future__ import annotations

import socket
import time

import pytest

from airflow_campaign_provider.transport import CallGuard


def test_a_guard_before_its_deadline_has_not_passed_it() -> None:
    guard = CallGuard(time.monotonic() + 60, check_addresses=True, url="https://api.example.com/")
    assert not guard.deadline_passed
    assert not guard.expired


def test_a_deadline_passes_even_when_the_watchdog_has_not_fired_yet() -> None:
    # A socket timeout set to the time left can beat the timer thread; the hook must still call it a deadline.
    guard = CallGuard(time.monotonic() - 0.001, check_addresses=True, url="https://api.example.com/")
    assert not guard.expired
    assert guard.deadline_passed


@pytest.mark.timeout(30)
def test_the_watchdog_shuts_a_blocked_read_at_the_deadline() -> None:
    reader, writer = socket.socketpair()
    deadline = time.monotonic() + 0.2
    with reader, writer, CallGuard(deadline, check_addresses=True, url="https://api.example.com/") as guard:
        guard.watch(reader)
        # Blocks until the watchdog shuts the socket down; pytest-timeout fails the test if it never does.
        assert reader.recv(1) == b""
        assert guard.expired
