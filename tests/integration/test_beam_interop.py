"""pynode nodes and real ``erl`` nodes calling each other over Erlang's distribution protocol.

One world per module: a real epmd, a pynode node ``py`` started by LocalCluster (its BEAM ticks
at PYNODE_NET_TICKTIME=4 s), an ``erl`` node (net_ticktime 4) and this test process as the pynode
node ``t``. Skipped without erl/epmd.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import cloudpickle
import pytest

import pynode
import pynode.beam as beam
from pynode import Node, erpc
from pynode.errors import ErlangError, ErpcTimeout, NoConnection
from pynode.etf import Atom, BeamPid
from pynode.testing import LocalCluster, drain_mailbox, this_node, wait_until

from beam_nodes import ErlEvalError, ErlNode, environment, needs_erl, real_epmd

pytestmark = needs_erl

COOKIE = "p12-beam-cookie"
PY = "py@127.0.4.1"
ERL1 = "e1@127.0.4.2"
TEST = "t@127.0.4.3"
VICTIM_PY = "victim@127.0.4.4"
VICTIM_ERL = "ev@127.0.4.5"
HOSTS = ["127.0.4.1", "127.0.4.2", "127.0.4.3", "127.0.4.4", "127.0.4.5", "127.0.4.6"]
TICKTIME = "4"


class World(NamedTuple):
    cluster: LocalCluster
    erl: ErlNode
    epmd_port: int


def install_probe() -> None:
    """Runs on the pynode node: a module ``p12probe`` the Erlang side can call."""
    import sys
    import time as _time
    import types

    import pynode as _pynode

    state: dict[str, Any] = {"status": "idle", "recorded": []}

    def spin(seconds: float) -> str:
        state["status"] = "running"
        try:
            end = _time.monotonic() + seconds
            while _time.monotonic() < end and not _pynode.cancelled():
                _time.sleep(0.005)
            state["status"] = "cancelled" if _pynode.cancelled() else "finished"
        except BaseException as exc:
            state["status"] = type(exc).__name__
            raise
        return state["status"]

    def record(value: Any) -> None:
        state["recorded"].append(value)

    def recorded() -> list[Any]:
        return state["recorded"]

    def status() -> str:
        return state["status"]

    def fail(message: bytes) -> None:
        raise KeyError(message.decode())

    module = types.ModuleType("p12probe")
    for fn in (spin, record, recorded, status, fail):
        setattr(module, fn.__name__, fn)
    sys.modules["p12probe"] = module


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with real_epmd(HOSTS) as port, environment(PYNODE_EPMD_PORT=str(port), PYNODE_NET_TICKTIME=TICKTIME):
        cluster = LocalCluster([PY], cookie=COOKIE, env={"PYNODE_EPMD_PORT": str(port), "PYNODE_NET_TICKTIME": TICKTIME})
        cluster.start()
        erl = ErlNode(ERL1, COOKIE, port)
        try:
            with this_node(TEST, cookie=COOKIE):
                cloudpickle.register_pickle_by_value(sys.modules[__name__])  # install_probe by value
                try:
                    erpc.call(PY, install_probe, timeout=60)
                finally:
                    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
                yield World(cluster, erl, port)
        finally:
            erl.stop()
            cluster.stop()


def ev(world: World, expression: str, timeout: float = 30.0) -> Any:
    return world.erl.eval(expression, timeout)


# --- Erlang calling Python ---------------------------------------------------------------------


def test_erl_pings_the_python_node_and_sees_it(world):
    assert ev(world, f"net_adm:ping('{PY}').") == "pong"
    assert PY in ev(world, "nodes().")


def test_erpc_call_runs_module_function(world):
    assert ev(world, f"erpc:call('{PY}', operator, add, [40, 2], 5000).") == 42
    assert ev(world, f"erpc:call('{PY}', 'os.path', join, [<<\"a\">>, <<\"b\">>], 5000).") == b"a/b"
    assert ev(world, f"erpc:call('{PY}', math, sqrt, [2.0]).") == pytest.approx(2**0.5)


def test_a_python_exception_is_an_erpc_error_naming_it(world):
    caught = ev(world, f"try erpc:call('{PY}', p12probe, fail, [<<\"no such key\">>], 5000) catch C:R -> {{C, R}} end.")
    kind, (exception, reason, stack) = caught
    assert (kind, exception) == ("error", "exception")
    python, name, message, traceback = reason
    assert (python, name, message) == ("python", "KeyError", b"'no such key'")
    assert traceback.startswith(b"Traceback") and b"KeyError: 'no such key'" in traceback
    assert stack == [(Atom("p12probe"), Atom("fail"), 1, [])]
    # an unknown function is Erlang's undef, and the node keeps serving
    caught = ev(world, f"try erpc:call('{PY}', nosuchmodule, f, [], 5000) catch C:R -> {{C, R}} end.")
    assert caught[0] == "error" and caught[1][:2] == ("exception", "undef")
    assert ev(world, f"erpc:call('{PY}', operator, mul, [6, 7], 5000).") == 42


def test_erpc_cast_multicall_and_rpc(world):
    assert ev(world, f"erpc:cast('{PY}', p12probe, record, [cast_marker]).") == "ok"
    assert wait_until(lambda: "cast_marker" in erpc.call(PY, "p12probe:recorded", timeout=5), 10)
    assert ev(world, f"erpc:multicall(['{PY}', node()], math, sqrt, [16.0], 5000).") == [("ok", 4.0)] * 2
    assert ev(world, f"rpc:call('{PY}', operator, sub, [10, 3]).") == 7
    badrpc = ev(world, f"rpc:call('{PY}', p12probe, fail, [<<\"x\">>]).")
    assert badrpc[0] == "badrpc"
    # the old path: a gen_server call to the registered rex
    assert ev(world, f"gen_server:call({{rex, '{PY}'}}, {{call, operator, add, [1, 2], group_leader()}}).") == 3
    assert ev(world, f"gen_server:cast({{rex, '{PY}'}}, {{cast, p12probe, record, [rex_cast], group_leader()}}).") == "ok"
    assert wait_until(lambda: "rex_cast" in erpc.call(PY, "p12probe:recorded", timeout=5), 10)


def test_an_erlang_side_timeout_cancels_the_python_call(world):
    caught = ev(world, f"try erpc:call('{PY}', p12probe, spin, [30], 300) catch C:R -> {{C, R}} end.")
    assert caught == ("error", ("erpc", "timeout"))
    assert wait_until(lambda: erpc.call(PY, "p12probe:status", timeout=5) != "running", 10)
    assert erpc.call(PY, "p12probe:status", timeout=5) in ("cancelled", "CallCancelled")


def test_spawn_with_a_monitor_reports_the_exit(world):
    down = ev(world, f"{{_, M}} = spawn_monitor('{PY}', p12probe, record, [spawned]), receive {{'DOWN', M, process, _, R}} -> R after 10000 -> none end.")
    assert down == "normal"
    down = ev(world, f"{{_, M}} = spawn_monitor('{PY}', p12probe, fail, [<<\"k\">>]), receive {{'DOWN', M, process, _, R}} -> R after 10000 -> none end.")
    (python, name, _message, _tb), _stack = down
    assert (python, name) == ("python", "KeyError")


def test_send_to_registered_names_both_ways(world):
    beam.register("pybox")
    ev(world, "register(echo, spawn(fun() -> receive {From, Msg} -> From ! {echoed, Msg} end end)).")
    pynode.send(("echo", ERL1), ((Atom("pybox"), Atom(TEST)), [1, "two", 3.0]))  # (name, node)
    assert pynode.receive(timeout=10) == (Atom("echoed"), [1, b"two", 3.0])
    ev(world, f"Self = self(), spawn(fun() -> {{pybox, '{TEST}'}} ! {{hello, self()}}, receive M -> Self ! {{got, M}} end end).")
    hello, pid = pynode.receive(timeout=10)
    assert hello == "hello" and isinstance(pid, BeamPid) and pid.node == ERL1
    pynode.send(pid, {"reply": (1, 2)})  # to the BEAM pid itself
    assert ev(world, "receive {got, M} -> M after 10000 -> timeout end.") == {b"reply": (1, 2)}
    beam.unregister("pybox")


def test_ticks_keep_an_idle_connection_up(world):
    assert ev(world, f"net_adm:ping('{PY}').") == "pong"
    time.sleep(7)  # > net_ticktime (4 s) on both sides: only ticks cross
    assert PY in ev(world, "nodes().")
    assert ERL1 in erpc.call(PY, lambda: Node.list(), timeout=5)


# --- Python calling Erlang ---------------------------------------------------------------------


def test_python_pings_connects_and_lists_the_erl_node(world):
    assert Node.ping(ERL1) == "pong"
    assert Node.connect(ERL1) is True
    assert ERL1 in Node.list()


def test_erpc_from_python_to_erl(world):
    assert erpc.call(ERL1, "lists:reverse", [1, 2, 3], timeout=10) == [3, 2, 1]
    assert erpc.call(ERL1, "erlang:binary_to_list", "abc", timeout=10) == [97, 98, 99]  # str -> binary
    assert erpc.multicall([ERL1, PY], "math:sqrt", 16.0, timeout=10) == [("ok", 4.0)] * 2
    erpc.cast(ERL1, "erlang:register", Atom("cast_marker"), Atom("undefined"))  # fails remotely: ignored
    request = erpc.send_request(ERL1, "lists:seq", 1, 4)
    assert erpc.receive_response(request, 10) == [1, 2, 3, 4]


def test_erlang_exceptions_reach_python_with_class_and_stacktrace(world):
    with pytest.raises(ErlangError) as caught:
        erpc.call(ERL1, "erlang:error", Atom("boom"), timeout=10)
    assert (caught.value.kind, caught.value.reason, caught.value.node) == ("error", "boom", ERL1)
    assert caught.value.stacktrace[0][:2] == (Atom("erlang"), Atom("error"))
    with pytest.raises(ErlangError) as caught:
        erpc.call(ERL1, "erlang:throw", (Atom("ball"), 1), timeout=10)
    assert (caught.value.kind, caught.value.reason) == ("throw", (Atom("ball"), 1))
    with pytest.raises(ErlangError) as caught:
        erpc.call(ERL1, "erlang:exit", Atom("bye"), timeout=10)
    assert (caught.value.kind, caught.value.reason) == ("exit", "bye")


def test_python_callables_and_keywords_are_refused_before_sending(world):
    with pytest.raises(TypeError, match="Python callable"):
        erpc.call(ERL1, lambda: 1, timeout=5)
    with pytest.raises(TypeError, match="keyword"):
        erpc.call(ERL1, "lists:seq", 1, step=2, timeout=5)
    with pytest.raises(pynode.errors.EncodeError):
        erpc.call(ERL1, "erlang:display", {1, 2}, timeout=5)


def test_a_python_timeout_abandons_and_kills_the_erlang_call(world):
    ev(world, "register(sleeper_probe, self()).")
    started = time.monotonic()
    with pytest.raises(ErpcTimeout):
        erpc.call(ERL1, "timer:sleep", 20_000, timeout=0.3)
    assert time.monotonic() - started < 5
    assert erpc.call(ERL1, "lists:max", [1, 9, 3], timeout=10) == 9  # the connection serves on


# --- failures ----------------------------------------------------------------------------------


def test_nodedown_both_ways_on_kill_9(world):
    victim_erl = ErlNode(VICTIM_ERL, COOKIE, world.epmd_port)
    drain_mailbox()
    Node.monitor(VICTIM_ERL)
    victim_erl.kill()
    assert pynode.receive(timeout=15) == ("nodedown", VICTIM_ERL)
    assert VICTIM_ERL not in Node.list()
    with pytest.raises(NoConnection):
        erpc.call(VICTIM_ERL, "lists:reverse", [1], timeout=5)

    victims = LocalCluster(
        [VICTIM_PY], cookie=COOKIE, env={"PYNODE_EPMD_PORT": str(world.epmd_port), "PYNODE_NET_TICKTIME": TICKTIME}
    ).start()
    try:
        assert ev(world, f"monitor_node('{VICTIM_PY}', true).") is True
        victims.kill(VICTIM_PY)
        assert ev(world, f"receive {{nodedown, N}} -> N after 15000 -> timeout end.") == VICTIM_PY
    finally:
        victims.stop()


def test_a_hidden_erl_node_is_listed_as_hidden(world):
    hidden = ErlNode("hid@127.0.4.5", COOKIE, world.epmd_port, extra=["-hidden"])
    try:
        assert hidden.eval(f"net_adm:ping('{PY}').") == "pong"
        seen = erpc.call(PY, lambda: (Node.list(), Node.list("hidden")), timeout=10)
        assert "hid@127.0.4.5" not in seen[0] and "hid@127.0.4.5" in seen[1]
    finally:
        hidden.stop()


def test_wrong_cookie_is_refused_both_ways(world):
    stranger = ErlNode("stranger@127.0.4.5", "not-the-cookie", world.epmd_port)
    try:
        assert stranger.eval(f"net_adm:ping('{PY}').") == "pang"
        assert Node.ping("stranger@127.0.4.5") == "pang"
    finally:
        stranger.stop()
    assert ev(world, f"erpc:call('{PY}', operator, add, [1, 1], 5000).") == 2


def test_monitors_of_missing_processes_fire_noproc_at_once(world):
    down = ev(world, f"M = monitor(process, {{nobody_here, '{PY}'}}), receive {{'DOWN', M, process, W, R}} -> {{W, R}} after 10000 -> none end.")
    assert down == ((Atom("nobody_here"), Atom(PY)), Atom("noproc"))
    # net_kernel and rex are always there: a monitor of them stays quiet
    quiet = ev(world, f"M = monitor(process, {{rex, '{PY}'}}), receive {{'DOWN', M, _, _, R}} -> R after 300 -> quiet end.")
    assert quiet == "quiet"


def test_erlang_terms_cross_to_python_and_back_unchanged(world):
    """Every kind of term an Erlang process holds survives erpc to Python and back (copy:copy)."""
    same = ev(world, f"""
        Ts = [make_ref(), self(), hd(erlang:ports()), fun lists:map/2, fun(X) -> X end, <<1:3>>,
              <<"bin">>, "charlist", [a | b], {{1, [], {{}}}}, #{{a => [1.5], <<"k">> => #{{}}}},
              1 bsl 100, -(1 bsl 70), -2147483648, 0.1, -0.0, true, false, nil, undefined, 'ünï',
              lists:seq(1, 300), list_to_tuple(lists:seq(1, 300)), [1.0 * X || X <- lists:seq(1, 100)]],
        Back = erpc:call('{PY}', copy, copy, [Ts], 10000),
        [{{T, T =:= B}} || {{T, B}} <- lists:zip(Ts, Back), T =/= B].""")
    assert same == []


def test_an_erlang_fun_is_refused_with_a_clear_error(world):
    caught = ev(world, f"try erpc:call('{PY}', fun() -> 1 end, 5000) catch C:R -> {{C, R}} end.")
    kind, (exception, (python, name, message, _tb), _stack) = caught
    assert (kind, exception, python, name) == ("error", "exception", "python", "TypeError")
    assert b"an Erlang fun cannot run on a Python node" in message


def test_the_mesh_connects_a_new_pynode_node_to_the_erl_node_it_is_told_of(world):
    assert ev(world, f"net_adm:ping('{PY}').") == "pong"
    joiner = "joiner@127.0.4.6"
    cluster = LocalCluster(
        [joiner], cookie=COOKIE, env={"PYNODE_EPMD_PORT": str(world.epmd_port), "PYNODE_NET_TICKTIME": TICKTIME}
    ).start()
    try:
        assert erpc.call(joiner, lambda: Node.connect(PY), timeout=30) is True
        assert wait_until(lambda: ERL1 in erpc.call(joiner, lambda: Node.list(), timeout=10), 15)
        assert joiner in ev(world, "nodes().")  # the erl node sees it as a peer of its own
    finally:
        cluster.stop()
