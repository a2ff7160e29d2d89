"""erpc against real node processes (LocalCluster): calls, errors, timeouts, concurrency,
multicall, cast, requests, mailboxes, membership, and a peer killed mid-call."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator

import cloudpickle
import numpy as np
import psutil
import pytest

import pynode
from pynode import Node, erpc
from pynode.errors import CallCancelled, EncodeError, ErpcTimeout, NoConnection, ReceiveTimeout, RemoteError
from pynode.reading import MAX_IDLE_READERS
from pynode.testing import LocalCluster, this_node, wait_until

# Functions defined here travel by value: the node processes cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

A = "calls_a@127.0.0.41"
B = "calls_b@127.0.0.42"
HIDDEN = "calls_h@127.0.0.42"
VICTIM = "calls_k@127.0.0.43"
ME = "calls_test@127.0.0.40"
NOBODY = "nobody@127.0.0.41"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([A, B, HIDDEN, VICTIM], hidden=[HIDDEN]) as c:
        with this_node(ME, cookie=c.cookie):
            yield c


def spin_until_cancelled() -> None:
    """What a long remote job does: poll ``pynode.cancelled()`` until its caller gives up, and
    stop quietly on the asynchronous CallCancelled too (whichever comes first)."""
    try:
        while not pynode.cancelled():
            time.sleep(0.01)
    except CallCancelled:
        pass


def test_call_ships_a_closure_with_a_numpy_array_and_connects_implicitly(cluster: LocalCluster) -> None:
    Node.disconnect(A)
    assert wait_until(lambda: A not in Node.list(), timeout=5.0)
    weights = np.linspace(0.0, 1.0, 200_000)  # large enough to travel out of band
    result = erpc.call(A, lambda scale: (os.getpid(), weights * scale), 2.0, timeout=30)
    assert result[0] == cluster.pid(A)
    np.testing.assert_array_equal(result[1], weights * 2.0)
    assert A in Node.list()


def test_module_function_string(cluster: LocalCluster) -> None:
    assert erpc.call(A, "os:getpid", timeout=30) == cluster.pid(A)


def test_remote_value_error_arrives_as_value_error_with_node_and_traceback(cluster: LocalCluster) -> None:
    def check_sigma(sigma: float) -> float:
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        return sigma

    with pytest.raises(ValueError, match="sigma must be positive, got -1") as info:
        erpc.call(A, check_sigma, -1, timeout=30)
    note = "\n".join(info.value.__notes__)
    assert A in note and "in check_sigma" in note


def test_unrebuildable_remote_exception_becomes_remote_error(cluster: LocalCluster) -> None:
    def fail() -> None:
        error = RuntimeError("carries a lock")
        error.lock = threading.Lock()  # type: ignore[attr-defined]
        raise error

    with pytest.raises(RemoteError, match="carries a lock") as info:
        erpc.call(A, fail, timeout=30)
    assert info.value.node == A and "in fail" in info.value.remote_traceback


def test_unknown_function_and_unpicklable_argument_give_clear_errors_and_the_node_keeps_serving(
    cluster: LocalCluster,
) -> None:
    with pytest.raises(ModuleNotFoundError, match=f"no module 'not_a_module' on node {A}"):
        erpc.call(A, "not_a_module:f", timeout=30)
    with pytest.raises(AttributeError, match="no function 'os:no_such_fn'"):
        erpc.call(A, "os:no_such_fn", timeout=30)
    with pytest.raises(EncodeError, match="cannot be pickled"):
        erpc.call(A, len, threading.Lock(), timeout=30)
    assert erpc.call(A, "os:getpid", timeout=30) == cluster.pid(A)


def test_timeout_raises_promptly_and_the_remote_call_sees_cancelled(cluster: LocalCluster) -> None:
    def long_job(reply_to: pynode.Pid) -> None:
        spin_until_cancelled()
        pynode.send(reply_to, ("stopped", pynode.cancelled()))

    start = time.monotonic()
    with pytest.raises(ErpcTimeout):
        erpc.call(A, long_job, pynode.self_pid(), timeout=0.3)
    assert time.monotonic() - start < 1.0
    assert pynode.receive(timeout=10) == ("stopped", True)


def test_eight_concurrent_half_second_calls_on_one_connection_take_about_half_a_second(
    cluster: LocalCluster,
) -> None:
    erpc.call(B, "os:getpid", timeout=30)  # connected and warm
    start = time.monotonic()
    requests = [erpc.send_request(B, time.sleep, 0.5) for _ in range(8)]
    assert [erpc.receive_response(r, timeout=10) for r in requests] == [None] * 8
    elapsed = time.monotonic() - start
    assert elapsed < 1.5, f"8 x 0.5 s took {elapsed:.2f} s: calls were not concurrent"  # serial: 4 s


def test_remote_function_can_call_back_into_the_waiting_caller(cluster: LocalCluster) -> None:
    """A -> ME while ME waits on A, and A -> B -> ME: no deadlock, results flow back."""

    def caller_pid() -> int:
        return os.getpid()

    def call_back(me: str) -> tuple[int, int]:
        via_b = erpc.call(B, lambda: erpc.call(me, caller_pid, timeout=10), timeout=20)
        return erpc.call(me, caller_pid, timeout=10), via_b

    assert erpc.call(A, call_back, ME, timeout=30) == (os.getpid(), os.getpid())


def test_reader_threads_do_not_accumulate_after_bursts(cluster: LocalCluster) -> None:
    def burst() -> None:
        requests = [erpc.send_request(B, time.sleep, 0.2) for _ in range(8)]
        for r in requests:
            erpc.receive_response(r, timeout=10)

    baseline = erpc.call(B, "threading:active_count", timeout=10)
    for _ in range(3):
        burst()
        # the 8 threads that ran calls retire (just after sending their results), but for
        # MAX_IDLE_READERS spare readers
        bound = baseline + MAX_IDLE_READERS
        assert wait_until(lambda: erpc.call(B, "threading:active_count", timeout=10) <= bound, timeout=3.0)


def test_sequential_calls_reuse_reader_threads(cluster: LocalCluster) -> None:
    """Back-to-back calls alternate between the same readers: no thread is started per call."""

    def thread_tag() -> bytes:
        thread = threading.current_thread()  # a new thread has a new Thread object, hence a new tag
        if not hasattr(thread, "erpc_test_tag"):
            thread.erpc_test_tag = os.urandom(8)
        return thread.erpc_test_tag

    erpc.call(A, thread_tag, timeout=10)  # warm: the connection's spare reader exists
    tags = {erpc.call(A, thread_tag, timeout=10) for _ in range(200)}
    assert len(tags) <= MAX_IDLE_READERS, f"200 sequential calls ran on {len(tags)} threads"


def test_large_array_costs_a_small_multiple_of_a_memory_copy(cluster: LocalCluster) -> None:
    big = np.random.default_rng(0).standard_normal(8 * 2**20)  # 64 MiB
    erpc.call(A, "os:getpid", timeout=30)
    copy_start = time.perf_counter()
    big.copy()  # into fresh memory, page faults included, as the receiver does
    copy_time = time.perf_counter() - copy_start
    start = time.perf_counter()
    total = erpc.call(A, lambda a: float(a.sum()), big, timeout=60)
    elapsed = time.perf_counter() - start
    assert total == pytest.approx(float(big.sum()))
    # no zlib, no quadratic slicing, no pickle-inline copies: a handful of copies' worth at most
    assert elapsed < max(20 * copy_time, 1.0), f"{elapsed:.3f} s vs one copy {copy_time:.3f} s"


def test_concurrent_callers_with_mixed_payloads_get_their_own_results(cluster: LocalCluster) -> None:
    """Frames and their out-of-band attachments never interleave across threads."""
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(10):
                n = int(rng.choice([1, 100, 50_000, 300_000]))  # in band and out of band
                x = rng.standard_normal(n)
                y = erpc.call(A, lambda v, s: (v * 2.0, s), x, seed, timeout=30)
                assert y[1] == seed
                np.testing.assert_array_equal(y[0], x * 2.0)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_multicall_keeps_node_order_with_errors_in_place(cluster: LocalCluster) -> None:
    def who() -> str:
        if pynode.Node.self() == B:
            raise ValueError("not on b")
        return pynode.Node.self()

    results = erpc.multicall([A, B, NOBODY, A], who, timeout=30)
    assert [r[0] for r in results] == ["ok", "error", "error", "ok"]
    assert results[0][1] == A and results[3][1] == A
    assert isinstance(results[1][1], ValueError)
    assert isinstance(results[2][1], NoConnection) and "nobody" in str(results[2][1])


def test_cast_returns_at_once_and_runs(cluster: LocalCluster) -> None:
    def slow_hello(reply_to: pynode.Pid) -> None:
        time.sleep(1.0)
        pynode.send(reply_to, "hello from cast")

    start = time.monotonic()
    assert erpc.cast(A, slow_hello, pynode.self_pid()) is None
    assert time.monotonic() - start < 0.8  # did not wait for the 1 s function
    assert pynode.receive(timeout=10) == "hello from cast"


def test_send_request_wait_and_check_response(cluster: LocalCluster) -> None:
    request = erpc.send_request(A, lambda: time.sleep(0.4) or "done")
    assert erpc.check_response(request) is None
    assert erpc.wait_response(request, timeout=0.05) is None  # not abandoned
    assert erpc.wait_response(request, timeout=10) == ("response", "done")
    assert erpc.receive_response(request, timeout=1) == "done"


def test_receive_response_timeout_abandons_and_cancels(cluster: LocalCluster) -> None:
    def wait_for_cancel(reply_to: pynode.Pid) -> None:
        spin_until_cancelled()
        pynode.send(reply_to, "request cancelled")

    request = erpc.send_request(A, wait_for_cancel, pynode.self_pid())
    with pytest.raises(ErpcTimeout):
        erpc.receive_response(request, timeout=0.2)
    assert pynode.receive(timeout=10) == "request cancelled"


def test_mailboxes_carry_messages_both_ways(cluster: LocalCluster) -> None:
    def echo_server(reply_to: pynode.Pid) -> str:
        for step in range(3):
            pynode.send(reply_to, ("progress", step))
        pynode.send(reply_to, ("my pid", pynode.self_pid()))
        return pynode.receive(timeout=10)

    request = erpc.send_request(B, echo_server, pynode.self_pid())
    assert [pynode.receive(timeout=10) for _ in range(3)] == [("progress", 0), ("progress", 1), ("progress", 2)]
    tag, remote_pid = pynode.receive(timeout=10)
    assert tag == "my pid" and remote_pid.node == B
    pynode.send(remote_pid, "reply from the caller")
    assert erpc.receive_response(request, timeout=10) == "reply from the caller"


def test_node_membership_ping_and_hidden_nodes(cluster: LocalCluster) -> None:
    assert Node.self() == ME
    assert Node.ping(A) == "pong"
    assert Node.ping(NOBODY) == "pang"
    assert Node.connect(HIDDEN) is True
    assert HIDDEN in Node.list("hidden") and HIDDEN not in Node.list()
    assert A in Node.list() and A not in Node.list("hidden")
    assert set(Node.list("connected")) >= {A, HIDDEN}
    assert Node.disconnect(HIDDEN) is True
    assert wait_until(lambda: HIDDEN not in Node.list("connected"), timeout=5.0)
    with pytest.raises(ValueError, match="kind"):
        Node.list("everything")  # type: ignore[arg-type]


def test_killed_peer_fails_pending_calls_with_no_connection_at_once(cluster: LocalCluster) -> None:
    request = erpc.send_request(VICTIM, time.sleep, 60)
    time.sleep(0.2)  # the call is running there
    cluster.kill(VICTIM)
    start = time.monotonic()
    with pytest.raises(NoConnection, match=VICTIM):
        erpc.receive_response(request, timeout=30)
    assert time.monotonic() - start < 2.0
    with pytest.raises(NoConnection):
        erpc.call(VICTIM, "os:getpid", timeout=5)


def test_back_to_back_callers_read_their_own_replies(cluster: LocalCluster, monkeypatch) -> None:
    """After the first call, a caller's reply is read by the caller itself, not handed over by a
    reader thread (the thread wake-up a plain rpyc call does not pay); a message sent to this
    node afterwards is still read once the caller is gone."""
    from pynode import connection, reading

    resolved_in: list[threading.Thread] = []
    original = connection.Connection.on_result

    def recording_on_result(self, *args) -> None:
        resolved_in.append(threading.current_thread())
        original(self, *args)

    monkeypatch.setattr(connection.Connection, "on_result", recording_on_result)
    erpc.call(A, "os:getpid", timeout=10)
    resolved_in.clear()
    for _ in range(50):
        erpc.call(A, "os:getpid", timeout=10)
    own = sum(t is threading.current_thread() for t in resolved_in)
    assert len(resolved_in) == 50 and own >= 25, f"only {own} of 50 replies were read by their caller"

    me = pynode.self_pid()
    time.sleep(3 * reading.CALLER_GRACE)
    erpc.cast(A, lambda: pynode.send(me, "after the calls"))
    assert pynode.receive(timeout=5) == "after the calls"


def test_ctrl_c_while_waiting_leaves_the_connection_readable(cluster: LocalCluster) -> None:
    """KeyboardInterrupt lands in a caller that may hold the connection's read token: the token
    is passed on, so the next calls on that connection are answered."""
    import signal

    erpc.call(A, "os:getpid", timeout=10)
    timer = threading.Timer(0.3, signal.raise_signal, args=(signal.SIGINT,))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        erpc.call(A, time.sleep, 5, timeout=30)
    timer.join()
    start = time.monotonic()
    assert erpc.call(A, "os:getpid", timeout=10) == cluster.pid(A)
    assert [erpc.call(A, "builtins:len", "abc", timeout=10) for _ in range(20)] == [3] * 20
    assert time.monotonic() - start < 3.0


def test_cancelled_call_waiting_on_a_nested_call_finishes_the_wait_then_stops(cluster: LocalCluster) -> None:
    """A cancelled remote call blocked in its own erpc.call sees CallCancelled only once that
    nested wait is over (raised as the nested call returns); the connections keep working."""
    me = pynode.self_pid()

    def nested() -> None:
        start = time.monotonic()
        try:
            erpc.call(B, time.sleep, 0.6, timeout=10)
        except CallCancelled:
            pynode.send(me, ("CallCancelled after", time.monotonic() - start))
            raise
        pynode.send(me, "the nested call returned normally")

    assert erpc.call(A, lambda: erpc.call(B, "builtins:len", "a", timeout=5), timeout=10) == 1  # A is connected to B
    with pytest.raises(ErpcTimeout):
        erpc.call(A, nested, timeout=0.2)
    what, elapsed = pynode.receive(timeout=5)
    assert what == "CallCancelled after" and elapsed >= 0.55, f"the nested wait was cut after {elapsed:.2f} s"
    assert erpc.call(A, lambda: erpc.call(B, "builtins:len", "ab", timeout=5), timeout=10) == 2


def test_a_long_call_hands_its_connection_on_so_other_traffic_is_served(cluster: LocalCluster) -> None:
    """The reader that runs a call keeps the socket only briefly: a cast sent while a 1.5 s
    call runs on the same connection is served at once, not after the call."""
    me = pynode.self_pid()
    request = erpc.send_request(A, time.sleep, 1.5)
    time.sleep(0.1)
    sent = time.monotonic()
    erpc.cast(A, lambda: pynode.send(me, "cast served"))
    assert pynode.receive(timeout=5) == "cast served"
    assert time.monotonic() - sent < 0.5, "the cast waited for the long call"
    assert erpc.receive_response(request, timeout=10) is None


def test_a_call_calling_back_over_its_own_connection_keeps_it_read(cluster: LocalCluster) -> None:
    """A's reader runs our call and, inside it, calls us back over the same connection (it then
    reads that connection as a caller, longer than the watchdog's hand-off delay), then keeps
    computing: nested results stay correct, and the connection is still read afterwards."""

    def work(caller: str) -> list[int]:
        got = [erpc.call(caller, lambda i=i: (time.sleep(0.01), i)[1], timeout=10) for i in range(20)]
        time.sleep(1.0)  # still running the call, after its nested calls
        return got

    me = pynode.self_pid()
    request = erpc.send_request(A, work, ME)
    time.sleep(0.7)  # the nested calls are done (~0.3 s), A still sleeps
    sent = time.monotonic()
    erpc.cast(A, lambda: pynode.send(me, "cast served"))
    assert pynode.receive(timeout=5) == "cast served"
    assert time.monotonic() - sent < 0.4, "nobody read the connection while the call ran"
    assert erpc.receive_response(request, timeout=10) == list(range(20))


def test_mixed_traffic_in_both_directions_keeps_every_answer_straight(cluster: LocalCluster) -> None:
    """Stress for the read token: 6 threads here call A (quick calls, calls that outlive the
    watchdog's delay, calls that time out, calls that call back here over the same connection)
    while A sends messages back; every answer must match its question and nothing may hang."""
    import random

    me = pynode.self_pid()

    def echo_after(i: int, pause: float) -> int:
        time.sleep(pause)
        return i

    def call_back(i: int, caller: str, target: object) -> int:
        pynode.send(target, ("from A", i))
        return erpc.call(caller, lambda: i * 2, timeout=10) + 1

    failures: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(40):
            i = seed * 1000 + n
            kind = rng.choice(["quick", "slow", "timeout", "callback"])
            try:
                if kind == "quick":
                    got = erpc.call(A, echo_after, i, 0.0, timeout=10)
                    expected = i
                elif kind == "slow":
                    got = erpc.call(A, echo_after, i, 0.005, timeout=10)
                    expected = i
                elif kind == "timeout":
                    with pytest.raises(ErpcTimeout):
                        erpc.call(A, echo_after, i, 0.2, timeout=0.01)
                    continue
                else:
                    got = erpc.call(A, call_back, i, ME, me, timeout=10)
                    expected = 2 * i + 1
                if got != expected:
                    failures.append(f"{kind} call {i} answered {got!r}")
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                failures.append(f"{kind} call {i} raised {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(seed,), daemon=True) for seed in range(1, 7)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert failures == []
    while True:  # drain the callbacks' messages; each came from A
        try:
            assert pynode.receive(timeout=0.2)[0] == "from A"
        except ReceiveTimeout:
            break
    assert erpc.call(A, "builtins:len", "ok", timeout=10) == 2
    assert time.monotonic() - start < 60


def test_nodes_use_no_cpu_once_calls_stop(cluster: LocalCluster) -> None:
    """Threads waiting for a message busy-poll only briefly (transport.SPIN) before they block:
    once calls stop, neither the called node nor this one burns CPU."""
    for _ in range(300):
        erpc.call(A, lambda: None, timeout=10)
    time.sleep(0.3)  # past every spin, and the handoff watchdog's idle ticks
    node = psutil.Process(cluster.pid(A))
    node_before, mine_before = sum(node.cpu_times()[:2]), time.process_time()
    time.sleep(1.0)
    assert sum(node.cpu_times()[:2]) - node_before < 0.05
    assert time.process_time() - mine_before < 0.05


@pytest.mark.parametrize("timeout", [30 * 86400.0, float("inf")], ids=["30-days", "inf"])
def test_a_timeout_longer_than_one_poll_can_wait_is_a_plain_long_wait(cluster: LocalCluster, timeout: float) -> None:
    """A 30-day or infinite timeout waits like any other (poll() alone takes at most 24.8 days,
    a lock at most threading.TIMEOUT_MAX); the connection stays up."""
    assert erpc.call(A, time.sleep, 0.05, timeout=timeout) is None
    requests = [erpc.send_request(A, time.sleep, 0.05) for _ in range(3)]  # some callers wait unpromoted
    assert [erpc.receive_response(r, timeout=timeout) for r in requests] == [None] * 3
    assert A in Node.list()
