"""exmc's PynodeBackend and the node monitors of the thread that runs it, against a real exmc
node (LocalCluster): closing a backend removes only the monitors it added, and a nodedown that
arrived after a run's last look is not left in the mailbox for the next run to take for a loss."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import pynode
from exmc.nuts.multinode import NodeDown
from exmc.nuts.pynode_backend import PynodeBackend
from pynode import Node
from pynode.errors import ReceiveTimeout
from pynode.testing import LocalCluster, drain_mailbox, this_node, wait_until

NODE = "bmon_a@127.0.1.21"
ME = "bmon_test@127.0.1.20"
QUIET = 0.5  # seconds a receive waits to show that no message comes


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([NODE], preload=["exmc"]) as c:
        with this_node(ME, cookie=c.cookie):
            yield c


@pytest.fixture(autouse=True)
def connected(cluster: LocalCluster) -> Iterator[None]:
    """Connected to NODE, with an empty mailbox, before each test."""
    assert Node.connect(NODE)
    drain_mailbox()
    yield
    drain_mailbox()


def assert_no_message() -> None:
    """Nothing arrives within QUIET seconds."""
    try:
        message = pynode.receive(timeout=QUIET)
    except ReceiveTimeout:
        return
    pytest.fail(f"unexpected message {message!r}")


def disconnect() -> None:
    Node.disconnect(NODE)
    assert wait_until(lambda: NODE not in Node.list("connected"), timeout=5.0)


def test_closing_a_backend_leaves_the_threads_own_monitor_of_its_nodes() -> None:
    Node.monitor(NODE)  # the thread's own, from before the run
    backend = PynodeBackend()
    assert backend.workers([NODE])[NODE] >= 1  # the backend monitors NODE too
    backend.close()
    disconnect()
    assert pynode.receive(timeout=5) == ("nodedown", NODE)  # the thread's monitor still fires
    assert_no_message()  # and only it: the backend's was removed


def test_a_nodedown_after_a_runs_last_look_is_not_taken_for_a_loss_by_the_next_run() -> None:
    first = PynodeBackend()
    assert first.workers([NODE])[NODE] >= 1
    disconnect()  # after the run's last poll: its nodedown is in the mailbox, unread
    first.close()
    assert_no_message()
    second = PynodeBackend()  # a later run over the same node from this thread
    assert second.workers([NODE])[NODE] >= 1
    try:
        events = second.poll(QUIET)
        assert not [event for event in events if isinstance(event, NodeDown)]
    finally:
        second.close()


def test_a_backend_closed_after_seeing_the_loss_leaves_the_threads_own_nodedown() -> None:
    Node.monitor(NODE)
    backend = PynodeBackend()
    assert backend.workers([NODE])[NODE] >= 1
    disconnect()
    events = backend.poll(5)  # the run hears of the loss through its monitor
    assert [event.node for event in events if isinstance(event, NodeDown)] == [NODE]
    backend.close()
    assert pynode.receive(timeout=5) == ("nodedown", NODE)  # the thread's own message stays
    assert_no_message()
