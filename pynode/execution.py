"""Running remote calls: cooperative plus asynchronous cancellation.

A call runs in the reader thread that read it, or in a thread started for it (:mod:`pynode.reading`);
other threads go on reading the connection (:mod:`pynode.handoff`), so calls on one connection
run concurrently, as Erlang's ``erpc`` spawns a process per call. When the caller gives up (its timeout expires, it
abandons the request, or the connection drops) the call is *cancelled*:

- guaranteed: :func:`cancelled` returns True in the thread running the call from then on, and the
  call's result is dropped (never sent back);
- best effort: the thread is sent :class:`~pynode.errors.CallCancelled` asynchronously
  (``PyThreadState_SetAsyncExc``), and only while the called function runs. It is raised at the
  next Python bytecode boundary: a thread blocked in C (``time.sleep``, a socket read, a long numpy
  operation) sees it when that returns, and code may catch it (it is a ``BaseException``, so
  ``except Exception`` does not). It never escapes into pynode's own machinery: while the call
  waits in a nested ``erpc`` call it is deferred (:func:`shield`) and raised when that wait ends;
- not guaranteed: anything about side effects. A cancelled call may or may not have run, partly or
  completely (as Erlang's documentation says of a timed-out ``erpc:call``). A call cancelled before
  it started does not start.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from pynode.errors import CallCancelled

log = logging.getLogger(__name__)

_current = threading.local()


class CallContext:
    """Cancellation state of one call (shared by the thread running it and the canceller)."""

    __slots__ = ("label", "lock", "cancelled", "running", "thread_id")

    def __init__(self, label: str) -> None:
        self.label = label
        self.lock = threading.Lock()
        self.cancelled = False
        self.running = False
        self.thread_id = 0

    def cancel(self) -> None:
        """Mark the call cancelled and, if its function is running, raise CallCancelled in its
        thread (once)."""
        with self.lock:
            if self.cancelled:
                return
            self.cancelled = True
            if self.running:
                _raise_in_thread(self.thread_id)
                log.debug("cancelled %s running in thread %d", self.label, self.thread_id)


def cancelled() -> bool:
    """True inside a remote call whose caller gave up on it (timed out, cancelled, disconnected).

    Long computations should poll it and return early; outside a remote call it is always False.
    """
    ctx: CallContext | None = getattr(_current, "ctx", None)
    return ctx is not None and ctx.cancelled


def shield() -> CallContext | None:
    """Defer the asynchronous CallCancelled of the call running in this thread, if any, until
    :func:`unshield`; returns what to pass to it.

    pynode's own bookkeeping that a remote call may run into (a nested ``erpc`` wait, which may
    hold a connection's read token) must not be interrupted halfway. A CallCancelled already
    pending for this thread is withdrawn (and raised by :func:`unshield` instead)."""
    ctx: CallContext | None = getattr(_current, "ctx", None)
    if ctx is None:
        return None
    with ctx.lock:
        if not ctx.running:  # already shielded further up this thread's stack
            return None
        ctx.running = False
        if ctx.cancelled:
            _clear_in_thread(ctx.thread_id)
    return ctx


def unshield(ctx: CallContext | None) -> None:
    """End a :func:`shield`: raise CallCancelled here if the call was cancelled meanwhile."""
    if ctx is None:
        return
    with ctx.lock:
        ctx.running = True
        if not ctx.cancelled:
            return
    raise CallCancelled(f"{ctx.label} was cancelled")


def _raise_in_thread(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(CallCancelled))


def _clear_in_thread(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


def _checkpoint() -> None:
    """A Python-level function call: a pending asynchronous exception is raised at its entry."""


Outcome = TypeVar("Outcome")
"""What a finished call leaves to do (a result to send): acted on only when the call was not
cancelled."""


def execute(ctx: CallContext, run: Callable[[], Outcome | None]) -> Outcome | None:
    """Run ``run()`` in this thread under ``ctx`` and return the outcome it returned, or None when
    the call was cancelled meanwhile (its result is dropped). ``run`` must catch its own
    exceptions; CallCancelled never escapes.

    The caller acts on the outcome itself (sends the result), after its own bookkeeping (a
    reader thread counts itself available again before it sends the result, see
    :mod:`pynode.reading`). No asynchronous CallCancelled can hit that: one is only ever raised
    while ``run`` is running.
    """
    try:
        return _execute(ctx, run)
    except CallCancelled:  # delivered just after the function returned: the result is dropped
        log.debug("%s: late cancellation absorbed", ctx.label)
        return None


def _execute(ctx: CallContext, run: Callable[[], Outcome | None]) -> Outcome | None:
    with ctx.lock:
        if ctx.cancelled:
            return None
        ctx.thread_id = threading.get_ident()
        ctx.running = True
    _current.ctx = ctx
    outcome: Outcome | None = None
    try:
        outcome = run()
    except CallCancelled:
        log.debug("%s stopped by cancellation", ctx.label)
    finally:
        with ctx.lock:
            ctx.running = False
            was_cancelled = ctx.cancelled
        _current.ctx = None
    if was_cancelled:
        _checkpoint()  # a CallCancelled set before `running` went False is raised here, not later
        return None
    return outcome
