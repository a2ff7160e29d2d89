"""The transitive mesh against real node processes (LocalCluster): a node that connects to one
node of a cluster connects to all of its visible nodes; hidden nodes and nodes started with
--no-connect-all stay out of it; two nodes that dial each other at once keep one connection; a
malformed peer list gets its sender disconnected.

This process is a hidden node: its own connections never take part in the mesh."""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import Iterator

import cloudpickle
import pytest

from pynode import Node, erpc, runtime
from pynode.launch import NodeSpec
from pynode.testing import LocalCluster, this_node, wait_until
from raw_peer import dropped_line, send_frame_as

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ME = "mesh_test@127.0.1.20"
B = "mesh_b@127.0.1.21"
C = "mesh_c@127.0.1.22"
D = "mesh_d@127.0.1.23"
H = "mesh_h@127.0.1.24"  # hidden
X = "mesh_x@127.0.1.25"  # --no-connect-all
P = "mesh_p@127.0.1.26"
Q = "mesh_q@127.0.1.27"
RAW = "mesh_raw@127.0.1.28"
NODES = [B, C, D, H, X, P, Q]
# The bound for a transitive connection; LOADED_SLACK is what a 2-core machine shared
# with other test runs may add.
MESH_BOUND = 1.0
LOADED_SLACK = 1.0
QUIET = 1.0  # seconds to watch for a connection that must not come
TICKTIME = 2.0  # retired connections are closed at the ticker's looks (every ticktime / 4)
RETIRE_WAIT = 2.5  # seconds for a retired connection to close: its linger (1 s) and a look or two


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    specs = [NodeSpec(n, extra_args=("--no-connect-all",)) if n == X else n for n in NODES]
    with LocalCluster(specs, hidden=[H], ticktime=TICKTIME) as c:
        with this_node(ME, cookie=c.cookie, hidden=True, ticktime=TICKTIME):
            yield c


def drop_visible_peers() -> list[str]:
    """Runs on a node: disconnect every peer but the (hidden) test node."""
    peers = [p for p in Node.list("connected") if p != ME]
    for peer in peers:
        Node.disconnect(peer)
    return peers


def peers_of(node: str, kind: str = "connected") -> list[str]:
    return [p for p in erpc.call(node, Node.list, kind, timeout=10) if p != ME]


@pytest.fixture(autouse=True)
def isolated(cluster: LocalCluster) -> None:
    """Every test starts with no connection between the cluster's nodes."""

    def alone() -> bool:
        for node in NODES:
            erpc.call(node, drop_visible_peers, timeout=10)
        time.sleep(0.2)  # a mesh dial still on its way would show now
        return all(peers_of(node) == [] for node in NODES)

    assert wait_until(alone, timeout=20, interval=0.1), {n: peers_of(n) for n in NODES}


def connect_and_time(peer: str, expected: str, bound: float) -> float:
    """Runs on a node: connect to ``peer``, then the seconds until ``expected`` is in Node.list()
    (or ``bound``, if it never is)."""
    assert Node.connect(peer)
    start = time.monotonic()
    while expected not in Node.list("connected") and time.monotonic() - start < bound:
        time.sleep(0.005)
    return time.monotonic() - start


def test_connecting_to_one_node_of_a_cluster_connects_to_all_of_it(cluster: LocalCluster) -> None:
    assert erpc.call(B, Node.connect, C, timeout=10)
    elapsed = erpc.call(D, connect_and_time, B, C, 5.0, timeout=30)
    print(f"mesh: {C} in {D}'s Node.list() {elapsed * 1000:.0f} ms after connecting to {B}")
    assert elapsed < MESH_BOUND + LOADED_SLACK
    assert peers_of(D, "visible") == sorted([B, C])
    assert wait_until(lambda: D in peers_of(C, "visible"), timeout=2)
    assert peers_of(B, "visible") == sorted([C, D])


def test_hidden_nodes_are_neither_made_transitive_nor_announced(cluster: LocalCluster) -> None:
    assert erpc.call(B, Node.connect, C, timeout=10)
    assert erpc.call(H, Node.connect, B, timeout=10)
    time.sleep(QUIET)
    assert peers_of(H) == [B]  # not told of C
    assert peers_of(C) == [B]  # nor C of H
    # a visible newcomer learns of C, never of the hidden H
    assert erpc.call(D, connect_and_time, B, C, 5.0, timeout=30) < MESH_BOUND + LOADED_SLACK
    time.sleep(QUIET)
    assert peers_of(D) == sorted([B, C])
    assert H not in peers_of(C)


def test_connect_all_false_keeps_the_mesh_off(cluster: LocalCluster) -> None:
    assert erpc.call(B, Node.connect, C, timeout=10)
    assert erpc.call(X, Node.connect, B, timeout=10)
    time.sleep(QUIET)
    assert peers_of(X) == [B]  # X does not follow B's list...
    assert peers_of(C) == [B]  # ...nor announce its own: C is not told of X
    assert peers_of(B) == sorted([C, X])


def dial_at(when: float, peer: str) -> tuple[bool, int, list]:
    """Runs on a node: at wall-clock time ``when``, connect to ``peer`` and call it at once; then
    the nodeup/nodedown messages seen while a second connection, if any, winds down."""
    from pynode.testing import drain_mailbox

    Node.monitor_nodes(True)
    try:
        time.sleep(max(0.0, when - time.time()))
        connected = Node.connect(peer)
        pid = erpc.call(peer, "os:getpid", timeout=10)
        time.sleep(RETIRE_WAIT)
        return connected, pid, drain_mailbox()
    finally:
        Node.monitor_nodes(False)


def endpoints(peer: str) -> list[tuple[tuple, tuple]]:
    """Runs on a node: (local address, peer address) of each open connection with ``peer``."""
    return [(c.sock.getsockname(), c.sock.getpeername()) for c in runtime.current().connections(peer)]


def test_two_nodes_dialling_each_other_at_once_end_with_one_connection(cluster: LocalCluster) -> None:
    doubled = 0
    rounds = 3
    for _ in range(rounds):
        erpc.call(P, drop_visible_peers, timeout=10)
        erpc.call(Q, drop_visible_peers, timeout=10)
        assert wait_until(lambda: peers_of(P) == [] and peers_of(Q) == [], timeout=10)
        when = time.time() + 0.3
        at_p = erpc.send_request(P, dial_at, when, Q)
        at_q = erpc.send_request(Q, dial_at, when, P)
        doubled += wait_until(
            lambda: max(len(erpc.call(P, endpoints, Q, timeout=10)), len(erpc.call(Q, endpoints, P, timeout=10))) > 1,
            timeout=1.0,
        )
        # both connected, the calls made at once on whichever connection each got succeeded, and
        # the second connection's end was no nodedown: each saw the other come up once
        assert erpc.receive_response(at_p, timeout=30) == (True, cluster.pid(Q), [("nodeup", Q)])
        assert erpc.receive_response(at_q, timeout=30) == (True, cluster.pid(P), [("nodeup", P)])

        def one_each() -> bool:
            return len(erpc.call(P, endpoints, Q, timeout=10)) == 1 == len(erpc.call(Q, endpoints, P, timeout=10))

        assert wait_until(one_each, timeout=10, interval=0.1), "a second connection stayed open"
        [(p_local, p_remote)] = erpc.call(P, endpoints, Q, timeout=10)
        [(q_local, q_remote)] = erpc.call(Q, endpoints, P, timeout=10)
        assert (p_local, p_remote) == (q_remote, q_local)  # the same connection at both ends
        assert peers_of(P) == [Q] and peers_of(Q) == [P]
    print(f"simultaneous dials: {doubled} of {rounds} rounds had two connections at first")


def test_a_malformed_peer_list_gets_its_sender_disconnected_with_a_log_line(cluster: LocalCluster) -> None:
    body = bytes([0x46]) + struct.pack("!HH", 2, 3) + b"a@b"  # PEERS announcing two names, carrying one
    assert send_frame_as(cluster, B, RAW, body, hidden=False)
    line = dropped_line(cluster, B, RAW)
    assert "malformed PEERS" in line and "2 names announced" in line, line
    assert erpc.call(B, "os:getpid", timeout=10) == cluster.pid(B)  # still serving
