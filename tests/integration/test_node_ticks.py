"""Failure detection by ticks against real node processes (LocalCluster), every end at ticktime 2 s:
a frozen peer (SIGSTOP) is declared down by ticks, a busy one (a 256 MiB array streaming, eight
0.5 s numpy calls) is not, and a malformed tick gets its sender disconnected."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

import pynode
from pynode import Node, erpc, runtime
from pynode.errors import NoConnection, ReceiveTimeout
from pynode.testing import LocalCluster, drain_mailbox, this_node, wait_until
from raw_peer import dropped_line, send_frame_as

cloudpickle.register_pickle_by_value(sys.modules[__name__])

TICKTIME = 2.0
ME = "tick_test@127.0.1.1"
FROZEN = "tick_frozen@127.0.1.2"
BUSY = "tick_busy@127.0.1.3"
GUARD = "tick_guard@127.0.1.4"
RAW = "tick_raw@127.0.1.5"
# A frozen peer is declared down between ticktime and 1.25 ticktime after the last byte it sent
# (2-2.5 s here; the issue asks for 3 s). LOADED_SLACK is what a 2-core machine shared with other
# test runs may add to a thread's wake-up; the reason in the error shows it was the ticks.
DOWN_BOUND = 3.0
LOADED_SLACK = 1.5
BIG = 256 * 1024 * 1024  # bytes


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([FROZEN, BUSY, GUARD], ticktime=TICKTIME, preload=["numpy"]) as c:
        with this_node(ME, cookie=c.cookie, ticktime=TICKTIME):
            yield c


def test_the_nodes_run_with_the_ticktime_they_were_given(cluster: LocalCluster) -> None:
    assert runtime.current().ticktime == TICKTIME
    assert erpc.call(BUSY, lambda: runtime.current().ticktime, timeout=10) == TICKTIME


def wait_for_cancellation(marker: str) -> str:
    """Runs on FROZEN: until the call is cancelled (its connection gone; CallCancelled is raised
    in this thread), then notes it."""
    try:
        deadline = time.monotonic() + 60
        while not pynode.cancelled() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        Path(marker).write_text("cancelled" if pynode.cancelled() else "not cancelled")
    return "finished"


def test_a_frozen_peer_is_declared_down_by_ticks_and_its_calls_fail(cluster: LocalCluster, tmp_path: Path) -> None:
    drain_mailbox()
    marker = tmp_path / "frozen-call"
    Node.monitor(FROZEN)
    request = erpc.send_request(FROZEN, wait_for_cancellation, str(marker))  # waits forever: timeout=None
    time.sleep(0.3)  # the call is running there
    pid = cluster.pid(FROZEN)
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        with pytest.raises(NoConnection, match=rf"no tick from {FROZEN} within 2 s"):
            erpc.receive_response(request, timeout=None)
        failed_after = time.monotonic() - stopped
        assert pynode.receive(timeout=5) == ("nodedown", FROZEN)
        down_after = time.monotonic() - stopped
        assert FROZEN not in Node.list()
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"frozen peer: NoConnection after {failed_after:.2f} s, nodedown after {down_after:.2f} s")
    # never before ticktime minus the peer's tick interval (it may have been silent that long)
    assert TICKTIME / 2 <= failed_after < DOWN_BOUND + LOADED_SLACK
    assert down_after < DOWN_BOUND + LOADED_SLACK

    # thawed, the peer finds the old connection closed: the old call is cancelled there, its
    # result never comes back here, and a new call dials a fresh connection
    assert wait_until(marker.exists, timeout=15), "the old call was not stopped on the thawed node"
    assert marker.read_text() == "cancelled"
    with pytest.raises(NoConnection, match="no tick"):
        erpc.check_response(request)
    assert erpc.call(FROZEN, os.getpid, timeout=30) == pid
    assert FROZEN in Node.list()
    with pytest.raises(ReceiveTimeout):
        pynode.receive(timeout=0.2)  # no late result or message from the old connection


def crunch() -> float:
    """0.5 s of numpy work, mostly with the GIL released (matrix products)."""
    a = np.random.default_rng(0).random((300, 300))
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        a = np.tanh(a @ a.T / 300.0)
    return float(a.sum())


def test_no_false_nodedown_while_a_large_array_streams_and_numpy_keeps_the_peer_busy(cluster: LocalCluster) -> None:
    drain_mailbox()
    assert erpc.call(BUSY, "os:getpid", timeout=30)
    Node.monitor_nodes(True)
    stop = threading.Event()
    errors: list[BaseException] = []
    crunched = [0] * 8

    def crunch_loop(i: int) -> None:
        try:
            while not stop.is_set():
                erpc.call(BUSY, crunch, timeout=60)
                crunched[i] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=crunch_loop, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        big = np.ones(BIG // 8)
        started = time.monotonic()
        transfers = 0
        while time.monotonic() - started < 2 * TICKTIME or transfers < 4:
            # there and back: 256 MiB as an argument, then 256 MiB as a result
            assert erpc.call(BUSY, lambda a: a.nbytes, big, timeout=120) == BIG
            back = erpc.call(BUSY, lambda n: np.ones(n // 8), BIG, timeout=120)
            assert back.nbytes == BIG
            del back
            transfers += 2
        streamed_for = time.monotonic() - started
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        Node.monitor_nodes(False)
    print(f"busy peer: {transfers} transfers of 256 MiB in {streamed_for:.1f} s, {sum(crunched)} numpy calls")
    assert errors == []
    assert min(crunched) >= 1
    messages = drain_mailbox()
    assert ("nodedown", BUSY) not in messages, messages
    assert BUSY in Node.list()
    assert ME in erpc.call(BUSY, Node.list, timeout=30)  # nor did the busy peer declare us down
    assert f"no tick from {ME}" not in cluster.stderr(BUSY)


def test_a_malformed_tick_gets_its_sender_disconnected_with_a_log_line_naming_it(cluster: LocalCluster) -> None:
    assert send_frame_as(cluster, GUARD, RAW, bytes([0x45]) + b"extra", hidden=True)  # a TICK has no body
    assert "malformed TICK" in dropped_line(cluster, GUARD, RAW)
    assert erpc.call(GUARD, "os:getpid", timeout=10) == cluster.pid(GUARD)  # still serving
