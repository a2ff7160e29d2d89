"""Signals between processes on different nodes: what a ``SIGNAL`` frame carries.

A ``SIGNAL`` frame (:mod:`pynode.protocol`) holds one pickled NamedTuple of this module; the
receiving node decodes it in the thread that read it and acts at once (no user code runs, nothing
blocks: a mailbox put, a table update, an asynchronous exception). Signals from one node to
another are handled in the order they were sent, and in order with the ``DELIVER`` messages on
the same connection, as Erlang orders all signals between two processes.

===============  ==============================================  =================================
signal           fields                                          sent when
===============  ==============================================  =================================
``Link``         ``sender, target``                              ``pynode.link(target)``
``Unlink``       ``sender, target``                              ``pynode.unlink(target)``
``Exit``         ``sender, target, reason, linked``              a linked process ended
                                                                 (``linked``), ``pynode.exit``
``Monitor``      ``watcher, target, ref``                        ``pynode.monitor(target)``
``Demonitor``    ``watcher, target, ref``                        ``pynode.demonitor(ref)``
``Down``         ``watcher, target, ref, reason``                a monitored process ended
``NamedSend``    ``name, message``                               ``pynode.send((name, node), m)``
``Output``       ``leader, stream, text``                        a captured process wrote lines
===============  ==============================================  =================================

Pids are :class:`~pynode.mailbox.Pid`, refs :class:`Ref`. ``reason`` is encoded by
:func:`encode_reason`: any picklable value, except that ``("exception", exc)`` travels as
``("exception", PackedException)`` and is rebuilt by :func:`decode_reason` as erpc rebuilds a
remote exception (the exception itself with a note naming its node, else
:class:`~pynode.errors.RemoteError`). ``NamedSend.message`` is the pickled message (bytes),
unpickled by the receiving process like any delivered message, not by the connection.
``Output.stream`` is 1 (stdout) or 2 (stderr); ``text`` is whole lines, except at a flush.
"""

from __future__ import annotations

import itertools
import pickle
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

from pynode import outcome, transport
from pynode import payload as payloads
from pynode.errors import EncodeError, RemoteError
from pynode.mailbox import Pid

NORMAL = "normal"
KILL = "kill"  # pynode.exit(pid, "kill"): untrappable, the process ends with reason KILLED
KILLED = "killed"
NOPROC = "noproc"
NOCONNECTION = "noconnection"
SHUTDOWN = "shutdown"  # the reason of a spawned process stopped because its node stops

STDOUT = 1
STDERR = 2


@payloads.by_reference
@dataclass(frozen=True, slots=True)
class Ref:
    """A monitor's reference (Erlang's ``make_ref()``): unique on its node for the node's life."""

    node: str
    id: int

    def __repr__(self) -> str:
        return f"<ref {self.id} @ {self.node}>"

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return Ref, (self.node, self.id)  # as Pid: cheaper than the dataclass's generic path


_ref_ids = itertools.count(1)
_ref_lock = threading.Lock()


def make_ref(node: str) -> Ref:
    with _ref_lock:
        return Ref(node, next(_ref_ids))


@payloads.by_reference
class PackedException(NamedTuple):
    """An exit reason's exception as erpc sends a remote exception (outcome.encode_error)."""

    data: bytes


@payloads.by_reference
class Link(NamedTuple):
    sender: Pid
    target: Pid


@payloads.by_reference
class Unlink(NamedTuple):
    sender: Pid
    target: Pid


@payloads.by_reference
class Exit(NamedTuple):
    sender: Pid
    target: Pid
    reason: Any
    linked: bool


@payloads.by_reference
class Monitor(NamedTuple):
    watcher: Pid
    target: Pid
    ref: Ref


@payloads.by_reference
class Demonitor(NamedTuple):
    watcher: Pid
    target: Pid
    ref: Ref


@payloads.by_reference
class Down(NamedTuple):
    watcher: Pid
    target: Pid
    ref: Ref
    reason: Any


@payloads.by_reference
class NamedSend(NamedTuple):
    name: str
    message: bytes


@payloads.by_reference
class Output(NamedTuple):
    leader: Pid
    stream: int
    text: str


SIGNALS = (Link, Unlink, Exit, Monitor, Demonitor, Down, NamedSend, Output)
_PLAIN = frozenset({Output, NamedSend, Link, Unlink, Monitor, Demonitor})  # no user values inside


def is_exception_reason(reason: Any) -> bool:
    return type(reason) is tuple and len(reason) == 2 and reason[0] == "exception" and isinstance(reason[1], BaseException)


def encode_reason(reason: Any) -> Any:
    """``reason`` ready to pickle into a signal. Raises EncodeError naming the reason when it
    cannot be pickled (an exception that does not pickle travels as its type, message and
    traceback)."""
    if is_exception_reason(reason):
        data, _ = outcome.encode_error(reason[1])
        return ("exception", PackedException(bytes(data)))
    try:
        payloads.dumps(reason)
    except Exception as exc:
        raise EncodeError(f"exit reason {reason!r} cannot be pickled: {type(exc).__name__}: {exc}") from exc
    return reason


def decode_reason(reason: Any, node: str) -> Any:
    """The reason as the receiving process sees it (``node``: where the exception was raised)."""
    if type(reason) is tuple and len(reason) == 2 and reason[0] == "exception" and isinstance(reason[1], PackedException):
        try:
            outcome.unpack(node, outcome.ERROR, reason[1].data, ())
        except RemoteError as exc:
            return ("exception", exc)
        except BaseException as exc:  # the rebuilt exception, with its note
            return ("exception", exc)
    return reason


def encode(signal: tuple) -> payloads.Payload:
    """Pickle a signal for a SIGNAL frame. Raises EncodeError."""
    try:
        return payloads.dumps(signal)
    except Exception as exc:
        raise EncodeError(f"{type(signal).__name__} signal cannot be pickled: {type(exc).__name__}: {exc}") from exc


def decode(data: transport.Data, buffers: transport.Buffers) -> tuple:
    """The signal in a SIGNAL frame. Raises ValueError for anything but a signal of this module
    (the connection is then dropped as a protocol violation)."""
    signal = payloads.loads(data, buffers)
    if type(signal) not in SIGNALS:
        raise ValueError(f"a SIGNAL frame carried a {type(signal).__name__}, not a pynode signal")
    return signal
