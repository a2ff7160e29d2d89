"""Node monitoring: Erlang's ``monitor_node/2`` and ``net_kernel:monitor_nodes/2`` in small.

A thread that must know when a peer goes away (a notebook whose compute node dies mid-session, a
supervisor of a cluster) asks for it, and the news arrives in its mailbox (:mod:`pynode.mailbox`)
as plain tuples:

- ``("nodedown", name)`` for each :meth:`NodeMonitors.monitor` of ``name`` (one message per
  monitor, as Erlang sends one per ``monitor_node(Node, true)``; a monitor fires once, then it is
  gone). A monitor is added before its owner makes sure a connection exists; when none can be made,
  :meth:`NodeMonitors.unreachable` fires that one monitor at once, as Erlang's does. The monitors
  a mailbox holds of one peer are independent instances, counted as Erlang counts them:
  :meth:`NodeMonitors.demonitor` removes one (``monitor_node(Node, false)``), so that a library
  removing its own monitor leaves its caller's in place; with ``flush`` it also waits until the
  nodedown of a monitor that has already fired is in the mailbox, for the caller to remove it
  (Erlang's ``demonitor(Ref, [flush])``);
- ``("nodeup", name)`` and ``("nodedown", name)`` for every peer of the subscribed kind
  (``"visible"``, ``"hidden"`` or ``"connected"``: all) while a :meth:`NodeMonitors.subscribe`
  lasts.

A peer is *up* from its first connection until its last one is gone (two nodes that dial each
other at once briefly have two connections, :mod:`pynode.mesh`: one nodeup, and the end of the
retired one is no nodedown). Messages go to mailboxes by number; a mailbox whose thread has ended
drops them, as any message to it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

# Longest wait (seconds) of a flushing demonitor for the nodedown of a monitor that fired just
# before: the deliverer puts it into the mailbox right after taking it from the table.
FLUSH_WAIT = 5.0

from pynode import kinds
from pynode.kinds import Kind


class NodeMonitors:
    """The monitors and subscriptions of one node; ``deliver(mailbox_id, message)`` puts a message
    into a local mailbox without blocking. Thread-safe; messages are delivered outside this
    object's lock. The node calls :meth:`node_up` and :meth:`node_down` under its own lock, in the
    order of the changes they report, so a reconnection's nodeup never overtakes the nodedown of
    the connection before it (nor does a late nodedown fire a monitor of the new one)."""

    def __init__(self, deliver: Callable[[int, Any], None]) -> None:
        self._deliver = deliver
        # Reentrant: forget runs from a mailbox's finalizer, whichever thread drops the mailbox.
        self._lock = threading.RLock()
        self._monitors: dict[str, list[int]] = {}  # peer -> mailbox ids, one entry per monitor
        self._subscribers: dict[int, Kind] = {}  # mailbox id -> kind of peers it hears about
        # (peer, mailbox id) -> nodedowns of fired monitors taken from _monitors and not yet in
        # the mailbox (> 0; absent when none); _delivered is notified as each goes in.
        self._undelivered: dict[tuple[str, int], int] = {}
        self._delivered = threading.Condition(self._lock)

    def monitor(self, peer: str, mailbox_id: int) -> None:
        """Add one monitor of ``peer`` for the mailbox (another one adds another message)."""
        with self._lock:
            self._monitors.setdefault(peer, []).append(mailbox_id)

    def demonitor(self, peer: str, mailbox_id: int, flush: bool = False) -> bool:
        """Remove one monitor of ``peer`` held by the mailbox (Erlang's ``monitor_node(Node,
        false)``: the others stay); True if there was one left. False when none was: its
        monitors have fired (or there were none). Then, with ``flush``, this returns once the
        nodedowns of monitors that fired are in the mailbox (at most FLUSH_WAIT seconds), so
        that the caller can remove the one its monitor sent."""
        with self._lock:
            held = self._monitors.get(peer)
            if held is not None and mailbox_id in held:
                held.remove(mailbox_id)
                if not held:
                    del self._monitors[peer]
                return True
            if flush:
                self._delivered.wait_for(lambda: (peer, mailbox_id) not in self._undelivered, FLUSH_WAIT)
            return False

    def _demonitor_locked(self, peer: str, mailbox_id: int) -> bool:
        held = self._monitors.get(peer, [])
        kept = [owner for owner in held if owner != mailbox_id]
        if kept:
            self._monitors[peer] = kept
        else:
            self._monitors.pop(peer, None)
        return len(kept) != len(held)

    def subscribe(self, mailbox_id: int, kind: Kind) -> None:
        """Send the mailbox nodeup/nodedown of every peer of ``kind`` from now on (replacing the
        kind of an earlier subscription). Raises ValueError for an unknown kind."""
        kinds.check(kind, "Node.monitor_nodes")
        with self._lock:
            self._subscribers[mailbox_id] = kind

    def unsubscribe(self, mailbox_id: int) -> bool:
        """End the mailbox's subscription; True if there was one."""
        with self._lock:
            return self._subscribers.pop(mailbox_id, None) is not None

    def forget(self, mailbox_id: int) -> None:
        """Drop every monitor and the subscription of a mailbox that is gone (its thread ended)."""
        with self._lock:
            for peer in list(self._monitors):
                self._demonitor_locked(peer, mailbox_id)
            self._subscribers.pop(mailbox_id, None)

    def node_up(self, peer: str, hidden: bool) -> None:
        """``peer`` got its first connection (``hidden``: it or this node is hidden)."""
        self._send(self._hearing(hidden), ("nodeup", peer))

    def node_down(self, peer: str, hidden: bool) -> None:
        """``peer`` lost its last connection: every monitor of it fires (and is gone) and
        subscribers of its kind hear of it."""
        with self._lock:
            fired = self._monitors.pop(peer, [])
            self._count_undelivered(peer, fired)
        message = ("nodedown", peer)
        self._send_fired(peer, fired, message)
        self._send(self._hearing(hidden), message)

    def unreachable(self, peer: str, mailbox_id: int) -> None:
        """The mailbox's new monitor of ``peer`` found no connection and could not make one: that
        monitor fires now (if a disconnection has not fired it already). Subscribers hear nothing:
        the peer was never up."""
        with self._lock:
            held = self._monitors.get(peer, [])
            if mailbox_id not in held:
                return
            held.remove(mailbox_id)
            if not held:
                del self._monitors[peer]
            self._count_undelivered(peer, [mailbox_id])
        self._send_fired(peer, [mailbox_id], ("nodedown", peer))

    def _hearing(self, hidden: bool) -> list[int]:
        with self._lock:
            return [owner for owner, kind in self._subscribers.items() if kinds.includes(kind, hidden)]

    def _count_undelivered(self, peer: str, fired: list[int]) -> None:
        for mailbox_id in fired:
            key = (peer, mailbox_id)
            self._undelivered[key] = self._undelivered.get(key, 0) + 1

    def _send_fired(self, peer: str, fired: list[int], message: tuple[str, str]) -> None:
        """Deliver the nodedowns of fired monitors (counted by _count_undelivered), each
        uncounted once it is in its mailbox (or dropped with it)."""
        for mailbox_id in fired:
            try:
                self._deliver(mailbox_id, message)
            finally:
                with self._lock:
                    key = (peer, mailbox_id)
                    left = self._undelivered[key] - 1
                    if left:
                        self._undelivered[key] = left
                    else:
                        del self._undelivered[key]
                    self._delivered.notify_all()

    def _send(self, mailbox_ids: list[int], message: tuple[str, str]) -> None:
        for mailbox_id in mailbox_ids:
            self._deliver(mailbox_id, message)
