"""The BEAM side of a pynode node: its Erlang connections and the signals they carry.

What an Erlang node sees of a pynode node (each row is a control message of
:mod:`pynode.beam.connection` and what this module does with it):

================================  =================================================================
from Erlang                       here
================================  =================================================================
SPAWN_REQUEST ``erpc:execute_call(Res, M, F, A)``  runs ``M:F(A...)`` (:mod:`pynode.beam.exports`) in a
                                  thread of its own (a *task*, with a mailbox and a pid); replies
                                  SPAWN_REPLY; ends with the exit reason erpc expects
                                  (``{Res, return, V}`` / ``{Res, error, R, Stack}``), sent as
                                  MONITOR_P_EXIT to the monitor erpc set up
SPAWN_REQUEST ``erpc:execute_cast``  the same, result dropped
SPAWN_REQUEST any other MFA       ``Node.spawn(node, M, F, A)``: a task exiting ``normal`` or with
                                  ``{{python, Class, Msg, Tb}, Stack}``
DEMONITOR_P of a call's monitor,  cancels the task (as pynode's own timeout does, see
EXIT2 / link EXIT not ``normal``  :mod:`pynode.execution`): erpc's timeout demonitors
MONITOR_P / LINK / UNLINK_ID /    monitors, links and exit signals of tasks; of pynode processes
EXIT / EXIT2 / MONITOR_P_EXIT     (and the DOWNs of their monitors of Erlang processes) through
                                  :mod:`pynode.beam.procs` into the process table; ``noproc`` at
                                  once for anything else
REG_SEND ``net_kernel``           ``{'$gen_call', From, {is_auth, _}}``: replies ``yes`` (net_adm:ping)
REG_SEND ``rex``                  ``rpc``'s old path: ``{call | block_call, M, F, A, GL}`` gen_calls,
                                  ``{cast, ...}`` casts and ``features_request``
REG_SEND other names, SEND        delivered to pynode processes through the ``Processes`` seam
================================  =================================================================

Python's calls to a BEAM node go the other way (:mod:`pynode.beam.calls`). The node reaches this
object through the :class:`Owner` interface and processes through
:class:`pynode.beam.tasks.Processes`, so that neither layer imports the other; the Python
functions run as tasks (:mod:`pynode.beam.tasks`).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pynode import etf, limits, signals
from pynode.beam import handshake as hs
from pynode.beam.connection import (
    OP_DEMONITOR_P, OP_EXIT, OP_EXIT2, OP_EXIT2_TT, OP_EXIT_TT, OP_LINK, OP_MONITOR_P, OP_MONITOR_P_EXIT,
    OP_PAYLOAD_EXIT, OP_PAYLOAD_EXIT2, OP_PAYLOAD_EXIT2_TT, OP_PAYLOAD_EXIT_TT, OP_PAYLOAD_MONITOR_P_EXIT,
    OP_REG_SEND, OP_REG_SEND_TT, OP_SEND, OP_SEND_SENDER, OP_SEND_SENDER_TT, OP_SEND_TT, OP_SPAWN_REPLY,
    OP_SPAWN_REPLY_TT, OP_SPAWN_REQUEST, OP_SPAWN_REQUEST_TT, OP_UNLINK_ID, OP_UNLINK_ID_ACK,
    BeamConnection, Ticker,
)
from pynode.beam import procs
from pynode.beam.tasks import KILLED, NORMAL, Processes, TaskTable
from pynode.errors import EncodeError, HandshakeError, NoConnection
from pynode.etf import Atom, BeamPid, Ref
from pynode.mailbox import Pid

log = logging.getLogger(__name__)

A = Atom
NOPROC = A("noproc")
# The name gen_server:call replies are matched on by net_adm:ping's is_auth.
YES = A("yes")


class NotBeam(NoConnection):
    """The node dialled as a BEAM node does not speak Erlang's protocol."""


class Owner(Protocol):
    """What the BEAM side needs of its node."""

    name: str
    hidden: bool

    def cookie_for(self, peer: str) -> str: ...

    def creation(self) -> int: ...

    def peer_up(self, peer: str, hidden: bool) -> None: ...

    def peer_down(self, peer: str, hidden: bool) -> None: ...


class Waiter:
    """Something a Python thread waits for from a BEAM peer, keyed by a reference: the outcome of
    a spawn request (its reply, then the DOWN of its monitor) or a gen_call's reply. ``done``
    is set once, with ``outcome`` (a term, or an exception instance to raise)."""

    __slots__ = ("conn", "done", "outcome", "pid", "abandoned", "on_reply")

    def __init__(self, conn: BeamConnection) -> None:
        self.conn = conn
        self.done = threading.Event()
        self.outcome: Any = None
        self.pid: BeamPid | None = None  # the spawned process, from SPAWN_REPLY
        self.abandoned = False

    def finish(self, outcome: Any) -> None:
        if not self.done.is_set():
            self.outcome = outcome
            self.done.set()


class BeamSide:
    """Every Erlang connection of one node, and the tasks and waiters that use them."""

    def __init__(self, owner: Owner, processes: Processes, max_calls: int = limits.DEFAULT_BEAM_MAX_CALLS) -> None:
        self.owner = owner
        self.processes = processes
        self._lock = threading.RLock()
        self._conns: dict[str, BeamConnection] = {}  # guarded by _lock; the live one per peer
        self._dialling: set[str] = set()  # peers we are dialling (simultaneous-connect ties)
        self._dial_locks: dict[str, threading.Lock] = {}
        self.tasks = TaskTable(owner.name, processes, self._lock, max_calls)
        self._waiters: dict[Ref, Waiter] = {}
        # Erlang monitors of a registered name (monitor(process, {Name, Node})): ref -> (name,
        # peer), guarded by _lock, until the DOWN goes out (it names the name, as BEAM's does),
        # the peer demonitors or its connection is lost.
        self._named: dict[Ref, tuple[Atom, str]] = {}
        self._ref_ids = itertools.count(1)
        self._ref_salt = secrets.randbits(32) | 0x80000000  # never etf.PYREF_MARK (a pynode Ref)
        self.ticker = Ticker(self.connections)
        self._stopped = False

    @property
    def local(self) -> etf.Local:
        return etf.Local(self.owner.name, self.owner.creation())

    # --- connections ---------------------------------------------------------------------------

    def connections(self) -> list[BeamConnection]:
        with self._lock:
            return [conn for conn in self._conns.values() if not conn.closed]

    def connected(self, peer: str) -> BeamConnection | None:
        conn = self._conns.get(peer)
        return conn if conn is not None and not conn.closed else None

    def status_for(self, peer: str) -> bytes:
        with self._lock:
            if self._stopped:
                return hs.STATUS_NOT_ALLOWED
            if self.connected(peer) is not None:
                return hs.STATUS_ALIVE
            if peer in self._dialling:
                return hs.STATUS_NOK if self.owner.name > peer else hs.STATUS_OK_SIMULTANEOUS
        return hs.STATUS_OK

    def accept(self, sock: socket.socket) -> hs.BeamPeer:
        """The acceptor's handshake on a socket whose first bytes are Erlang's. Raises HandshakeError."""
        return hs.accept(
            sock, self.owner.name, self.owner.creation(), self.owner.cookie_for, self.status_for, hidden=self.owner.hidden
        )

    def serve(self, sock: socket.socket, peer: hs.BeamPeer) -> None:
        """Serve an accepted connection in this thread until it closes."""
        conn = self._register(sock, peer)
        log.info("%s accepted an Erlang connection from %s", self.owner.name, peer.name)
        conn.run_reader()

    def connect(self, peer: str, host: str, port: int, timeout: float) -> BeamConnection:
        """The connection to ``peer`` (listening on ``host:port``), dialling it if there is none.
        Raises NoConnection saying why it cannot be made."""
        conn = self.connected(peer)
        if conn is not None:
            return conn
        with self._lock:
            dial_lock = self._dial_locks.setdefault(peer, threading.Lock())
        with dial_lock:
            conn = self.connected(peer)
            if conn is not None:
                return conn
            with self._lock:
                self._dialling.add(peer)
            try:
                sock = socket.create_connection((host, port), timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                info = hs.initiate(
                    sock, self.owner.name, peer, self.owner.creation(), self.owner.cookie_for(peer), hidden=self.owner.hidden
                )
            except hs.NotErlang as exc:
                sock.close()
                raise NotBeam(str(exc)) from exc
            except hs.SimultaneousConnect:
                sock.close()
                conn = self._await_accepted(peer, timeout)
                if conn is not None:
                    return conn
                raise NoConnection(f"{peer} won a simultaneous connect but its connection never arrived") from None
            except (HandshakeError, OSError) as exc:
                if "sock" in locals():
                    sock.close()
                raise NoConnection(f"cannot connect to Erlang node {peer}: {exc}") from exc
            finally:
                with self._lock:
                    self._dialling.discard(peer)
            conn = self._register(sock, info)
        threading.Thread(target=conn.run_reader, name=f"beam-{peer}", daemon=True).start()
        log.info("%s connected to Erlang node %s", self.owner.name, peer)
        return conn

    def _await_accepted(self, peer: str, timeout: float) -> BeamConnection | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = self.connected(peer)
            if conn is not None:
                return conn
            time.sleep(0.01)
        return None

    def _register(self, sock: socket.socket, peer: hs.BeamPeer) -> BeamConnection:
        conn = BeamConnection(sock, peer, self.local, self)
        with self._lock:
            old = self._conns.get(peer.name)
            self._conns[peer.name] = conn
        if old is not None and not old.closed:
            old.close()  # it answered "alive" with true: the old connection is stale
        else:
            self.owner.peer_up(peer.name, conn.hidden or self.owner.hidden)
        return conn

    def connection_lost(self, conn: BeamConnection, reason: str) -> None:
        with self._lock:
            current = self._conns.get(conn.name) is conn
            if current:
                del self._conns[conn.name]
            tasks = [t for t in self.tasks.by_id.values() if t.conn is conn]
            waiters = [(ref, w) for ref, w in self._waiters.items() if w.conn is conn]
            for ref, _ in waiters:
                del self._waiters[ref]
            for ref in [r for r, (_, peer) in self._named.items() if peer == conn.name]:
                del self._named[ref]
        for task in tasks:
            if task.call_ref is not None or task.links:  # nobody is left to want the result
                task.ctx.cancel()
            task.monitors.clear()
            task.links.clear()
        for _, waiter in waiters:
            waiter.finish(NoConnection(f"the connection to {conn.name} was lost ({reason})"))
        if current:
            self.owner.peer_down(conn.name, conn.hidden or self.owner.hidden)
        log.info("%s lost its Erlang connection to %s: %s", self.owner.name, conn.name, reason)

    def disconnect(self, peer: str) -> bool:
        conn = self.connected(peer)
        if conn is None:
            return False
        conn.close()
        return True

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            conns = list(self._conns.values())
        self.ticker.stop()
        for conn in conns:
            conn.close()

    # --- references and our pids -----------------------------------------------------------------

    def make_ref(self) -> Ref:
        n = next(self._ref_ids)
        return Ref(self.owner.name, self.owner.creation(), (n & 0x3FFFF, (n >> 18) & 0xFFFFFFFF, self._ref_salt))

    def wait_for(self, ref: Ref, conn: BeamConnection) -> Waiter:
        waiter = Waiter(conn)
        with self._lock:
            self._waiters[ref] = waiter
        return waiter

    def forget(self, ref: Ref) -> Waiter | None:
        with self._lock:
            return self._waiters.pop(ref, None)

    # --- pynode processes' signals to Erlang processes ------------------------------------------

    def send_signal(self, conn: BeamConnection, signal: tuple) -> bool:
        """A pynode process's signal to a process of the BEAM peer ``conn`` (monitor, link, exit,
        DOWN: :mod:`pynode.beam.procs`). False when it cannot be sent (the connection is gone, or
        Erlang has no form of the signal)."""
        try:
            control = procs.to_control(signal, self.owner.name)
        except (TypeError, ValueError) as exc:
            log.warning("%s: %r has no Erlang form: %s", self.owner.name, signal, exc)
            return False
        if type(signal) is signals.Down:
            with self._lock:
                named = self._named.pop(signal.ref, None)
            if named is not None:  # {'DOWN', Ref, process, {Name, Node}, Reason}
                control = (control[0], named[0]) + control[2:]
        if control is None:
            log.info("%s: %s to the Erlang node %s dropped: Erlang has no form of it", self.owner.name, type(signal).__name__, conn.name)
            return False
        try:
            return conn.send(control)
        except EncodeError as exc:  # a pid or ref with no Erlang form: the reason is already mapped
            log.warning("%s: %r to %s not sent: %s", self.owner.name, signal, conn.name, exc)
            return False

    def _to_processes(self, conn: BeamConnection, control: tuple[Any, ...], payload: Any) -> None:
        """A control message about a pynode process (not a task), handed to the process table."""
        signal = procs.from_control(control, payload)
        if signal is not None:
            self.processes.on_signal(conn.name, signal)

    # --- incoming signals ------------------------------------------------------------------------

    def signal(self, conn: BeamConnection, control: tuple[Any, ...], message: Any) -> None:
        op = control[0]
        handler = _DISPATCH.get(op)
        if handler is None:
            log.debug("%s: ignored control message %r from %s", self.owner.name, control, conn.name)
            return
        try:
            handler(self, conn, control, message)
        except (IndexError, TypeError, ValueError, AttributeError) as exc:
            log.warning("%s: malformed control message %r from %s: %s", self.owner.name, control, conn.name, exc)

    def _on_send(self, conn: BeamConnection, c: tuple[Any, ...], message: Any) -> None:
        to = c[2]  # SEND {2, Unused, To}, SEND_SENDER {22, From, To}, the _TT forms alike
        if isinstance(to, Pid):
            if isinstance(message, tuple) and len(message) == 2 and isinstance(message[0], Ref):
                waiter = self.forget(message[0])
                if waiter is not None:  # a gen_call's reply {Tag, Reply}
                    waiter.finish(message[1])
                    return
            self.processes.deliver(to, message)
        else:
            log.debug("message for %r from %s dropped: not a pid of this node", to, conn.name)

    def _on_reg_send(self, conn: BeamConnection, c: tuple[Any, ...], message: Any) -> None:
        sender, name = c[1], str(c[3])
        if name == "net_kernel":
            self._net_kernel(conn, message)
        elif name == "rex":
            self._rex(conn, sender, message)
        else:
            pid = self.processes.whereis(name)
            if pid is None:
                log.debug("message to unregistered name %r from %s dropped", name, conn.name)
            else:
                self.processes.deliver(pid, message)

    def _net_kernel(self, conn: BeamConnection, message: Any) -> None:
        match message:
            case ("$gen_call", (BeamPid() as sender, tag), ("is_auth", _)):
                conn.send((OP_SEND, A(""), sender), (tag, YES))
            case _:
                log.debug("net_kernel request %r from %s ignored", message, conn.name)

    def _rex(self, conn: BeamConnection, sender: Any, message: Any) -> None:
        match message:
            case ("$gen_call", (BeamPid() as to, tag), ("call" | "block_call", m, f, list() as args, _gl)):
                self.tasks.start(conn, to, (str(m), str(f), len(args)), args, rex_reply=(to, tag))
            case ("$gen_cast", ("cast", m, f, list() as args, _gl)):
                self.tasks.start(conn, sender, (str(m), str(f), len(args)), args, cast=True)
            case (BeamPid() as to, "features_request"):
                conn.send((OP_SEND, A(""), to), (A("features_reply"), A(self.owner.name), [A("erpc")]))
            case _:
                log.debug("rex request %r from %s ignored", message, conn.name)

    def _on_spawn_request(self, conn: BeamConnection, c: tuple[Any, ...], args: Any) -> None:
        req_id, origin, _group_leader, (module, function, arity), options = c[1:6]
        if not isinstance(args, list) or len(args) != arity:
            conn.send((OP_SPAWN_REPLY, req_id, origin, 0, A("badarg")))
            return
        monitor = any(o == A("monitor") or (isinstance(o, tuple) and o[:1] == (A("monitor"),)) for o in options)
        link = A("link") in options
        module, function = str(module), str(function)
        if (module, function, arity) == ("erpc", "execute_call", 4):
            res, m, f, a = args
            self.tasks.start(conn, origin, (str(m), str(f), len(a)), a, erpc_res=res, req_id=req_id, monitor=monitor, link=link)
        elif (module, function, arity) == ("erpc", "execute_cast", 3):
            m, f, a = args
            self.tasks.start(conn, origin, (str(m), str(f), len(a)), a, cast=True, req_id=req_id, monitor=monitor, link=link)
        else:
            self.tasks.start(conn, origin, (module, function, arity), args, req_id=req_id, monitor=monitor, link=link)

    def _on_monitor(self, conn: BeamConnection, c: tuple[Any, ...], _: Any) -> None:
        watcher, target, ref = c[1], c[2], c[3]
        if isinstance(target, Atom) and target not in ("net_kernel", "rex"):
            pid = self.processes.whereis(target)
            if pid is not None:  # a registered pynode process: monitored as its pid
                with self._lock:
                    self._named[ref] = (target, conn.name)
                self.processes.on_signal(conn.name, signals.Monitor(watcher, pid, ref))
                return
        if isinstance(target, Pid):
            with self._lock:
                task = self.tasks.get(target)
                if task is not None:
                    task.monitors[ref] = watcher
                    return
            self._to_processes(conn, c, None)  # the table answers noproc for a dead pid
        elif isinstance(target, Atom) and target in ("net_kernel", "rex"):
            return  # these never exit while the node lives
        else:  # a name nobody holds, or not a process of this node: DOWN at once, as BEAM does
            conn.send((OP_MONITOR_P_EXIT, target, watcher, ref, NOPROC))

    def _on_demonitor(self, conn: BeamConnection, c: tuple[Any, ...], _: Any) -> None:
        target, ref = c[2], c[3]
        if isinstance(target, Atom):
            pid = self.processes.whereis(target)
            with self._lock:
                self._named.pop(ref, None)
            if pid is not None:
                self.processes.on_signal(conn.name, signals.Demonitor(c[1], pid, ref))
            return
        if not isinstance(target, Pid):
            return
        with self._lock:
            task = self.tasks.get(target)
        if task is None:
            self._to_processes(conn, c, None)
            return
        with self._lock:
            task.monitors.pop(ref, None)
            cancel = task.call_ref == ref  # erpc gave up on the call (its timeout)
        if cancel:
            log.info("%s: %s gave up on %s; cancelling it", self.owner.name, conn.name, task.ctx.label)
            task.ctx.cancel()

    def _on_link(self, conn: BeamConnection, c: tuple[Any, ...], _: Any) -> None:
        origin, target = c[1], c[2]
        with self._lock:
            task = self.tasks.get(target)
            if task is not None:
                task.links.add(origin)
                return
        if isinstance(target, Pid):  # a pynode process (the table answers noproc for a dead one)
            self._to_processes(conn, c, None)
            return
        conn.send((OP_EXIT, target, origin, NOPROC))

    def _on_unlink(self, conn: BeamConnection, c: tuple[Any, ...], _: Any) -> None:
        unlink_id, origin, target = c[1], c[2], c[3]
        with self._lock:
            task = self.tasks.get(target)
            if task is not None:
                task.links.discard(origin)
        if task is None and isinstance(target, Pid):
            self._to_processes(conn, c, None)
        conn.send((OP_UNLINK_ID_ACK, unlink_id, target, origin))

    def _on_exit(self, conn: BeamConnection, c: tuple[Any, ...], payload: Any) -> None:
        op = c[0]
        origin, target = c[1], c[2]
        if op in (OP_PAYLOAD_EXIT, OP_PAYLOAD_EXIT2, OP_PAYLOAD_EXIT_TT, OP_PAYLOAD_EXIT2_TT):
            reason = payload
        else:
            reason = c[-1]
        linked = op in (OP_EXIT, OP_EXIT_TT, OP_PAYLOAD_EXIT, OP_PAYLOAD_EXIT_TT)
        with self._lock:
            task = self.tasks.get(target)
        if task is None:
            if isinstance(target, Pid):
                self._to_processes(conn, c, payload)
            return
        with self._lock:
            if linked:
                if origin not in task.links:
                    return
                task.links.discard(origin)
        if reason != NORMAL:
            log.info("%s: exit signal %r from %s cancels %s", self.owner.name, reason, conn.name, task.ctx.label)
            task.ctx.cancel()

    def _on_monitor_exit(self, conn: BeamConnection, c: tuple[Any, ...], payload: Any) -> None:
        ref = c[3]
        reason = payload if c[0] == OP_PAYLOAD_MONITOR_P_EXIT else c[4]
        waiter = self.forget(ref)
        if waiter is not None:
            waiter.finish(("DOWN", reason))
        elif isinstance(c[2], Pid):  # a pynode process's monitor of an Erlang process
            self._to_processes(conn, c, payload)

    def _on_spawn_reply(self, conn: BeamConnection, c: tuple[Any, ...], _: Any) -> None:
        req_id, result = c[1], c[4]
        with self._lock:
            waiter = self._waiters.get(req_id)
            if waiter is None:
                return
            if isinstance(result, BeamPid):
                waiter.pid = result
                abandoned = waiter.abandoned
            else:
                del self._waiters[req_id]
        if not isinstance(result, BeamPid):
            waiter.finish(("spawn_error", result))
        elif abandoned:
            self.forget(req_id)
            conn.send((OP_EXIT2, c[2], result, KILLED))


_DISPATCH: dict[int, Callable[[BeamSide, BeamConnection, tuple[Any, ...], Any], None]] = {
    OP_SEND: BeamSide._on_send,
    OP_SEND_TT: BeamSide._on_send,
    OP_SEND_SENDER: BeamSide._on_send,
    OP_SEND_SENDER_TT: BeamSide._on_send,
    OP_REG_SEND: BeamSide._on_reg_send,
    OP_REG_SEND_TT: BeamSide._on_reg_send,
    OP_SPAWN_REQUEST: BeamSide._on_spawn_request,
    OP_SPAWN_REQUEST_TT: BeamSide._on_spawn_request,
    OP_MONITOR_P: BeamSide._on_monitor,
    OP_DEMONITOR_P: BeamSide._on_demonitor,
    OP_LINK: BeamSide._on_link,
    OP_UNLINK_ID: BeamSide._on_unlink,
    OP_EXIT: BeamSide._on_exit,
    OP_EXIT_TT: BeamSide._on_exit,
    OP_EXIT2: BeamSide._on_exit,
    OP_EXIT2_TT: BeamSide._on_exit,
    OP_PAYLOAD_EXIT: BeamSide._on_exit,
    OP_PAYLOAD_EXIT_TT: BeamSide._on_exit,
    OP_PAYLOAD_EXIT2: BeamSide._on_exit,
    OP_PAYLOAD_EXIT2_TT: BeamSide._on_exit,
    OP_MONITOR_P_EXIT: BeamSide._on_monitor_exit,
    OP_PAYLOAD_MONITOR_P_EXIT: BeamSide._on_monitor_exit,
    OP_SPAWN_REPLY: BeamSide._on_spawn_reply,
    OP_SPAWN_REPLY_TT: BeamSide._on_spawn_reply,
    OP_UNLINK_ID_ACK: lambda side, conn, c, m: None,
}
