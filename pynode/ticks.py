"""Failure detection by ticks: Erlang's ``net_ticktime``.

A peer process that hangs (SIGSTOP, a deadlock, a machine swapping to death) keeps its socket
open and its kernel answers TCP keepalives, so only traffic can tell it is gone. Every connection
therefore sends a *tick* (:data:`pynode.protocol.MSG_TICK`, one byte of body) when it has sent
nothing for ``ticktime / 4``, and a peer from which nothing has been received for ``ticktime`` is
declared down: its connection is closed, the calls waiting on it fail with ``NoConnection``
("no tick from X within T s") and node monitors fire (Erlang's kernel docs: tick every
``net_ticktime / 4``, down after ``net_ticktime`` of silence).

One :class:`Ticker` thread per node looks at every connection each ``ticktime / 4`` seconds
(:class:`Ticking`); the decision for one connection is :class:`Liveness`, a pure function of
two counters of its stream (``received``: bytes, ``writes``: write calls). Counting *bytes*
received, per ``recv``, not whole frames, keeps a connection alive while one large frame streams
in for longer than ``ticktime``; bytes waiting unread in the kernel count too (read late is still
heard). A tick is written only when the connection's send lock is free (never in the middle of
another frame): a held lock means a frame is being written, which is traffic the peer sees.

Timing: silence is measured from the look that first saw the counter stand still, so a peer is
declared down between ``ticktime`` and ``1.25 * ticktime`` after the last byte it sent, never
before ``ticktime``. An idle node wakes four times per ``ticktime`` (default every 2.5 s) and does
a few attribute reads per connection: no measurable CPU.

What can still cause a false nodedown: the ticker needs the GIL. Work that holds the GIL for
longer than about ``ticktime * 3/4`` without a pause stops this node's ticks (numpy's array
operations, socket I/O and ``time.sleep`` release it; pickling or unpickling a huge object graph
do not: 2 million small dicts held it 4-5 s each way on a 2-core test box; nor do a long
regular-expression match, a C extension that keeps the GIL, or ``sys.setswitchinterval`` set
very high), and its peers then declare it down.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

log = logging.getLogger(__name__)

# Erlang's net_ticktime is 60 s, chosen for WANs; a notebook user on a LAN should not wait a
# minute to learn that a compute node hung.
DEFAULT_TICKTIME = 10.0
# Below one second a busy but healthy node (a GIL-holding pickle of a few hundred MB) would be
# declared down; Erlang's floor is also 1 s (net_ticktime is a whole number of seconds).
MIN_TICKTIME = 1.0
TICKTIME_ENV = "PYNODE_TICKTIME"
# Looks (and, on an idle connection, ticks) per ticktime: Erlang's net_ticktime / 4.
LOOKS_PER_TICKTIME = 4


def resolve_ticktime(ticktime: float | None) -> float:
    """``ticktime`` seconds, else ``$PYNODE_TICKTIME``, else DEFAULT_TICKTIME. Raises ValueError
    naming the value when it is not a number of seconds of at least MIN_TICKTIME."""
    source = "ticktime"
    if ticktime is None:
        env = os.environ.get(TICKTIME_ENV)
        if env is None or env.strip() == "":
            return DEFAULT_TICKTIME
        source = f"${TICKTIME_ENV}"
        try:
            ticktime = float(env)
        except ValueError:
            raise ValueError(f"{source} must be a number of seconds, got {env!r}") from None
    if isinstance(ticktime, bool) or not isinstance(ticktime, (int, float)):
        raise ValueError(f"{source} must be a number of seconds, got {ticktime!r}")
    if not math.isfinite(ticktime) or ticktime < MIN_TICKTIME:
        raise ValueError(f"{source} must be at least {MIN_TICKTIME:g} s, got {ticktime!r}")
    return float(ticktime)


class Liveness:
    """The tick bookkeeping of one connection, updated at each of the ticker's looks.

    ``heard``: ``time.monotonic()`` of the first look that saw bytes received since the look
    before (the connection's creation at first); only the ticker thread changes it.
    """

    __slots__ = ("heard", "_received", "_writes")

    def __init__(self, now: float) -> None:
        self.heard = now
        self._received = -1  # the counters as last seen; -1: not looked at yet
        self._writes = -1

    def look(
        self, now: float, received: int, writes: int, ticktime: float, unread: Callable[[], bool]
    ) -> tuple[bool, bool]:
        """``(tick_due, down)``: whether a tick should be sent now (nothing written since the
        last look) and whether the peer is down (nothing received for ``ticktime`` seconds and
        nothing waiting unread). ``unread`` is asked only of a connection about to be down."""
        if received != self._received:
            self._received = received
            self.heard = now
        tick_due = writes == self._writes
        self._writes = writes
        down = now - self.heard >= ticktime
        if down and unread():
            self.heard = now
            down = False
        return tick_due, down

    def wrote(self, writes: int) -> None:
        """A tick was just written: ``writes`` is the write counter after it (so the next look
        sees no write of its own and ticks again if nothing else was sent)."""
        self._writes = writes


class Ticking(Protocol):
    """A connection as the ticker sees it (:class:`pynode.connection.Connection`)."""

    def tick(self, now: float, ticktime: float) -> None:
        """Look at the connection: send a tick if due, declare the peer down if silent."""


class Ticker:
    """The per-node thread that sends and checks ticks (started on construction, a daemon).
    ``connections()`` returns the connections to look at; :meth:`stop` ends the thread. Never
    raises from its thread: an error at one connection is logged and the next one is looked at."""

    def __init__(self, connections: Callable[[], Iterable[Ticking]], ticktime: float, name: str) -> None:
        self.ticktime = ticktime
        self.interval = ticktime / LOOKS_PER_TICKTIME
        self._connections = connections
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-ticker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            now = time.monotonic()
            for conn in self._connections():
                try:
                    conn.tick(now, self.ticktime)
                except Exception:  # noqa: BLE001 - the ticker must outlive any one connection
                    log.exception("ticking %r failed", conn)
