"""The conftest guard itself: a connect outside loopback is refused before a packet leaves."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import REFUSED_CONNECTS, LoopbackGuardError, is_loopback


@pytest.mark.parametrize("address", [("127.0.0.1", 1), ("127.8.9.10", 1), ("::1", 1, 0, 0), ("localhost", 1)])
def test_loopback_addresses_pass(address: tuple[object, ...]) -> None:
    assert is_loopback(address)


@pytest.mark.parametrize(
    "address", [("203.0.113.7", 443), ("10.0.0.1", 443), ("2001:db8::1", 443), ("example.com", 80)]
)
def test_anything_else_is_refused_before_connecting(address: tuple[object, ...]) -> None:
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(LoopbackGuardError):
        sock.connect(address)
    assert [repr(address)] == REFUSED_CONNECTS
    REFUSED_CONNECTS.clear()  # the autouse check would fail this test otherwise, which is its job elsewhere
