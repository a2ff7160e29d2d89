"""p11's limits against BEAM peers: the cap on calls one peer runs at once, handshake slots.

A real epmd, a pynode node ``lim`` (LocalCluster) with ``PYNODE_BEAM_MAX_CALLS=2`` and
``PYNODE_HANDSHAKE_SLOTS=2``, and a real ``erl`` node. Skipped without erl/epmd.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

from pynode import names, portmapper
from pynode.testing import LocalCluster, wait_until

from beam_nodes import ErlNode, environment, needs_erl, real_epmd

pytestmark = needs_erl

COOKIE = "p12b-limits-cookie"
LIM = "lim@127.0.4.51"
ERL = "le@127.0.4.52"
HOSTS = ["127.0.4.51", "127.0.4.52"]


class World(NamedTuple):
    erl: ErlNode
    epmd_port: int


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with real_epmd(HOSTS) as port, environment(PYNODE_EPMD_PORT=str(port)):
        env = {"PYNODE_EPMD_PORT": str(port), "PYNODE_NET_TICKTIME": "4", "PYNODE_BEAM_MAX_CALLS": "2",
               "PYNODE_HANDSHAKE_SLOTS": "2"}
        cluster = LocalCluster([LIM], cookie=COOKIE, env=env).start()
        erl = ErlNode(ERL, COOKIE, port)
        try:
            yield World(erl, port)
        finally:
            erl.stop()
            cluster.stop()


def ev(world: World, expression: str, timeout: float = 30.0) -> Any:
    return world.erl.eval(expression, timeout)


def test_calls_over_the_cap_are_refused_with_system_limit(world):
    assert ev(world, f"net_adm:ping('{LIM}').") == "pong"
    got = ev(world, f"""
        Self = self(),
        [spawn(fun() -> Self ! {{done, erpc:call('{LIM}', time, sleep, [4.0], 20000)}} end) || _ <- [1, 2]],
        timer:sleep(300),
        Call = try erpc:call('{LIM}', operator, add, [1, 2], 5000) catch C:E -> {{C, E}} end,
        Rpc = rpc:call('{LIM}', operator, add, [1, 2]),
        Rex = gen_server:call({{rex, '{LIM}'}}, {{call, operator, add, [1, 2], group_leader()}}),
        Done = [receive {{done, R}} -> R after 20000 -> timeout end || _ <- [1, 2]],
        After = erpc:call('{LIM}', operator, add, [1, 2], 5000),
        {{Call, Rpc, Rex, Done, After}}.""")
    call, rpc, rex, done, after = got
    assert call == ("error", ("erpc", "system_limit"))
    assert rpc == ("badrpc", ("EXIT", "system_limit"))  # rpc:call rendering erpc's error
    assert rex == ("badrpc", "system_limit")  # the old rex path
    assert done == [None, None]  # the two running calls were not disturbed
    assert after == 3  # and their slots came back


def test_beam_handshakes_take_the_handshake_slots(world):
    info = portmapper.node_info("127.0.4.51", names.parse(LIM).alive, timeout=5)
    assert info is not None
    stalled = []
    try:
        for _ in range(2):  # two Erlang send_names that never finish: both slots held
            sock = socket.create_connection(("127.0.4.51", info.port), timeout=5)
            sock.sendall(b"\x00\x20N")
            stalled.append(sock)
        assert ev(world, "net_kernel:disconnect('" + LIM + "'), timer:sleep(200), nodes().") == []
        assert ev(world, f"net_adm:ping('{LIM}').") == "pang"  # its connection got no slot
    finally:
        for sock in stalled:
            sock.close()
    assert wait_until(lambda: ev(world, f"net_adm:ping('{LIM}').") == "pong", 15)

