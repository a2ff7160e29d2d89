"""The process table without a network: Erlang's exit-signal rules, monitors, links, the signals
it sends and answers (a recording Route stands for the node), noconnection on nodedown, and the
exit signals of a remote spawn_link that arrive before its pid."""

from __future__ import annotations

import threading
import time

import pytest

from pynode import signals
from pynode.errors import ReceiveTimeout
from pynode.mailbox import Pid, Registry
from pynode.proctable import ProcessTable

NODE = "t@127.0.0.1"
PEER = "peer@127.0.0.2"
WAIT = 5.0


class RecordingRoute:
    def __init__(self, reachable: bool = True) -> None:
        self.sent: list[tuple[str, tuple]] = []
        self.reachable = reachable

    def send_signal(self, node: str, signal: tuple) -> bool:
        self.sent.append((node, signal))
        return self.reachable


@pytest.fixture
def world():
    registry = Registry(NODE)
    route = RecordingRoute()
    table = ProcessTable(registry, route)
    registry.on_remove = table.mailbox_gone
    return registry, table, route


def receive(registry: Registry, match=None, timeout: float = WAIT):
    return registry.own().get(timeout, match)


def nothing(registry: Registry) -> None:
    with pytest.raises(ReceiveTimeout):
        registry.own().get(0.2)


def sleeper() -> None:
    while True:
        time.sleep(0.01)


def test_exit_rules_for_a_spawned_process(world) -> None:
    registry, table, _ = world
    me = registry.own().pid
    pid = table.spawn(sleeper, (), {})
    ref = table.monitor(me, pid)
    table.exit(me, pid, "normal")  # ignored: not trapping
    nothing(registry)
    table.exit(me, pid, ("shutdown", 1))
    assert receive(registry) == ("DOWN", ref, pid, ("shutdown", 1))
    assert not table.alive(pid)
    again = table.monitor(me, pid)
    assert receive(registry) == ("DOWN", again, pid, "noproc")


def test_trapping_turns_signals_into_messages_but_kill_is_untrappable(world) -> None:
    registry, table, _ = world
    me = registry.own().pid

    def trapper() -> None:
        table.trap_exit(registry.own().pid, True)
        registry.deliver(me.id, "trapping")
        for _ in range(2):
            registry.deliver(me.id, ("got", registry.own().get(WAIT)))
        sleeper()

    pid = table.spawn(trapper, (), {})
    ref = table.monitor(me, pid)
    assert receive(registry) == "trapping"
    table.exit(me, pid, "normal")
    table.exit(me, pid, "boom")
    assert [receive(registry), receive(registry)] == [("got", ("EXIT", me, "normal")), ("got", ("EXIT", me, "boom"))]
    table.exit(me, pid, "kill")
    assert receive(registry) == ("DOWN", ref, pid, "killed")


def test_a_linked_crash_propagates_and_an_adopted_thread_gets_a_message(world) -> None:
    registry, table, _ = world
    me = registry.own().pid  # adopted: never stopped
    go = threading.Event()

    def crasher() -> None:
        go.wait(WAIT)
        raise KeyError("lost")

    middle = table.spawn(sleeper, (), {})
    crash = table.spawn(crasher, (), {}, link=middle)
    table.link(me, middle)
    ref = table.monitor(me, middle)
    go.set()
    down = receive(registry, lambda m: m[0] == "DOWN")
    assert down[:3] == ("DOWN", ref, middle) and down[3][0] == "exception"
    assert isinstance(down[3][1], KeyError)
    kind, sender, reason = receive(registry, lambda m: m[0] == "EXIT")
    assert (kind, sender, reason[0]) == ("EXIT", middle, "exception")
    assert not table.alive(crash)


def test_remote_links_and_monitors_send_signals_and_answer_for_the_dead(world) -> None:
    registry, table, route = world
    me = registry.own().pid
    remote = Pid(PEER, 5)
    ref = table.monitor(me, remote)
    table.link(me, remote)
    assert route.sent == [(PEER, signals.Monitor(me, remote, ref)), (PEER, signals.Link(me, remote))]
    table.on_signal(PEER, signals.Down(me, remote, ref, "normal"))
    assert receive(registry) == ("DOWN", ref, remote, "normal")
    route.sent.clear()
    dead = Pid(NODE, 9999)
    other_ref = signals.make_ref(PEER)
    table.on_signal(PEER, signals.Link(remote, dead))
    table.on_signal(PEER, signals.Monitor(remote, dead, other_ref))
    assert route.sent == [(PEER, signals.Exit(dead, remote, "noproc", True)),
                          (PEER, signals.Down(remote, dead, other_ref, "noproc"))]


def test_an_unreachable_node_fires_noconnection_at_once(world) -> None:
    registry, table, route = world
    route.reachable = False
    me = registry.own().pid
    ref = table.monitor(me, Pid(PEER, 1))
    assert receive(registry) == ("DOWN", ref, Pid(PEER, 1), "noconnection")
    table.link(me, Pid(PEER, 1))
    assert receive(registry) == ("EXIT", Pid(PEER, 1), "noconnection")


def test_nodedown_breaks_links_fires_monitors_and_drops_the_peers_monitors(world) -> None:
    registry, table, route = world
    me = registry.own().pid
    remote = Pid(PEER, 3)
    ref = table.monitor(me, remote)
    local = table.spawn(sleeper, (), {})
    table.on_signal(PEER, signals.Link(remote, local))
    table.on_signal(PEER, signals.Monitor(remote, local, signals.make_ref(PEER)))
    watch_local = table.monitor(me, local)
    route.sent.clear()
    table.node_down(PEER)
    assert receive(registry, lambda m: m[1] == ref) == ("DOWN", ref, remote, "noconnection")
    # the local process linked to the remote one is stopped by the broken link...
    assert receive(registry, lambda m: m[1] == watch_local) == ("DOWN", watch_local, local, "noconnection")
    # ...and the down peer hears nothing of it (its monitor and link are gone)
    assert route.sent == []


def test_exits_of_a_remote_spawn_link_that_arrive_before_its_pid_are_replayed(world) -> None:
    registry, table, _ = world
    me = registry.own().pid
    child = Pid(PEER, 42)
    table.trap_exit(me, True)
    table.expect_link(me, PEER)
    table.on_signal(PEER, signals.Exit(child, me, "early", True))  # before the spawn returned
    table.on_signal(PEER, signals.Exit(Pid(PEER, 43), me, "stranger", True))  # not our child
    nothing(registry)
    table.linked_spawn(me, PEER, child)
    assert receive(registry) == ("EXIT", child, "early")
    nothing(registry)


def test_demonitor_with_flush_removes_a_down_already_delivered(world) -> None:
    registry, table, _ = world
    me = registry.own().pid
    pid = table.spawn(lambda: None, (), {})
    ref = table.monitor(me, pid)
    deadline = time.monotonic() + WAIT
    while table.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    registry.own().put("other")
    table.demonitor(me, ref, flush=True)
    assert receive(registry) == "other"
    nothing(registry)


def test_shutdown_stops_every_spawned_process(world) -> None:
    registry, table, _ = world
    me = registry.own().pid
    refs = {}
    for fn in (sleeper, lambda: registry.own().get(None)):
        pid = table.spawn(fn, (), {})
        refs[table.monitor(me, pid)] = pid
    table.shutdown()
    downs = {receive(registry)[1:] for _ in refs}
    assert downs == {(ref, pid, "shutdown") for ref, pid in refs.items()}
