"""The processes of one node: their links, monitors and exit signals (Erlang's semantics).

A *process* is a thread with a mailbox (:mod:`pynode.mailbox`). Two kinds:

- *spawned* (:meth:`ProcessTable.spawn`): a thread pynode started to run one function; it ends
  when the function returns (reason ``"normal"``), raises (``("exception", exc)``) or is stopped
  by an exit signal (the signal's reason; ``"killed"`` for ``exit(pid, "kill")``);
- *adopted*: any other thread that asked for its pid (the main thread, a notebook's cell, a
  remote call's thread). It ends, with reason ``"normal"``, when its thread ends.

An exit signal that would stop a process (an abnormal exit of a linked process while not
trapping exits, or ``exit(pid, reason)``) stops a spawned process *best effort*, with exactly
the mechanism of erpc's cancellation (:mod:`pynode.execution`): the process runs under a
``CallContext``; the signal marks the reason, then cancels it, so ``pynode.cancelled()`` turns
True and :class:`~pynode.errors.CallCancelled` is raised in its thread asynchronously, at the next
Python bytecode. A thread blocked in C (``time.sleep``, a long numpy call, a socket read) stops
when that returns; a :func:`pynode.receive` is woken at once; pynode's own bookkeeping (a nested
erpc wait, a frame being sent) is shielded and sees it afterwards. Code may catch
``CallCancelled`` (a ``BaseException``) and even go on, but the process's exit reason is the
signal's whatever it does. Adopted threads are never stopped: pynode did
not start them and killing a REPL or a node's reader thread would do more harm than good, so a
signal that would stop one arrives as an ``("EXIT", sender, reason)`` message instead, as if it
trapped exits (logged).

State (all guarded by ``ProcessTable._lock``, reentrant because mailbox finalizers may run
anywhere): ``_procs`` holds the processes that have process state (a spawned one from its
spawn, an adopted one from its first link, monitor or trap_exit) until their mailbox is gone (an
ended one is marked ``exited``); ``_watching`` every monitor a
local process holds (``ref -> Watch``), which is how a ``Down`` finds its watcher and how
``noconnection`` fires; ``_linking`` counts remote ``spawn_link`` calls in flight per (local
process, node), whose early exit signals are kept in ``_early`` until the new pid is known.

The table talks to the network only through a :class:`Route` (the node).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from pynode import output, signals
from pynode.errors import CallCancelled, EncodeError
from pynode.execution import CallContext, execute
from pynode.mailbox import Mailbox, Pid, Registry
from pynode.signals import KILL, KILLED, NOCONNECTION, NOPROC, NORMAL, SHUTDOWN, Ref

log = logging.getLogger(__name__)


class Route(Protocol):
    """How the table reaches other nodes (implemented by the node)."""

    def send_signal(self, node: str, signal: tuple) -> bool:
        """Send ``signal`` to ``node`` (connecting if needed); False when it cannot be sent."""
        ...


_UNSET: Any = object()


@dataclass(eq=False)
class ProcState:
    """One live process.

    ``ctx``: a spawned process's cancellation state (None for an adopted thread);
    ``kill_reason``: _UNSET, or the reason an exit signal stopped it with (the first one wins;
    set before ``ctx`` is cancelled); ``exited``: set once, when its links and monitors are
    being told; the state stays in the table until its mailbox is gone."""

    pid: Pid
    spawned: bool
    ctx: CallContext | None = None
    trap: bool = False
    links: set[Pid] = field(default_factory=set)
    monitors: dict[Ref, Pid] = field(default_factory=dict)  # monitors of this process: ref -> watcher
    kill_reason: Any = _UNSET
    exited: bool = False


class Watch(NamedTuple):
    """A monitor held by a local process: who watches, whom (None while a remote
    ``spawn_monitor`` has not returned the pid yet), on which node."""

    watcher: Pid
    target: Pid | None
    node: str


class ProcessTable:
    """The processes of the node ``registry.node``; ``on_exit`` callbacks (name tables) run with
    the pid of every process that ends, spawned or adopted, before its links and monitors fire."""

    def __init__(self, registry: Registry, route: Route) -> None:
        self.node = registry.node
        self._registry = registry
        self._route = route
        self._lock = threading.RLock()
        self._procs: dict[int, ProcState] = {}
        self._watching: dict[Ref, Watch] = {}
        self._linking: dict[tuple[int, str], int] = {}
        self._early: dict[tuple[int, str], list[tuple[Pid, Any]]] = {}
        self.on_exit: list[Callable[[Pid], None]] = []

    # --- life -----------------------------------------------------------------------------------

    def alive(self, pid: Pid) -> bool:
        """True when the local ``pid`` names a live process."""
        if pid.node != self.node or self._registry.get(pid.id) is None:
            return False
        with self._lock:
            st = self._procs.get(pid.id)
            return st is None or not st.exited

    def spawn(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        link: Pid | None = None,
        monitor: tuple[Pid, Ref] | None = None,
        leader: Pid | None = None,
    ) -> Pid:
        """Start ``fn(*args, **kwargs)`` as a new process and return its pid at once. ``link``:
        linked to that pid from the start; ``monitor``: ``(watcher, ref)`` monitoring it from the
        start; ``leader``: the remote group leader its output goes to (default: the spawning
        thread's, if it has one)."""
        box = self._registry.create()
        st = ProcState(box.pid, spawned=True, ctx=CallContext(f"process {box.pid.id} on {self.node}"))
        if leader is None:
            leader = output.current_leader()
        with self._lock:
            self._procs[box.pid.id] = st
            if link is not None:
                st.links.add(link)
                if link.node == self.node:
                    other = self._state(link.id)
                    if other is None:  # the spawner is gone: the link's noproc stops the new process
                        st.links.discard(link)
                        st.kill_reason = NOPROC
                        st.ctx.cancel()
                    else:
                        other.links.add(box.pid)
            if monitor is not None:
                watcher, ref = monitor
                st.monitors[ref] = watcher
                if watcher.node == self.node:
                    self._watching[ref] = Watch(watcher, box.pid, self.node)
        thread = threading.Thread(
            target=self._run, args=(st, box, fn, args, kwargs, leader), name=f"pynode-proc-{box.pid.id}", daemon=True
        )
        thread.start()
        return box.pid

    def _run(self, st: ProcState, box: Mailbox, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any], leader: Pid | None) -> None:
        """A spawned process's thread: run, then tell links and monitors why it ended."""
        self._registry.bind(box)
        ended: list[Any] = [KILLED]

        def run() -> None:
            try:
                with output.leading(leader, self._route.send_signal):
                    fn(*args, **kwargs)
                ended[0] = NORMAL
            except CallCancelled:
                raise
            except BaseException as exc:  # noqa: BLE001 - a crash is this process's exit reason
                ended[0] = ("exception", exc)

        assert st.ctx is not None
        execute(st.ctx, run)  # absorbs the CallCancelled of an exit signal
        reason = ended[0] if st.kill_reason is _UNSET else st.kill_reason
        if signals.is_exception_reason(reason):
            exc = reason[1]
            log.warning("process %r exited: %s: %s", st.pid, type(exc).__name__, exc, exc_info=exc)
        self._end(st, reason)
        self._registry.remove(box.pid.id)

    def mailbox_gone(self, mailbox_id: int) -> None:
        """The registry dropped a mailbox (its thread ended): the process ends normally if it had
        not ended yet (an adopted thread) and its state goes; its names go (``on_exit``) in any
        case."""
        with self._lock:
            st = self._procs.get(mailbox_id)
        if st is None:
            self._run_exit_hooks(Pid(self.node, mailbox_id))
            return
        self._end(st, NORMAL)
        with self._lock:
            self._procs.pop(mailbox_id, None)

    def _end(self, st: ProcState, reason: Any) -> None:
        with self._lock:
            if st.exited:
                return
            st.exited = True  # stays in _procs, refusing new links and monitors, until mailbox_gone
            links, st.links = st.links, set()
            monitors, st.monitors = st.monitors, {}
            held = [(ref, w) for ref, w in self._watching.items() if w.watcher == st.pid]
            for ref, _ in held:
                del self._watching[ref]
        self._run_exit_hooks(st.pid)
        for ref, watch in held:  # a process's own monitors end with it
            if watch.target is not None and watch.node != self.node:
                self._route.send_signal(watch.node, signals.Demonitor(st.pid, watch.target, ref))
            elif watch.target is not None:
                with self._lock:
                    target = self._procs.get(watch.target.id)
                    if target is not None:
                        target.monitors.pop(ref, None)
        for other in links:
            self._send_exit(st.pid, other, reason, linked=True)
        for ref, watcher in monitors.items():
            self._send_down(watcher, st.pid, ref, reason)

    def _run_exit_hooks(self, pid: Pid) -> None:
        for hook in self.on_exit:
            try:
                hook(pid)
            except Exception:  # noqa: BLE001 - one table's failure must not keep the others
                log.exception("exit hook %r failed for %r", hook, pid)

    def _state(self, mailbox_id: int) -> ProcState | None:
        """The live process ``mailbox_id`` (its state created for an adopted thread), else None.
        Under the lock."""
        st = self._procs.get(mailbox_id)
        if st is None:
            if self._registry.get(mailbox_id) is None:
                return None
            st = self._procs[mailbox_id] = ProcState(Pid(self.node, mailbox_id), spawned=False)
        return None if st.exited else st

    def shutdown(self) -> None:
        """Stop every spawned process with the reason ``"shutdown"`` (the node stops)."""
        with self._lock:
            spawned = [st for st in self._procs.values() if st.ctx is not None and not st.exited]
        for st in spawned:
            self._stop(st, SHUTDOWN)

    # --- links and exit signals -------------------------------------------------------------------

    def link(self, me: Pid, target: Pid) -> None:
        if target == me:
            return
        with self._lock:
            mine = self._state(me.id)
            if mine is None:
                return
            if target.node == self.node:
                theirs = self._state(target.id)
                if theirs is not None:
                    mine.links.add(target)
                    theirs.links.add(me)
                    return
            else:
                mine.links.add(target)
        if target.node == self.node:
            self._apply_exit(me, target, NOPROC, linked=True)
        elif not self._route.send_signal(target.node, signals.Link(me, target)):
            self._receive_exit(target, me, NOCONNECTION, linked=True)

    def unlink(self, me: Pid, target: Pid) -> None:
        with self._lock:
            mine = self._procs.get(me.id)
            if mine is not None:
                mine.links.discard(target)
            if target.node == self.node:
                theirs = self._procs.get(target.id)
                if theirs is not None:
                    theirs.links.discard(me)
                return
        self._route.send_signal(target.node, signals.Unlink(me, target))

    def trap_exit(self, me: Pid, flag: bool) -> bool:
        with self._lock:
            st = self._state(me.id)
            if st is None:
                return False
            old, st.trap = st.trap, flag
            return old

    def exit(self, me: Pid, target: Pid, reason: Any) -> None:
        """Send the exit signal ``reason`` from ``me`` to ``target`` (Erlang's ``exit/2``)."""
        self._send_exit(me, target, reason, linked=False)

    def _send_exit(self, sender: Pid, target: Pid, reason: Any, linked: bool) -> None:
        if target.node == self.node:
            self._receive_exit(sender, target, reason, linked)
            return
        try:
            encoded = signals.encode_reason(reason)
        except EncodeError:
            encoded = repr(reason)
        if not self._route.send_signal(target.node, signals.Exit(sender, target, encoded, linked)):
            log.info("exit signal %r from %r to %r dropped: no connection", reason, sender, target)

    def _receive_exit(self, sender: Pid, target: Pid, reason: Any, linked: bool) -> None:
        """An exit signal for the local process ``target``."""
        with self._lock:
            st = self._state(target.id)
            if st is None:
                return
            if linked:
                if sender not in st.links:
                    key = (target.id, sender.node)
                    if self._linking.get(key):  # a spawn_link whose pid is not known yet
                        self._early.setdefault(key, []).append((sender, reason))
                    return
                st.links.discard(sender)
        self._apply_exit(target, sender, reason, linked)

    def _apply_exit(self, target: Pid, sender: Pid, reason: Any, linked: bool) -> None:
        """Erlang's rules for an exit signal that reached a live process."""
        with self._lock:
            st = self._state(target.id)
            if st is None:
                return
            if not linked and reason == KILL:
                stop_with = KILLED
            elif st.trap:
                stop_with = _UNSET
            elif reason == NORMAL and not (not linked and sender == target):
                return
            else:
                stop_with = reason
            if stop_with is not _UNSET and st.ctx is not None:
                self._stop(st, stop_with)
                return
        if stop_with is not _UNSET:
            log.warning("exit signal %r from %r would stop %r, a thread pynode did not spawn: "
                        "delivered as an EXIT message instead", reason, sender, target)
        self._registry.deliver(target.id, ("EXIT", sender, reason))

    def _stop(self, st: ProcState, reason: Any) -> None:
        """Stop a spawned process with ``reason`` (the first reason wins): cancel its context,
        wake its receive."""
        with self._lock:
            if st.kill_reason is not _UNSET:
                return
            st.kill_reason = reason
            box = self._registry.get(st.pid.id)
        assert st.ctx is not None
        st.ctx.cancel()
        if box is not None:
            box.wake()

    # --- monitors -------------------------------------------------------------------------------

    def monitor(self, me: Pid, target: Pid) -> Ref:
        ref = signals.make_ref(self.node)
        if target.node == self.node:
            with self._lock:
                st = self._state(target.id)
                if st is not None:
                    st.monitors[ref] = me
                    self._watching[ref] = Watch(me, target, self.node)
                    return ref
            self._registry.deliver(me.id, ("DOWN", ref, target, NOPROC))
            return ref
        with self._lock:
            self._watching[ref] = Watch(me, target, target.node)
        if not self._route.send_signal(target.node, signals.Monitor(me, target, ref)):
            self._deliver_down(ref, target, NOCONNECTION)
        return ref

    def watch_spawn(self, me: Pid, node: str) -> Ref:
        """A monitor for a process about to be spawned on ``node`` (remote ``spawn_monitor``):
        registered before the request goes, so that an early Down finds it."""
        ref = signals.make_ref(self.node)
        with self._lock:
            self._watching[ref] = Watch(me, None, node)
        return ref

    def watch_spawned(self, ref: Ref, pid: Pid) -> None:
        with self._lock:
            watch = self._watching.get(ref)
            if watch is not None:
                self._watching[ref] = watch._replace(target=pid)

    def demonitor(self, me: Pid, ref: Ref, flush: bool = False) -> bool:
        with self._lock:
            watch = self._watching.get(ref)
            if watch is None or watch.watcher != me:
                watch = None
            else:
                del self._watching[ref]
                if watch.node == self.node and watch.target is not None:
                    st = self._procs.get(watch.target.id)
                    if st is not None:
                        st.monitors.pop(ref, None)
        if watch is not None and watch.node != self.node and watch.target is not None:
            self._route.send_signal(watch.node, signals.Demonitor(me, watch.target, ref))
        if flush:
            box = self._registry.get(me.id)
            if box is not None:
                box.drop(lambda m: type(m) is tuple and len(m) == 4 and m[0] == "DOWN" and m[1] == ref)
        return watch is not None

    def _send_down(self, watcher: Pid, target: Pid, ref: Ref, reason: Any) -> None:
        if watcher.node == self.node:
            self._deliver_down(ref, target, reason)
            return
        try:
            encoded = signals.encode_reason(reason)
        except EncodeError:
            encoded = repr(reason)
        self._route.send_signal(watcher.node, signals.Down(watcher, target, ref, encoded))

    def _deliver_down(self, ref: Ref, target: Pid, reason: Any) -> None:
        with self._lock:
            watch = self._watching.pop(ref, None)
        if watch is not None:
            self._registry.deliver(watch.watcher.id, ("DOWN", ref, target, reason))

    # --- remote spawn_link bookkeeping -----------------------------------------------------------

    def expect_link(self, me: Pid, node: str) -> None:
        with self._lock:
            key = (me.id, node)
            self._linking[key] = self._linking.get(key, 0) + 1

    def linked_spawn(self, me: Pid, node: str, pid: Pid | None) -> None:
        """A remote spawn_link returned ``pid`` (None: it failed): link it and replay the exit
        signals that arrived before the pid was known."""
        key = (me.id, node)
        with self._lock:
            count = self._linking.get(key, 1) - 1
            if count:
                self._linking[key] = count
                early = self._early.get(key, [])
            else:
                self._linking.pop(key, None)
                early = self._early.pop(key, [])
            mine = self._state(me.id)
            if pid is None or mine is None:
                return
            mine.links.add(pid)
            replay = [(s, r) for s, r in early if s == pid]
            early[:] = [(s, r) for s, r in early if s != pid]
        for sender, reason in replay:
            self._receive_exit(sender, me, reason, linked=True)

    # --- signals from other nodes ----------------------------------------------------------------

    def on_signal(self, peer: str, signal: tuple) -> None:
        """A signal from ``peer`` (see :mod:`pynode.signals`); targets are checked to be local."""
        kind = type(signal)
        if kind is signals.Exit:
            if self._local(signal.target):
                self._receive_exit(signal.sender, signal.target, signals.decode_reason(signal.reason, peer), signal.linked)
        elif kind is signals.Down:
            if self._local(signal.watcher):
                self._deliver_down(signal.ref, signal.target, signals.decode_reason(signal.reason, peer))
        elif kind is signals.Link:
            if self._local(signal.target):
                with self._lock:
                    st = self._state(signal.target.id)
                    if st is not None:
                        st.links.add(signal.sender)
                if st is None:
                    self._route.send_signal(peer, signals.Exit(signal.target, signal.sender, NOPROC, True))
        elif kind is signals.Unlink:
            with self._lock:
                st = self._procs.get(signal.target.id) if self._local(signal.target) else None
                if st is not None:
                    st.links.discard(signal.sender)
        elif kind is signals.Monitor:
            if self._local(signal.target):
                with self._lock:
                    st = self._state(signal.target.id)
                    if st is not None:
                        st.monitors[signal.ref] = signal.watcher
                if st is None:
                    self._route.send_signal(peer, signals.Down(signal.watcher, signal.target, signal.ref, NOPROC))
        elif kind is signals.Demonitor:
            with self._lock:
                st = self._procs.get(signal.target.id) if self._local(signal.target) else None
                if st is not None:
                    st.monitors.pop(signal.ref, None)

    def _local(self, pid: Any) -> bool:
        if isinstance(pid, Pid) and pid.node == self.node:
            return True
        log.warning("signal for %r, not a pid of %s: ignored", pid, self.node)
        return False

    def node_down(self, peer: str) -> None:
        """``peer`` is down: links to its processes break with ``noconnection``, monitors of
        them fire ``("DOWN", ref, pid, "noconnection")``, its processes' monitors here go."""
        broken: list[tuple[Pid, Pid]] = []
        with self._lock:
            for st in self._procs.values():
                for other in [p for p in st.links if p.node == peer]:
                    st.links.discard(other)
                    broken.append((st.pid, other))
                for ref in [r for r, w in st.monitors.items() if w.node == peer]:
                    del st.monitors[ref]
            fired = [(ref, w) for ref, w in self._watching.items() if w.node == peer]
            for ref, _ in fired:
                del self._watching[ref]
            for key in [k for k in self._early if k[1] == peer]:
                self._early[key].clear()
        for me, other in broken:
            self._apply_exit(me, other, NOCONNECTION, linked=True)
        for ref, watch in fired:
            target = watch.target if watch.target is not None else Pid(peer, 0)
            self._registry.deliver(watch.watcher.id, ("DOWN", ref, target, NOCONNECTION))

