"""A hand-made peer for tests of what a node does with a bad message: it passes the handshake
(knowing the cookie), sends one raw pynode frame and sees whether the node hangs up."""

from __future__ import annotations

import socket
import struct

from pynode import handshake
from pynode.testing import LocalCluster, wait_until


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the peer closes the connection (EOF or reset) within the socket's timeout."""
    try:
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def send_frame_as(cluster: LocalCluster, node: str, raw_name: str, body: bytes, *, hidden: bool) -> bool:
    """Connect to ``node`` as ``raw_name``, send one frame with ``body``; True when the node then
    closes the connection."""
    host = node.partition("@")[2]
    sock = socket.create_connection((host, cluster.port(node)), timeout=10)
    try:
        handshake.initiate(sock, raw_name, node, cluster.cookie, hidden=hidden)
        sock.sendall(struct.pack("!LB", len(body), 0) + body + b"\n")
        return closed_by_peer(sock)
    finally:
        sock.close()


def dropped_line(cluster: LocalCluster, node: str, raw_name: str) -> str:
    """The log line in which ``node`` says it dropped its connection with ``raw_name`` (waits for
    it a few seconds; '' when there is none)."""
    marker = f"dropped the connection with {raw_name}"
    wait_until(lambda: marker in cluster.stderr(node), timeout=5)
    return next((line for line in cluster.stderr(node).splitlines() if marker in line), "")
