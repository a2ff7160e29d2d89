"""pynode processes and Erlang processes signalling each other: monitors, links, exit signals.

A pynode process (:func:`pynode.spawn`, or any thread with a pid) and an Erlang process on a
BEAM peer monitor and link each other with Erlang's semantics (:mod:`pynode.proctable`). The
process table sends its signals through the node's route; for a BEAM peer they go out as the
control messages below (:func:`to_control`), and the control messages a BEAM peer sends about a
pynode process (not a task of :mod:`pynode.beam.tasks`) come back in as signals
(:func:`from_control`), which the table handles as if another pynode node had sent them.

======================================  ======================================================
pynode signal (:mod:`pynode.signals`)    Erlang control message
======================================  ======================================================
``Monitor(watcher, target, ref)``        MONITOR_P ``{19, Watcher, Target, Ref}``
``Demonitor(watcher, target, ref)``      DEMONITOR_P ``{20, Watcher, Target, Ref}``
``Down(watcher, target, ref, reason)``   MONITOR_P_EXIT ``{21, Target, Watcher, Ref, Reason}``
``Link(sender, target)``                 LINK ``{1, Sender, Target}``
``Unlink(sender, target)``               UNLINK_ID ``{35, Id, Sender, Target}`` (the ack is ignored)
``Exit(sender, target, reason, True)``   EXIT ``{3, Sender, Target, Reason}``
``Exit(sender, target, reason, False)``  EXIT2 ``{8, Sender, Target, Reason}``
======================================  ======================================================

``ref`` is a :class:`pynode.Ref` for the monitors pynode processes hold (it crosses as an Erlang
reference and comes back as itself, :mod:`pynode.etf`) and the Erlang peer's own reference for
the monitors Erlang processes hold.

Exit reasons (:func:`reason_to_term`, :func:`reason_from_term`):

=======================================  ==================================================
Python                                   Erlang
=======================================  ==================================================
``"normal"``, ``"killed"``, any ``str``  the atom (``normal``, ``killed``, ``noproc``, ...)
``("exception", exc)``                   ``{python, 'Class', <<"message">>, <<"traceback">>}``
any other value with an Erlang form      that term (:mod:`pynode.etf`)
a value without one                      ``{python, 'EncodeError', <<"...">>, <<"">>}``
=======================================  ==================================================

Coming back, the atoms ``normal``, ``kill``, ``killed``, ``noproc``, ``noconnection`` and
``shutdown`` become the plain strings pynode uses (an :class:`~pynode.etf.Atom` is a ``str``
anyway); any other reason stays the Erlang term it is (``{badarith, Stack}`` is a tuple).
"""

from __future__ import annotations

import itertools
from typing import Any

from pynode import etf, signals
from pynode.beam.connection import (
    OP_DEMONITOR_P, OP_EXIT, OP_EXIT2, OP_EXIT2_TT, OP_EXIT_TT, OP_LINK, OP_MONITOR_P, OP_MONITOR_P_EXIT,
    OP_PAYLOAD_EXIT, OP_PAYLOAD_EXIT2, OP_PAYLOAD_EXIT2_TT, OP_PAYLOAD_EXIT_TT, OP_PAYLOAD_MONITOR_P_EXIT,
    OP_UNLINK_ID,
)
from pynode.beam.exports import exception_reason
from pynode.errors import EncodeError
from pynode.etf import Atom

_PLAIN = frozenset({"normal", "kill", "killed", "noproc", "noconnection", "shutdown"})
_unlink_ids = itertools.count(1)
MAX_ATOM = 255


def reason_to_term(reason: Any, node: str) -> Any:
    """A pynode exit reason as an Erlang term (``node``: where an exception reason came from,
    for a packed one, see :func:`pynode.signals.decode_reason`)."""
    reason = signals.decode_reason(reason, node)
    if signals.is_exception_reason(reason):
        return exception_reason(reason[1])
    if type(reason) is str:
        return Atom(reason) if len(reason.encode()) <= MAX_ATOM else reason
    try:
        etf.encode(reason)
    except EncodeError as exc:
        return exception_reason(exc)
    return reason


def reason_from_term(term: Any) -> Any:
    """An Erlang exit reason as pynode reports it."""
    if isinstance(term, Atom) and term in _PLAIN:
        return str(term)
    return term


def to_control(signal: tuple, node: str) -> tuple[Any, ...] | None:
    """The Erlang control message of a pynode signal (None for one Erlang has no form of:
    output and named sends travel otherwise)."""
    kind = type(signal)
    if kind is signals.Monitor:
        return (OP_MONITOR_P, signal.watcher, signal.target, signal.ref)
    if kind is signals.Demonitor:
        return (OP_DEMONITOR_P, signal.watcher, signal.target, signal.ref)
    if kind is signals.Down:
        return (OP_MONITOR_P_EXIT, signal.target, signal.watcher, signal.ref, reason_to_term(signal.reason, node))
    if kind is signals.Link:
        return (OP_LINK, signal.sender, signal.target)
    if kind is signals.Unlink:
        return (OP_UNLINK_ID, next(_unlink_ids), signal.sender, signal.target)
    if kind is signals.Exit:
        op = OP_EXIT if signal.linked else OP_EXIT2
        return (op, signal.sender, signal.target, reason_to_term(signal.reason, node))
    return None


_EXIT_LINKED = {OP_EXIT: True, OP_EXIT_TT: True, OP_PAYLOAD_EXIT: True, OP_PAYLOAD_EXIT_TT: True,
                OP_EXIT2: False, OP_EXIT2_TT: False, OP_PAYLOAD_EXIT2: False, OP_PAYLOAD_EXIT2_TT: False}
_PAYLOAD = frozenset({OP_PAYLOAD_EXIT, OP_PAYLOAD_EXIT_TT, OP_PAYLOAD_EXIT2, OP_PAYLOAD_EXIT2_TT, OP_PAYLOAD_MONITOR_P_EXIT})


def from_control(control: tuple[Any, ...], payload: Any) -> tuple | None:
    """The pynode signal of an Erlang control message about a pynode process (None for others)."""
    op = control[0]
    if op in _EXIT_LINKED:
        reason = payload if op in _PAYLOAD else control[-1]
        return signals.Exit(control[1], control[2], reason_from_term(reason), _EXIT_LINKED[op])
    if op == OP_MONITOR_P:
        return signals.Monitor(control[1], control[2], control[3])
    if op == OP_DEMONITOR_P:
        return signals.Demonitor(control[1], control[2], control[3])
    if op in (OP_MONITOR_P_EXIT, OP_PAYLOAD_MONITOR_P_EXIT):
        reason = payload if op in _PAYLOAD else control[4]
        return signals.Down(control[2], control[1], control[3], reason_from_term(reason))
    if op == OP_LINK:
        return signals.Link(control[1], control[2])
    if op == OP_UNLINK_ID:
        return signals.Unlink(control[2], control[3])
    return None
