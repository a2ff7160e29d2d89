"""Group leaders: the output of a remote call or a remote process comes home.

In Erlang every process has a *group leader* that its ``io`` output goes to, inherited from the
process that spawned it, so ``rpc:call(N, io, format, ...)`` prints on the caller's console. Here:

- **On the node running remote code**, :func:`install` wraps ``sys.stdout`` and ``sys.stderr``
  in a :class:`Router`, which sends each write to the *calling thread's* leader if it has one
  (:func:`leading`), and to the stream it wrapped otherwise. So the node's own threads (its
  logging, its own prints, other calls made with ``capture_output=False``) are untouched: the
  redirection is per thread, not process-wide; a ``logging.StreamHandler`` on ``sys.stderr``
  writes on the node even from such a thread (log lines are the node's, as Erlang's logger
  output is). A thread under a leader buffers each stream and sends whole lines (one ``Output`` signal per write that completes lines; the rest when the
  call or process ends, or on ``flush()``) to the leader's node, over the connection that also
  carries the call's result, so the output is written there before the call returns, in order.
- **On the caller's node**, the leader of a call is the calling thread's pid, and the calling
  thread's ``contextvars`` context is recorded at each call; a remote spawn gets a leader of its
  own (a negative pid number, never a mailbox's) that keeps the context of the spawn. Output for
  a leader is written to the caller node's current ``sys.stdout``/``sys.stderr`` inside a copy
  of that context. In Jupyter the cell's parent header lives in a context variable of ``ipykernel``'s
  stream, so the output shows under the cell that made the call, even when it arrives from a
  spawned process after the cell has finished.
- **A call made from inside a remote call** (a thread that has a leader itself) passes its own
  pid as the leader, and output for it is forwarded to its leader as it arrives: the inner
  output travels back the way the calls went, so it reaches the first caller before the outer
  call's result, in order with the outer function's own lines. (A process spawned from such a
  thread inherits the first caller's leader directly, as Erlang processes inherit theirs.)

- **A process may change its leader** (:func:`pynode.set_group_leader`, Erlang's
  ``group_leader/2`` on itself): a process started by a process of the node (so with no
  leader) can take the leader of the call that asked for it (:func:`pynode.group_leader` in
  that call), so that its output goes to that caller too (exmc's attached jobs do).

Not captured: threads a remote function starts itself (only pynode's call threads and spawned
processes have leaders), subprocesses (exmc's chain workers forward their own output to the
thread that runs their chains, which is) and writes to file descriptors 1/2 that bypass
``sys.stdout`` (C extensions). Output whose leader's thread has ended is written to the caller
node's own streams; output for a node that cannot be reached is written on this node (logged).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import itertools
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from pynode import signals
from pynode.mailbox import Pid

log = logging.getLogger(__name__)

Send = Callable[[str, tuple], bool]
"""How a leader reaches another node: ``send_signal(node, signal) -> sent``."""

# thread ident -> that thread's forwarder. Written only by the thread itself (leading());
# read by the Router from any thread. Single dict operations: the GIL makes them atomic.
_leaders: dict[int, _Forwarder] = {}


class _Forwarder:
    """One thread's leader on another node: line-buffers each stream and sends whole lines.
    ``_pending``: the unsent tail of each stream (None until the thread first writes)."""

    __slots__ = ("node", "leader_id", "_send", "_pending")

    def __init__(self, node: str, leader_id: int, send: Send) -> None:
        self.node = node
        self.leader_id = leader_id
        self._send = send
        self._pending: dict[int, str] | None = None

    @property
    def leader(self) -> Pid:
        return Pid(self.node, self.leader_id)

    def write(self, stream: int, text: str) -> None:
        pending = self._pending
        if pending is None:
            pending = self._pending = {signals.STDOUT: "", signals.STDERR: ""}
        buffered = pending[stream] + text
        cut = buffered.rfind("\n") + 1
        pending[stream] = buffered[cut:]
        if cut:
            self._emit(stream, buffered[:cut])

    def flush(self, stream: int | None = None) -> None:
        pending = self._pending
        if pending is None:
            return
        for which in (signals.STDOUT, signals.STDERR) if stream is None else (stream,):
            text, pending[which] = pending[which], ""
            if text:
                self._emit(which, text)

    def _emit(self, stream: int, text: str) -> None:
        leader = self.leader
        if not self._send(self.node, signals.Output(leader, stream, text)):
            log.info("output for %r written here: %s cannot be reached", leader, self.node)
            target = _stream(stream)  # nothing is lost: a leader gone (its notebook closed) writes here
            if target is not None:
                target.write(text)


def lead(node: str, leader_id: int, send: Send) -> tuple[int, _Forwarder | None]:
    """From now on, send this thread's ``sys.stdout``/``sys.stderr`` output to the leader
    ``Pid(node, leader_id)`` on another node; returns what :func:`unlead` needs to end it. (A
    pair of calls rather than a context manager.)"""
    return Home(node, send).lead(leader_id)


def unlead(state: tuple[int, _Forwarder | None]) -> None:
    """Flush this thread's output to its leader and restore the leader it had before (nothing
    to do when it has that one: a block that led nothing and redirected nothing)."""
    me, previous = state
    forwarder = _leaders.get(me)
    if forwarder is previous:
        return
    try:
        if forwarder is not None and forwarder._pending is not None:  # None: it wrote nothing
            forwarder.flush()
    finally:
        if previous is None:
            _leaders.pop(me, None)
        else:
            _leaders[me] = previous


def redirect(leader: Pid | None, send: Send) -> None:
    """From now on this thread's output goes to ``leader`` on another node (None: to this
    node's own streams), whatever leader it had; what it wrote so far goes to the old leader
    first. Lasts until the next redirect, or the end of the call or process that led the
    thread (which restores the leader it had before it began)."""
    me = threading.get_ident()
    old = _leaders.get(me)
    if old is not None:
        old.flush()
    _leaders.pop(me, None)
    if leader is not None:
        Home(leader.node, send).lead(leader.id)


class Home:
    """The group leaders on one peer node (:class:`pynode.outcome.Leaders`): a call from that
    peer that carries a leader id runs under it, so its output goes home."""

    __slots__ = ("node", "_send")

    def __init__(self, node: str, send: Send) -> None:
        self.node = node
        self._send = send

    def lead(self, leader_id: int | None) -> tuple[int, _Forwarder | None]:
        me = threading.get_ident()
        previous = _leaders.get(me)
        if leader_id is None:  # an uncaptured call: no leader, but one it sets ends with it
            return me, previous
        # this runs around every captured call: lead() and redirect() come here
        if type(sys.stdout) is not Router or type(sys.stderr) is not Router:
            install()  # sys.stdout was replaced since the node started (pytest's capture, a kernel)
        _leaders[me] = _Forwarder(self.node, leader_id, self._send)
        return me, previous

    unlead = staticmethod(unlead)


@contextlib.contextmanager
def leading(leader: Pid | None, send: Send) -> Iterator[None]:
    """:func:`lead` for the block (``None``: no change at the start). Either way, the block
    ends with the leader the thread had before it: one set inside (:func:`redirect`) ends with
    it, flushed, and never outlives the thread (whose ident a later thread may reuse)."""
    if leader is None:
        me = threading.get_ident()
        before = _leaders.get(me)
        try:
            yield
        finally:
            unlead((me, before))
        return
    state = lead(leader.node, leader.id, send)
    try:
        yield
    finally:
        unlead(state)


def current_leader() -> Pid | None:
    """The leader this thread's output goes to, when it is under one."""
    forwarder = _leaders.get(threading.get_ident())
    return None if forwarder is None else forwarder.leader


# logging's StreamHandler writes and flushes its stream from these functions; a handler bound to
# sys.stderr (logging's last resort is one) must keep writing on this node even in a thread whose
# output goes home: log lines are the node's, not the caller's (Erlang's logger, not io).
_LOGGING_CODE = frozenset({logging.StreamHandler.emit.__code__, logging.StreamHandler.flush.__code__})


class Router:
    """Stands in for ``sys.stdout``/``sys.stderr``: a write goes to the writing thread's leader
    if it has one (unless logging writes it), else to the wrapped stream. Everything else is the
    wrapped stream's."""

    def __init__(self, wrapped: TextIO, stream: int) -> None:
        self.wrapped = wrapped
        self.stream = stream

    def write(self, text: str) -> int:
        forwarder = _leaders.get(threading.get_ident())
        if forwarder is None or sys._getframe(1).f_code in _LOGGING_CODE:
            return self.wrapped.write(text)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        forwarder.write(self.stream, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        forwarder = _leaders.get(threading.get_ident())
        if forwarder is None or sys._getframe(1).f_code in _LOGGING_CODE:
            self.wrapped.flush()
        else:
            forwarder.flush(self.stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def install() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in Routers (idempotent; a stream replaced later,
    e.g. by pytest's capture, is wrapped again at the next call)."""
    if not isinstance(sys.stdout, Router) and sys.stdout is not None:
        sys.stdout = Router(sys.stdout, signals.STDOUT)
    if not isinstance(sys.stderr, Router) and sys.stderr is not None:
        sys.stderr = Router(sys.stderr, signals.STDERR)


def _stream(stream: int) -> TextIO | None:
    """The caller node's current stream, unwrapped (a Router's thread routing is for writers
    on this node, not for output arriving from elsewhere)."""
    target = sys.stdout if stream == signals.STDOUT else sys.stderr
    while isinstance(target, Router):
        target = target.wrapped
    return target


# Leaders of remote spawns kept with their own context (oldest forgotten first): a process may
# print long after the cell that spawned it, and must still print under that cell.
MAX_SPAWN_LEADERS = 4096


class Sinks:
    """The caller side: where Output for a local leader is written, and in which context.

    ``_contexts`` maps a mailbox id to the context its thread had at its latest captured call
    (dropped with the mailbox: :meth:`forget`): a call's output arrives while the call runs.
    ``_spawned`` maps the negative ids of :meth:`spawn_leader` (never a mailbox's) to the context
    of the spawn that made each, the newest MAX_SPAWN_LEADERS of them. Single dict operations
    under the GIL; :meth:`spawn_leader` takes ``_lock`` to trim."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._contexts: dict[int, contextvars.Context] = {}
        self._forwards: dict[int, Pid] = {}
        self._spawned: collections.OrderedDict[int, contextvars.Context] = collections.OrderedDict()
        self._spawn_ids = itertools.count(-1, -1)
        self._lock = threading.Lock()

    def remember(self, mailbox_id: int) -> None:
        self._forwards.pop(mailbox_id, None)
        self._contexts[mailbox_id] = contextvars.copy_context()

    def forward(self, mailbox_id: int, leader: Pid) -> None:
        """Output for this mailbox's thread goes on to ``leader`` (the thread's own leader)."""
        self._forwards[mailbox_id] = leader

    def spawn_leader(self, node: str) -> Pid:
        """A leader of its own for a remote process spawned now, in the current context."""
        with self._lock:
            leader_id = next(self._spawn_ids)
            self._spawned[leader_id] = contextvars.copy_context()
            while len(self._spawned) > MAX_SPAWN_LEADERS:
                self._spawned.popitem(last=False)
        return Pid(node, leader_id)

    def forget(self, mailbox_id: int) -> None:
        self._contexts.pop(mailbox_id, None)
        self._forwards.pop(mailbox_id, None)

    def write(self, leader: Pid, stream: int, text: str) -> None:
        if stream not in (signals.STDOUT, signals.STDERR) or not isinstance(text, str):
            raise ValueError(f"malformed Output signal: stream {stream!r}, text of type {type(text).__name__}")
        onward = self._forwards.get(leader.id)
        if onward is not None:
            if self._send(onward.node, signals.Output(onward, stream, text)):
                return
            log.info("output for %r written here: %s cannot be reached", onward, onward.node)
        target = _stream(stream)
        if target is None:
            return
        context = self._contexts.get(leader.id) if leader.id > 0 else self._spawned.get(leader.id)
        if context is None:
            target.write(text)
        else:
            context.copy().run(target.write, text)
        if stream == signals.STDERR or text.endswith("\n"):
            try:
                target.flush()
            except (OSError, ValueError):
                pass
