"""Mailboxes: Erlang's pids and ``!``/``receive`` in small.

Each thread of a node owns one mailbox, created on first use; :func:`self_pid` names it. A
:class:`Pid` is a small picklable value naming its node, so it can be shipped inside a closure to
another node, which then sends messages back with :func:`send`; the owner takes them out with
:func:`receive`. This is how a remote computation streams progress to its caller.

Semantics follow Erlang's: sending never fails because of the receiver (a message to a mailbox
that no longer exists, or to a node that cannot be reached, is dropped and logged); messages from
one sender arrive in the order sent; a mailbox lives as long as its thread (or, for a process
started by :func:`pynode.spawn`, as long as its function runs).

:func:`receive` is Erlang's selective ``receive``: with ``match`` it takes the first message the
predicate accepts and leaves every other one where it was, in order, for later receives. Each
message is looked at by ``match`` once per receive call while it waits (a message skipped is not
tested again until a new receive starts).
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynode import payload as payloads
from pynode import transport
from pynode.runtime import current
from pynode.errors import EncodeError, NoConnection, ReceiveTimeout

log = logging.getLogger(__name__)


@payloads.by_reference
@dataclass(frozen=True, slots=True)
class Pid:
    """The address of one mailbox: the node it lives on and its number there."""

    node: str
    id: int

    def __repr__(self) -> str:
        return f"<pid {self.id} @ {self.node}>"

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        # A frozen slots dataclass pickles through copyreg's generic path (Python-level state
        # calls, ~5 us); pids travel in every call's payload (the caller's group leader).
        return Pid, (self.node, self.id)


class _Encoded:
    """A message as it arrived from another node; unpickled by the receiver, not the connection."""

    __slots__ = ("data", "buffers")

    def __init__(self, data: transport.Data, buffers: transport.Buffers) -> None:
        self.data = data
        self.buffers = buffers


Match = Callable[[Any], bool]
"""A selective receive's pattern: True for the message to take."""


class Mailbox:
    """One process's queue of messages, oldest first.

    ``_messages`` holds delivered messages in arrival order; an element is either the message or
    an :class:`_Encoded` one not yet unpickled (replaced by its value the first time a receive
    looks at it). Guarded by ``_changed``'s lock: deliverers append, the owner's receive scans
    and removes; the lock is reentrant so that a ``match`` predicate may itself send.
    """

    def __init__(self, pid: Pid) -> None:
        self.pid = pid
        self._messages: collections.deque[Any] = collections.deque()
        self._changed = threading.Condition(threading.RLock())

    def put(self, message: Any) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify()

    def wake(self) -> None:
        """Wake a receive waiting here without a message (an exit signal is about to stop the
        owner: it must return from the wait to see the asynchronous exception)."""
        with self._changed:
            self._changed.notify_all()

    def get(self, timeout: float | None, match: Match | None = None) -> Any:
        """The first message (that ``match`` accepts), waiting up to ``timeout`` seconds.
        Raises ReceiveTimeout; an encoded message that cannot be unpickled raises that error
        (the message is dropped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        scanned = 0  # messages before this index were refused by ``match`` in this call
        with self._changed:
            while True:
                messages = self._messages
                while scanned < len(messages):
                    message = messages[scanned]
                    if isinstance(message, _Encoded):
                        try:
                            message = payloads.loads(message.data, message.buffers)
                        except BaseException:
                            del messages[scanned]
                            raise
                        messages[scanned] = message
                    if match is None or match(message):
                        del messages[scanned]
                        return message
                    scanned += 1
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ReceiveTimeout(f"no message for {self.pid!r} within {timeout} s")
                self._changed.wait(left)

    def drop(self, match: Match) -> int:
        """Remove every message ``match`` accepts (already decoded ones only); returns how many."""
        with self._changed:
            kept = [m for m in self._messages if isinstance(m, _Encoded) or not match(m)]
            dropped = len(self._messages) - len(kept)
            self._messages = collections.deque(kept)
            return dropped


class _Owner:
    """Thread-local handle whose collection (at thread exit) unregisters the thread's mailbox."""

    def __init__(self, registry: Registry, box: Mailbox) -> None:
        self.box = box
        weakref.finalize(self, registry.remove, box.pid.id)


class Registry:
    """The mailboxes of one node, by number. ``on_remove(mailbox_id)`` runs when a mailbox goes
    (its thread ended), so that what refers to it can be dropped too."""

    def __init__(self, node: str, on_remove: Callable[[int], None] | None = None) -> None:
        self.node = node
        self.on_remove = on_remove
        self._boxes: dict[int, Mailbox] = {}
        self._ids = itertools.count(1)
        self._local = threading.local()

    def own(self) -> Mailbox:
        """The calling thread's mailbox (created on first use)."""
        owner: _Owner | None = getattr(self._local, "owner", None)
        if owner is None:
            owner = self._local.owner = _Owner(self, self.create())
        return owner.box

    def create(self) -> Mailbox:
        """A new mailbox owned by no thread yet (a process about to be spawned: its pid must
        exist before its thread runs); :meth:`bind` gives it to the thread."""
        box = Mailbox(Pid(self.node, next(self._ids)))
        self._boxes[box.pid.id] = box
        return box

    def bind(self, box: Mailbox) -> None:
        """Make ``box`` the calling thread's mailbox (removed when the thread ends)."""
        self._local.owner = _Owner(self, box)

    def get(self, mailbox_id: int) -> Mailbox | None:
        """The live mailbox ``mailbox_id``, or None."""
        return self._boxes.get(mailbox_id)

    def remove(self, mailbox_id: int) -> None:
        """Drop the mailbox (idempotent: ``on_remove`` runs only the first time)."""
        if self._boxes.pop(mailbox_id, None) is not None and self.on_remove is not None:
            self.on_remove(mailbox_id)

    def deliver(self, mailbox_id: int, message: Any) -> None:
        box = self._boxes.get(mailbox_id)
        if box is None:
            log.debug("message to dead mailbox %d on %s dropped", mailbox_id, self.node)
        else:
            box.put(message)

    def deliver_encoded(self, mailbox_id: int, data: transport.Data, buffers: transport.Buffers) -> None:
        self.deliver(mailbox_id, _Encoded(data, buffers))


def self_pid() -> Pid:
    """The pid of the calling thread's mailbox on this node. Raises NodeNotStarted."""
    return current().mailboxes.own().pid


def send(pid: Pid, message: Any) -> None:
    """Send ``message`` to ``pid`` on any node (connecting implicitly); returns at once.

    ``pid`` may also be a :class:`pynode.etf.BeamPid` or ``(registered_name, beam_node)``: the
    message goes to that Erlang process as a term (:func:`pynode.beam.send`).

    Raises TypeError for a non-Pid, EncodeError when ``message`` cannot be pickled, NodeNotStarted.
    An unreachable node or a dead mailbox drops the message (logged), as Erlang's ``!`` does.
    """
    if not isinstance(pid, Pid):
        if type(pid).__name__ == "BeamPid" or (isinstance(pid, tuple) and len(pid) == 2):
            from pynode import beam  # a process of a BEAM node, or (name, beam_node)

            beam.send(pid, message)  # type: ignore[arg-type]
            return
        raise TypeError(f"send needs a pynode Pid, got {type(pid).__name__} {pid!r}")
    node = current()
    if pid.node == node.name:
        node.mailboxes.deliver(pid.id, message)
        return
    try:
        data, buffers = payloads.dumps(message)
    except Exception as exc:
        raise EncodeError(f"message to {pid!r} cannot be pickled: {type(exc).__name__}: {exc}") from exc
    try:
        node.connection_to(pid.node).deliver(pid.id, data, buffers)
    except NoConnection as exc:
        log.info("message to %r dropped: %s", pid, exc)


def receive(timeout: float | None = None, match: Match | None = None) -> Any:
    """The next message in the calling process's mailbox, waiting up to ``timeout`` seconds
    (``None``: forever). With ``match``, the first message for which ``match(message)`` is true;
    the others stay in the mailbox in their order (Erlang's selective receive). Raises
    ReceiveTimeout (a TimeoutError) when none arrives, NodeNotStarted, TypeError when ``match``
    is not callable; an exception raised by ``match`` propagates (the message stays)."""
    if match is not None and not callable(match):
        raise TypeError(f"receive: match must be a predicate (callable), got {type(match).__name__} {match!r}")
    return current().mailboxes.own().get(timeout, match)
