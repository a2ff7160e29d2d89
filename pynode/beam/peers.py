"""The node's side of its Erlang peers: what :class:`pynode.node.LocalNode` adds for
:mod:`pynode.beam` (kept here so that node.py holds only the hooks).

``LocalNode`` inherits :class:`BeamPeers`; it provides the attributes listed on the class. The
methods are the ``pynode.beam.dist.Owner`` interface (``creation``, ``peer_up``, ``peer_down``),
the listener's hook for foreign first bytes, and the per-peer protocol choice ``beam_peer``.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

from pynode import names, portmapper, signals
from pynode.beam import handshake as beam_handshake
from pynode.beam.connection import BeamConnection
from pynode.beam.dist import BeamSide, NotBeam
from pynode.errors import BadNodeName, HandshakeError, NoConnection, PortMapperError

if TYPE_CHECKING:
    from pynode.monitors import NodeMonitors
    from pynode.node_processes import NodeProcesses
    from pynode.portmapper import Registration

log = logging.getLogger(__name__)

# Seconds to look a BEAM peer up and connect to it (as pynode.node's CONNECT_TIMEOUT).
CONNECT_TIMEOUT = 7.0


class BeamPeers:
    """Mixin of ``LocalNode``: its Erlang peers."""

    # Provided by LocalNode:
    name: str
    beam: BeamSide | None
    monitors: NodeMonitors
    processes: NodeProcesses
    _lock: threading.Lock
    _up: dict[str, bool]
    _connections: dict[str, Any]
    _all_connections: set[Any]
    _registration: Registration
    _unmarked_pynode: dict[str, int]  # peer -> port where it refused Erlang's handshake

    def connection_to(self, peer: str) -> Any:  # LocalNode's pynode connections
        raise NotImplementedError

    def _other_protocol(self, sock: socket.socket, first: bytes) -> beam_handshake.BeamPeer | None:
        """The listener's hook for connections that are not pynode's: Erlang's handshake."""
        if not beam_handshake.looks_like_beam(first):
            return None
        if self.beam is None:  # --no-beam: say so to the Erlang node, then close
            sock.sendall(b"\x00\x0csnot_allowed")
            raise HandshakeError("refused an Erlang connection: this node runs with --no-beam")
        return self.beam.accept(sock)

    def creation(self) -> int:
        return self._registration.creation

    def peer_up(self, peer: str, hidden: bool) -> None:
        with self._lock:
            if peer not in self._up:
                self._up[peer] = hidden
                self.monitors.node_up(peer, hidden)

    def peer_down(self, peer: str, hidden: bool) -> None:
        with self._lock:
            others = [conn for conn in self._all_connections if conn.name == peer and not conn.closed]
            if not others and self._up.pop(peer, None) is not None:
                self.monitors.node_down(peer, hidden)
                self.processes.node_down(peer)  # monitors and links of its processes: noconnection

    def beam_peer(self, peer: str) -> BeamConnection | None:
        """The Erlang connection to ``peer`` when it is a BEAM node (dialling it if needed), None
        when it is a pynode node (or unknown: then :meth:`connection_to` reports why). Which
        protocol a node speaks comes from its port mapper entry
        (:attr:`pynode.portmapper.NodeInfo.speaks_pynode`). Raises BadNodeName; NoConnection when
        a BEAM node cannot be connected."""
        if self.beam is None:
            return None
        conn = self.beam.connected(peer)
        if conn is not None:
            return conn
        known = self._connections.get(peer)
        if known is not None and not known.closed:
            return None
        parsed = names.parse(peer)
        try:
            info = portmapper.node_info(parsed.host, parsed.alive, timeout=CONNECT_TIMEOUT)
        except PortMapperError:
            return None
        if info is None or info.speaks_pynode or self._unmarked_pynode.get(str(parsed)) == info.port:
            return None
        try:
            return self.beam.connect(str(parsed), parsed.host, info.port, CONNECT_TIMEOUT)
        except NotBeam:  # a pynode node without the port mapper mark (an older pynode): speak pynode
            self._unmarked_pynode[str(parsed)] = info.port
            return None

    def _beam_signal(self, peer: str, signal: tuple) -> bool | None:
        """NodeProcesses' hook: a pynode process's signal to a process of ``peer`` when it is a
        BEAM node (True/False: sent or not), None when it is a pynode node."""
        if type(signal) in (signals.Output, signals.NamedSend):  # pynode-only; output is hot
            return None
        try:
            conn = self.beam_peer(peer)
        except NoConnection as exc:
            log.info("%s to %s not sent: %s", type(signal).__name__, peer, exc)
            return False
        except BadNodeName:
            return None
        if conn is None or self.beam is None:
            return None
        return self.beam.send_signal(conn, signal)

    def reach(self, peer: str) -> None:
        """Connect to ``peer`` in whichever protocol it speaks. Raises NoConnection, BadNodeName."""
        if self.beam_peer(peer) is None:
            self.connection_to(peer)



class MeshView:
    """The node as the transitive mesh (:mod:`pynode.mesh`) sees it, BEAM peers included: a
    pynode peer that announces an Erlang node gets it dialled in Erlang's protocol, and a node
    connected to a peer in either protocol counts as connected (Erlang's ``connect_all``)."""

    def __init__(self, node: Any) -> None:
        self._node = node
        self.name: str = node.name
        self.hidden: bool = node.hidden

    def peers(self, kind: str) -> list[str]:
        return self._node.peers(kind)

    def connected(self, peer: str) -> bool:
        beam = self._node.beam
        return self._node.connected(peer) or (beam is not None and beam.connected(peer) is not None)

    def connection_to(self, peer: str) -> object:
        return self._node.reach(peer)
