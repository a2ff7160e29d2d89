"""Registered names on one node: Erlang's ``register/2``, ``whereis/1``, ``registered/0``.

A name is a non-empty string naming one live local process; a process holds at most one name
(as in Erlang). The name is dropped when its process ends (:meth:`NameTable.process_ended`, an
exit hook of :class:`~pynode.proctable.ProcessTable`). ``_by_name`` and ``_by_id`` mirror each
other, both guarded by ``_lock``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pynode.mailbox import Pid


def check_name(name: Any, what: str) -> str:
    """``name`` if it is a valid registered name; TypeError / ValueError naming ``what``."""
    if not isinstance(name, str):
        raise TypeError(f"{what}: a registered name must be a str, got {type(name).__name__} {name!r}")
    if not name or name != name.strip():
        raise ValueError(f"{what}: a registered name must be a non-empty string without surrounding spaces, got {name!r}")
    return name


class NameTable:
    """The registered names of node ``node``; ``alive(pid)`` tells whether a local pid lives."""

    def __init__(self, node: str, alive: Callable[[Pid], bool]) -> None:
        self.node = node
        self._alive = alive
        self._lock = threading.Lock()
        self._by_name: dict[str, Pid] = {}
        self._by_id: dict[int, str] = {}

    def register(self, name: str, pid: Pid) -> None:
        """Raises TypeError/ValueError: bad name, remote or dead pid, name taken (naming the
        holder), or the process already has a name."""
        check_name(name, "register")
        if not isinstance(pid, Pid):
            raise TypeError(f"register: pid must be a pynode Pid, got {type(pid).__name__} {pid!r}")
        if pid.node != self.node:
            raise ValueError(f"register: {pid!r} is not a process of this node ({self.node}); "
                             "use pynode.global_names for cluster-wide names")
        if not self._alive(pid):
            raise ValueError(f"register: {pid!r} is not alive (noproc)")
        with self._lock:
            holder = self._by_name.get(name)
            if holder is not None:
                raise ValueError(f"register: the name {name!r} is already taken by {holder!r}")
            other = self._by_id.get(pid.id)
            if other is not None:
                raise ValueError(f"register: {pid!r} is already registered as {other!r}")
            self._by_name[name] = pid
            self._by_id[pid.id] = name
        if not self._alive(pid):  # ended while being registered: its exit hook may have run first
            self.process_ended(pid)
            raise ValueError(f"register: {pid!r} is not alive (noproc)")

    def unregister(self, name: str) -> None:
        """Raises ValueError when ``name`` is not registered (Erlang's badarg)."""
        check_name(name, "unregister")
        with self._lock:
            pid = self._by_name.pop(name, None)
            if pid is None:
                raise ValueError(f"unregister: no process is registered as {name!r} on {self.node}")
            self._by_id.pop(pid.id, None)

    def whereis(self, name: str) -> Pid | None:
        check_name(name, "whereis")
        return self._by_name.get(name)

    def registered(self) -> list[str]:
        with self._lock:
            return sorted(self._by_name)

    def process_ended(self, pid: Pid) -> None:
        if pid.node != self.node:
            return
        with self._lock:
            name = self._by_id.pop(pid.id, None)
            if name is not None and self._by_name.get(name) == pid:
                del self._by_name[name]
