"""Who reads a connection's socket, and where the messages it brings are handled.

Exactly one thread reads a connection at a time: it holds the connection's
:class:`~pynode.readtoken.ReadToken`. Two kinds of threads take turns (leader/follower):

- *callers* waiting for a reply (:meth:`ReadScheduler.await_result`) read the connection
  themselves when nobody else does, so a call's reply wakes the very thread that waits for it, as
  a plain rpyc call does; a caller whose reply another thread reads is woken by that thread. A
  caller that got its reply hands the token to another waiting caller, if any;
- *reader threads* (:meth:`ReadScheduler.run_reader`) read while no caller does, so EOF is seen
  as soon as the peer dies and incoming calls and messages are served. While callers come and
  go, reader threads stay out of their way: after reading a reply for a waiting caller they hand
  the token to the callers, and take it back once no caller has waited for CALLER_GRACE seconds
  (so a message or a call from the peer that arrives in that gap may wait that long to be read).

A message that runs no code (:mod:`pynode.protocol`: a reply, a delivered message, a cancel) is
handled by the thread that read it. One that runs code (an incoming call) runs in the reader
thread that read it, which keeps the token meanwhile (no thread is woken for a call that returns
quickly); the node's watchdog (:mod:`pynode.handoff`) calls :meth:`ReadScheduler.hand_off_if_overdue`,
which hands the token on to a caller or a spare reader (waking an idle one or starting a new
thread) once the call has run for a millisecond or two, so the connection keeps being read and
calls run concurrently. At most MAX_IDLE_READERS idle readers are kept per connection. A call
read by a caller runs in a thread started for it (the caller must stay free for its own reply).

The scheduler knows the connection only as a :class:`Source` (:class:`pynode.protocol.ErpcConnection`
is one) and the calls waiting for replies as :class:`~pynode.pending.Pending` objects, whose
state changes under the lock it is given (the connection's own, which also guards its table of
pending calls: a result resolves a Pending and a promotion signals it under that one lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from pynode.execution import shield, unshield
from pynode.pending import Pending
from pynode.protocol import REPLIED, SERVE
from pynode.readtoken import ReadToken
from pynode.transport import Buffers, Data

log = logging.getLogger(__name__)

# Idle reader threads kept per connection after a burst of concurrent calls (each idle one is a
# blocked thread; one suffices to keep reading, a second absorbs the next call's start-up).
MAX_IDLE_READERS = 2
# How long reader threads leave the socket to callers after the last caller stopped waiting
# (seconds). Back-to-back calls are far closer than this, so each reads its own reply; a reader
# that stays out wakes up once per CALLER_GRACE to look, which is cheap at this rate.
CALLER_GRACE = 0.005

T = TypeVar("T")

_thread = threading.local()  # .detached: this thread was started to serve one request


class Source(Protocol):
    """The connection as the scheduler reads it (:class:`pynode.protocol.ErpcConnection`)."""

    @property
    def closed(self) -> bool: ...

    def readable(self, timeout: float) -> bool:
        """True when a message (or the end of the connection) can be read within ``timeout`` s."""

    def recv_message(self) -> tuple[int, Data, Buffers]:
        """The next message; raises EOFError at the end of the connection."""

    def dispatch_passive(self, kind: int, frame: Data, buffers: Buffers) -> int:
        """Handle a message that runs no code (HANDLED, REPLIED) or report SERVE."""

    def run_request(self, kind: int, frame: Data, buffers: Buffers) -> None:
        """Handle a message that runs code, in this thread."""

    def close(self) -> None:
        """The connection is over (idempotent; its owner is told)."""


Garbage = Callable[[Exception], None]
"""Told of undecodable data (or a handler's ProtocolViolation) read from the connection: it drops
the connection (the scheduler then sees EOF)."""


class ReadScheduler:
    """The read token of one connection and the threads that take turns holding it.

    ``lock`` is the connection's lock (see the module docstring); ``watch`` tells the node's
    :class:`~pynode.handoff.HandoffWatchdog` that a reader starts running a call holding the
    token; ``garbage`` is called with the exception when the connection brings undecodable data;
    ``name`` names the threads. :meth:`attach` gives it the connection to read.
    """

    def __init__(self, lock: threading.Lock, name: str, watch: Callable[[], None], garbage: Garbage) -> None:
        self._lock = lock
        self._name = name
        self._watch = watch
        self._garbage = garbage
        self._source: Source | None = None  # set once by attach, before any thread reads
        self._token = ReadToken()
        # The fields below are guarded by the lock (reads without it are hints, re-checked under it).
        self._idle_readers = 0  # >= 0: reader threads waiting for the token (staying out or blocked)
        # (thread id, start time) of the reader running a call while holding the token, else None;
        # cleared by that reader when the call ends, or by the watchdog when it hands the token on.
        self._inline: tuple[int, float] | None = None
        self._caller_reader = 0  # thread id of the caller reading in _read_for, else 0
        self._waiting: list[Pending] = []  # callers waiting for a reply without the token, oldest first
        self._awaiting = 0  # >= 0: threads inside await_result
        self._caller_turns = 0  # await_result calls finished (only grows): reader threads watch it change

    def attach(self, source: Source) -> None:
        self._source = source

    # --- callers ------------------------------------------------------------------------------

    def await_result(self, pending: Pending, timeout: float | None) -> bool:
        """Wait until ``pending`` is resolved or failed (True) or ``timeout`` seconds pass (False),
        reading the connection in this thread whenever no other thread does (see the module
        docstring). A lost connection fails ``pending`` (its owner's doing). Inside a remote
        call, a cancellation of that call is raised (CallCancelled) only once the wait is over
        and the read token is passed on (:func:`pynode.execution.shield`)."""
        if pending.done:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.get_ident()
        shielded = shield()
        with self._lock:
            self._awaiting += 1
            pending.waiter = me
            self._waiting.append(pending)
        try:
            while not pending.done:
                if self._token.holder == me or self._token.try_take():
                    if pending.promoted:
                        with self._lock:
                            pending.rearm()
                    if not self._read_for(pending, deadline):
                        continue  # the watchdog took the token first: wait like any caller
                    if not pending.done:  # deadline passed, or the connection is gone
                        break
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or not pending.wait(left):
                    break
            return pending.done
        finally:
            spawn = False
            with self._lock:
                self._awaiting -= 1
                self._caller_turns += 1
                if pending in self._waiting:
                    self._waiting.remove(pending)
                if pending.promoted:  # handed the token just as this wait ended: a later wait must block
                    pending.rearm()
                if self._token.holder == me:
                    self._pass_token_locked()
                    spawn = self._count_reader_needed_locked()
            if spawn:
                self._spawn_reader()
            unshield(shielded)

    def _read_for(self, pending: Pending, deadline: float | None) -> bool:
        """Holding the token, read and dispatch messages until ``pending`` is done, ``deadline``
        passes or the connection ends (True). Requests read here run in threads of their own.

        False, without reading, when this thread no longer holds the token: a reader running a
        call that waits here may just have had it handed on by the watchdog, which leaves it
        alone from the moment it is marked as reading (under the lock, with the check)."""
        source = self._source
        with self._lock:
            if self._token.holder != threading.get_ident():
                return False
            self._caller_reader = self._token.holder
        try:
            while not pending.done and source is not None and not source.closed:
                if deadline is not None and not source.readable(deadline - time.monotonic()):
                    break
                kind, frame, buffers = source.recv_message()
                if source.dispatch_passive(kind, frame, buffers) == SERVE:
                    self._run_detached(source, kind, frame, buffers)
        except EOFError:
            if source is not None:
                source.close()  # its owner fails every pending call, this one included
        except Exception as exc:  # brine/struct errors, protocol violations: garbage on the wire
            self._garbage(exc)
        finally:
            self._caller_reader = 0
        return True

    def _pass_token(self) -> None:
        with self._lock:
            self._pass_token_locked()

    def _pass_token_locked(self) -> bool:
        """Hand the token to the oldest caller still waiting for its reply, else to a reader
        blocked in ``take`` (True), else free it (False). Under the lock; only the holder (or the
        watchdog on behalf of a holder running a call, :meth:`hand_off_if_overdue`) passes it."""
        while self._waiting:
            waiter = self._waiting.pop(0)
            if not waiter.done:
                self._token.transfer(waiter.waiter)
                waiter.signal()  # a promotion: signalled, not done
                return True
        return self._token.give()

    def _run_detached(self, source: Source, kind: int, frame: Data, buffers: Buffers) -> None:
        """Serve a request that runs code in a new thread (a caller read it)."""

        def serve() -> None:
            _thread.detached = True
            try:
                source.run_request(kind, frame, buffers)
            except Exception as exc:
                self._garbage(exc)

        threading.Thread(target=serve, name=f"{self._name}-call", daemon=True).start()

    # --- reader threads -----------------------------------------------------------------------

    def run_reader(self) -> None:
        """Serve the connection in this thread until it closes (the connection's first reader)."""
        self._read(owner=True)

    def _spawn_reader(self) -> None:
        """Start a spare reader; the caller has already counted it in ``_idle_readers``."""
        threading.Thread(target=self._read, args=(False,), name=f"{self._name}-reader", daemon=True).start()

    def _read(self, owner: bool) -> None:
        """Reader loop: wait for the token (while no caller wants it), read, run the requests
        that arrive. The owner (the connection's first reader) stays until the connection closes;
        a spare reader whose token was handed on while it ran a call leaves when enough others
        wait to read. The token is passed on whenever this thread leaves holding it."""
        source = self._source
        if source is None:
            return
        me = threading.get_ident()
        seen = self._caller_turns
        counted = not owner  # a spare reader is counted idle by whoever started it
        try:
            while not source.closed:
                if self._token.holder != me:
                    if not counted and not owner and self._idle_readers >= MAX_IDLE_READERS:
                        return
                    seen = self._wait_for_token(seen, counted)
                    counted = False
                try:
                    request = self._read_until_request(source)
                except EOFError:
                    break
                except Exception as exc:  # brine/struct errors, protocol violations: garbage on the wire
                    self._garbage(exc)
                    break
                if request is None:  # handed the socket to callers
                    seen = -1
                    continue
                try:
                    source.run_request(*request)
                except Exception as exc:
                    self._garbage(exc)
                    break
        finally:
            if self._token.holder == me:
                self._pass_token()
        source.close()  # idempotent; its owner is told once

    def _wait_for_token(self, seen: int, counted: bool) -> int:
        """Stay out while callers read, then block until this reader holds the token; returns
        the caller turns last seen (see :meth:`_stay_out_while_callers_read`). This reader counts
        as idle meanwhile (``counted``: it already does)."""
        if not counted:
            with self._lock:
                self._idle_readers += 1
        try:
            seen = self._stay_out_while_callers_read(seen)
            self._token.take()
        finally:
            with self._lock:
                self._idle_readers -= 1
        return seen

    def _stay_out_while_callers_read(self, seen: int) -> int:
        """Sleep while callers wait for replies or have finished waiting within CALLER_GRACE
        (``seen`` is the count of finished waits this reader last saw; -1 forces one look)."""
        while True:
            turns = self._caller_turns
            if self._awaiting == 0 and turns == seen:
                return turns
            seen = turns
            time.sleep(CALLER_GRACE)

    def _read_until_request(self, source: Source) -> tuple[int, Data, Buffers] | None:
        """Holding the token, dispatch messages that run no code until one that does arrives
        (returned, to run in this thread, which keeps the token: see :meth:`run_here`) or a
        reply was read while callers wait (None: the token goes to them). On an exception the
        token is passed on first."""
        try:
            while True:
                kind, frame, buffers = source.recv_message()
                handled = source.dispatch_passive(kind, frame, buffers)
                if handled == SERVE:
                    return kind, frame, buffers
                if handled == REPLIED and self._awaiting:
                    self._pass_token()
                    return None
        except BaseException:
            self._pass_token()
            raise

    # --- running requests ---------------------------------------------------------------------

    def run_here(self, run: Callable[..., T], *args: object) -> T:
        """Run ``run(*args)`` (a request's work, from :meth:`Source.run_request`) in this thread. A
        reader thread runs it still holding the token, watched by the node's watchdog, which
        hands the token on if it takes a while (:meth:`hand_off_if_overdue`); a thread started
        for the request (a caller read it) just runs it."""
        if getattr(_thread, "detached", False):
            return run(*args)
        me = threading.get_ident()
        with self._lock:
            self._inline = (me, time.monotonic())
        self._watch()
        try:
            return run(*args)
        finally:
            with self._lock:
                if self._inline is not None and self._inline[0] == me:  # not yet another reader's
                    self._inline = None

    def hand_off_if_overdue(self, now: float, delay: float) -> bool:
        """The watchdog's look (see :mod:`pynode.handoff`): if a reader has run a call for
        ``delay`` seconds holding the token (and is not reading as a caller, in a nested erpc
        call on this connection), pass the token on for it, starting a reader if nobody takes
        it. True while there may be something to do here later (a call too young, or reading)."""
        with self._lock:
            inline = self._inline
            if inline is None or self._token.holder != inline[0]:
                return False
            thread_id, started = inline
            if now - started < delay or self._caller_reader == thread_id:
                return True
            self._pass_token_locked()
            spawn = self._count_reader_needed_locked()
        if spawn:
            self._spawn_reader()
        return False

    def _count_reader_needed_locked(self) -> bool:
        """After the token was passed on: True (and the new reader counted as idle at once, so
        it is started only once) when it is free, no reader waits for it and a reader is busy
        running a call, so that nobody would read the connection; the caller then starts one
        with :meth:`_spawn_reader` (outside the lock)."""
        needed = self._token.free and self._idle_readers == 0 and self._inline is not None
        if needed:
            self._idle_readers += 1
        return needed
