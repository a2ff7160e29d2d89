"""Group-leader output without a network: per-thread routing, line buffering, logging left
alone, the caller-side sinks (context per call and per spawn, forwarding)."""

from __future__ import annotations

import contextvars
import io
import logging
import threading

from pynode import output, signals
from pynode.mailbox import Pid

LEADER = Pid("caller@127.0.0.1", 7)


class Sent:
    def __init__(self) -> None:
        self.signals: list[tuple[str, tuple]] = []

    def __call__(self, node: str, signal: tuple) -> bool:
        self.signals.append((node, signal))
        return True

    def texts(self) -> list[tuple[int, str]]:
        return [(s.stream, s.text) for _, s in self.signals]


def test_a_led_thread_sends_whole_lines_and_the_rest_at_the_end() -> None:
    sent = Sent()
    router_out = output.Router(io.StringIO(), signals.STDOUT)
    router_err = output.Router(io.StringIO(), signals.STDERR)
    with output.leading(LEADER, sent):
        router_out.write("a")
        router_out.write("b\nc")
        router_err.write("e1\n")
        router_out.write("\nd")
        assert output.current_leader() == LEADER
    assert output.current_leader() is None
    assert sent.texts() == [(1, "ab\n"), (2, "e1\n"), (1, "c\n"), (1, "d")]
    assert all(node == LEADER.node for node, _ in sent.signals)
    assert router_out.wrapped.getvalue() == "" and router_err.wrapped.getvalue() == ""


def test_other_threads_and_logging_write_to_the_wrapped_stream() -> None:
    sent = Sent()
    wrapped = io.StringIO()
    router = output.Router(wrapped, signals.STDERR)
    handler = logging.StreamHandler(router)
    log = logging.getLogger("test_output.routing")
    log.addHandler(handler)
    log.propagate = False
    try:
        with output.leading(LEADER, sent):
            log.warning("log line")
            other = threading.Thread(target=router.write, args=("other thread\n",))
            other.start()
            other.join()
            router.write("captured\n")
    finally:
        log.removeHandler(handler)
    assert wrapped.getvalue() == "log line\nother thread\n"
    assert sent.texts() == [(2, "captured\n")]


CELL = contextvars.ContextVar("cell")


class ContextStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def write(self, text: str) -> int:
        self.seen.append((CELL.get("none"), text))
        return len(text)


def test_sinks_write_in_the_context_of_the_call_or_spawn(monkeypatch) -> None:
    stream = ContextStream()
    monkeypatch.setattr("sys.stdout", stream)
    sinks = output.Sinks(Sent())
    CELL.set("cell 1")
    spawned = sinks.spawn_leader("caller@127.0.0.1")
    sinks.remember(7)
    CELL.set("cell 2")
    sinks.remember(7)  # a later call of the same thread
    sinks.write(Pid("caller@127.0.0.1", 7), signals.STDOUT, "call\n")
    sinks.write(spawned, signals.STDOUT, "spawned\n")
    sinks.write(Pid("caller@127.0.0.1", 99), signals.STDOUT, "unknown leader\n")
    assert spawned.id < 0
    assert stream.seen == [("cell 2", "call\n"), ("cell 1", "spawned\n"), ("cell 2", "unknown leader\n")]


def test_sinks_forward_output_of_a_nested_call_to_the_outer_leader() -> None:
    sent = Sent()
    sinks = output.Sinks(sent)
    sinks.forward(3, LEADER)
    sinks.write(Pid("middle@127.0.0.1", 3), signals.STDERR, "inner\n")
    assert sent.signals == [(LEADER.node, signals.Output(LEADER, signals.STDERR, "inner\n"))]


def test_a_led_thread_reinstalls_the_routers_when_sys_stdout_was_replaced(monkeypatch) -> None:
    replaced = io.StringIO()
    monkeypatch.setattr("sys.stdout", replaced)
    sent = Sent()
    with output.leading(LEADER, sent):
        print("routed again")
    assert replaced.getvalue() == "" and sent.texts() == [(1, "routed again\n")]
    import sys

    assert isinstance(sys.stdout, output.Router) and sys.stdout.wrapped is replaced


def test_redirect_changes_the_leader_until_the_block_ends_and_flushes_the_old_one() -> None:
    sent = Sent()
    router = output.Router(io.StringIO(), signals.STDOUT)
    other = Pid("other@127.0.0.2", 9)
    with output.leading(None, sent):  # a process with no leader of its own
        router.write("here\n")
        output.redirect(LEADER, sent)
        router.write("to the leader, unfinished")
        output.redirect(other, sent)  # the unfinished line goes to the old leader first
        router.write("to the other\n")
        assert output.current_leader() == other
    assert output.current_leader() is None  # never outlives the block (a thread ident is reused)
    assert [(node, s.text) for node, s in sent.signals] == [
        (LEADER.node, "to the leader, unfinished"), (other.node, "to the other\n")]
    assert router.wrapped.getvalue() == "here\n"


def test_output_for_a_leader_that_cannot_be_reached_is_written_here(monkeypatch) -> None:
    here = io.StringIO()
    monkeypatch.setattr(output, "_stream", lambda stream: here)
    router = output.Router(io.StringIO(), signals.STDOUT)
    with output.leading(LEADER, lambda node, signal: False):
        router.write("not lost\n")
    assert here.getvalue() == "not lost\n"


def test_output_forwarded_to_a_leader_that_cannot_be_reached_is_written_here(monkeypatch) -> None:
    # A nested call's output on its way to the first caller, whose node is gone: written on
    # this node (as a thread's own output is, above), not dropped.
    here = io.StringIO()
    monkeypatch.setattr("sys.stdout", here)
    sinks = output.Sinks(lambda node, signal: False)
    sinks.forward(3, LEADER)
    sinks.write(Pid("middle@127.0.0.1", 3), signals.STDOUT, "inner, not lost\n")
    assert here.getvalue() == "inner, not lost\n"
