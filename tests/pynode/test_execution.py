"""Cancellation of running calls (execution.execute in plain threads)."""

from __future__ import annotations

import threading
import time

from pynode.errors import CallCancelled
from pynode.execution import CallContext, cancelled, execute


def execute_and_finish(ctx: CallContext, run) -> None:
    """What a reader thread does: run the call, then its outcome when one is returned."""
    outcome = execute(ctx, run)
    if outcome is not None:
        outcome()


def start(ctx: CallContext, run) -> threading.Thread:
    thread = threading.Thread(target=execute_and_finish, args=(ctx, run), daemon=True)
    thread.start()
    return thread


def test_outcome_is_returned_unrun_when_not_cancelled() -> None:
    seen: list[str] = []
    outcome = execute(CallContext("plain"), lambda: lambda: seen.append("outcome sent"))
    assert seen == []  # the caller decides when to send the result
    outcome()
    assert seen == ["outcome sent"]


def test_cancel_is_visible_through_cancelled_and_drops_the_outcome() -> None:
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

    thread = start(ctx, run)
    assert started.wait(5)
    assert not cancelled()  # only inside the cancelled call
    ctx.cancel()
    thread.join(5)
    assert seen == [True]  # the outcome of a cancelled call is dropped


def test_cancel_raises_call_cancelled_in_a_busy_python_loop_and_never_escapes() -> None:
    ctx = CallContext("busy")
    seen: list[str] = []
    started = threading.Event()
    escaped: list[BaseException] = []

    def run():
        started.set()
        try:
            while True:  # pure Python: never polls cancelled()
                pass
        except CallCancelled:
            seen.append("interrupted")
            raise

    def guarded() -> None:
        try:
            execute_and_finish(ctx, run)
            for _ in range(1000):  # the thread's later Python code is not hit by a stray exception
                pass
            seen.append("thread continues")
        except BaseException as exc:
            escaped.append(exc)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    assert started.wait(5)
    ctx.cancel()
    thread.join(5)
    assert seen == ["interrupted", "thread continues"] and escaped == []


def test_call_cancelled_before_it_starts_does_not_run() -> None:
    ctx = CallContext("never")
    ctx.cancel()
    ran = threading.Event()
    assert execute(ctx, lambda: ran.set()) is None
    assert not ran.is_set()


def test_shield_defers_cancellation_to_unshield() -> None:
    from pynode.execution import shield, unshield

    ctx = CallContext("shielded")
    seen: list[str] = []
    shielded = threading.Event()
    cancelled_now = threading.Event()

    def run():
        token = shield()
        shielded.set()
        assert cancelled_now.wait(5)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:  # pure Python: an asynchronous exception would land here
            pass
        seen.append("shielded work finished")
        try:
            unshield(token)
        except CallCancelled:
            seen.append("raised at unshield")
            raise

    thread = start(ctx, run)
    assert shielded.wait(5)
    ctx.cancel()
    cancelled_now.set()
    thread.join(5)
    assert seen == ["shielded work finished", "raised at unshield"]


def test_shield_outside_a_call_does_nothing() -> None:
    from pynode.execution import shield, unshield

    token = shield()
    assert token is None
    unshield(token)
