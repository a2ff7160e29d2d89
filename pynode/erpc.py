"""Erlang's ``erpc`` for Python: call functions on other nodes.

``fn`` is any picklable callable (closures and lambdas travel by value, numpy arrays they capture
included) or a ``"module:function"`` string resolved on the remote node. Keyword arguments go to
``fn``, except ``timeout`` and ``capture_output`` which belong to the call. Timeouts are seconds;
``None`` waits forever (Erlang's ``infinity``, the default).

Output comes home (:mod:`pynode.output`): what the remote function writes to ``sys.stdout`` and
``sys.stderr`` is written on the caller's node, to the caller's streams, line by line, in order,
and all of it before the call returns. ``capture_output=False`` leaves it on the remote node.

Failure classes of every call (compare ``lib/kernel/src/erpc.erl``):

- the function raised on the remote node: the same exception is raised here, with a note naming
  the node and carrying the remote traceback; :class:`~pynode.errors.RemoteError` when the
  exception cannot be rebuilt here;
- :class:`~pynode.errors.ErpcTimeout` (a ``TimeoutError``): no result within ``timeout``; the remote
  node is told to cancel the call (see :mod:`pynode.execution`: the call sees
  ``pynode.cancelled()``, may receive an asynchronous ``CallCancelled``, and *may or may not have
  run*, partly or completely);
- :class:`~pynode.errors.NoConnection` (a ``ConnectionError``): the node is not registered,
  unreachable, refused our cookie, or the connection dropped while the call was in flight (pending
  calls fail at once, not at their timeout); the call may or may not have run;
- :class:`~pynode.errors.EncodeError` (a ``TypeError``): ``fn`` or an argument cannot be pickled;
  nothing was sent. A result that cannot be pickled on the remote node, or is larger than this
  node's ``max_message_size``, raises it too; its subclass
  :class:`~pynode.errors.MessageTooLarge`: the call is larger than the remote node's
  ``max_message_size`` (learned in the handshake), nothing was sent (in a multicall, for that
  node only);
- :class:`~pynode.errors.BadNodeName`, :class:`~pynode.errors.NodeNotStarted`: caller mistakes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pynode import outcome
from pynode import payload as payloads
from pynode.connection import Connection
from pynode.errors import EncodeError, ErpcTimeout, MessageTooLarge, NoConnection
from pynode.pending import Pending
from pynode.runtime import current

log = logging.getLogger(__name__)

Fn = Callable[..., Any] | str
"""A function to run remotely: any picklable callable, or ``"module:function"``."""


class Request:
    """A call in flight, from :func:`send_request`. Its response can be read any number of times."""

    __slots__ = ("node", "req_id", "_conn", "_pending")

    def __init__(self, node: str, req_id: int, conn: Connection, pending: Pending) -> None:
        self.node = node
        self.req_id = req_id
        self._conn = conn
        self._pending = pending

    def __repr__(self) -> str:
        state = "done" if self._pending.done else "pending"
        return f"<erpc request {self.req_id} to {self.node} ({state})>"

    def _wait(self, timeout: float | None) -> bool:
        return self._conn.await_result(self._pending, timeout)

    def _value(self) -> Any:
        p = self._pending
        if p.error is not None:
            raise p.error
        return outcome.unpack(self.node, p.status, p.data, p.buffers)

    def _abandon(self) -> None:
        self._conn.cancel(self.req_id)


def encode_call(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any], capture_output: bool = False,
                local: Any = None) -> payloads.Payload:
    """Pickle a call (:mod:`pynode.outcome`'s payload; with ``capture_output``, it carries the
    calling thread's group leader, so its output comes home). Raises EncodeError naming the
    function when something is not picklable. ``local``: this node, when the caller has it."""
    if not (callable(fn) or isinstance(fn, str)):
        raise TypeError(f"erpc needs a callable or a 'module:function' string, got {fn!r}")
    call: tuple[Any, ...]
    if capture_output:
        call = (fn, args, kwargs, (local or current()).processes.leader_for_call().id)
    else:
        call = (fn, args, kwargs)
    try:
        return payloads.dumps(call)
    except Exception as exc:
        raise EncodeError(
            f"cannot send {outcome.describe_fn(fn)}: it or an argument cannot be pickled: {type(exc).__name__}: {exc}"
        ) from exc


def send_request(node: str, fn: Fn, *args: Any, capture_output: bool = True, **kwargs: Any) -> Request:
    """Start ``fn(*args, **kwargs)`` on ``node`` and return at once (Erlang's ``erpc:send_request``).

    Raises BadNodeName, EncodeError, or NoConnection when ``node`` cannot be connected.
    """
    local = current()
    conn = local.open_connection(node)  # the common case: a pynode peer already connected
    if conn is None:
        beam = _beam_request(node, fn, args, kwargs)
        if beam is not None:
            return beam  # type: ignore[no-any-return]
    data, buffers = encode_call(fn, args, kwargs, capture_output, local)  # before dialling: EncodeError sends nothing
    if conn is None:
        conn = local.connection_to(node)
    seq, pending = conn.call(data, buffers)
    return Request(conn.name, seq, conn, pending)


def _beam_request(node: str, fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A call to a BEAM node (:mod:`pynode.beam.calls`: ``"module:function"`` only, terms as
    :mod:`pynode.etf` maps them, failures as ErlangError), or None when ``node`` is a pynode node.
    Raises TypeError for a Python callable or keyword arguments, before anything is sent."""
    local = current()
    conn = local.beam_peer(node)
    if conn is None or local.beam is None:
        return None
    from pynode.beam.calls import BeamRequest

    if kwargs:
        raise TypeError(f"Erlang functions take no keyword arguments (got {sorted(kwargs)} for {fn!r} on {node})")
    return BeamRequest(local.beam, conn, fn, list(args))  # type: ignore[arg-type]


def _send(node: str, payload: payloads.Payload) -> Request:
    conn = current().connection_to(node)
    seq, pending = conn.call(payload[0], payload[1])
    return Request(conn.name, seq, conn, pending)


def receive_response(request: Request, timeout: float | None = None) -> Any:
    """The result of ``request``, waiting up to ``timeout`` seconds.

    On timeout the request is abandoned (the remote call is cancelled) and ErpcTimeout raised.
    Otherwise the failure classes of :func:`call`.
    """
    if not request._wait(timeout):
        request._abandon()
        raise ErpcTimeout(f"no response from {request.node} within {timeout} s (request {request.req_id} cancelled)")
    return request._value()


def wait_response(request: Request, timeout: float = 0) -> tuple[Literal["response"], Any] | None:
    """``("response", value)`` if ``request`` completes within ``timeout`` seconds, else None
    (the request stays alive: call again, or :func:`receive_response`). A failed call raises."""
    if not request._wait(timeout):
        return None
    return "response", request._value()


def check_response(request: Request) -> tuple[Literal["response"], Any] | None:
    """:func:`wait_response` without waiting."""
    return wait_response(request, 0)


def call(node: str, fn: Fn, *args: Any, timeout: float | None = None, capture_output: bool = True,
         **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` on ``node`` and return its result (Erlang's ``erpc:call``).

    Connects implicitly. Its output comes home unless ``capture_output=False``. Raises as
    described in the module docstring.
    """
    return receive_response(send_request(node, fn, *args, capture_output=capture_output, **kwargs), timeout)


def cast(node: str, fn: Fn, *args: Any, capture_output: bool = True, **kwargs: Any) -> None:
    """Run ``fn(*args, **kwargs)`` on ``node``, ignoring its result; returns at once once sent.
    Its output comes home unless ``capture_output=False``.

    Raises BadNodeName or EncodeError (caller mistakes); an unreachable node or a failing function
    is only logged, as Erlang's ``erpc:cast`` promises nothing.
    """
    local = current()
    conn = local.beam_peer(node)
    if conn is not None and local.beam is not None:
        from pynode.beam import calls

        if kwargs:
            raise TypeError(f"Erlang functions take no keyword arguments (got {sorted(kwargs)})")
        calls.cast(local.beam, conn, fn, list(args))  # type: ignore[arg-type]
        return
    data, buffers = encode_call(fn, args, kwargs, capture_output)
    try:
        local.connection_to(node).cast(data, buffers)
    except NoConnection as exc:
        log.info("erpc.cast to %s dropped: %s", node, exc)


def multicall(
    nodes: Iterable[str], fn: Fn, *args: Any, timeout: float | None = None, capture_output: bool = True,
    **kwargs: Any
) -> list[tuple[Literal["ok"], Any] | tuple[Literal["error"], BaseException]]:
    """Run ``fn`` on every node concurrently; results in node order, ``("ok", value)`` or
    ``("error", exception)`` (any failure class of :func:`call`, per node). ``timeout`` bounds the
    whole multicall; output comes home unless ``capture_output=False``. Raises EncodeError
    (nothing sent to a pynode node) or BadNodeName."""
    payload: payloads.Payload | None = None
    deadline = None if timeout is None else time.monotonic() + timeout
    started: list[Request | BaseException] = []
    for node in nodes:
        try:
            beam = _beam_request(node, fn, args, kwargs)
            if beam is not None:
                started.append(beam)
                continue
            if payload is None:
                payload = encode_call(fn, args, kwargs, capture_output)
            started.append(_send(node, payload))
        except (NoConnection, MessageTooLarge) as exc:  # this node only: the others still get it
            started.append(exc)
    results: list[Any] = []
    for item in started:
        if isinstance(item, BaseException):
            results.append(("error", item))
            continue
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            results.append(("ok", receive_response(item, left)))
        except Exception as exc:
            results.append(("error", exc))
    return results
