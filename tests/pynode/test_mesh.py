"""The transitive mesh's rules (pynode.mesh) and a retired connection's end (no node process)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from pynode import connection, mesh, outcome, transport
from pynode.connection import Connection, NodeService
from pynode.handshake import PeerInfo
from pynode.payload import dumps


@dataclass
class Conn:
    name: str
    outgoing: bool
    hidden: bool = False
    announced: list[list[str]] = field(default_factory=list)

    def announce(self, names: list[str]) -> None:
        self.announced.append(names)


# --- which connection survives -------------------------------------------------------------------


@pytest.mark.parametrize("first_seen", ["own dial first", "accepted first"])
def test_both_ends_keep_the_connection_dialled_by_the_greater_name(first_seen: str) -> None:
    a, b = "a@127.0.1.1", "b@127.0.1.1"  # b > a: b's dial survives
    # at a: its own dial (outgoing) and b's (accepted); at b: the mirror image
    at_a = [Conn(b, outgoing=True), Conn(b, outgoing=False)]
    at_b = [Conn(a, outgoing=True), Conn(a, outgoing=False)]
    if first_seen == "accepted first":
        at_a.reverse()
        at_b.reverse()
    kept_at_a = mesh.surviving(a, at_a[0], at_a[1])
    kept_at_b = mesh.surviving(b, at_b[0], at_b[1])
    assert kept_at_a.outgoing is False  # a keeps the connection b dialled...
    assert kept_at_b.outgoing is True  # ...and so does b


def test_a_second_dial_in_the_same_direction_replaces_the_first() -> None:
    old, new = Conn("b@h", outgoing=False), Conn("b@h", outgoing=False)
    assert mesh.surviving("a@h", old, new) is new
    old, new = Conn("b@h", outgoing=True), Conn("b@h", outgoing=True)
    assert mesh.surviving("a@h", old, new) is new


# --- announcing and following --------------------------------------------------------------------


class FakeNode:
    def __init__(self, name: str = "me@127.0.1.1", hidden: bool = False, visible=(), connected=()) -> None:
        self.name = name
        self.hidden = hidden
        self._visible = list(visible)
        self._connected = set(connected)
        self.dialled: list[str] = []
        self.lock = threading.Lock()

    def peers(self, kind: str) -> list[str]:
        assert kind == "visible"
        return list(self._visible)

    def connected(self, peer: str) -> bool:
        return peer in self._connected

    def connection_to(self, peer: str) -> object:
        with self.lock:
            self.dialled.append(peer)
        return object()


def wait_dials(node: FakeNode, count: int) -> list[str]:
    deadline = time.monotonic() + 5
    while len(node.dialled) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # and no more than that
    return sorted(node.dialled)


def test_a_new_visible_connection_is_told_the_other_visible_peers() -> None:
    node = FakeNode(visible=["b@h", "c@h", "new@h"])
    conn = Conn("new@h", outgoing=True)
    mesh.Mesh(node, connect_all=True).connected(conn)
    assert conn.announced == [["b@h", "c@h"]]


@pytest.mark.parametrize(
    "node_hidden, conn_hidden, connect_all",
    [(True, False, True), (False, True, True), (False, False, False)],
    ids=["hidden node", "hidden peer", "connect_all off"],
)
def test_no_peer_list_goes_out_or_is_followed_with_a_hidden_end_or_connect_all_off(
    node_hidden: bool, conn_hidden: bool, connect_all: bool
) -> None:
    node = FakeNode(hidden=node_hidden, visible=["b@h"])
    conn = Conn("new@h", outgoing=False, hidden=conn_hidden)
    m = mesh.Mesh(node, connect_all=connect_all)
    m.connected(conn)
    m.announced(conn, ["c@h"])
    assert conn.announced == []
    assert wait_dials(node, 0) == []


def test_announced_peers_this_node_lacks_are_dialled_and_no_others() -> None:
    node = FakeNode(connected=["b@h"])
    mesh.Mesh(node, connect_all=True).announced(Conn("b@h", outgoing=True), ["me@127.0.1.1", "b@h", "c@h", "d@h"])
    assert wait_dials(node, 2) == ["c@h", "d@h"]


# --- a retired connection closes once idle -----------------------------------------------------------


class Owner:
    name = "me@127.0.1.1"

    def __init__(self) -> None:
        self.detached: list[Connection] = []

    def watch_inline(self) -> None:
        pass

    def deliver_local(self, mailbox_id, data, buffers) -> None:
        pass

    def detach(self, conn: Connection) -> None:
        self.detached.append(conn)
        conn.disconnected()

    def peers_announced(self, conn: Connection, names: list[str]) -> None:
        pass

    def leaders(self, peer: str) -> None:
        return None  # calls' output stays here


def test_a_retired_connection_closes_after_its_linger_once_its_calls_are_done() -> None:
    left, right = socket.socketpair()
    try:
        conn = Connection(Owner(), left, PeerInfo("peer@127.0.1.2", False))
        transport.wrap(left, NodeService(conn), PeerInfo("peer@127.0.1.2", False))
        seq, pending = conn.call(*dumps(("builtins:int", (), {})))
        conn.retire(now=100.0)
        linger = connection.RETIRE_LINGER
        conn.tick(100.0 + linger / 2, ticktime=10.0)
        assert not conn.closed  # still lingering
        conn.tick(100.0 + 2 * linger, ticktime=1e9)
        assert not conn.closed  # a call of ours is still waiting on it
        conn.on_result(seq, outcome.OK, *dumps(0))
        assert pending.done and pending.error is None
        conn.tick(100.0 + 3 * linger, ticktime=1e9)
        assert conn.closed
        with pytest.raises(Exception, match="replaced by another connection"):
            conn.call(*dumps(("builtins:int", (), {})))
    finally:
        left.close()
        right.close()
