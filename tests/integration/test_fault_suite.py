"""The fault suite, with real node processes: thousands of hostile connections and hellos, a
soak of concurrent calls, and kill -9 of either side in the middle of a call.

The figures these tests measure (threads, RSS, times) are printed; run with ``-s`` to see them.
The default run soaks 10,000 calls; ``make soak`` (the ``slow`` marker) 100,000.
"""

from __future__ import annotations

import os
import pickle
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cloudpickle
import psutil
import pytest

import pynode
from pynode import erpc, handshake
from pynode.errors import CallCancelled, NoConnection
from pynode.testing import LocalCluster, this_node, wait_until

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ME = "fault_me@127.0.3.20"
TARGET = "fault_target@127.0.3.21"
TARGET_HOST = "127.0.3.21"
MIB = 1 << 20
HOSTILE_CONNECTIONS = 2000
HELLOS = 2000


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([TARGET]) as c:
        with this_node(ME, cookie=c.cookie):
            yield c


def node_figures(pid: int) -> tuple[int, int]:
    proc = psutil.Process(pid)
    return proc.num_threads(), proc.memory_info().rss


class Sampler:
    """Samples a process's thread count and RSS every few milliseconds; keeps the maxima."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_threads, self.max_rss = node_figures(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            threads, rss = node_figures(self.pid)
            self.max_threads = max(self.max_threads, threads)
            self.max_rss = max(self.max_rss, rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def still_serves(cluster: LocalCluster) -> bool:
    return erpc.call(TARGET, "os:getpid", timeout=30) == cluster.pid(TARGET)


def test_2000_stalled_connections_hold_at_most_the_handshake_slots(cluster: LocalCluster) -> None:
    pid = cluster.pid(TARGET)
    threads0, rss0 = node_figures(pid)
    sampler = Sampler(pid)
    socks = []
    try:
        for _ in range(HOSTILE_CONNECTIONS):  # connect and say nothing, as a slow-loris would
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.connect((TARGET_HOST, cluster.port(TARGET)))
            socks.append(sock)
        time.sleep(0.5)
        closed = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                closed += sock.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed += 1
        threads_during, rss_during = node_figures(pid)
    finally:
        for sock in socks:
            sock.close()
        sampler.stop()
    print(f"\n{HOSTILE_CONNECTIONS} stalled connections: node threads {threads0} -> max {sampler.max_threads}, "
          f"RSS {rss0 / MIB:.1f} -> max {sampler.max_rss / MIB:.1f} MiB; {closed} closed at once")
    assert sampler.max_threads <= threads0 + 64 + 8  # 64 handshake slots, a few transient threads
    assert sampler.max_rss - rss0 < 50 * MIB
    assert closed >= HOSTILE_CONNECTIONS - 64 - 8  # all but the slots' were closed at once
    assert "all 64 handshake slots are taken" in cluster.stderr(TARGET)
    assert wait_until(lambda: still_serves(cluster), timeout=30)  # the slots free up


class CreatesFile:
    """Unpickling this object creates the file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def hostile_hellos(count: int, canary: Path, seed: int = 11) -> list[bytes]:
    """Random, truncated, oversized and otherwise wrong hellos, each with a canary pickle after
    it, or before it, or instead of it."""
    rng = random.Random(seed)
    bomb = pickle.dumps(CreatesFile(canary))
    good = handshake._hello("fuzzer@127.0.3.29", False)
    kinds = [
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))),
        lambda: good[: rng.randrange(1, len(good))],
        lambda: bomb,
        lambda: good + bomb,  # a pickle where the challenge reply belongs
        lambda: good + bytes(rng.randrange(256) for _ in range(64)) + bomb,  # a forged proof, then a pickle
        lambda: handshake.MAGIC + bytes([handshake.VERSION, 0]) + (1 << 30).to_bytes(8, "big") + b"\xff\xff" + bomb,
        lambda: handshake.MAGIC + bytes([handshake.VERSION, 0]) + (2**64 - 1).to_bytes(8, "big") + b"\0\x05a@b.c",
        lambda: handshake.MAGIC + bytes([1, 0, 0, 5]) + b"a@b.c" + bomb,  # version 1
        lambda: handshake._hello("fuzzer@127.0.3.29", False, tls=True) + bomb,  # claims TLS
        lambda: handshake.MAGIC + bytes([handshake.VERSION, 0]) + (1 << 30).to_bytes(8, "big") + b"\0\x20"
        + bytes(rng.randrange(256) for _ in range(32)) + bomb,  # a name that is not UTF-8 / not a name
        lambda: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bomb,
        lambda: bomb * rng.randrange(1, 2000),  # oversized
    ]
    return [kinds[i % len(kinds)]() for i in range(count)]


def send_hello(port: int, data: bytes) -> None:
    with socket.create_connection((TARGET_HOST, port), timeout=15, source_address=("127.0.3.29", 0)) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except OSError:
            pass  # reset by the node: refused


def test_handshake_fuzz_unpickles_nothing_and_the_node_keeps_serving(cluster: LocalCluster, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    pid, port = cluster.pid(TARGET), cluster.port(TARGET)
    threads0, rss0 = node_figures(pid)
    hellos = hostile_hellos(HELLOS, canary)
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda data: send_hello(port, data), hellos))
    took = time.monotonic() - started
    assert wait_until(lambda: node_figures(pid)[0] <= threads0 + 4, timeout=15)
    threads1, rss1 = node_figures(pid)
    print(f"\n{len(hellos)} hostile hellos in {took:.1f} s: node threads {threads0} -> {threads1}, "
          f"RSS {rss0 / MIB:.1f} -> {rss1 / MIB:.1f} MiB")
    assert not canary.exists()
    assert rss1 - rss0 < 50 * MIB
    assert still_serves(cluster)
    assert cluster.alive(TARGET)


def soak(cluster: LocalCluster, total: int, threads: int = 8, in_flight: int = 4) -> None:
    """``total`` calls from ``threads`` threads, each keeping ``in_flight`` requests open; every
    call must come back exactly once with its own answer."""
    per_thread = total // threads
    answers: dict[tuple[int, int], object] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()

    def echo(t: int, i: int) -> tuple[int, int, bytes]:
        return t, i, bytes([i % 256]) * (i % 2000)

    def run(t: int) -> None:
        try:
            pending: list[tuple[int, erpc.Request]] = []
            for i in range(per_thread):
                pending.append((i, erpc.send_request(TARGET, echo, t, i)))
                if len(pending) >= in_flight or i == per_thread - 1:
                    for j, req in pending:
                        value = erpc.receive_response(req, timeout=60)
                        with lock:
                            if (t, j) in answers:
                                failures.append(AssertionError(f"call {(t, j)} answered twice"))
                            answers[(t, j)] = value
                    pending.clear()
        except BaseException as exc:
            with lock:
                failures.append(exc)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join(600)
    took = time.monotonic() - started
    mismatched = [key for key, value in answers.items() if value != echo(*key)]
    lost = threads * per_thread - len(answers)
    print(f"\nsoak: {threads * per_thread} calls from {threads} threads in {took:.1f} s: "
          f"{lost} lost, {len(mismatched)} mismatched, {len(failures)} failures")
    assert not failures, failures[:3]
    assert lost == 0 and not mismatched


def test_soak_10000_calls_from_8_threads(cluster: LocalCluster) -> None:
    soak(cluster, 10_000)


@pytest.mark.slow
def test_soak_100000_calls_from_8_threads(cluster: LocalCluster) -> None:
    soak(cluster, 100_000)


def test_kill_9_of_the_callee_mid_call_fails_the_call_at_once(local_cluster) -> None:
    victim = "fault_victim@127.0.3.22"
    c = local_cluster([victim], cookie=pynode.Node.get_cookie())
    request = erpc.send_request(victim, time.sleep, 60)
    other = erpc.send_request(TARGET, time.sleep, 0.5)  # on another connection
    time.sleep(0.3)
    started = time.monotonic()
    c.kill(victim)
    with pytest.raises(NoConnection):
        erpc.receive_response(request, timeout=30)
    assert time.monotonic() - started < 10
    assert erpc.receive_response(other, timeout=30) is None


def test_kill_9_of_the_caller_mid_call_cancels_the_call_on_the_callee(
    cluster: LocalCluster, local_cluster, tmp_path: Path
) -> None:
    caller = "fault_caller@127.0.3.23"
    c = local_cluster([caller], cookie=cluster.cookie)
    started, cancelled = tmp_path / "started", tmp_path / "cancelled"
    threads0, _ = node_figures(cluster.pid(TARGET))

    def job() -> None:
        started.write_text("x")
        try:
            while not pynode.cancelled():
                time.sleep(0.01)
        except CallCancelled:
            pass
        cancelled.write_text("x")

    request = erpc.send_request(caller, lambda: erpc.call(TARGET, job, timeout=None))
    assert wait_until(started.exists, timeout=30)
    c.kill(caller)
    with pytest.raises(NoConnection):
        erpc.receive_response(request, timeout=30)
    assert wait_until(cancelled.exists, timeout=30)  # the callee saw the caller go and cancelled
    assert still_serves(cluster)
    assert wait_until(lambda: node_figures(cluster.pid(TARGET))[0] <= threads0 + 2, timeout=15)


def test_handshake_slots_flag_sets_the_bound(local_cluster) -> None:
    from pynode.launch import NodeSpec

    name = "fault_slots@127.0.3.24"
    c = local_cluster([NodeSpec(name, extra_args=("--handshake-slots", "2"))])
    socks = [socket.create_connection(("127.0.3.24", c.port(name)), timeout=10) for _ in range(2)]
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.3.24", c.port(name)), timeout=10) as third:
            assert third.recv(1) == b""  # closed at once: both slots are taken
        assert wait_until(lambda: "all 2 handshake slots are taken" in c.stderr(name), timeout=10)
    finally:
        for sock in socks:
            sock.close()
