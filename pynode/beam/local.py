"""The :class:`pynode.beam.dist.Processes` seam over what pynode has today: thread mailboxes
(:mod:`pynode.mailbox`) and a small table of names registered for Erlang peers
(:func:`pynode.beam.register`). When pynode gains processes and registered names of its own,
this adapter is the one place to point at them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pynode.mailbox import Pid, Registry


class MailboxProcesses:
    """Processes = mailboxes; names = a dict guarded by a lock, then ``whereis`` (the node's own
    registered names, once it has them: pass ``node.processes.names.whereis``)."""

    def __init__(self, mailboxes: Registry, whereis: Callable[[str], Pid | None] | None = None) -> None:
        self._mailboxes = mailboxes
        self._lock = threading.Lock()
        self._names: dict[str, Pid] = {}
        self._whereis = whereis

    def self_pid(self) -> Pid:
        return self._mailboxes.own().pid

    def deliver(self, pid: Pid, message: Any) -> None:
        self._mailboxes.deliver(pid.id, message)

    def alive(self, pid: Pid) -> bool:
        return pid.id in self._mailboxes._boxes  # the registry has no public lookup yet

    def whereis(self, name: str) -> Pid | None:
        with self._lock:
            pid = self._names.get(name)
        if pid is None and self._whereis is not None:
            pid = self._whereis(name)
        return pid

    def register(self, name: str, pid: Pid) -> None:
        with self._lock:
            holder = self._names.get(name)
            if holder is not None and holder != pid:
                raise ValueError(f"name {name!r} is already registered to {holder!r}")
            self._names[name] = pid

    def unregister(self, name: str) -> None:
        with self._lock:
            self._names.pop(name, None)
