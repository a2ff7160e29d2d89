"""Processes across real nodes (LocalCluster): spawn, monitor, link, exit, trap_exit, registered
names, every DOWN/EXIT reason, noproc, noconnection on kill -9, and bad input that leaves the
node serving.

The test process is a node too; its main thread is an *adopted* process (exit signals reach it as
EXIT messages, never stop it), so the behaviour of a process stopped by a signal is watched
through processes spawned here, which report by message."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import cloudpickle
import pytest

import pynode
from pynode import Node, erpc
from pynode.errors import EncodeError, NoConnection, ReceiveTimeout
from pynode.mailbox import Pid
from pynode.testing import LocalCluster, this_node, wait_until

A = "proc_a@127.0.2.2"
B = "proc_b@127.0.2.3"
VICTIM = "proc_v@127.0.2.4"
ME = "proc_test@127.0.2.1"
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the nodes do not have this module

WAIT = 10.0  # seconds a receive waits for what must come (a loaded 2-core box)
QUIET = 0.5  # seconds a receive waits to show that nothing comes


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([A, B, VICTIM]) as c:
        with this_node(ME, cookie=c.cookie):
            yield c


@pytest.fixture(autouse=True)
def empty_mailbox(cluster: LocalCluster) -> Iterator[None]:
    drain()
    pynode.trap_exit(False)
    yield
    drain()


def drain() -> list:
    got = []
    while True:
        try:
            got.append(pynode.receive(timeout=0))
        except ReceiveTimeout:
            return got


def down_of(ref):
    return pynode.receive(WAIT, match=lambda m: type(m) is tuple and m[0] == "DOWN" and m[1] == ref)


def assert_nothing(match=None) -> None:
    with pytest.raises(ReceiveTimeout):
        message = pynode.receive(QUIET, match=match)
        pytest.fail(f"unexpected message {message!r}")


# --- functions the processes run (shipped by value) ------------------------------------------


def report(parent, n):
    for i in range(n):
        pynode.send(parent, ("step", Node.self(), i))


def crash(message):
    raise ValueError(message)


def wait_forever():
    pynode.receive()


def echo_once(parent):
    pynode.send(parent, ("echo", pynode.receive(WAIT)))


# --- spawn and monitor --------------------------------------------------------------------------


def test_spawn_runs_on_the_node_and_down_normal_follows_its_messages(cluster: LocalCluster) -> None:
    pid, ref = pynode.spawn_monitor(A, report, pynode.self_pid(), 3)
    assert pid.node == A
    assert down_of(ref) == ("DOWN", ref, pid, "normal")
    # the process's messages were sent before it ended: they are all there, in order
    assert drain() == [("step", A, 0), ("step", A, 1), ("step", A, 2)]


def test_down_carries_the_exception_rebuilt_with_its_node(cluster: LocalCluster) -> None:
    pid, ref = pynode.spawn_monitor(A, crash, "no good")
    _, _, who, (kind, exc) = down_of(ref)
    assert (who, kind) == (pid, "exception")
    assert isinstance(exc, ValueError) and str(exc) == "no good"
    assert any(A in note for note in exc.__notes__)


def test_exit_kill_gives_killed_and_monitor_of_a_dead_pid_gives_noproc_at_once(cluster: LocalCluster) -> None:
    pid = pynode.spawn(B, wait_forever)
    ref = pynode.monitor(pid)
    pynode.exit(pid, "kill")
    assert down_of(ref) == ("DOWN", ref, pid, "killed")
    again = pynode.monitor(pid)
    assert down_of(again) == ("DOWN", again, pid, "noproc")
    never = pynode.monitor(Pid(B, 10**9))
    assert down_of(never) == ("DOWN", never, Pid(B, 10**9), "noproc")


def test_demonitor_stops_the_down_and_flush_removes_one_already_there(cluster: LocalCluster) -> None:
    pid = pynode.spawn(A, wait_forever)
    ref = pynode.monitor(pid)
    assert pynode.demonitor(ref) is True
    pynode.exit(pid, "kill")
    assert_nothing(lambda m: m[0] == "DOWN")
    pid = pynode.spawn(A, wait_forever)
    ref = pynode.monitor(pid)
    assert erpc.call(A, _alive, pid, timeout=WAIT)  # the Monitor signal reached A before this call
    pynode.exit(pid, "kill")
    # A drops the mailbox after it sent the DOWN, and answers on the same connection: once it
    # says the mailbox is gone, the DOWN is in this mailbox and the monitor has fired
    assert wait_until(lambda: erpc.call(A, _mailbox_gone, pid, timeout=WAIT), timeout=WAIT)
    assert pynode.demonitor(ref, flush=True) is False
    assert_nothing(lambda m: m[0] == "DOWN")


def _alive(pid):
    from pynode import runtime

    return runtime.current().processes.table.alive(pid)


def _mailbox_gone(pid):
    from pynode import runtime

    return runtime.current().mailboxes.get(pid.id) is None


# --- links, exit signals, trap_exit -----------------------------------------------------------


def supervisor(parent, node, fn, args, trap):
    """A local process that links to a remote one and reports what reaches it."""
    pynode.trap_exit(trap)
    child = pynode.spawn_link(node, fn, *args)
    pynode.send(parent, ("child", child))
    pynode.send(parent, ("got", pynode.receive(WAIT)))


def test_a_linked_crash_stops_a_process_that_does_not_trap_exits(cluster: LocalCluster) -> None:
    me = Node.self()
    pid, ref = pynode.spawn_monitor(me, supervisor, pynode.self_pid(), A, crash, ("linked",), False)
    _, _, _, reason = down_of(ref)
    assert reason[0] == "exception" and str(reason[1]) == "linked"
    assert not [m for m in drain() if m[0] == "got"]


def test_a_trapping_process_gets_the_exit_as_a_message_even_from_a_fast_crash(cluster: LocalCluster) -> None:
    pid, ref = pynode.spawn_monitor(Node.self(), supervisor, pynode.self_pid(), A, crash, ("fast",), True)
    _, child = pynode.receive(WAIT, match=lambda m: m[0] == "child")
    _, (tag, sender, (kind, exc)) = pynode.receive(WAIT, match=lambda m: m[0] == "got")
    assert (tag, sender, kind, str(exc)) == ("EXIT", child, "exception", "fast")
    assert down_of(ref)[3] == "normal"


def linker(parent, target, trap):
    pynode.trap_exit(trap)
    pynode.link(target)
    pynode.send(parent, ("linked", pynode.self_pid()))
    pynode.send(parent, ("got", pynode.receive(WAIT)))


def test_exit_signals_across_nodes_follow_erlangs_rules(cluster: LocalCluster) -> None:
    target = pynode.spawn(A, wait_forever)
    # a non-trapping linked process stops with a custom reason propagated through the link
    pid, ref = pynode.spawn_monitor(Node.self(), linker, pynode.self_pid(), target, False)
    pynode.receive(WAIT, match=lambda m: m[0] == "linked")
    watch_target = pynode.monitor(target)
    pynode.exit(target, ("shutdown", 7))
    assert down_of(watch_target)[3] == ("shutdown", 7)
    assert down_of(ref)[3] == ("shutdown", 7)
    # "normal" from exit/2 is ignored by a process that does not trap exits...
    quiet = pynode.spawn(A, wait_forever)
    watch_quiet = pynode.monitor(quiet)
    pynode.exit(quiet, "normal")
    assert_nothing(lambda m: m[0] == "DOWN")
    # ...and a trapping one receives it as a message
    trapper, tref = pynode.spawn_monitor(Node.self(), linker, pynode.self_pid(), quiet, True)
    pynode.receive(WAIT, match=lambda m: m[0] == "linked")
    pynode.exit(trapper, "normal")
    assert pynode.receive(WAIT, match=lambda m: m[0] == "got") == ("got", ("EXIT", pynode.self_pid(), "normal"))
    pynode.exit(quiet, "kill")
    assert down_of(watch_quiet)[3] == "killed"


def test_unlink_removes_the_link_on_both_nodes(cluster: LocalCluster) -> None:
    def unlinker(parent, node):
        child = pynode.spawn_link(node, wait_forever)
        pynode.unlink(child)
        pynode.send(parent, ("child", child))
        pynode.receive(WAIT)

    pid, ref = pynode.spawn_monitor(Node.self(), unlinker, pynode.self_pid(), A)
    _, child = pynode.receive(WAIT, match=lambda m: m[0] == "child")
    time.sleep(0.2)  # the Unlink signal reaches A
    pynode.exit(child, "boom")  # would have stopped the unlinker through the link
    assert_nothing(lambda m: m[0] == "DOWN")
    pynode.send(pid, "go")
    assert down_of(ref)[3] == "normal"


def test_a_link_to_a_process_that_does_not_exist_gives_noproc(cluster: LocalCluster) -> None:
    pid, ref = pynode.spawn_monitor(Node.self(), linker, pynode.self_pid(), Pid(B, 10**9), True)
    assert pynode.receive(WAIT, match=lambda m: m[0] == "got") == ("got", ("EXIT", Pid(B, 10**9), "noproc"))


def test_killing_a_node_fires_noconnection_for_monitors_and_links(cluster: LocalCluster) -> None:
    remote = pynode.spawn(VICTIM, wait_forever)
    ref = pynode.monitor(remote)
    pid, sref = pynode.spawn_monitor(Node.self(), linker, pynode.self_pid(), remote, True)
    pynode.receive(WAIT, match=lambda m: m[0] == "linked")
    cluster.kill(VICTIM)  # SIGKILL: no goodbye
    try:
        assert down_of(ref) == ("DOWN", ref, remote, "noconnection")
        assert pynode.receive(WAIT, match=lambda m: m[0] == "got") == ("got", ("EXIT", remote, "noconnection"))
        late = pynode.monitor(remote)  # the node is gone: at once
        assert down_of(late)[3] == "noconnection"
    finally:
        cluster.restart(VICTIM)


def test_an_adopted_thread_is_not_stopped_by_a_link(cluster: LocalCluster) -> None:
    pid = pynode.spawn(A, wait_forever)
    pynode.link(pid)  # the test's main thread: not spawned by pynode
    pynode.exit(pid, "boom")
    assert pynode.receive(WAIT, match=lambda m: m[0] == "EXIT") == ("EXIT", pid, "boom")


# --- registered names ---------------------------------------------------------------------------


def named_echo(name, parent):
    pynode.register(name)
    pynode.send(parent, ("registered", name))
    while True:
        message = pynode.receive(WAIT)
        if message == "stop":
            return
        pynode.send(parent, ("echo", Node.self(), message))


def test_names_on_another_node_take_messages_and_go_with_their_process(cluster: LocalCluster) -> None:
    pid = pynode.spawn(B, named_echo, "echoer", pynode.self_pid())
    pynode.receive(WAIT, match=lambda m: m[0] == "registered")
    assert erpc.call(B, pynode.whereis, "echoer") == pid
    assert "echoer" in erpc.call(B, pynode.registered)
    pynode.send(("echoer", B), "hello")
    assert pynode.receive(WAIT) == ("echo", B, "hello")
    pynode.send(("nobody_here", B), "lost")  # fire-and-forget: no error
    ref = pynode.monitor(pid)
    pynode.send(("echoer", B), "stop")
    assert down_of(ref)[3] == "normal"
    assert erpc.call(B, pynode.whereis, "echoer") is None


def test_local_names(cluster: LocalCluster) -> None:
    pid = pynode.spawn(Node.self(), named_echo, "local_echo", pynode.self_pid())
    pynode.receive(WAIT, match=lambda m: m[0] == "registered")
    assert pynode.whereis("local_echo") == pid
    pynode.send("local_echo", "one")
    pynode.send(("local_echo", Node.self()), "two")
    assert [pynode.receive(WAIT), pynode.receive(WAIT)] == [("echo", ME, "one"), ("echo", ME, "two")]
    with pytest.raises(ValueError, match=rf"'local_echo' is already taken by <pid {pid.id} @ {ME}>"):
        pynode.register("local_echo")
    with pytest.raises(ValueError, match="no process is registered as 'nobody'"):
        pynode.send("nobody", "x")
    pynode.send("local_echo", "stop")
    assert wait_until(lambda: pynode.whereis("local_echo") is None, timeout=WAIT)
    pynode.register("mine")
    try:
        assert pynode.whereis("mine") == pynode.self_pid() and "mine" in pynode.registered()
    finally:
        pynode.unregister("mine")
    with pytest.raises(ValueError, match="unregister: no process is registered as 'mine'"):
        pynode.unregister("mine")


# --- bad input ------------------------------------------------------------------------------------


def test_bad_input_raises_naming_the_argument_and_the_node_keeps_serving(cluster: LocalCluster) -> None:
    lock = threading.Lock()
    with pytest.raises(EncodeError, match="cannot send .*<lambda>") as info:
        pynode.spawn(A, lambda: lock.acquire())
    assert isinstance(info.value, TypeError)
    with pytest.raises(TypeError, match="spawn: fn must be a callable"):
        pynode.spawn(A, 42)
    with pytest.raises(TypeError, match="spawn: node must be a node name"):
        pynode.spawn(None, wait_forever)
    with pytest.raises(ModuleNotFoundError, match="no module 'no_such_module'"):
        pynode.spawn(A, "no_such_module:run")
    with pytest.raises(NoConnection):
        pynode.spawn("nobody@127.0.2.9", wait_forever)
    with pytest.raises(TypeError, match="send: dest must be a Pid, a registered name .* got int 42"):
        pynode.send(42, "x")
    with pytest.raises(TypeError, match=r"send: dest must be .* got tuple \('a', 'b', 'c'\)"):
        pynode.send(("a", "b", "c"), "x")
    with pytest.raises(ValueError, match="send: a registered name must be a non-empty string"):
        pynode.send(("", A), "x")
    with pytest.raises(TypeError, match="send: a registered name must be a str, got int 7"):
        pynode.send((7, A), "x")
    with pytest.raises(ValueError, match="not_a_node"):
        pynode.send(("x", "not_a_node"), "x")
    with pytest.raises(TypeError, match="register: a registered name must be a str, got int 5"):
        pynode.register(5)
    with pytest.raises(ValueError, match="register: .* is not a process of this node"):
        pynode.register("far", pynode.spawn(A, wait_forever))
    with pytest.raises(TypeError, match="monitor: pid must be a pynode Pid, got str 'a@b'"):
        pynode.monitor("a@b")
    with pytest.raises(TypeError, match="exit: pid must be a pynode Pid, got int 3"):
        pynode.exit(3, "kill")
    with pytest.raises(EncodeError, match="exit reason"):
        pynode.exit(Pid(A, 1), lock)
    with pytest.raises(TypeError, match="link: pid must be a pynode Pid"):
        pynode.link(None)
    with pytest.raises(TypeError, match="receive: match must be a predicate"):
        pynode.receive(0, match="DOWN")
    assert erpc.call(A, "os:getpid", timeout=WAIT) == cluster.pid(A)
    pid, ref = pynode.spawn_monitor(A, report, pynode.self_pid(), 1)
    assert down_of(ref)[3] == "normal"


def test_a_malformed_signal_drops_the_connection_naming_the_peer_and_the_node_serves_on(
        cluster: LocalCluster) -> None:
    from pynode import payload as payloads
    from pynode import runtime

    runtime.current().connection_to(B).signal(*payloads.dumps(("not", "a", "signal")))
    assert wait_until(lambda: f"malformed SIGNAL from {ME}" in cluster.stderr(B), timeout=WAIT)
    assert wait_until(lambda: B not in Node.list(), timeout=WAIT)
    assert erpc.call(B, "os:getpid", timeout=WAIT) == cluster.pid(B)  # a fresh connection


def test_a_killed_linked_process_gives_killed_to_a_trapping_partner(cluster: LocalCluster) -> None:
    pid, ref = pynode.spawn_monitor(Node.self(), supervisor, pynode.self_pid(), B, wait_forever, (), True)
    _, child = pynode.receive(WAIT, match=lambda m: m[0] == "child")
    pynode.exit(child, "kill")
    assert pynode.receive(WAIT, match=lambda m: m[0] == "got") == ("got", ("EXIT", child, "killed"))
    assert down_of(ref)[3] == "normal"
