"""Python calling BEAM nodes: ``erpc`` over SPAWN_REQUEST, ``gen_server`` calls, sends, ping.

A call is what Erlang's own ``erpc:call`` does: SPAWN_REQUEST of
``erpc:execute_call(Res, M, F, Args)`` with a monitor, so the result arrives as the monitor's
DOWN reason ``{Res, return, Value}`` (or ``{Res, error | exit | throw, ...}``). Only
``"module:function"`` strings can be called on a BEAM node: a Python callable has no Erlang form
and raises ``TypeError`` before anything is sent; arguments and results follow the mapping of
:mod:`pynode.etf` (an argument without an Erlang form raises EncodeError, nothing sent).

Failure classes (as :mod:`pynode.erpc`):

- :class:`~pynode.errors.ErlangError` (``kind``, ``reason``, ``stacktrace``): the function raised
  (``error``/``exit``/``throw``), or the spawn itself failed (``error``, ``{erpc, Reason}``,
  e.g. ``{erpc, notsup}``), or the process died of a signal (``exit``, ``{signal, Reason}``);
- :class:`~pynode.errors.ErpcTimeout`: no result in time; the call is abandoned (its monitor
  removed) and its process killed, so it *may or may not have run*, partly or completely;
- :class:`~pynode.errors.NoConnection`: the node cannot be reached or the connection was lost
  while the call was in flight (the call may or may not have run).
"""

from __future__ import annotations

from typing import Any

from pynode.beam.connection import OP_DEMONITOR_P, OP_EXIT2, OP_REG_SEND, OP_SEND, OP_SPAWN_REQUEST, BeamConnection
from pynode.beam.dist import BeamSide, Waiter
from pynode.beam.tasks import KILLED
from pynode.errors import ErlangError, NoConnection
from pynode.etf import Atom, BeamPid

A = Atom


def split_mf(fn: Any) -> tuple[Atom, Atom]:
    """``"module:function"`` as two atoms. Raises TypeError for anything else (a Python callable
    cannot run on a BEAM node)."""
    if not isinstance(fn, str):
        raise TypeError(
            f"a BEAM node can only call 'module:function' strings; {fn!r} is a Python callable that has no Erlang form"
        )
    module, sep, function = fn.partition(":")
    if not sep or not module or not function:
        raise TypeError(f"function {fn!r} must be a 'module:function' string")
    return A(module), A(function)


class BeamRequest:
    """An erpc call in flight on a BEAM node (the interface of :class:`pynode.erpc.Request`)."""

    __slots__ = ("node", "req_id", "_side", "_conn", "_waiter", "_res", "_sender")

    def __init__(self, side: BeamSide, conn: BeamConnection, fn: str, args: list[Any]) -> None:
        module, function = split_mf(fn)
        self.node = conn.name
        self._side = side
        self._conn = conn
        self._sender = side.processes.self_pid()
        self.req_id = side.make_ref()
        self._res = side.make_ref()
        self._waiter: Waiter = side.wait_for(self.req_id, conn)
        control = (OP_SPAWN_REQUEST, self.req_id, self._sender, self._sender, (A("erpc"), A("execute_call"), 4), [A("monitor")])
        try:
            sent = conn.send(control, [self._res, module, function, list(args)])
        except BaseException:
            side.forget(self.req_id)
            raise
        if not sent:
            side.forget(self.req_id)
            raise NoConnection(f"the connection to {self.node} is closed")

    def __repr__(self) -> str:
        return f"<erpc request to Erlang node {self.node} ({'done' if self._waiter.done.is_set() else 'pending'})>"

    def _wait(self, timeout: float | None) -> bool:
        return self._waiter.done.wait(timeout)

    def _value(self) -> Any:
        outcome = self._waiter.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        kind, reason = outcome
        if kind == "spawn_error":
            raise ErlangError(self.node, "error", (A("erpc"), reason))
        match reason:
            case (res, "return", value) if res == self._res:
                return value
            case (res, "error", error, stack) if res == self._res:
                raise ErlangError(self.node, "error", error, stack)
            case (res, "error", error) if res == self._res:  # {erpc, badarg} and alike
                raise ErlangError(self.node, "error", error)
            case (res, ("throw" | "exit") as how, value) if res == self._res:
                raise ErlangError(self.node, str(how), value)
            case "noconnection":
                raise NoConnection(f"the connection to {self.node} was lost during the call")
        raise ErlangError(self.node, "exit", (A("signal"), reason))

    def _abandon(self) -> None:
        """Remove the monitor and kill the process (or have it killed once its pid arrives)."""
        side, waiter = self._side, self._waiter
        with side._lock:
            pid = waiter.pid
            waiter.abandoned = pid is None
            if pid is not None:
                side._waiters.pop(self.req_id, None)
        if pid is not None:
            self._conn.send((OP_DEMONITOR_P, self._sender, pid, self.req_id))
            self._conn.send((OP_EXIT2, self._sender, pid, KILLED))


def cast(side: BeamSide, conn: BeamConnection, fn: str, args: list[Any]) -> None:
    """``erpc:cast``: SPAWN_REQUEST of ``erpc:execute_cast(M, F, A)``, no reply asked for."""
    module, function = split_mf(fn)
    sender = side.processes.self_pid()
    control = (OP_SPAWN_REQUEST, side.make_ref(), sender, sender, (A("erpc"), A("execute_cast"), 3), [])
    conn.send(control, [module, function, list(args)])


def gen_call(side: BeamSide, conn: BeamConnection, name: str, request: Any, timeout: float) -> Any:
    """``gen_server:call({name, node}, request)``: the reply term, or TimeoutError."""
    sender = side.processes.self_pid()
    tag = side.make_ref()
    waiter = side.wait_for(tag, conn)
    conn.send((OP_REG_SEND, sender, A(""), A(name)), (A("$gen_call"), (sender, tag), request))
    if not waiter.done.wait(timeout):
        side.forget(tag)
        raise TimeoutError(f"{name} on {conn.name} did not answer within {timeout} s")
    if isinstance(waiter.outcome, BaseException):
        raise waiter.outcome
    return waiter.outcome


def ping(side: BeamSide, conn: BeamConnection, timeout: float) -> bool:
    """``net_adm:ping``: net_kernel's ``is_auth`` answered ``yes``."""
    try:
        return gen_call(side, conn, "net_kernel", (A("is_auth"), A(side.owner.name)), timeout) == "yes"
    except (TimeoutError, NoConnection):
        return False


def send(side: BeamSide, conn: BeamConnection, dest: BeamPid | str, message: Any) -> None:
    """``dest ! message`` for a pid of the peer or a name registered there."""
    if isinstance(dest, BeamPid):
        conn.send((OP_SEND, A(""), dest), message)
    else:
        conn.send((OP_REG_SEND, side.processes.self_pid(), A(""), A(dest)), message)

