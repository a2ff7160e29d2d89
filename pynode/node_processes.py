"""A node's processes, names and group leaders, and how their signals reach the wire.

:class:`NodeProcesses` is what the node (:mod:`pynode.node`) owns for all of this: the
:class:`~pynode.proctable.ProcessTable`, the local :class:`~pynode.registered.NameTable`, the
:class:`~pynode.global_names.GlobalNames` table and the output :class:`~pynode.output.Sinks`. It
needs from the node only a way to reach a peer (:class:`Connect`), and the node calls it back on
a SIGNAL frame (:meth:`on_signal`), when a peer comes up (:meth:`node_up`) or goes down
(:meth:`node_down`), and when a mailbox goes (:meth:`mailbox_gone`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from pynode import output, signals, transport
from pynode.errors import EncodeError, PynodeError
from pynode.global_names import GlobalNames
from pynode.mailbox import Pid, Registry
from pynode.proctable import ProcessTable
from pynode.registered import NameTable

log = logging.getLogger(__name__)


class SignalCarrier(Protocol):
    """One connection, as far as signals go (the node's link to a peer)."""

    def signal(self, data: bytes, buffers: transport.Buffers) -> None:
        """Send a SIGNAL frame. Raises NoConnection."""
        ...


Connect = Callable[[str], SignalCarrier]
"""The node's ``link_to``: the connection to a peer, dialled if needed; raises NoConnection
(or BadNodeName)."""


class NodeProcesses:
    def __init__(self, mailboxes: Registry, connect: Connect, visible_peers: Callable[[], list[str]]) -> None:
        self.node = mailboxes.node
        self._mailboxes = mailboxes
        self._stopped = False  # set once by stop(): then signals to other nodes are dropped
        self._connect = connect
        # The node's hook for peers that are not pynode nodes (BEAM nodes, pynode.beam.procs):
        # sends the signal and returns whether it went, or None for a pynode peer.
        self.foreign: Callable[[str, tuple], bool | None] | None = None
        self.table = ProcessTable(mailboxes, self)
        self.names = NameTable(self.node, self.table.alive)
        self.sinks = output.Sinks(self.send_signal)
        self.global_names = GlobalNames(self.node, self.table, visible_peers)
        self.table.on_exit += [self.names.process_ended, self.global_names.process_ended, self._forget_sink]

    def stop(self) -> None:
        """The node stops: no signal leaves it any more (peers see it go down:
        ``noconnection``), and every spawned process is stopped with the reason
        ``"shutdown"`` (best effort, see :mod:`pynode.proctable`)."""
        self._stopped = True
        self.table.shutdown()

    def _forget_sink(self, pid: Pid) -> None:
        self.sinks.forget(pid.id)

    # --- the node's hooks --------------------------------------------------------------------------

    def mailbox_gone(self, mailbox_id: int) -> None:
        self.table.mailbox_gone(mailbox_id)

    def node_up(self, peer: str, hidden: bool) -> None:
        """A peer got its first connection (called under the node's lock: must not block)."""
        if not hidden:
            self.global_names.node_up(peer)

    def node_down(self, peer: str) -> None:
        """A peer lost its last connection (called under the node's lock: local work only)."""
        self.table.node_down(peer)
        self.global_names.node_down(peer)

    def leader_for_call(self, spawn: bool = False) -> Pid:
        """The group leader a call (or, with ``spawn``, a remote spawn) made by this thread
        passes on (:mod:`pynode.output`): for a thread that runs remote code itself, its pid,
        forwarding to its own leader (a spawn: that leader itself); else its pid with its current
        context remembered for the output that comes back, or for a spawn a leader of its own
        that keeps this context."""
        forwarder = output._leaders.get(threading.get_ident())  # output.current_leader(), inlined: every call
        leader = None if forwarder is None else forwarder.leader
        if leader is not None and spawn:
            return leader
        if spawn:
            return self.sinks.spawn_leader(self.node)
        me = self._mailboxes.own().pid
        if leader is not None:
            self.sinks.forward(me.id, leader)
            return me
        self.sinks.remember(me.id)
        return me

    # --- signals -----------------------------------------------------------------------------------

    def send_signal(self, node: str, signal: tuple) -> bool:
        """Send ``signal`` to ``node`` (this node: handled here at once); False when no
        connection can be had (logged at info)."""
        if node == self.node:
            self._handle(node, signal)
            return True
        if self._stopped:
            return False
        if self.foreign is not None:
            sent = self.foreign(node, signal)
            if sent is not None:
                return sent
        try:
            data, buffers = signals.encode(signal)
        except EncodeError:
            log.exception("%s to %s not sent", type(signal).__name__, node)
            return False
        try:
            self._connect(node).signal(data, buffers)
            return True
        except PynodeError as exc:  # NoConnection, BadNodeName
            log.info("%s to %s not sent: %s", type(signal).__name__, node, exc)
            return False

    def on_signal(self, peer: str, data: transport.Data, buffers: transport.Buffers) -> None:
        """A SIGNAL frame from ``peer``, in the thread that read it. Raises ValueError for a
        frame that is not a pynode signal (the connection is dropped)."""
        self._handle(peer, signals.decode(data, buffers))

    def _handle(self, peer: str, signal: Any) -> None:
        kind = type(signal)
        if kind is signals.Output:
            if not isinstance(signal.leader, Pid) or signal.leader.node != self.node:
                raise ValueError(f"Output signal from {peer} for {signal.leader!r}, not a pid of {self.node}")
            self.sinks.write(signal.leader, signal.stream, signal.text)
        elif kind is signals.NamedSend:
            self.deliver_named(signal.name, signal.message)
        else:
            self.table.on_signal(peer, signal)

    def deliver_named(self, name: Any, message: bytes) -> None:
        """A message (pickled) for the locally registered ``name``; dropped when nobody holds
        it (Erlang's ``{Name, Node} ! Msg`` never fails)."""
        try:
            pid = self.names.whereis(name)
        except (TypeError, ValueError):
            pid = None
        if pid is None:
            log.debug("message to unregistered name %r on %s dropped", name, self.node)
            return
        self._mailboxes.deliver_encoded(pid.id, message, ())
