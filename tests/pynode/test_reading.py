"""The read scheduling of one connection (pynode.reading), against a scripted connection.

``Script`` plays the connection: the test pushes messages, and it records which thread read and
handled each one. It also checks the scheduler's first rule on every read: never two threads
reading at once.
"""

from __future__ import annotations

import queue
import threading
import time

import pytest

from pynode import protocol
from pynode.pending import Pending
from pynode.reading import ReadScheduler
from pynode.testing import wait_until

EOF = object()


class Script:
    """A :class:`pynode.reading.Source` fed by the test. Messages: ``("reply", pending)``
    resolves ``pending`` (a reply), ``("note", label)`` is recorded (runs no code),
    ``("run", fn)`` runs ``fn`` through ``scheduler.run_here`` (runs code), ``("bad", exc)``
    raises ``exc`` when handled; EOF ends the connection, failing every pending given to
    :meth:`track` (what the owner of a real connection does)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.garbage: list[Exception] = []
        self.scheduler = ReadScheduler(self.lock, "test", self._watched, self.garbage.append)
        self.scheduler.attach(self)
        self._queue: queue.Queue = queue.Queue()
        self._reading = 0
        self.overlaps = 0
        self.closed = False
        self.close_calls = 0
        self.watched = 0
        self.handled: list[tuple[str, object, int]] = []  # (kind, value, thread id)
        self.requests: list[int] = []  # thread ids that ran requests
        self._tracked: list[Pending] = []

    def _watched(self) -> None:
        self.watched += 1

    def push(self, *message: object) -> None:
        self._queue.put(message)

    def end(self) -> None:
        self._queue.put(EOF)

    def track(self, pending: Pending) -> Pending:
        self._tracked.append(pending)
        return pending

    def readers_of(self, kind: str) -> list[int]:
        return [thread for k, _, thread in self.handled if k == kind]

    # --- Source -------------------------------------------------------------------------------

    def readable(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        while self._queue.empty():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return True

    def recv_message(self):
        with self.lock:
            self._reading += 1
            if self._reading > 1:
                self.overlaps += 1
        try:
            item = self._queue.get()
        finally:
            with self.lock:
                self._reading -= 1
        if item is EOF:
            self._queue.put(EOF)  # every later read sees the end too
            raise EOFError("scripted end")
        return item[0], item[1], ()

    def dispatch_passive(self, kind, frame, buffers) -> int:
        me = threading.get_ident()
        if kind == "reply":
            self.handled.append((kind, frame, me))
            with self.lock:
                frame.resolve(0, b"", ())
            return protocol.REPLIED
        if kind == "note":
            self.handled.append((kind, frame, me))
            return protocol.HANDLED
        if kind == "bad":
            raise frame
        return protocol.SERVE

    def run_request(self, kind, frame, buffers) -> None:
        self.requests.append(threading.get_ident())
        self.scheduler.run_here(frame)

    def close(self) -> None:
        self.close_calls += 1
        if self.closed:
            return
        self.closed = True
        with self.lock:
            for pending in self._tracked:
                if not pending.done:
                    pending.fail(EOFError("connection lost"))


@pytest.fixture
def script():
    s = Script()
    yield s
    s.end()
    assert s.overlaps == 0, "two threads read the connection at once"


def start_reader(script: Script) -> threading.Thread:
    thread = threading.Thread(target=script.scheduler.run_reader, daemon=True)
    thread.start()
    return thread


def test_a_caller_reads_its_own_reply_when_nobody_else_reads(script) -> None:
    pending = Pending()
    script.push("reply", pending)
    assert script.scheduler.await_result(pending, timeout=5)
    assert pending.done and pending.error is None
    assert script.readers_of("reply") == [threading.get_ident()]


def test_a_wait_that_times_out_gives_the_socket_to_the_reader(script) -> None:
    start_reader(script)
    assert not script.scheduler.await_result(Pending(), timeout=0.05)
    script.push("note", "after the wait")
    assert wait_until(lambda: script.readers_of("note"), timeout=5)
    assert script.readers_of("note") != [threading.get_ident()]


def test_concurrent_callers_each_get_their_reply_whoever_reads_it(script) -> None:
    start_reader(script)
    pendings = [Pending() for _ in range(6)]
    results: dict[int, bool] = {}

    def wait(i: int) -> None:
        results[i] = script.scheduler.await_result(pendings[i], timeout=10)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for pending in reversed(pendings):
        script.push("reply", pending)
    for t in threads:
        t.join(10)
    assert results == dict.fromkeys(range(6), True)


def test_a_reader_runs_a_request_inline_and_the_watchdog_hands_the_socket_on(script) -> None:
    """A reader runs the request it read itself, holding the socket: a message behind it waits
    until the watchdog's look finds the call overdue; then another reader reads it while the
    call still runs."""
    release = threading.Event()
    started = threading.Event()

    def long_call() -> None:
        started.set()
        release.wait(10)

    reader = start_reader(script)
    script.push("run", long_call)
    assert started.wait(5)
    assert script.requests == [reader.ident] and script.watched == 1
    script.push("note", "behind the call")
    assert script.scheduler.hand_off_if_overdue(time.monotonic(), delay=60.0) is True  # too young
    time.sleep(0.05)
    assert script.readers_of("note") == [], "read while the reader runs a call holding the socket"
    assert script.scheduler.hand_off_if_overdue(time.monotonic() + 120.0, delay=60.0) is False
    assert wait_until(lambda: script.readers_of("note"), timeout=5), "nobody read after the hand-off"
    assert script.readers_of("note")[0] != reader.ident
    assert not release.is_set()  # the call was still running
    assert script.scheduler.hand_off_if_overdue(time.monotonic() + 120.0, delay=60.0) is False  # nothing left
    release.set()


def test_nothing_to_hand_on_without_a_running_call(script) -> None:
    start_reader(script)
    assert script.scheduler.hand_off_if_overdue(time.monotonic() + 120.0, delay=0.0) is False


def test_a_request_read_by_a_caller_runs_in_a_thread_of_its_own(script) -> None:
    release = threading.Event()
    running = threading.Event()

    def call() -> None:
        running.set()
        release.wait(10)

    pending = Pending()
    script.push("run", call)
    script.push("reply", pending)
    assert script.scheduler.await_result(pending, timeout=5)  # not held up by the call it read
    assert running.wait(5)
    assert script.requests and script.requests[0] != threading.get_ident()
    assert script.watched == 0  # not an inline call: the watchdog has nothing to watch
    assert script.scheduler.hand_off_if_overdue(time.monotonic() + 120.0, delay=0.0) is False
    release.set()


def test_a_nested_wait_of_an_inline_call_keeps_the_socket_it_reads(script) -> None:
    """An inline call that waits for a reply on its own connection reads it as a caller: the
    watchdog must not take the socket from it (two threads would read one socket)."""
    nested = Pending()
    in_wait = threading.Event()
    release = threading.Event()
    outcome: list[bool] = []

    def call_back() -> None:
        in_wait.set()
        outcome.append(script.scheduler.await_result(nested, timeout=10))
        release.wait(10)

    reader = start_reader(script)
    script.push("run", call_back)
    assert in_wait.wait(5)
    time.sleep(0.05)
    assert script.scheduler.hand_off_if_overdue(time.monotonic() + 120.0, delay=0.0) is True
    script.push("reply", nested)
    assert wait_until(lambda: outcome == [True], timeout=5)
    assert script.readers_of("reply") == [reader.ident]
    # the wait ended while the call goes on running: the socket it gave up gets a reader
    script.push("note", "while the call still runs")
    assert wait_until(lambda: script.readers_of("note"), timeout=5), "nobody reads after the nested wait"
    release.set()


def test_an_inline_call_whose_socket_was_handed_on_waits_like_any_caller(script) -> None:
    """The watchdog hands the socket on first; the call then waits for its nested reply without
    reading, and whoever reads the reply wakes it."""
    nested = Pending()
    go = threading.Event()
    started = threading.Event()
    outcome: list[bool] = []

    def call_back() -> None:
        started.set()
        go.wait(10)
        outcome.append(script.scheduler.await_result(nested, timeout=10))

    reader = start_reader(script)
    script.push("run", call_back)
    assert started.wait(5)
    assert script.scheduler.hand_off_if_overdue(time.monotonic() + 120.0, delay=0.0) is False
    go.set()
    script.push("reply", nested)
    assert wait_until(lambda: outcome == [True], timeout=5)
    assert script.readers_of("reply") and script.readers_of("reply")[0] != reader.ident


def test_the_end_of_the_connection_fails_a_waiting_caller_and_stops_the_readers(script) -> None:
    reader = start_reader(script)
    pending = script.track(Pending())
    waiter = threading.Thread(target=script.scheduler.await_result, args=(pending, 30))
    waiter.start()
    script.end()
    waiter.join(5)
    reader.join(5)
    assert not waiter.is_alive() and not reader.is_alive()
    assert isinstance(pending.error, EOFError)
    assert script.close_calls >= 1


def test_garbage_is_reported_and_ends_the_reader(script) -> None:
    reader = start_reader(script)
    bad = protocol.ProtocolViolation("malformed")
    script.push("bad", bad)
    reader.join(5)
    assert not reader.is_alive()
    assert script.garbage == [bad] and script.closed


def test_garbage_read_by_a_caller_is_reported_and_the_caller_returns(script) -> None:
    bad = protocol.ProtocolViolation("malformed")
    script.push("bad", bad)
    assert script.scheduler.await_result(Pending(), timeout=1) is False
    assert script.garbage == [bad]
