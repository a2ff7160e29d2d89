"""Worker threads and cancellation of running calls."""

from __future__ import annotations

import threading
import time

from pynode.errors import CallCancelled
from pynode.execution import CallContext, WorkerPool, cancelled


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_calls_run_concurrently_in_separate_threads() -> None:
    pool = WorkerPool("t")
    barrier = threading.Barrier(4, timeout=5)
    finished: list[int] = []

    def job(i: int):
        def run():
            barrier.wait()  # all four must be running at once to pass
            return lambda: finished.append(i)

        return run

    for i in range(4):
        pool.submit(CallContext(f"job {i}"), job(i))
    assert wait_for(lambda: len(finished) == 4)
    pool.stop()


def test_cancel_is_visible_through_cancelled_and_drops_the_outcome() -> None:
    pool = WorkerPool("t")
    ctx = CallContext("cooperative")
    seen: list[object] = []
    started = threading.Event()

    def run():
        started.set()
        try:
            while not cancelled():
                time.sleep(0.01)
        except CallCancelled:  # the asynchronous exception may win the race with the poll
            pass
        seen.append(cancelled())
        return lambda: seen.append("outcome sent")

    pool.submit(ctx, run)
    assert started.wait(5)
    assert not cancelled()  # only inside the cancelled call
    ctx.cancel()
    assert wait_for(lambda: seen == [True], 5)
    time.sleep(0.05)
    assert seen == [True]  # the outcome of a cancelled call is dropped


def test_cancel_raises_call_cancelled_in_a_busy_python_loop() -> None:
    pool = WorkerPool("t")
    ctx = CallContext("busy")
    seen: list[str] = []
    started = threading.Event()

    def run():
        started.set()
        try:
            while True:  # pure Python: never polls cancelled()
                pass
        except CallCancelled:
            seen.append("interrupted")
            raise

    pool.submit(ctx, run)
    assert started.wait(5)
    ctx.cancel()
    assert wait_for(lambda: seen == ["interrupted"], 5)
    # the worker thread survived and takes new work
    done = threading.Event()
    pool.submit(CallContext("next"), lambda: done.set)
    assert done.wait(5)


def test_call_cancelled_before_it_starts_does_not_run() -> None:
    pool = WorkerPool("t")
    ctx = CallContext("never")
    ctx.cancel()
    ran = threading.Event()
    pool.submit(ctx, lambda: ran.set())
    time.sleep(0.1)
    assert not ran.is_set()
