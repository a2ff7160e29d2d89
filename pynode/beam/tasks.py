"""Python functions running for BEAM peers as Erlang processes would: *tasks*.

A SPAWN_REQUEST (or a ``rex`` call) becomes a task: a thread of its own with a mailbox (its pid),
the monitors and links Erlang asked for, and a :class:`~pynode.execution.CallContext` so that
the peer giving up (erpc's timeout demonitors; an exit signal; a lost connection) cancels it as
pynode's own timeout cancels a call. When the function ends, every monitor gets
MONITOR_P_EXIT and every link EXIT with the exit reason:

==========================  ===============================  =====================================
how the task was started    the function returned ``v``      it raised ``exc`` (``undef``: unknown)
==========================  ===============================  =====================================
``erpc:execute_call``       ``{Res, return, v}``             ``{Res, error, Reason, [{M, F, A, []}]}``
any other MFA (``spawn``)   ``normal``                       ``{Reason, Stack}``
``rex`` ``call``            reply ``v``                      reply ``{badrpc, {'EXIT', {Reason, Stack}}}``
==========================  ===============================  =====================================

At most ``max_calls`` tasks of one peer run at once (:data:`pynode.limits.DEFAULT_BEAM_MAX_CALLS`,
``Node.start(beam_max_calls=...)``, ``$PYNODE_BEAM_MAX_CALLS``): one more is refused before any
thread starts, with Erlang's ``system_limit``: SPAWN_REPLY ``system_limit`` (``erpc:call`` raises
``{erpc, system_limit}``, ``spawn/4`` ``system_limit``), a ``rex`` call's reply
``{badrpc, system_limit}``, a cast dropped (logged).

``Reason`` is ``{python, 'Class', <<"message">>, <<"traceback">>}``
(:func:`pynode.beam.exports.exception_reason`) or ``undef``. A cancelled task exits ``killed``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pynode.beam import exports
from pynode.beam.connection import OP_EXIT, OP_MONITOR_P_EXIT, OP_SEND, OP_SPAWN_REPLY, BeamConnection
from pynode import limits
from pynode.errors import EncodeError
from pynode.etf import Atom, BeamPid, Fun, Ref
from pynode.execution import CallContext, execute
from pynode.mailbox import Pid

log = logging.getLogger(__name__)

A = Atom
NORMAL = A("normal")
KILLED = A("killed")
SYSTEM_LIMIT = A("system_limit")
SPAWN_LINKED = 1  # SPAWN_REPLY flags
SPAWN_MONITORED = 2


class Processes(Protocol):
    """The node's processes and registered names, as the BEAM side needs them
    (:class:`pynode.beam.local.LocalProcesses`)."""

    def self_pid(self) -> Pid:
        """The calling thread's pid (its mailbox is created on first use)."""

    def deliver(self, pid: Pid, message: Any) -> None:
        """Put a message into a local process's mailbox (dropped when it has none)."""

    def whereis(self, name: str) -> Pid | None:
        """The local process registered as ``name``, if any."""

    def alive(self, pid: Pid) -> bool:
        """True while the local process ``pid`` exists."""

    def on_signal(self, peer: str, signal: tuple) -> None:
        """A signal (:mod:`pynode.signals`) from a process of the BEAM peer ``peer`` to a local
        process, or the DOWN of a local process's monitor of one (:mod:`pynode.beam.procs`)."""


@dataclass(eq=False)
class Task:
    """A Python function running for a BEAM peer, as an Erlang process would.

    ``pid`` is set by the task's thread before SPAWN_REPLY goes out; ``monitors`` (ref -> the
    monitoring pid) and ``links`` change under the BEAM side's lock; ``call_ref`` is the erpc
    request id whose demonitor cancels the task (None for a plain spawn)."""

    conn: BeamConnection
    origin: BeamPid
    mfa: tuple[str, str, int]
    ctx: CallContext
    pid: Pid | None = None
    call_ref: Ref | None = None
    monitors: dict[Ref, BeamPid] = field(default_factory=dict)
    links: set[BeamPid] = field(default_factory=set)


class TaskTable:
    """The running tasks of one node by their pid's id, guarded by ``lock`` (shared with the BEAM
    side, whose signal handlers change the tasks' monitors and links under it). ``running``
    counts each connection's tasks (0 < count <= ``max_calls``; a connection with none has no
    entry), under the same lock; ``refused`` counts the tasks refused for the cap."""

    # Seconds between two log lines about calls refused for the cap.
    LOG_EVERY = 5.0

    def __init__(self, node: str, processes: Processes, lock: threading.RLock,
                 max_calls: int = limits.DEFAULT_BEAM_MAX_CALLS) -> None:
        self.node = node
        self.processes = processes
        self._lock = lock
        self.max_calls = max_calls
        self.by_id: dict[int, Task] = {}
        self.running: dict[BeamConnection, int] = {}
        self.refused = 0
        self._last_log = 0.0

    def get(self, pid: Any) -> Task | None:
        """The task whose pid is ``pid`` (call with the lock held), None for anything else."""
        return self.by_id.get(pid.id) if isinstance(pid, Pid) else None

    def start(
        self,
        conn: BeamConnection,
        origin: BeamPid,
        mfa: tuple[str, str, int],
        args: list[Any],
        *,
        erpc_res: Any = None,
        req_id: Ref | None = None,
        monitor: bool = False,
        link: bool = False,
        cast: bool = False,
        rex_reply: tuple[BeamPid, Any] | None = None,
    ) -> None:
        with self._lock:
            count = self.running.get(conn, 0)
            if count < self.max_calls:
                self.running[conn] = count + 1
            else:
                self.refused += 1
        if count >= self.max_calls:
            self._refuse(conn, origin, mfa, req_id, rex_reply)
            return
        task = Task(conn, origin, mfa, CallContext(f"{mfa[0]}:{mfa[1]}/{mfa[2]} for {conn.name}"))
        if erpc_res is not None:
            task.call_ref = req_id
        if monitor and req_id is not None:
            task.monitors[req_id] = origin
        if link:
            task.links.add(origin)
        flags = (SPAWN_MONITORED if monitor else 0) | (SPAWN_LINKED if link else 0)
        try:
            threading.Thread(
                target=self._run,
                args=(task, args, req_id, flags, erpc_res, cast, rex_reply),
                name=f"beam-task-{mfa[0]}:{mfa[1]}",
                daemon=True,
            ).start()
        except RuntimeError:  # no thread could be started: as refused
            self._done(conn)
            self._refuse(conn, origin, mfa, req_id, rex_reply)

    def _done(self, conn: BeamConnection) -> None:
        with self._lock:
            count = self.running.pop(conn, 1) - 1
            if count > 0:
                self.running[conn] = count

    def _refuse(self, conn: BeamConnection, origin: BeamPid, mfa: tuple[str, str, int], req_id: Ref | None,
                rex_reply: tuple[BeamPid, Any] | None) -> None:
        now = time.monotonic()
        if now - self._last_log >= self.LOG_EVERY:
            self._last_log = now
            log.warning("%s: %s already runs %d calls here (beam_max_calls): refused %s:%s/%d with system_limit "
                        "(%d refused so far)", self.node, conn.name, self.max_calls, *mfa, self.refused)
        if req_id is not None:
            conn.send((OP_SPAWN_REPLY, req_id, origin, 0, SYSTEM_LIMIT))
        elif rex_reply is not None:
            to, tag = rex_reply
            conn.send((OP_SEND, A(""), to), (tag, (A("badrpc"), SYSTEM_LIMIT)))

    def _run(self, task: Task, args: list[Any], req_id: Ref | None, flags: int, erpc_res: Any, cast: bool, rex_reply: Any) -> None:
        try:
            self._run_task(task, args, req_id, flags, erpc_res, cast, rex_reply)
        finally:
            self._done(task.conn)

    def _run_task(self, task: Task, args: list[Any], req_id: Ref | None, flags: int, erpc_res: Any, cast: bool, rex_reply: Any) -> None:
        task.pid = self.processes.self_pid()
        with self._lock:
            self.by_id[task.pid.id] = task
        if req_id is not None:
            task.conn.send((OP_SPAWN_REPLY, req_id, task.origin, flags, task.pid))
        module, function, arity = task.mfa
        stack = [(A(module), A(function), arity, [])]
        result: list[Any] = []

        def run() -> Callable[[], None]:
            if (module, function) == ("erlang", "apply") and args and isinstance(args[0], Fun):
                message = "an Erlang fun cannot run on a Python node; call Module:Function(Args) instead"
                result.append(("error", TypeError(message)))  # :erpc.call(node, fun) or Node.spawn(node, fun)
                return lambda: None
            try:
                fn = exports.resolve(module, function, arity)
            except exports.Undefined as exc:
                log.info("%s: %s", self.node, exc)
                result.append(("undef", None))
                return lambda: None
            try:
                result.append(("ok", fn(*args)))
            except Exception as exc:
                tb = exc.__traceback__
                result.append(("error", exc.with_traceback(tb.tb_next if tb is not None else None)))  # not this frame
            return lambda: None

        finished = execute(task.ctx, run)
        if finished is None:  # cancelled: whoever is still linked hears "killed"
            reason: Any = KILLED
            reply = None
        else:
            kind, value = result[0]
            reason, reply = self._exit_reason(kind, value, erpc_res, stack, module, function, args)
        with self._lock:
            self.by_id.pop(task.pid.id, None)
            monitors, links = dict(task.monitors), set(task.links)
        if rex_reply is not None and finished is not None:
            to, tag = rex_reply
            self._send_checked(task.conn, (OP_SEND, A(""), to), (tag, reply), fallback=lambda exc: (tag, _badrpc(exc)))
        if cast and finished is not None and result[0][0] != "ok":
            log.warning("%s: cast of %s:%s from %s failed: %r", self.node, module, function, task.conn.name, result[0][1])
        for ref, watcher in monitors.items():
            self._send_exit(task.conn, (OP_MONITOR_P_EXIT, task.pid, watcher, ref), reason, erpc_res, stack)
        for linked in links:
            self._send_exit(task.conn, (OP_EXIT, task.pid, linked), reason, erpc_res, stack)

    def _exit_reason(self, kind: str, value: Any, erpc_res: Any, stack: list[Any], module: str, function: str, args: list[Any]) -> tuple[Any, Any]:
        """(exit reason, rex reply) of a finished task."""
        if kind == "ok":
            reply = value
            reason = (erpc_res, A("return"), value) if erpc_res is not None else NORMAL
            return reason, reply
        if kind == "undef":
            error: Any = A("undef")
            trace = [(A(module), A(function), args, [])]
        else:
            error = exports.exception_reason(value)
            trace = stack
        if erpc_res is not None:
            reason = (erpc_res, A("error"), error, trace)
        else:
            reason = (error, trace)
        return reason, (A("badrpc"), (A("EXIT"), (error, trace)))

    def _send_exit(self, conn: BeamConnection, control: tuple[Any, ...], reason: Any, erpc_res: Any, stack: list[Any]) -> None:
        """MONITOR_P_EXIT / EXIT with ``reason`` in the control message (the peer accepts the
        non-PAYLOAD forms whatever was negotiated); a reason without an Erlang form (an
        unencodable result) becomes the error of an EncodeError."""

        def fallback(exc: EncodeError) -> Any:
            error = exports.exception_reason(exc)
            return (erpc_res, A("error"), error, stack) if erpc_res is not None else (error, stack)

        try:
            conn.send(control + (reason,))
        except EncodeError as exc:
            conn.send(control + (fallback(exc),))

    def _send_checked(self, conn: BeamConnection, control: tuple[Any, ...], message: Any, fallback: Callable[[EncodeError], Any]) -> None:
        try:
            conn.send(control, message)
        except EncodeError as exc:
            conn.send(control, fallback(exc))


def _badrpc(exc: EncodeError) -> Any:
    return (A("badrpc"), (A("EXIT"), exports.exception_reason(exc)))
