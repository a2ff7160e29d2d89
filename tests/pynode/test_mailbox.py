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
