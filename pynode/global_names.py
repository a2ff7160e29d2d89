"""Cluster-wide names (Erlang's ``global``): one name, one process, the same on every visible node.

::

    pid = pynode.spawn("exmc@10.0.0.4", serve_jobs)
    pynode.global_names.register("jobs", pid)      # from any visible node of the cluster
    pynode.global_names.send("jobs", ("run", ir))  # from any visible node, wherever "jobs" lives

Every visible node keeps the whole table (name -> pid); :func:`whereis` and :func:`send` read the
local copy. Hidden nodes take no part: their table is their own (as ``global`` ignores hidden
nodes).

How a table stays the same everywhere:

- :func:`register` runs two phases over this node and its visible peers: each *reserves* the name
  (refused when it is already registered, naming the holder, or reserved by another registration
  under way), then each *commits* it. Two registrations of one name racing each other both see
  "busy", back off a random moment and retry (REGISTER_ATTEMPTS times at most). A peer that
  cannot be reached is left out: it gets the name when it reconnects (below);
- :func:`unregister` removes the name on every visible node; a process that ends loses its
  names on every visible node; when a node goes down, the names of its processes are removed
  from the tables of the nodes that saw it go;
- when two visible nodes connect, each sends the other its table and both merge them.

**A name clash when partitions merge.** Two partitions may each have registered the same name
for a different process. The merge keeps the *older* registration (each carries a stamp: the
wall-clock time of its registration, then the registering node's name, so every node picks the
same winner without asking anyone) and the node hosting the newer holder tells it to exit with
the exit signal ``("global_name_conflict", name)`` (from the pid ``<pid 0 @ node>``, the node's
name service). Like Erlang's default resolver, one of the two processes is told to exit; unlike
its random choice, ours is deterministic. A process that traps exits receives
``("EXIT", <pid 0>, ("global_name_conflict", name))`` and lives on, without the name. A node
learns of a clash when it connects to a node of the other partition: with the transitive mesh
(``connect_all``, Erlang's default) every node of both partitions does so as soon as two of them
connect; without it, the newer holder's node is told (and tells it to exit) only once it
connects to a node that holds the older registration.

Failure modes: :func:`register` raises TypeError/ValueError naming the argument for a non-string
name, a non-pid, a pid of a node that is not this one or a visible peer, a dead process, a taken
name (naming its holder) or a name still contended after the retries; :func:`send` raises
ValueError when the name is not registered. Messages from the phases travel as erpc calls
(GLOBAL_CALL_TIMEOUT each); a peer that times out is treated as unreachable.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from pynode.errors import PynodeError
from pynode.mailbox import Pid
from pynode.registered import check_name
from pynode.runtime import current

log = logging.getLogger(__name__)

# Seconds each phase's call to a peer may take (a live node answers in milliseconds).
GLOBAL_CALL_TIMEOUT = 10.0
# Seconds a reservation holds if its registration never commits nor aborts (its node died).
RESERVATION_TTL = 15.0
# Attempts of a register that keeps meeting another registration of the same name, and the
# upper bound of the random pause between them (seconds).
REGISTER_ATTEMPTS = 8
BACKOFF = 0.05
CONFLICT = "global_name_conflict"


class Entry(NamedTuple):
    """A registration: the pid and its stamp ``(wall time, registering node, counter)``; the
    smaller stamp is the older registration, which wins a clash."""

    pid: Pid
    stamp: tuple[float, str, int]


class ProcessSignals(Protocol):
    """What the table needs from the node's processes (a :class:`~pynode.proctable.ProcessTable`)."""

    def alive(self, pid: Pid) -> bool: ...

    def exit(self, me: Pid, target: Pid, reason: Any) -> None: ...


class GlobalNames:
    """This node's copy of the global table. ``_entries`` (name -> Entry), ``_by_pid`` (local pid
    -> its names), ``_reserved`` (name -> (token, expiry)) and ``_told`` (losers already told
    to exit) are guarded by ``_lock``."""

    def __init__(self, node: str, processes: ProcessSignals, visible_peers: Callable[[], list[str]]) -> None:
        self.node = node
        self.server = Pid(node, 0)
        self._processes = processes
        self._visible_peers = visible_peers
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._by_pid: dict[Pid, set[str]] = {}
        self._reserved: dict[str, tuple[tuple[str, int], float]] = {}
        self._told: set[tuple[str, Pid]] = set()
        self._counter = itertools.count(1)

    # --- the table ---------------------------------------------------------------------------------

    def whereis(self, name: str) -> Pid | None:
        entry = self._entries.get(check_name(name, "global_names.whereis"))
        return None if entry is None else entry.pid

    def registered(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def snapshot(self) -> dict[str, Entry]:
        with self._lock:
            return dict(self._entries)

    def _put_locked(self, name: str, entry: Entry) -> None:
        old = self._entries.get(name)
        if old is not None:
            self._by_pid.get(old.pid, set()).discard(name)
        self._entries[name] = entry
        if entry.pid.node == self.node:
            self._by_pid.setdefault(entry.pid, set()).add(name)

    def _drop_locked(self, name: str, pid: Pid | None) -> bool:
        entry = self._entries.get(name)
        if entry is None or (pid is not None and entry.pid != pid):
            return False
        del self._entries[name]
        held = self._by_pid.get(entry.pid)
        if held is not None:
            held.discard(name)
            if not held:
                del self._by_pid[entry.pid]
        return True

    # --- the phases, as run on every node (called through erpc by the registering node) -----------

    def prepare(self, name: str, pid: Pid, token: tuple[str, int]) -> tuple[Any, ...]:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:
                return ("taken", entry.pid)
            held = self._reserved.get(name)
            if held is not None and held[0] != token and held[1] > now:
                return ("busy",)
            if pid.node == self.node and not self._processes.alive(pid):
                return ("noproc",)
            self._reserved[name] = (token, now + RESERVATION_TTL)
            return ("ok",)

    def commit(self, name: str, entry: Entry, token: tuple[str, int]) -> None:
        with self._lock:
            held = self._reserved.get(name)
            if held is not None and held[0] == token:
                del self._reserved[name]
            self._put_locked(name, entry)
        if entry.pid.node == self.node and not self._processes.alive(entry.pid):
            self.process_ended(entry.pid)  # it ended while being registered

    def abort(self, name: str, token: tuple[str, int]) -> None:
        with self._lock:
            held = self._reserved.get(name)
            if held is not None and held[0] == token:
                del self._reserved[name]

    def drop(self, name: str, pid: Pid | None) -> None:
        """Remove ``name`` (only while it names ``pid``, unless ``pid`` is None)."""
        with self._lock:
            self._drop_locked(name, pid)

    def merge(self, entries: dict[str, Entry]) -> None:
        """Take a peer's table (see the module docstring for clashes)."""
        losers: list[tuple[str, Pid]] = []
        with self._lock:
            for name, theirs in entries.items():
                mine = self._entries.get(name)
                if mine is None:
                    self._put_locked(name, theirs)
                elif mine.pid == theirs.pid:
                    if theirs.stamp < mine.stamp:
                        self._put_locked(name, theirs)
                else:
                    winner, loser = (mine, theirs) if mine.stamp <= theirs.stamp else (theirs, mine)
                    if winner is not mine:
                        self._put_locked(name, winner)
                    if loser.pid.node == self.node and (name, loser.pid) not in self._told:
                        self._told.add((name, loser.pid))
                        losers.append((name, loser.pid))
        for name, pid in losers:
            log.warning("global name %r: clash after a partition merged; %r keeps it, %r is told to exit",
                        name, self._entries.get(name), pid)
            self._processes.exit(self.server, pid, (CONFLICT, name))

    # --- the node's hooks ----------------------------------------------------------------------------

    def process_ended(self, pid: Pid) -> None:
        """A local process ended: its names go here and on every visible peer."""
        if pid.node != self.node:
            return
        with self._lock:
            names = self._by_pid.pop(pid, set())
            for name in names:
                entry = self._entries.get(name)
                if entry is not None and entry.pid == pid:
                    del self._entries[name]
            self._told = {(n, p) for n, p in self._told if p != pid}
        if names:
            threading.Thread(target=self._broadcast_drop, args=(sorted(names), pid), daemon=True,
                             name="pynode-global-drop").start()

    def _broadcast_drop(self, names: list[str], pid: Pid) -> None:
        from pynode import erpc

        for peer in self._visible_peers():
            for name in names:
                erpc.cast(peer, "pynode.global_names:_remote_drop", name, pid)

    def node_up(self, peer: str) -> None:
        """A visible peer connected: exchange tables (in a thread of its own: the node calls
        this under its lock)."""
        threading.Thread(target=self._sync, args=(peer,), daemon=True, name=f"pynode-global-sync-{peer}").start()

    def _sync(self, peer: str) -> None:
        from pynode import erpc

        if current().open_connection(peer) is None:
            # Gone again before this thread ran (a quick disconnect, a loaded machine): a sync
            # must not dial it back, which would undo a partition (and the mesh with it).
            log.info("global names not synchronised with %s: no longer connected", peer)
            return
        try:
            theirs = erpc.call(peer, "pynode.global_names:_remote_merge", self.node, self.snapshot(),
                               timeout=GLOBAL_CALL_TIMEOUT, capture_output=False)
        except (PynodeError, TimeoutError) as exc:
            log.info("global names not synchronised with %s: %s", peer, exc)
            return
        self.merge(theirs)

    def node_down(self, peer: str) -> None:
        """``peer`` is down: the names of its processes go (local work only)."""
        with self._lock:
            for name in [n for n, e in self._entries.items() if e.pid.node == peer]:
                self._drop_locked(name, None)

    # --- the public operations, from this node -----------------------------------------------------------

    def register(self, name: str, pid: Pid) -> None:
        check_name(name, "global_names.register")
        if not isinstance(pid, Pid):
            raise TypeError(f"global_names.register: pid must be a pynode Pid, got {type(pid).__name__} {pid!r}")
        peers = self._visible_peers()
        if pid.node != self.node and pid.node not in peers:
            raise ValueError(f"global_names.register: {pid!r} is on {pid.node}, neither this node nor a visible peer")
        nodes = [self.node, *peers]
        counter = next(self._counter)
        token = (self.node, counter)
        entry = Entry(pid, (time.time(), self.node, counter))
        for _ in range(REGISTER_ATTEMPTS):
            answers = {node: self._on(node, "prepare", name, pid, token) for node in nodes}
            agreed = [node for node, answer in answers.items() if answer == ("ok",)]
            refusals = [answer for answer in answers.values() if answer is not None and answer[0] in ("taken", "noproc")]
            if not refusals and len(agreed) == len([a for a in answers.values() if a is not None]):
                for node in agreed:
                    self._on(node, "commit", name, entry, token)
                return
            for node in agreed:
                self._on(node, "abort", name, token)
            if refusals:
                kind = refusals[0]
                if kind[0] == "taken":
                    raise ValueError(f"global_names.register: the name {name!r} is already taken by {kind[1]!r}")
                raise ValueError(f"global_names.register: {pid!r} is not alive (noproc)")
            time.sleep(random.uniform(0, BACKOFF))
        raise ValueError(f"global_names.register: {name!r} is being registered by another node at the same time; "
                         f"gave up after {REGISTER_ATTEMPTS} attempts")

    def unregister(self, name: str) -> None:
        check_name(name, "global_names.unregister")
        for node in [self.node, *self._visible_peers()]:
            self._on(node, "drop", name, None)

    def _on(self, node: str, phase: str, *args: Any) -> Any:
        """Run a phase on ``node`` (here directly); None when the node cannot be reached."""
        if node == self.node:
            return getattr(self, phase)(*args)
        from pynode import erpc

        try:
            return erpc.call(node, "pynode.global_names:_remote_phase", phase, *args,
                             timeout=GLOBAL_CALL_TIMEOUT, capture_output=False)
        except (PynodeError, TimeoutError) as exc:
            log.info("global_names.%s on %s: %s (left out)", phase, node, exc)
            return None


# --- what peers call (through erpc, by "module:function") -----------------------------------------

_PHASES = frozenset({"prepare", "commit", "abort", "drop"})


def _table() -> GlobalNames:
    return current().processes.global_names


def _remote_phase(phase: str, *args: Any) -> Any:
    if phase not in _PHASES:
        raise ValueError(f"unknown global_names phase {phase!r}")
    return getattr(_table(), phase)(*args)


def _remote_merge(peer: str, entries: dict[str, Entry]) -> dict[str, Entry]:
    table = _table()
    mine = table.snapshot()
    table.merge(entries)
    return mine


def _remote_drop(name: str, pid: Pid) -> None:
    _table().drop(name, pid)


# --- the public API -----------------------------------------------------------------------------------


def register(name: str, pid: Pid) -> None:
    """Register ``pid`` as ``name`` on every visible node (see the module docstring)."""
    _table().register(name, pid)


def unregister(name: str) -> None:
    """Remove ``name`` on every visible node (no error when it is not registered)."""
    _table().unregister(name)


def whereis(name: str) -> Pid | None:
    """The pid registered as ``name`` in this node's copy of the table, or None."""
    return _table().whereis(name)


def registered() -> list[str]:
    """Every global name this node knows, sorted."""
    return _table().registered()


def send(name: str, message: Any) -> Pid:
    """Send ``message`` to the process registered as ``name`` and return its pid (Erlang's
    ``global:send``). Raises ValueError when no process is registered as ``name``, and what
    :func:`pynode.send` raises."""
    from pynode.mailbox import send as send_to_pid

    pid = whereis(name)
    if pid is None:
        raise ValueError(f"global_names.send: no process is registered globally as {name!r}")
    send_to_pid(pid, message)
    return pid
