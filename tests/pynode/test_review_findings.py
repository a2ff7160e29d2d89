"""Defects found in review of readable and its busy-poll (pynode.transport) and of node monitors
(pynode.node).

Each test fails on the code it was written against and states the behaviour a fix must restore.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

import pynode
from pynode import Node, runtime, transport
from pynode.errors import ReceiveTimeout
from pynode.testing import LocalCluster

# Seconds one poll(0) of the spin is made to take: a thread that releases the GIL for the poll
# waits up to sys.getswitchinterval() (5 ms) to get it back while another thread computes.
SLOW_POLL = 0.005


class SlowZeroPoller:
    """A poller whose non-blocking polls take SLOW_POLL seconds (as under GIL contention)."""

    def __init__(self, poller) -> None:
        self._poller = poller

    def poll(self, timeout: float = 0) -> list:
        if timeout == 0:
            time.sleep(SLOW_POLL)
        return self._poller.poll(timeout)


def test_readable_waits_no_longer_than_its_timeout_when_the_spin_is_slow() -> None:
    """readable(t) blocks for t - SPIN after the spin however long the spin took, so every delay
    in the spin adds to the wait. With one CPU-bound thread next to it, readable(0.02) measured
    ~30.6 ms (medians of 40) against ~25.3 ms for one poll(20 ms)."""
    left, right = socket.socketpair()
    stream = transport._Stream(right)
    stream._poller = SlowZeroPoller(stream._poller)
    try:
        started = time.perf_counter()
        assert not stream.readable(0.05)
        elapsed = time.perf_counter() - started
    finally:
        stream.close()
        left.close()
    assert elapsed < 0.05 + SLOW_POLL, f"readable(0.05) took {elapsed * 1000:.1f} ms"


class DataAfterTheSpin:
    """A poller that sees nothing during the spin (non-blocking polls) and the real socket, where
    data is waiting, once readable blocks."""

    def __init__(self, poller) -> None:
        self._poller = poller

    def poll(self, timeout: float = 0) -> list:
        return [] if timeout == 0 else self._poller.poll(timeout)


@pytest.mark.parametrize("timeout", [30 * 86400.0, float("inf")], ids=["30-days", "inf"])
def test_readable_accepts_a_timeout_longer_than_poll_can_take(timeout: float) -> None:
    """poll() takes at most 2**31 - 1 ms (24.8 days): a longer timeout raises OverflowError, which
    Link._read_for takes for garbage on the wire. Measured end to end (pre-existing, not from the
    spin): erpc.call(node, time.sleep, 0.05, timeout=30 * 86400) logs "dropped the connection ...
    undecodable data (OverflowError: timeout is too large)" and raises ErpcTimeout at once."""
    left, right = socket.socketpair()
    stream = transport._Stream(right)
    stream._poller = DataAfterTheSpin(stream._poller)
    left.sendall(b"x")
    try:
        assert stream.readable(timeout)
    finally:
        stream.close()
        left.close()


ME = "review_me@127.0.0.190"
PEER = "review_peer@127.0.0.191"


def _receive_all(timeout: float = 0.5) -> list[object]:
    messages = []
    while True:
        try:
            messages.append(pynode.receive(timeout=timeout))
        except ReceiveTimeout:
            return messages


def test_a_stale_nodedown_does_not_fire_the_monitor_of_a_newer_connection(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """detach() takes the peer out of the up set under the node's lock but sends nodedown after
    releasing it. A reconnection in between announces nodeup first; the late nodedown then fires
    a monitor set on the new, live connection and leaves subscribers believing the peer is down.
    The gate holds the disconnecting thread exactly in that window (as a preemption would)."""
    cluster = local_cluster([PEER])
    Node.start(ME, cookie=cluster.cookie)
    try:
        Node.monitor_nodes(True)
        assert Node.connect(PEER)
        assert pynode.receive(timeout=5) == ("nodeup", PEER)

        monitors = runtime.current().monitors
        original = monitors.node_down
        in_window, release = threading.Event(), threading.Event()

        def gated_node_down(peer: str, hidden: bool) -> None:
            if not in_window.is_set():
                in_window.set()
                release.wait(2)  # a fix that sends under the lock makes connect wait this out
            original(peer, hidden)

        monitors.node_down = gated_node_down
        Node.disconnect(PEER)
        assert in_window.wait(5)  # the old link's thread is between its lock and its nodedown
        assert Node.connect(PEER)  # a new connection
        Node.monitor(PEER)  # a monitor of the live, new connection
        release.set()
        time.sleep(0.2)

        assert PEER in Node.list()
        heard = _receive_all()
        assert heard[-1:] == [("nodeup", PEER)], f"peer connected, yet heard {heard}"
        assert heard.count(("nodedown", PEER)) <= 1, f"the new connection's monitor fired: {heard}"
    finally:
        Node.stop()
