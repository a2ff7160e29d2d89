"""The :class:`pynode.beam.dist.Processes` seam over what pynode has today: thread mailboxes
(:mod:`pynode.mailbox`) and a small table of names registered for Erlang peers
(:func:`pynode.beam.register`). When pynode gains processes and registered names of its own,
this adapter is the one place to point at them."""

from __future__ import annotations

import threading
from typing import Any

from pynode.mailbox import Pid, Registry


class MailboxProcesses:
    """Processes = mailboxes; names = a dict guarded by a lock."""

    def __init__(self, mailboxes: Registry) -> None:
        self._mailboxes = mailboxes
        self._lock = threading.Lock()
        self._names: dict[str, Pid] = {}

    def self_pid(self) -> Pid:
        return self._mailboxes.own().pid

    def deliver(self, pid: Pid, message: Any) -> None:
        self._mailboxes.deliver(pid.id, message)

    def alive(self, pid: Pid) -> bool:
        return pid.id in self._mailboxes._boxes  # the registry has no public lookup yet

    def whereis(self, name: str) -> Pid | None:
        with self._lock:
            return self._names.get(name)

    def register(self, name: str, pid: Pid) -> None:
        with self._lock:
            holder = self._names.get(name)
            if holder is not None and holder != pid:
                raise ValueError(f"name {name!r} is already registered to {holder!r}")
            self._names[name] = pid

    def unregister(self, name: str) -> None:
        with self._lock:
            self._names.pop(name, None)
