"""Two pynode protocol connections on a socket pair, no node: for tests of the wire."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import rpyc

from pynode import protocol, transport


def connection(sock: socket.socket) -> protocol.ErpcConnection:
    return protocol.ErpcConnection(
        rpyc.VoidService(), transport._Channel(transport._Stream(sock)), dict(transport.PROTOCOL_CONFIG)
    )


@contextmanager
def wire_pair(handler: protocol.Handler) -> Iterator[tuple[protocol.ErpcConnection, protocol.ErpcConnection]]:
    """``(sender, receiver)``; the receiver decodes into ``handler``. Both closed afterwards."""
    left, right = socket.socketpair()
    sender, receiver = connection(left), connection(right)
    receiver.handler = handler
    try:
        yield sender, receiver
    finally:
        sender._channel.close()
        receiver._channel.close()
