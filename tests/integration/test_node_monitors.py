"""Node monitors against real node processes (LocalCluster): Node.monitor (Erlang's monitor_node)
and Node.monitor_nodes (net_kernel:monitor_nodes) deliver nodeup/nodedown to the mailbox of the
thread that asked."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import pynode
from pynode import Node, erpc, runtime
from pynode.errors import BadNodeName, ReceiveTimeout
from pynode.testing import LocalCluster, this_node, wait_until

A = "mon_a@127.0.0.61"
B = "mon_b@127.0.0.62"
HIDDEN = "mon_h@127.0.0.62"
VICTIM = "mon_k@127.0.0.63"
ME = "mon_test@127.0.0.60"
NOBODY = "nobody@127.0.0.61"
QUIET = 0.5  # seconds a receive waits to show that no message comes
HOLD = 1.0  # seconds a report of nodedown is held back in the race test


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([A, B, HIDDEN, VICTIM], hidden=[HIDDEN]) as c:
        with this_node(ME, cookie=c.cookie):
            yield c


@pytest.fixture(autouse=True)
def clean_slate(cluster: LocalCluster) -> Iterator[None]:
    """No connections (each one's nodedown seen: it is fully gone) and an empty mailbox before
    each test; no subscription after it."""
    peers = Node.list("connected")
    for peer in peers:
        Node.monitor(peer)
        Node.disconnect(peer)
    down = {pynode.receive(timeout=5) for _ in peers}
    assert down == {("nodedown", peer) for peer in peers}
    assert wait_until(lambda: not Node.list("connected"), timeout=5.0)
    drain()
    yield
    Node.monitor_nodes(False)


def drain() -> None:
    while True:
        try:
            pynode.receive(timeout=0)
        except ReceiveTimeout:
            return


def assert_no_message() -> None:
    with pytest.raises(ReceiveTimeout):
        message = pynode.receive(timeout=QUIET)
        pytest.fail(f"unexpected message {message!r}")


def test_a_killed_node_sends_nodedown_to_its_monitor(cluster: LocalCluster) -> None:
    Node.monitor(VICTIM)  # connects
    assert VICTIM in Node.list()
    cluster.kill(VICTIM)
    try:
        assert pynode.receive(timeout=5) == ("nodedown", VICTIM)
        assert VICTIM not in Node.list()
    finally:
        cluster.restart(VICTIM)


def test_a_node_that_cannot_be_reached_fires_the_monitor_at_once() -> None:
    Node.monitor(NOBODY)
    assert pynode.receive(timeout=5) == ("nodedown", NOBODY)
    assert_no_message()


def test_each_monitor_sends_one_message_and_fires_once() -> None:
    Node.monitor(A)
    Node.monitor(A)
    Node.disconnect(A)
    assert [pynode.receive(timeout=5), pynode.receive(timeout=5)] == [("nodedown", A)] * 2
    assert Node.connect(A)
    Node.disconnect(A)  # the monitors have fired: nothing more
    assert_no_message()


def test_monitor_false_removes_one_of_the_threads_monitors() -> None:
    """Independent instances, as Erlang's monitor_node counts them: one removed, one fires."""
    Node.monitor(A)
    Node.monitor(A)
    Node.monitor(A, False)
    Node.disconnect(A)
    assert pynode.receive(timeout=5) == ("nodedown", A)
    assert_no_message()
    assert Node.connect(A)
    Node.monitor(A)
    Node.monitor(A, False)
    Node.monitor(A, False)  # none left: nothing to remove
    Node.disconnect(A)
    assert_no_message()


def test_monitor_false_with_flush_removes_the_nodedown_of_a_fired_monitor() -> None:
    Node.monitor(A)
    Node.monitor(A)
    Node.disconnect(A)
    assert wait_until(lambda: A not in Node.list("connected"), timeout=5.0)
    Node.monitor(A, False, flush=True)  # both fired: one of their two messages goes
    assert pynode.receive(timeout=5) == ("nodedown", A)
    assert_no_message()
    assert Node.connect(A)
    Node.monitor(A)
    Node.monitor(A, False, flush=True)  # not fired: removed, no message taken
    Node.monitor(A)
    Node.disconnect(A)
    assert pynode.receive(timeout=5) == ("nodedown", A)
    assert_no_message()


def test_the_message_goes_to_the_thread_that_monitors() -> None:
    heard: list[object] = []
    monitoring = threading.Event()

    def watcher() -> None:
        Node.monitor(A)
        monitoring.set()
        heard.append(pynode.receive(timeout=5))

    thread = threading.Thread(target=watcher)
    thread.start()
    assert monitoring.wait(5)
    Node.disconnect(A)
    thread.join(10)
    assert heard == [("nodedown", A)]
    assert_no_message()  # not this thread's monitor


def test_monitor_nodes_reports_visible_peers_up_and_down() -> None:
    Node.monitor_nodes(True)
    assert Node.connect(B) and Node.connect(HIDDEN)
    assert pynode.receive(timeout=5) == ("nodeup", B)
    Node.disconnect(B)
    Node.disconnect(HIDDEN)
    assert pynode.receive(timeout=5) == ("nodedown", B)
    assert_no_message()  # the hidden node is not a visible peer


def test_monitor_nodes_of_hidden_kind_and_its_end() -> None:
    Node.monitor_nodes(True, kind="hidden")
    assert Node.connect(B) and Node.connect(HIDDEN)
    assert pynode.receive(timeout=5) == ("nodeup", HIDDEN)
    Node.disconnect(HIDDEN)
    assert pynode.receive(timeout=5) == ("nodedown", HIDDEN)
    Node.monitor_nodes(False)
    assert Node.connect(HIDDEN)
    Node.disconnect(HIDDEN)
    Node.disconnect(B)
    assert_no_message()


def test_a_late_nodedown_of_an_old_connection_does_not_fire_a_monitor_of_the_new_one() -> None:
    """The peer ends the connection; this node's thread for it is held just before it reports
    nodedown, as a preemption would; meanwhile the peer is connected again and monitored. The node reports state changes
    under its lock, so the reconnection waits for that nodedown instead of overtaking it."""
    Node.monitor_nodes(True)
    assert Node.connect(A)
    assert pynode.receive(timeout=5) == ("nodeup", A)
    monitors = runtime.current().monitors
    report_down = monitors.node_down
    held, release = threading.Event(), threading.Event()

    def held_node_down(peer: str, hidden: bool) -> None:
        if not held.is_set():
            held.set()
            release.wait(HOLD)
        report_down(peer, hidden)

    monitors.node_down = held_node_down
    try:
        erpc.cast(A, "pynode:Node.disconnect", ME)  # the peer ends the connection: EOF here
        assert held.wait(5)
        assert Node.connect(A)  # a new connection
        Node.monitor(A)  # a monitor of it
        release.set()
        assert [pynode.receive(timeout=5), pynode.receive(timeout=5)] == [("nodedown", A), ("nodeup", A)]
        assert_no_message()  # the new connection's monitor has not fired
        assert A in Node.list()
    finally:
        monitors.node_down = report_down
        release.set()


def test_disconnect_reports_nodedown_at_once_and_a_reconnection_nodeup() -> None:
    """As Erlang's disconnect_node: the peer is down when disconnect returns, even if the old
    connection is still winding down when the next one is made."""
    Node.monitor_nodes(True)
    Node.monitor(A)
    assert pynode.receive(timeout=5) == ("nodeup", A)
    Node.disconnect(A)
    assert A not in Node.list()
    assert Node.connect(A)
    assert [pynode.receive(timeout=5) for _ in range(3)] == [("nodedown", A), ("nodedown", A), ("nodeup", A)]
    assert_no_message()  # the old connection's end reports nothing more


def test_bad_input_is_refused_naming_it() -> None:
    with pytest.raises(BadNodeName, match="no-at-sign"):
        Node.monitor("no-at-sign")
    with pytest.raises(ValueError, match="'everyone'"):
        Node.monitor_nodes(True, kind="everyone")
