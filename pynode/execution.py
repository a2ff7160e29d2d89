"""Where remote calls run: worker threads, and cooperative plus asynchronous cancellation.

Every incoming call runs in its own worker thread (threads are created on demand and reused, so a
connection's calls run concurrently, as Erlang's ``erpc`` spawns a process per call). When the
caller gives up (timeout, ``receive_response`` timeout, lost connection) the call is *cancelled*:

- guaranteed: :func:`cancelled` returns True in the thread running the call from then on, and the
  call's result is dropped (never sent back);
- best effort: the thread is sent :class:`~pynode.errors.CallCancelled` asynchronously
  (``PyThreadState_SetAsyncExc``). It is raised at the next Python bytecode boundary only: a thread
  blocked in C (``time.sleep``, a socket read, a long numpy operation) sees it when that returns;
  code may catch it (it is a ``BaseException``, so ``except Exception`` does not).
- not guaranteed: anything about side effects. A cancelled call may or may not have run, partly or
  completely (as Erlang's documentation says of a timed-out ``erpc:call``). A call cancelled before
  a worker picked it up does not start.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from collections.abc import Callable

from pynode.errors import CallCancelled

log = logging.getLogger(__name__)

# Idle worker threads exit after this many seconds without work (Erlang processes are free; threads
# are not, so the pool shrinks back after a burst).
IDLE_TIMEOUT = 30.0

_current = threading.local()


class CallContext:
    """Cancellation state of one running call (shared by the worker and the canceller)."""

    __slots__ = ("label", "lock", "cancelled", "running", "thread_id")

    def __init__(self, label: str) -> None:
        self.label = label
        self.lock = threading.Lock()
        self.cancelled = False
        self.running = False
        self.thread_id = 0

    def cancel(self) -> None:
        """Mark the call cancelled and, if it is running, raise CallCancelled in its thread."""
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


def _raise_in_thread(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(CallCancelled))


def _checkpoint() -> None:
    """A Python-level function call: a pending asynchronous exception is delivered at its entry."""


Outcome = Callable[[], None]
"""What a finished call leaves to do (send its result); run only when the call was not cancelled."""


class WorkerPool:
    """Runs calls in threads created on demand and reused while idle."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: queue.SimpleQueue[tuple[CallContext, Callable[[], Outcome]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._spawned = 0

    def submit(self, ctx: CallContext, run: Callable[[], Outcome]) -> None:
        """Run ``run()`` in a worker thread under ``ctx``; then run the outcome it returns, unless
        the call was cancelled meanwhile. ``run`` must catch its own exceptions."""
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
            else:
                self._spawned += 1
                number = self._spawned
        self._tasks.put((ctx, run))
        if spawn:
            threading.Thread(target=self._work, name=f"{self._name}-worker-{number}", daemon=True).start()

    def stop(self) -> None:
        """Let idle workers exit (running calls finish on their own)."""
        with self._lock:
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._tasks.put(None)

    def _work(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=IDLE_TIMEOUT)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody claimed an idle worker: this one may go
                        self._idle -= 1
                        return
                continue
            if task is None:
                return
            try:
                self._execute(*task)
            except CallCancelled:  # arrived just after the call returned: its result is dropped
                log.debug("late cancellation absorbed")
            with self._lock:
                self._idle += 1

    def _execute(self, ctx: CallContext, run: Callable[[], Outcome]) -> None:
        with ctx.lock:
            if ctx.cancelled:
                return
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
            return
        if outcome is not None:
            outcome()
