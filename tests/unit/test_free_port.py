"""Ports for the embedded servers: free now, and outside the range the kernel hands to
outgoing connections, so a client's connection cannot take one before its server binds it."""

from __future__ import annotations

import socket

import pytest

from streams.local import embedded
from streams.local.embedded import free_port, port_is_free


def test_a_free_port_lies_below_the_ephemeral_range_and_can_be_bound() -> None:
    low = embedded._ephemeral_low()
    ports = {free_port() for _ in range(50)}
    assert all(1024 <= p < low for p in ports)
    assert len(ports) > 40  # random picks, not one port over and over
    for port in list(ports)[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_a_server_listens_on_is_not_free() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        assert not port_is_free(server.getsockname()[1])


def test_without_room_below_the_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "_ephemeral_low", lambda: 1024)
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
