"""Registered names of one node: the table's rules and the errors that name the argument."""

from __future__ import annotations

import pytest

from pynode.mailbox import Pid
from pynode.registered import NameTable

NODE = "n@127.0.0.1"


def table(alive: set[int]) -> NameTable:
    return NameTable(NODE, lambda pid: pid.id in alive)


def test_register_whereis_and_the_process_end() -> None:
    names = table({1, 2})
    names.register("db", Pid(NODE, 1))
    assert names.whereis("db") == Pid(NODE, 1) and names.registered() == ["db"]
    with pytest.raises(ValueError, match=r"'db' is already taken by <pid 1 @ n@127.0.0.1>"):
        names.register("db", Pid(NODE, 2))
    with pytest.raises(ValueError, match="already registered as 'db'"):
        names.register("other", Pid(NODE, 1))
    names.process_ended(Pid(NODE, 1))
    assert names.whereis("db") is None and names.registered() == []
    names.register("db", Pid(NODE, 2))
    names.unregister("db")
    with pytest.raises(ValueError, match="no process is registered as 'db'"):
        names.unregister("db")


@pytest.mark.parametrize(
    "name, pid, error, message",
    [
        (3, Pid(NODE, 1), TypeError, "must be a str, got int 3"),
        ("", Pid(NODE, 1), ValueError, "non-empty string"),
        (" db", Pid(NODE, 1), ValueError, "without surrounding spaces"),
        ("db", "pid", TypeError, "pid must be a pynode Pid, got str"),
        ("db", Pid("far@127.0.0.2", 1), ValueError, "not a process of this node"),
        ("db", Pid(NODE, 5), ValueError, "not alive"),
    ],
)
def test_bad_registrations_name_the_argument(name, pid, error, message) -> None:
    with pytest.raises(error, match=message):
        table({1}).register(name, pid)
