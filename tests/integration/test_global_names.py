"""Global names across three real nodes (LocalCluster): one table on every visible node,
registration refused when taken, names gone with their process, racing registrations, and the
clash when two partitions that each registered a name merge (the newer holder is told to exit).

The test process is a *hidden* node: it takes no part in the global table, and asks the three
nodes through erpc what theirs holds."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import cloudpickle
import pytest

import pynode
from pynode import Node, erpc, global_names
from pynode.errors import ReceiveTimeout
from pynode.testing import LocalCluster, this_node, wait_until

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the nodes do not have this module

G1 = "glob_1@127.0.2.35"
G2 = "glob_2@127.0.2.36"
G3 = "glob_3@127.0.2.37"
NODES = [G1, G2, G3]
ME = "glob_test@127.0.2.34"
WAIT = 10.0


def connect_all() -> None:
    for a, b in ((G1, G2), (G1, G3), (G2, G3)):
        assert erpc.call(a, Node.connect, b, timeout=WAIT)
    for node in NODES:
        assert wait_until(lambda: set(erpc.call(node, Node.list, timeout=WAIT)) == set(NODES) - {node}, timeout=WAIT)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(NODES) as c:
        with this_node(ME, cookie=c.cookie, hidden=True):
            connect_all()
            yield c


def views(name: str) -> list:
    return [erpc.call(node, global_names.whereis, name, timeout=WAIT) for node in NODES]


def agree(name: str, pid) -> bool:
    return views(name) == [pid] * 3


def wait_forever():
    pynode.receive()


def forward_to(parent):
    while True:
        pynode.send(parent, ("forwarded", pynode.receive()))


def down_of(ref):
    return pynode.receive(WAIT, match=lambda m: m[0] == "DOWN" and m[1] == ref)


def test_a_name_is_the_same_on_every_node_and_goes_with_its_process(cluster: LocalCluster) -> None:
    pid = pynode.spawn(G2, forward_to, pynode.self_pid())
    erpc.call(G1, global_names.register, "service", pid, timeout=WAIT)
    assert agree("service", pid)  # register returns once every node has committed
    assert erpc.call(G3, global_names.send, "service", "via g3", timeout=WAIT) == pid
    assert pynode.receive(WAIT) == ("forwarded", "via g3")
    with pytest.raises(ValueError, match=rf"'service' is already taken by <pid {pid.id} @ {G2}>"):
        erpc.call(G3, global_names.register, "service", pynode.spawn(G3, wait_forever), timeout=WAIT)
    assert "service" in erpc.call(G3, global_names.registered, timeout=WAIT)
    ref = pynode.monitor(pid)
    pynode.exit(pid, "kill")
    assert down_of(ref)[3] == "killed"
    assert wait_until(lambda: views("service") == [None] * 3, timeout=WAIT)
    with pytest.raises(ValueError, match="no process is registered globally as 'service'"):
        erpc.call(G1, global_names.send, "service", "lost", timeout=WAIT)


def test_unregister_removes_the_name_everywhere(cluster: LocalCluster) -> None:
    pid = pynode.spawn(G3, wait_forever)
    erpc.call(G3, global_names.register, "temporary", pid, timeout=WAIT)
    assert agree("temporary", pid)
    erpc.call(G2, global_names.unregister, "temporary", timeout=WAIT)
    assert views("temporary") == [None] * 3
    pynode.exit(pid, "kill")


def test_bad_registrations_name_the_argument(cluster: LocalCluster) -> None:
    with pytest.raises(TypeError, match="global_names.register: a registered name must be a str, got int 3"):
        erpc.call(G1, global_names.register, 3, pynode.self_pid(), timeout=WAIT)
    with pytest.raises(TypeError, match="global_names.register: pid must be a pynode Pid, got str 'x'"):
        erpc.call(G1, global_names.register, "x", "x", timeout=WAIT)
    with pytest.raises(ValueError, match="neither this node nor a visible peer"):
        erpc.call(G1, global_names.register, "hidden one", pynode.self_pid(), timeout=WAIT)
    dead = pynode.spawn(G2, lambda: None)
    assert wait_until(lambda: erpc.call(G2, _alive, dead, timeout=WAIT) is False, timeout=WAIT)
    with pytest.raises(ValueError, match="is not alive"):
        erpc.call(G1, global_names.register, "dead", dead, timeout=WAIT)
    assert views("dead") == [None] * 3


def _alive(pid):
    from pynode import runtime

    return runtime.current().processes.table.alive(pid)


def test_racing_registrations_of_one_name_end_with_one_holder(cluster: LocalCluster) -> None:
    pids = {G1: pynode.spawn(G1, wait_forever), G3: pynode.spawn(G3, wait_forever)}
    outcomes: dict[str, object] = {}

    def register_from(node: str) -> None:
        try:
            outcomes[node] = erpc.call(node, global_names.register, "contended", pids[node], timeout=WAIT * 3)
        except ValueError as exc:
            outcomes[node] = exc

    threads = [threading.Thread(target=register_from, args=(node,)) for node in pids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [node for node, result in outcomes.items() if result is None]
    assert len(winners) == 1, outcomes
    loser = next(node for node in pids if node not in winners)
    assert "already taken" in str(outcomes[loser])
    assert agree("contended", pids[winners[0]])
    for pid in pids.values():
        pynode.exit(pid, "kill")


def test_a_clash_when_partitions_merge_keeps_the_older_name_and_tells_the_newer_holder_to_exit(
        cluster: LocalCluster) -> None:
    def g3_alone() -> bool:
        return erpc.call(G3, Node.list, timeout=WAIT) == [] and all(
            G3 not in erpc.call(n, Node.list, timeout=WAIT) for n in (G1, G2))

    try:
        older = pynode.spawn(G2, wait_forever)
        for _ in range(5):
            for other in (G1, G2):
                erpc.call(G3, Node.disconnect, other, timeout=WAIT)
            # The partition may not form or hold: G3 can be dialled again from the other side
            # (the mesh: G2 still saw G3 when G1 lost it) before or after the registration (seen
            # at load 3-8). Then partition again; only the clash after the merge is under test.
            if not wait_until(g3_alone, timeout=WAIT):
                continue
            erpc.call(G1, global_names.register, "leader", older, timeout=WAIT)  # partition {G1, G2}
            if g3_alone() and erpc.call(G3, global_names.whereis, "leader", timeout=WAIT) is None:
                break
            erpc.call(G1, global_names.unregister, "leader", timeout=WAIT)
        else:
            pytest.fail("G3 could not be kept apart from G1 and G2")
        newer = pynode.spawn(G3, wait_forever)
        erpc.call(G3, global_names.register, "leader", newer, timeout=WAIT)  # partition {G3}
        assert views("leader") == [older, older, newer]
        older_ref, newer_ref = pynode.monitor(older), pynode.monitor(newer)
    finally:
        connect_all()  # the partitions merge
    assert down_of(newer_ref) == ("DOWN", newer_ref, newer, ("global_name_conflict", "leader"))
    assert wait_until(lambda: agree("leader", older), timeout=WAIT)
    with pytest.raises(ReceiveTimeout):
        pynode.receive(0.5, match=lambda m: m[0] == "DOWN" and m[1] == older_ref)
    pynode.exit(older, "kill")
    assert down_of(older_ref)[3] == "killed"
