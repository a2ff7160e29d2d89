"""The :class:`pynode.beam.tasks.Processes` seam over the node's processes
(:mod:`pynode.proctable`) and its registered names (:mod:`pynode.registered`): the one name
table :func:`pynode.register` fills is the one Erlang's ``send({name, node}, msg)`` and
``monitor(process, {name, node})`` look in (:func:`pynode.beam.register` is an alias)."""

from __future__ import annotations

from typing import Any, Protocol

from pynode.mailbox import Pid, Registry


class _Table(Protocol):
    def alive(self, pid: Pid) -> bool: ...

    def on_signal(self, peer: str, signal: tuple) -> None: ...


class _Names(Protocol):
    def whereis(self, name: str) -> Pid | None: ...


class NodeProcesses(Protocol):
    """What this adapter needs of :class:`pynode.node_processes.NodeProcesses`."""

    table: _Table
    names: _Names


class LocalProcesses:
    """Processes = the node's process table (mailboxes for delivery); names = its name table."""

    def __init__(self, mailboxes: Registry, processes: NodeProcesses) -> None:
        self._mailboxes = mailboxes
        self._processes = processes

    def self_pid(self) -> Pid:
        return self._mailboxes.own().pid

    def deliver(self, pid: Pid, message: Any) -> None:
        self._mailboxes.deliver(pid.id, message)

    def alive(self, pid: Pid) -> bool:
        return self._processes.table.alive(pid)

    def whereis(self, name: str) -> Pid | None:
        try:
            return self._processes.names.whereis(name)
        except (TypeError, ValueError):  # not a name pynode could register ('', ' x')
            return None

    def on_signal(self, peer: str, signal: tuple) -> None:
        self._processes.table.on_signal(peer, signal)
