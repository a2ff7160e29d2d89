"""Mailboxes: Erlang's pids and ``!``/``receive`` in small.

Each thread of a node owns one mailbox, created on first use; :func:`self_pid` names it. A
:class:`Pid` is a small picklable value naming its node, so it can be shipped inside a closure to
another node, which then sends messages back with :func:`send`; the owner takes them out with
:func:`receive`. This is how a remote computation streams progress to its caller.

Semantics follow Erlang's: sending never fails because of the receiver (a message to a mailbox
that no longer exists, or to a node that cannot be reached, is dropped and logged); messages from
one sender arrive in the order sent; a mailbox lives as long as its thread.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynode import payload as payloads
from pynode import transport
from pynode.runtime import current
from pynode.errors import EncodeError, NoConnection, ReceiveTimeout

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pid:
    """The address of one mailbox: the node it lives on and its number there."""

    node: str
    id: int

    def __repr__(self) -> str:
        return f"<pid {self.id} @ {self.node}>"


class _Encoded:
    """A message as it arrived from another node; unpickled by the receiver, not the connection."""

    __slots__ = ("data", "buffers")

    def __init__(self, data: transport.Data, buffers: transport.Buffers) -> None:
        self.data = data
        self.buffers = buffers


class Mailbox:
    """One thread's queue of messages."""

    def __init__(self, pid: Pid) -> None:
        self.pid = pid
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def put(self, message: Any) -> None:
        self._queue.put(message)

    def get(self, timeout: float | None) -> Any:
        try:
            message = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise ReceiveTimeout(f"no message for {self.pid!r} within {timeout} s") from None
        if isinstance(message, _Encoded):
            return payloads.loads(message.data, message.buffers)
        return message


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
            box = Mailbox(Pid(self.node, next(self._ids)))
            self._boxes[box.pid.id] = box
            owner = self._local.owner = _Owner(self, box)
        return owner.box

    def remove(self, mailbox_id: int) -> None:
        self._boxes.pop(mailbox_id, None)
        if self.on_remove is not None:
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


def receive(timeout: float | None = None) -> Any:
    """The next message in the calling thread's mailbox, waiting up to ``timeout`` seconds
    (``None``: forever). Raises ReceiveTimeout (a TimeoutError) when none arrives, NodeNotStarted."""
    return current().mailboxes.own().get(timeout)
