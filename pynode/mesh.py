"""The transitive mesh (Erlang's default ``connect_all``), and which of two connections survives.

When a visible node connects to another visible node, each tells the other its visible peers
(a PEERS message, :mod:`pynode.protocol`) and connects to the ones it lacks, so a node that joins
any node of a cluster soon has a connection to every visible node of it, as in Erlang. Hidden
nodes take no part: a connection with a hidden end carries no PEERS, and a hidden peer is never
in the list a node announces (it is not visible to it). A node started with ``connect_all=False``
(``--no-connect-all``) neither announces its peers nor acts on announcements; it may still be
dialled by nodes that learnt of it from a common peer of theirs that it is connected to.

Two nodes that learn of each other at the same moment (two meshes merging: each side is told of
the other) dial each other at once, and both dials succeed. Both ends then keep the same one of
the two connections (:func:`surviving`): the one dialled by the node with the greater name, the
rule of Erlang's handshake for simultaneous connects. The other is *retired* on both ends: no
new call takes it, and it closes once the calls already on it are done
(:meth:`pynode.connection.Connection.retire`), so a call that raced onto it is not lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Protocol

from pynode.errors import NoConnection

log = logging.getLogger(__name__)


class Dialled(Protocol):
    """A connection as the survival rule sees it."""

    name: str  # the peer's node name
    outgoing: bool  # True: this node dialled it


def surviving(local: str, existing: Dialled, new: Dialled) -> Dialled:
    """Which of two open connections between this node (``local``) and one peer both ends keep.

    Opposite directions (both nodes dialled at once): the connection dialled by the node whose
    name is greater (both ends compute the same answer). The same direction (the peer, or this
    node, dialled again: the dialler had given the old connection up, say a restarted peer whose
    old connection this end has not yet seen close): the new one."""
    if existing.outgoing == new.outgoing:
        return new
    new_dialler = local if new.outgoing else new.name
    return new if new_dialler == max(local, new.name) else existing


class MeshNode(Protocol):
    """What the mesh needs of its node (:class:`pynode.node.LocalNode`)."""

    name: str
    hidden: bool

    def peers(self, kind: str) -> list[str]:
        """Connected peers of ``kind`` (``"visible"``)."""

    def connected(self, peer: str) -> bool:
        """True when an open connection with ``peer`` exists (or is being dialled)."""

    def connection_to(self, peer: str) -> object:
        """Connect to ``peer`` (raises NoConnection)."""


class Announcing(Protocol):
    """A connection as the mesh sees it (:class:`pynode.connection.Connection`)."""

    name: str
    hidden: bool

    def announce(self, names: list[str]) -> None:
        """Send PEERS with ``names``."""


class Mesh:
    """One node's part in the transitive mesh (see the module docstring)."""

    def __init__(self, node: MeshNode, connect_all: bool) -> None:
        self._node = node
        self.connect_all = connect_all

    def _takes_part(self, conn: Announcing) -> bool:
        return self.connect_all and not self._node.hidden and not conn.hidden

    def connected(self, conn: Announcing) -> None:
        """A connection was registered: tell its peer this node's other visible peers."""
        if self._takes_part(conn):
            conn.announce([peer for peer in self._node.peers("visible") if peer != conn.name])

    def announced(self, conn: Announcing, names: Iterable[str]) -> None:
        """The peer of ``conn`` announced ``names``: dial those this node lacks, each in a thread
        of its own (a dead name must not hold up the others; a failure is logged)."""
        if not self._takes_part(conn):
            log.debug("ignored the peer list of %s (connect_all off, or a hidden end)", conn.name)
            return
        for peer in names:
            if peer == self._node.name or self._node.connected(peer):
                continue
            threading.Thread(target=self._dial, args=(peer, conn.name), name=f"mesh-{peer}", daemon=True).start()

    def _dial(self, peer: str, told_by: str) -> None:
        try:
            self._node.connection_to(peer)
            log.info("%s connected to %s (announced by %s)", self._node.name, peer, told_by)
        except NoConnection as exc:
            log.info("%s cannot connect to %s, announced by %s: %s", self._node.name, peer, told_by, exc)
        except Exception:  # noqa: BLE001 - a background dial must not die silently
            log.exception("%s: connecting to %s, announced by %s, failed", self._node.name, peer, told_by)
