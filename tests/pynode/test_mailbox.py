"""Mailboxes without a network: registry, pids, per-thread ownership."""

from __future__ import annotations

import pickle
import threading

import pytest

from pynode import payload as payloads
from pynode.errors import ReceiveTimeout
from pynode.mailbox import Pid, Registry


def test_pid_is_a_small_picklable_value_naming_its_node() -> None:
    pid = Pid("a@127.0.0.1", 7)
    assert pickle.loads(pickle.dumps(pid)) == pid
    assert "a@127.0.0.1" in repr(pid)


def test_each_thread_owns_one_mailbox() -> None:
    registry = Registry("n@127.0.0.1")
    mine = registry.own()
    assert registry.own() is mine
    other: list[Pid] = []
    thread = threading.Thread(target=lambda: other.append(registry.own().pid))
    thread.start()
    thread.join()
    assert other[0] != mine.pid and other[0].node == "n@127.0.0.1"


def test_messages_arrive_in_order_local_and_encoded() -> None:
    registry = Registry("n@127.0.0.1")
    box = registry.own()
    registry.deliver(box.pid.id, "first")
    registry.deliver_encoded(box.pid.id, *payloads.dumps({"second": 2}))
    assert box.get(1) == "first"
    assert box.get(1) == {"second": 2}


def test_receive_times_out_naming_the_pid() -> None:
    box = Registry("n@127.0.0.1").own()
    with pytest.raises(ReceiveTimeout, match="n@127.0.0.1") as info:
        box.get(0.05)
    assert isinstance(info.value, TimeoutError)


def test_mailbox_of_a_finished_thread_is_removed_and_messages_to_it_dropped() -> None:
    registry = Registry("n@127.0.0.1")
    pids: list[Pid] = []
    thread = threading.Thread(target=lambda: pids.append(registry.own().pid))
    thread.start()
    thread.join()
    del thread
    assert pids[0].id not in registry._boxes
    registry.deliver(pids[0].id, "lost")  # no error, as Erlang's send to a dead pid


def test_selective_receive_takes_the_first_match_and_keeps_the_others_in_order() -> None:
    box = Registry("n@127.0.0.1").own()
    for message in ["a", ("DOWN", 1), "b", ("DOWN", 2), "c"]:
        box.put(message)
    assert box.get(0, match=lambda m: isinstance(m, tuple)) == ("DOWN", 1)
    assert box.get(0, match=lambda m: isinstance(m, tuple)) == ("DOWN", 2)
    assert [box.get(0) for _ in range(3)] == ["a", "b", "c"]


def test_selective_receive_waits_for_a_match_arriving_after_skipped_ones() -> None:
    registry = Registry("n@127.0.0.1")
    box = registry.own()
    box.put("early")

    def later() -> None:
        registry.deliver(box.pid.id, "noise")
        registry.deliver_encoded(box.pid.id, *payloads.dumps(("wanted", 1)))

    timer = threading.Timer(0.05, later)
    timer.start()
    assert box.get(5, match=lambda m: m[0] == "wanted") == ("wanted", 1)
    timer.join()
    assert [box.get(0), box.get(0)] == ["early", "noise"]
    with pytest.raises(ReceiveTimeout):
        box.get(0.05, match=lambda m: True)


def test_selective_receive_times_out_leaving_every_message() -> None:
    box = Registry("n@127.0.0.1").own()
    box.put(1)
    box.put(2)
    with pytest.raises(ReceiveTimeout):
        box.get(0.05, match=lambda m: m == 3)
    assert [box.get(0), box.get(0)] == [1, 2]


def test_drop_removes_only_matching_messages() -> None:
    box = Registry("n@127.0.0.1").own()
    for message in [1, 2, 3, 4]:
        box.put(message)
    assert box.drop(lambda m: m % 2 == 0) == 2
    assert [box.get(0), box.get(0)] == [1, 3]
