"""A call waiting for its result at the caller, and the wake-up of the thread that awaits it.

Owned by :mod:`pynode.connection`, whose lock (shared with :mod:`pynode.reading`) guards every
change of state here; :mod:`pynode.erpc` reads the outcome once ``done`` is set.
"""

from __future__ import annotations

import threading

from pynode import transport


class Pending:
    """A call waiting for its result, and the wake-up of the caller waiting for it.

    Resolved or failed exactly once, by the thread that removed it from its connection's table
    of pending calls under the connection's lock (a result, a disconnection). The caller is
    *signalled* when that happens or when it is handed the connection's read token (a
    *promotion*: then it is signalled but not done); signals are raised under the connection's
    lock, so they never race. A pre-acquired lock rather than an Event carries the signal:
    releasing and acquiring one lock is the cheapest wake-up Python offers.
    """

    __slots__ = ("_ready", "_signalled", "done", "waiter", "status", "data", "buffers", "error")

    def __init__(self) -> None:
        self._ready = threading.Lock()
        self._ready.acquire()
        self._signalled = False
        self.done = False
        self.waiter = 0  # thread id of the caller awaiting it
        self.status = 0
        self.data: transport.Data = b""
        self.buffers: transport.Buffers = ()
        self.error: BaseException | None = None

    def resolve(self, status: int, data: transport.Data, buffers: transport.Buffers) -> None:
        """Under the connection's lock."""
        self.status, self.data, self.buffers = status, data, buffers
        self.done = True
        self.signal()

    def fail(self, error: BaseException) -> None:
        """Under the connection's lock."""
        self.error = error
        self.done = True
        self.signal()

    def signal(self) -> None:
        """Wake the waiting caller (under the connection's lock); idempotent until :meth:`rearm`."""
        if not self._signalled:
            self._signalled = True
            self._ready.release()

    @property
    def promoted(self) -> bool:
        """Signalled without being done: handed the connection's read token while waiting."""
        return self._signalled and not self.done

    def rearm(self) -> None:
        """Forget a signal that was only a promotion (under the connection's lock)."""
        if self._signalled and not self.done:
            self._ready.acquire()
            self._signalled = False

    def wait(self, timeout: float | None) -> bool:
        """True once signalled; False when ``timeout`` seconds pass first (a timeout beyond
        ``threading.TIMEOUT_MAX``, some 292 years, waits like None)."""
        forever = timeout is None or timeout >= threading.TIMEOUT_MAX
        if self._ready.acquire(timeout=-1 if forever else max(timeout, 0.0)):
            self._ready.release()  # stay signalled for later waits
            return True
        return False
