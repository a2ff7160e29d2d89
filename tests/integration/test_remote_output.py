"""Output comes home: what remote calls and remote processes write to sys.stdout/sys.stderr is
written on the caller, in order, before the call returns; ``capture_output=False`` and the
remote node's own threads keep it there. Real nodes (LocalCluster), and the ``%%remote`` magic."""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterator

import cloudpickle
import pytest
from recording import recording

import pynode
from pynode import erpc
from pynode.testing import LocalCluster, this_node, wait_until

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the nodes do not have this module

A = "out_a@127.0.2.12"
B = "out_b@127.0.2.13"
ME = "out_test@127.0.2.11"
WAIT = 10.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([A, B]) as c:
        with this_node(ME, cookie=c.cookie):
            yield c


def chatty(n):
    import sys

    for i in range(n):
        print(f"out {i}")
        print(f"err {i}", file=sys.stderr)
    print("partial", end="")
    print(" line")
    sys.stdout.write("no newline at the end")
    return n


def test_remote_prints_arrive_on_the_caller_in_order_before_the_call_returns(cluster: LocalCluster) -> None:
    with recording() as recorded:
        assert erpc.call(A, chatty, 50, timeout=WAIT) == 50
    expected = [line for i in range(50) for line in (("out", f"out {i}\n"), ("err", f"err {i}\n"))]
    expected += [("out", "partial line\n"), ("out", "no newline at the end")]
    assert recorded == expected  # line-buffered: whole lines, stdout and stderr interleaved as written
    assert "out 0" not in cluster.stdout(A)


def marked(tag):
    import threading

    print(f"{tag} from the call", flush=True)
    thread = threading.Thread(target=lambda: print(f"{tag} from the node's own thread", flush=True))
    thread.start()
    thread.join()


def test_capture_output_false_and_the_nodes_own_threads_keep_output_remote(cluster: LocalCluster) -> None:
    with recording() as recorded:
        erpc.call(A, marked, "kept", timeout=WAIT, capture_output=False)
        erpc.call(A, marked, "captured", timeout=WAIT)
    assert recorded == [("out", "captured from the call\n")]
    assert wait_until(lambda: "captured from the node's own thread" in cluster.stdout(A), timeout=WAIT)
    remote = cluster.stdout(A)
    assert "kept from the call" in remote and "kept from the node's own thread" in remote
    assert "captured from the call" not in remote


def printer_then_message(parent):
    print("hello from a spawned process")
    pynode.send(parent, "done")


def test_a_remote_spawned_processs_output_comes_home(cluster: LocalCluster) -> None:
    with recording() as recorded:
        pynode.spawn(A, printer_then_message, pynode.self_pid())
        assert pynode.receive(WAIT) == "done"
    assert recorded == [("out", "hello from a spawned process\n")]  # sent before the message


def test_output_of_a_nested_remote_call_comes_to_the_first_caller(cluster: LocalCluster) -> None:
    def outer():
        print("on a")
        erpc.call(B, lambda: print("on b"), timeout=WAIT)
        print("on a again")

    with recording() as recorded:
        erpc.call(A, outer, timeout=WAIT)
    # b's line travels back through a, before b's result: in order, all before the call returns
    assert recorded == [("out", "on a\n"), ("out", "on b\n"), ("out", "on a again\n")]


CELL = contextvars.ContextVar("cell")


class ContextRecorder:
    """A stream that notes the value of CELL in the context each write runs in (as ipykernel's
    stream reads its cell's parent header from a context variable)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []

    def write(self, text: str) -> int:
        self.writes.append((CELL.get("none"), text))
        return len(text)

    def flush(self) -> None:
        pass


def late_printer(seconds):
    import time

    time.sleep(seconds)
    print("late line")


def test_output_is_written_in_the_context_of_the_call_or_spawn_that_made_it(cluster: LocalCluster) -> None:
    stream = ContextRecorder()
    saved = sys.stdout
    sys.stdout = stream
    try:
        def in_cell(name, fn):
            return contextvars.copy_context().run(lambda: (CELL.set(name), fn())[1])

        pid = in_cell("cell 1", lambda: pynode.spawn(A, late_printer, 1.0))
        ref = pynode.monitor(pid)
        in_cell("cell 2", lambda: erpc.call(A, lambda: print("call line"), timeout=WAIT))
        assert pynode.receive(WAIT, match=lambda m: m[0] == "DOWN" and m[1] == ref)[3] == "normal"
    finally:
        sys.stdout = saved
    assert stream.writes == [("cell 2", "call line\n"), ("cell 1", "late line\n")]


def test_remote_magic_prints_under_the_cell(cluster: LocalCluster, ipython_shell, capsys) -> None:
    shell = ipython_shell
    shell.extension_manager.load_extension("livebook_client")
    shell.run_line_magic("attach", A)
    value = shell.run_cell_magic("remote", "", "import os\nfor i in range(3):\n    print('remote line', i)\nos.getpid()")
    assert value == cluster.pid(A)
    out = capsys.readouterr().out
    assert out.splitlines() == ["remote line 0", "remote line 1", "remote line 2"]


def logs_and_prints():
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)  # bound to the node's (routed) sys.stderr
    log = logging.getLogger("remote.test")
    log.addHandler(handler)
    try:
        log.warning("a log line stays on the node")
    finally:
        log.removeHandler(handler)
    print("a print comes home", file=sys.stderr)


def test_log_lines_of_a_remote_call_stay_on_its_node(cluster: LocalCluster) -> None:
    with recording() as recorded:
        erpc.call(A, logs_and_prints, timeout=WAIT)
    assert recorded == [("err", "a print comes home\n")]
    assert wait_until(lambda: "a log line stays on the node" in cluster.stderr(A), timeout=WAIT)


def test_a_process_started_by_the_node_takes_the_leader_of_a_call(cluster: LocalCluster) -> None:
    def start_one(adopt):
        import threading

        leader = pynode.group_leader()  # this call's: the caller's console
        started = []

        def body():
            assert pynode.receive(10) == "go"
            if adopt:
                pynode.set_group_leader(leader)
            print(f"process adopt={adopt}", flush=True)

        def from_the_node():  # a thread of the node: what it spawns has no leader
            started.append(pynode.spawn(pynode.Node.self(), body))

        thread = threading.Thread(target=from_the_node)
        thread.start()
        thread.join()
        ref = pynode.monitor(started[0])
        pynode.send(started[0], "go")
        assert pynode.receive(10, match=lambda m: m[0] == "DOWN" and m[1] == ref)[3] == "normal"
        return leader is not None

    with recording() as recorded:
        assert erpc.call(A, start_one, True, timeout=WAIT)
        assert erpc.call(A, start_one, False, timeout=WAIT)
    assert recorded == [("out", "process adopt=True\n")]
    assert wait_until(lambda: "process adopt=False" in cluster.stdout(A), timeout=WAIT)
    assert "process adopt=True" not in cluster.stdout(A)


def test_set_group_leader_refuses_what_is_not_another_nodes_pid(cluster: LocalCluster) -> None:
    with pytest.raises(TypeError, match="set_group_leader: leader must be a pynode Pid"):
        pynode.set_group_leader("caller")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is a pid of this node"):
        pynode.set_group_leader(pynode.self_pid())
    assert pynode.group_leader() is None


def test_a_leader_set_inside_an_uncaptured_call_ends_with_the_call(cluster: LocalCluster) -> None:
    def adopt_then_print(leader):
        pynode.set_group_leader(leader)
        print("inside the call", flush=True)

    def plain_print(tag):
        print(tag, flush=True)

    with recording() as recorded:
        leader = pynode.self_pid()  # this test thread is the leader output for it comes to
        erpc.call(A, adopt_then_print, leader, timeout=WAIT, capture_output=False)
        for i in range(3):  # served by the same reader thread: must not inherit that leader
            erpc.call(A, plain_print, f"later uncaptured {i}", timeout=WAIT, capture_output=False)
    assert recorded == [("out", "inside the call\n")]
    assert wait_until(lambda: all(f"later uncaptured {i}" in cluster.stdout(A) for i in range(3)), timeout=WAIT)
