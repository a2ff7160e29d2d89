"""pynode.monitors without a network: who hears of which node going up or down."""

from __future__ import annotations

import gc
import threading

import pytest

from pynode.mailbox import Registry
from pynode.monitors import NodeMonitors


@pytest.fixture
def inbox() -> list[tuple[int, tuple[str, str]]]:
    return []


@pytest.fixture
def monitors(inbox) -> NodeMonitors:
    return NodeMonitors(lambda mailbox_id, message: inbox.append((mailbox_id, message)))


def test_each_monitor_fires_once_with_one_message(monitors, inbox) -> None:
    monitors.monitor("a@h", 1)
    monitors.monitor("a@h", 1)
    monitors.monitor("a@h", 2)
    monitors.monitor("b@h", 3)
    monitors.node_down("a@h", hidden=False)
    assert inbox == [(1, ("nodedown", "a@h")), (1, ("nodedown", "a@h")), (2, ("nodedown", "a@h"))]
    inbox.clear()
    monitors.node_down("a@h", hidden=False)  # fired monitors are gone
    assert inbox == []
    monitors.node_down("b@h", hidden=False)
    assert inbox == [(3, ("nodedown", "b@h"))]


def test_demonitor_removes_one_of_that_mailboxs_monitors_of_that_node(monitors, inbox) -> None:
    """Independent instances, as Erlang counts monitor_node(N, true): each demonitor removes one."""
    monitors.monitor("a@h", 1)
    monitors.monitor("a@h", 1)
    monitors.monitor("a@h", 1)
    monitors.monitor("a@h", 2)
    monitors.monitor("b@h", 1)
    assert monitors.demonitor("a@h", 1)
    assert monitors.demonitor("a@h", 1)
    monitors.node_down("a@h", hidden=False)
    monitors.node_down("b@h", hidden=False)
    assert inbox == [(1, ("nodedown", "a@h")), (2, ("nodedown", "a@h")), (1, ("nodedown", "b@h"))]
    assert not monitors.demonitor("a@h", 1)  # fired: none left
    assert not monitors.demonitor("a@h", 1, flush=True)  # nothing in flight: returns at once


def test_flushing_demonitor_returns_once_a_fired_monitors_nodedown_is_delivered() -> None:
    """A monitor taken from the table by node_down whose message is still on its way: the
    flushing demonitor returns only once it is in the mailbox, where the caller removes it."""
    inbox: list[tuple[int, object]] = []
    entered, release = threading.Event(), threading.Event()

    def slow_deliver(mailbox_id: int, message: object) -> None:
        entered.set()
        assert release.wait(5)
        inbox.append((mailbox_id, message))

    monitors = NodeMonitors(slow_deliver)
    monitors.monitor("a@h", 1)
    down = threading.Thread(target=monitors.node_down, args=("a@h", False))
    down.start()
    assert entered.wait(5)
    threading.Timer(0.2, release.set).start()
    assert monitors.demonitor("a@h", 1, flush=True) is False
    assert inbox == [(1, ("nodedown", "a@h"))]
    down.join(5)
    assert monitors.demonitor("a@h", 1) is False  # not flushing: never waits


def test_unreachable_fires_only_the_new_monitor_and_tells_no_subscriber(monitors, inbox) -> None:
    monitors.subscribe(9, "connected")
    monitors.monitor("a@h", 1)
    monitors.monitor("a@h", 2)
    monitors.unreachable("a@h", 2)
    assert inbox == [(2, ("nodedown", "a@h"))]
    monitors.unreachable("a@h", 2)  # already fired: nothing more
    assert inbox == [(2, ("nodedown", "a@h"))]
    monitors.node_down("a@h", hidden=False)
    assert inbox[1:] == [(1, ("nodedown", "a@h")), (9, ("nodedown", "a@h"))]


@pytest.mark.parametrize(
    ("kind", "hears_visible", "hears_hidden"),
    [("visible", True, False), ("hidden", False, True), ("connected", True, True)],
)
def test_subscribers_hear_up_and_down_of_their_kind(monitors, inbox, kind, hears_visible, hears_hidden) -> None:
    monitors.subscribe(5, kind)
    monitors.node_up("v@h", hidden=False)
    monitors.node_up("s@h", hidden=True)
    monitors.node_down("v@h", hidden=False)
    monitors.node_down("s@h", hidden=True)
    expected = []
    if hears_visible:
        expected += [(5, ("nodeup", "v@h"))]
    if hears_hidden:
        expected += [(5, ("nodeup", "s@h"))]
    if hears_visible:
        expected += [(5, ("nodedown", "v@h"))]
    if hears_hidden:
        expected += [(5, ("nodedown", "s@h"))]
    assert inbox == expected


def test_unsubscribe_ends_the_news_and_a_second_subscribe_replaces_the_kind(monitors, inbox) -> None:
    monitors.subscribe(5, "visible")
    monitors.subscribe(5, "hidden")
    monitors.node_up("v@h", hidden=False)
    monitors.node_up("s@h", hidden=True)
    assert inbox == [(5, ("nodeup", "s@h"))]
    assert monitors.unsubscribe(5)
    assert not monitors.unsubscribe(5)
    monitors.node_down("s@h", hidden=True)
    assert inbox == [(5, ("nodeup", "s@h"))]


def test_an_unknown_kind_is_refused_naming_it(monitors) -> None:
    with pytest.raises(ValueError, match="'everything'"):
        monitors.subscribe(5, "everything")


def test_a_forgotten_mailbox_loses_its_monitors_and_subscription(monitors, inbox) -> None:
    monitors.monitor("a@h", 1)
    monitors.monitor("b@h", 1)
    monitors.monitor("a@h", 2)
    monitors.subscribe(1, "connected")
    monitors.forget(1)
    monitors.node_down("a@h", hidden=False)
    monitors.node_down("b@h", hidden=False)
    assert inbox == [(2, ("nodedown", "a@h"))]


def test_a_thread_that_ends_takes_its_monitors_with_its_mailbox() -> None:
    """Wired as LocalNode wires it: the mailbox registry tells the monitors when a thread's
    mailbox goes."""
    registry = Registry("me@h")
    monitors = NodeMonitors(registry.deliver)
    registry.on_remove = monitors.forget

    def monitor_then_end() -> None:
        box = registry.own()
        monitors.monitor("a@h", box.pid.id)
        monitors.subscribe(box.pid.id, "visible")

    thread = threading.Thread(target=monitor_then_end)
    thread.start()
    thread.join()
    gc.collect()
    assert monitors._monitors == {} and monitors._subscribers == {}
