"""pynode processes and real ``erl`` processes monitoring, linking and exiting each other.

One world per module: a real epmd, an ``erl`` node and this test process as the pynode node
``t`` (its processes are the Python side). The erl node's eval process registers itself as
``tester`` so Python processes can hand it their pids. Skipped without erl/epmd.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

import pynode
import pynode.beam as beam
from pynode import Node
from pynode.etf import Atom, BeamPid
from pynode.signals import Ref
from pynode.testing import drain_mailbox, this_node, wait_until

from beam_nodes import ErlNode, environment, needs_erl, real_epmd

pytestmark = needs_erl

COOKIE = "p12b-proc-cookie"
ERL = "pe@127.0.4.41"
TEST = "pt@127.0.4.42"
VICTIM = "pv@127.0.4.43"
HOSTS = ["127.0.4.41", "127.0.4.42", "127.0.4.43"]


class World(NamedTuple):
    erl: ErlNode
    epmd_port: int


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with real_epmd(HOSTS) as port, environment(PYNODE_EPMD_PORT=str(port), PYNODE_NET_TICKTIME="4"):
        erl = ErlNode(ERL, COOKIE, port)
        try:
            with this_node(TEST, cookie=COOKIE):
                assert Node.connect(ERL) is True
                erl.eval("register(tester, self()).")
                yield World(erl, port)
        finally:
            erl.stop()


def ev(world: World, expression: str, timeout: float = 30.0) -> Any:
    return world.erl.eval(expression, timeout)


def handing_over(then: str) -> Any:
    """A process body: send its pid to the erl node's ``tester``, wait for ``go``, then
    ``then``: return, raise, or wait forever (to be stopped)."""

    def body() -> None:
        pynode.send(("tester", ERL), (Atom("pid"), pynode.self_pid()))
        assert pynode.receive(timeout=20) == "go"
        if then == "raise":
            raise ValueError("bad value 7")
        if then == "wait":
            pynode.receive(timeout=60)

    return body


# --- Erlang watching pynode processes ------------------------------------------------------------

WATCH = """receive {pid, P} -> M = monitor(process, P), P ! go,
             receive {'DOWN', M, process, P, R} -> R after 15000 -> timeout end
           after 15000 -> no_pid end."""


def test_erlang_monitor_of_a_python_process_reports_normal_and_exceptions(world):
    pynode.spawn(TEST, handing_over("return"))
    assert ev(world, WATCH) == Atom("normal")
    pynode.spawn(TEST, handing_over("raise"))
    python, name, message, traceback = ev(world, WATCH)
    assert (python, name, message) == ("python", "ValueError", b"bad value 7")
    assert b"ValueError: bad value 7" in traceback


def test_erlang_monitor_sees_killed_and_noproc(world):
    pid = pynode.spawn(TEST, handing_over("wait"))
    # the erpc round trip after the monitor: the monitor reached the node before the kill does
    got = ev(world, f"receive {{pid, P}} -> M = monitor(process, P), 2 = erpc:call('{TEST}', operator, add, [1, 1]), "
                    "{P, M} after 15000 -> no_pid end.")
    assert (got[0].node, got[0].id) == (TEST, pid.id)  # the pid Erlang holds is the pynode pid
    pynode.exit(pid, "kill")
    assert ev(world, "receive {'DOWN', _, process, _, R} -> R after 15000 -> timeout end.") == "killed"
    # the pid is gone now: a new monitor or link of it fires noproc at once
    pynode.send(("tester", ERL), (Atom("pid"), pid))
    assert ev(world, "receive {pid, P} -> M = monitor(process, P), "
                     "receive {'DOWN', M, process, P, R} -> R after 10000 -> timeout end end.") == "noproc"
    pynode.send(("tester", ERL), (Atom("pid"), pid))
    assert ev(world, "process_flag(trap_exit, true), receive {pid, P} -> link(P), "
                     "receive {'EXIT', P, R} -> R after 10000 -> timeout end end.") == "noproc"


def test_erlang_links_get_the_exit_of_a_python_process(world):
    pynode.spawn(TEST, handing_over("raise"))
    reason = ev(world, "process_flag(trap_exit, true), receive {pid, P} -> link(P), P ! go, "
                       "receive {'EXIT', P, R} -> R after 15000 -> timeout end end.")
    assert reason[:3] == ("python", "ValueError", b"bad value 7")
    pynode.spawn(TEST, handing_over("return"))
    assert ev(world, "receive {pid, P} -> link(P), P ! go, "
                     "receive {'EXIT', P, R} -> R after 15000 -> timeout end end.") == "normal"


def test_an_erlang_exit_signal_stops_a_python_process(world):
    drain_mailbox()
    pid, ref = pynode.spawn_monitor(TEST, handing_over("wait"))
    ev(world, "receive {pid, P} -> exit(P, shutdown_now) after 15000 -> no_pid end.")
    assert pynode.receive(timeout=15, match=lambda m: m[:2] == ("DOWN", ref)) == ("DOWN", ref, pid, "shutdown_now")
    # through a link: a linked Erlang process exiting abnormally stops the Python process
    pid, ref = pynode.spawn_monitor(TEST, handing_over("wait"))
    ev(world, "receive {pid, P} -> spawn(fun() -> link(P), exit(boom) end) after 15000 -> no_pid end.")
    assert pynode.receive(timeout=15, match=lambda m: m[:2] == ("DOWN", ref)) == ("DOWN", ref, pid, "boom")
    # a normal exit of a linked Erlang process does not
    pid, ref = pynode.spawn_monitor(TEST, handing_over("wait"))
    ev(world, "receive {pid, P} -> spawn(fun() -> link(P), ok end) after 15000 -> no_pid end.")
    with pytest.raises(TimeoutError):
        pynode.receive(timeout=1, match=lambda m: m[:2] == ("DOWN", ref))
    pynode.exit(pid, "kill")
    assert pynode.receive(timeout=15, match=lambda m: m[:2] == ("DOWN", ref))[3] == "killed"


def test_a_trapping_python_process_gets_erlang_exits_as_messages(world):
    drain_mailbox()
    parent = pynode.self_pid()

    def trapper() -> None:
        pynode.trap_exit(True)
        pynode.send(("tester", ERL), (Atom("pid"), pynode.self_pid()))
        pynode.send(parent, pynode.receive(timeout=20))

    pynode.spawn(TEST, trapper)
    ev(world, "receive {pid, P} -> spawn(fun() -> link(P), exit(boom) end) after 15000 -> no_pid end.")
    kind, sender, reason = pynode.receive(timeout=15)
    assert (kind, reason) == ("EXIT", "boom") and isinstance(sender, BeamPid) and sender.node == ERL


def test_erlang_monitor_by_registered_name(world):
    def named() -> None:
        pynode.register("py_named")
        pynode.send(("tester", ERL), Atom("registered"))
        assert pynode.receive(timeout=20) == "go"

    pynode.spawn(TEST, named)
    assert ev(world, f"""receive registered -> M = monitor(process, {{py_named, '{TEST}'}}), {{py_named, '{TEST}'}} ! go,
                         receive {{'DOWN', M, process, Who, R}} -> {{Who, R}} after 15000 -> timeout end
                       after 15000 -> not_registered end.""") == ((Atom("py_named"), Atom(TEST)), "normal")
    assert wait_until(lambda: pynode.whereis("py_named") is None, 5)
    # pynode.beam.register is pynode.register: one name table
    beam.register("alias_box")
    try:
        assert pynode.whereis("alias_box") == pynode.self_pid()
        with pytest.raises(ValueError, match="already taken"):
            pynode.register("alias_box")
    finally:
        pynode.unregister("alias_box")


# --- pynode processes watching Erlang processes --------------------------------------------------

ERL_PROC = "spawn(fun() -> receive stop -> ok; crash -> exit(crashed); {wait, T} -> receive after T -> ok end end end)."


def test_python_monitor_of_an_erlang_process(world):
    drain_mailbox()
    p = ev(world, ERL_PROC)
    ref = pynode.monitor(p)
    assert isinstance(ref, Ref) and isinstance(p, BeamPid)
    pynode.send(p, Atom("stop"))
    assert pynode.receive(timeout=15) == ("DOWN", ref, p, "normal")
    p = ev(world, ERL_PROC)
    ref = pynode.monitor(p)
    pynode.send(p, Atom("crash"))
    assert pynode.receive(timeout=15) == ("DOWN", ref, p, "crashed")
    p = ev(world, ERL_PROC)
    ref = pynode.monitor(p)
    pynode.exit(p, "kill")
    assert pynode.receive(timeout=15) == ("DOWN", ref, p, "killed")
    # a dead pid: noproc at once; a demonitor means no DOWN
    ref = pynode.monitor(p)
    assert pynode.receive(timeout=15) == ("DOWN", ref, p, "noproc")
    p = ev(world, ERL_PROC)
    ref = pynode.monitor(p)
    assert pynode.demonitor(ref) is True
    pynode.send(p, Atom("crash"))
    with pytest.raises(TimeoutError):
        pynode.receive(timeout=1)


def test_python_link_to_an_erlang_process(world):
    drain_mailbox()
    parent = pynode.self_pid()

    def linker(p: BeamPid, trap: bool) -> None:
        pynode.trap_exit(trap)
        pynode.link(p)
        pynode.send(parent, "linked")
        pynode.send(parent, pynode.receive(timeout=20))

    p = ev(world, ERL_PROC)
    pid, ref = pynode.spawn_monitor(TEST, linker, p, False)
    assert pynode.receive(timeout=15) == "linked"
    pynode.send(p, Atom("crash"))
    assert pynode.receive(timeout=15) == ("DOWN", ref, pid, "crashed")
    p = ev(world, ERL_PROC)
    pynode.spawn(TEST, linker, p, True)
    assert pynode.receive(timeout=15) == "linked"
    pynode.send(p, Atom("stop"))
    assert pynode.receive(timeout=15) == ("EXIT", p, "normal")
    # the other way: the Python process ends with an exception, the linked Erlang process dies
    p = ev(world, ERL_PROC)
    erl_ref = pynode.monitor(p)

    def crasher() -> None:
        pynode.link(p)
        raise RuntimeError("python side failed")

    pynode.spawn(TEST, crasher)
    kind, ref, who, reason = pynode.receive(timeout=15)
    assert (kind, ref, who) == ("DOWN", erl_ref, p)
    assert reason[:3] == ("python", "RuntimeError", b"python side failed")


def test_noconnection_when_the_beam_node_is_killed(world):
    drain_mailbox()
    victim = ErlNode(VICTIM, COOKIE, world.epmd_port)
    try:
        p = victim.eval(ERL_PROC)
        ref = pynode.monitor(p)
        parent = pynode.self_pid()

        def linked() -> None:
            pynode.link(p)
            pynode.send(parent, "linked")
            pynode.receive(timeout=60)

        pid, pref = pynode.spawn_monitor(TEST, linked)
        assert pynode.receive(timeout=15) == "linked"
        victim.kill()
        got = {pynode.receive(timeout=20)[1:] for _ in range(2)}
        assert got == {(ref, p, "noconnection"), (pref, pid, "noconnection")}
        # a monitor of a process of a node that is gone fires noconnection at once
        ref = pynode.monitor(p)
        assert pynode.receive(timeout=15) == ("DOWN", ref, p, "noconnection")
    finally:
        victim.kill()
