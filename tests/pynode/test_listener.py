"""The listener's handshake slots, on loopback with a real handshake (no node process)."""

from __future__ import annotations

import socket
import threading
import time

from pynode import handshake, transport
from pynode.testing import wait_until

HOST = "127.0.3.30"


def test_connections_beyond_the_slots_are_closed_at_once_and_slots_come_back() -> None:
    served: list[str] = []
    listener = transport.Listener(
        HOST, 0, handshake.Authenticator("l@127.0.3.30", lambda peer: "k", hidden=False),
        lambda sock, peer: served.append(peer.name), handshake_slots=2,
    )
    threading.Thread(target=listener.start, daemon=True).start()
    try:
        stalled = [socket.create_connection((HOST, listener.port), timeout=5) for _ in range(2)]
        assert wait_until(lambda: listener._slots._value == 0, timeout=5)
        extra = [socket.create_connection((HOST, listener.port), timeout=5) for _ in range(3)]
        for sock in extra:
            assert sock.recv(1) == b""  # closed without a word
        assert listener.refused_for_slots == 3
        for sock in stalled + extra:
            sock.close()
        assert wait_until(lambda: listener._slots._value == 2, timeout=5)
        with socket.create_connection((HOST, listener.port), timeout=5) as sock:
            handshake.initiate(sock, "i@127.0.3.31", "l@127.0.3.30", "k", hidden=True)
        assert wait_until(lambda: served == ["i@127.0.3.31"], timeout=5)
    finally:
        listener.close()
