"""Erlang's processes for Python: spawn, monitor, link, exit, registered names, send.

::

    def worker(parent):
        for step in range(3):
            pynode.send(parent, ("progress", step))

    pid, ref = pynode.spawn_monitor("exmc@10.0.0.4", worker, pynode.self_pid())
    pynode.receive(5, match=lambda m: m[0] == "progress")           # ("progress", 0)
    pynode.receive(5, match=lambda m: m[0] == "DOWN" and m[1] == ref)  # (..., pid, "normal")

A process is a thread with a mailbox: one started by :func:`spawn` runs one function; any other
thread that uses :func:`self_pid` (the main thread, a notebook cell) is a process too (see
:mod:`pynode.proctable` for what an exit signal can and cannot do to each). Messages and signals
are Erlang's:

- ``("DOWN", ref, pid, reason)`` for a :func:`monitor`, once, when the process ends; ``reason``
  is ``"normal"`` (its function returned), ``("exception", exc)`` (it raised; ``exc`` rebuilt as
  erpc rebuilds a remote exception), ``"killed"`` (``exit(pid, "kill")``), any reason it was
  stopped with by an exit signal, ``"noproc"`` (it did not exist: sent at once) or
  ``"noconnection"`` (its node is or went down);
- links are two-way: when a linked process ends with a reason other than ``"normal"``, the
  other one is stopped with that reason, unless it traps exits (:func:`trap_exit`), in which
  case it receives ``("EXIT", pid, reason)`` (for ``"normal"`` too); ``"noconnection"`` when the
  linked process's node goes down;
- :func:`exit` sends an exit signal: ``"kill"`` always stops the process (reason ``"killed"``),
  ``"normal"`` is ignored unless the process traps exits, anything else stops it unless it
  traps exits.

Failure modes: bad arguments raise TypeError or ValueError naming the argument before anything
is sent (a function or argument that cannot be pickled: :class:`~pynode.errors.EncodeError`, a
TypeError); a remote :func:`spawn` raises NoConnection when the node cannot be reached, and the
exception of a ``"module:function"`` that does not resolve there. Signals to a node that cannot
be reached are dropped (Erlang's semantics), except that a :func:`monitor` or :func:`link` of a
process there fires ``"noconnection"`` at once. Pids name a node by name only: a pid of an
earlier run of a restarted node reaches the new run's process of the same number, if any.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import cloudpickle

from pynode import beam, erpc, names, outcome, output, signals
from pynode import payload as payloads
from pynode.errors import EncodeError, NoConnection
from pynode.etf import BeamPid
from pynode.mailbox import Pid, self_pid
from pynode.mailbox import send as _send_to_pid
from pynode.registered import check_name
from pynode.runtime import current
from pynode.signals import Ref

__all__ = [
    "Ref", "demonitor", "exit", "link", "monitor", "register", "registered", "self_pid", "send",
    "spawn", "spawn_link", "spawn_monitor", "trap_exit", "unlink", "unregister", "whereis",
]

# Seconds a remote spawn waits for the node to start the process (a round trip; the function
# then runs on its own). Erlang's spawn/4 waits as long as the connection setup.
SPAWN_TIMEOUT = 10.0

log = logging.getLogger(__name__)


def _check_pid(pid: Any, what: str) -> Pid:
    if not isinstance(pid, (Pid, BeamPid)):
        raise TypeError(f"{what}: pid must be a pynode Pid, got {type(pid).__name__} {pid!r} (or a BeamPid: an Erlang process)")
    return pid  # a BeamPid (a process of a BEAM node) takes part as a pid of its node would


def _spawn(node: str, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, link: bool,
           monitor: bool) -> tuple[Pid, Ref | None]:
    here = current()
    if not isinstance(node, str):
        raise TypeError(f"spawn: node must be a node name (str), got {type(node).__name__} {node!r}")
    target = str(names.parse(node))
    if not (callable(fn) or isinstance(fn, str)):
        raise TypeError(f"spawn: fn must be a callable or a 'module:function' string, got {type(fn).__name__} {fn!r}")
    table = here.processes.table
    me = self_pid()
    if target == here.name:
        resolved = outcome.resolve(fn, here.name)
        ref = signals.make_ref(here.name) if monitor else None
        pid = table.spawn(resolved, args, kwargs, link=me if link else None,
                          monitor=(me, ref) if ref is not None else None)
        return pid, ref
    data, buffers = erpc.encode_call(fn, args, kwargs)  # EncodeError names fn; nothing sent
    leader = here.processes.leader_for_call(spawn=True)
    ref = table.watch_spawn(me, target) if monitor else None
    if link:
        table.expect_link(me, target)
    pid: Pid | None = None
    try:
        pid = erpc.call(target, "pynode.process:_spawn_request", bytes(data), tuple(bytes(b) for b in buffers),
                        me if link else None, (me, ref) if ref is not None else None, leader,
                        timeout=SPAWN_TIMEOUT, capture_output=False)
    finally:
        if link:
            table.linked_spawn(me, target, pid)
        if ref is not None:
            if pid is None:
                table.demonitor(me, ref)
            else:
                table.watch_spawned(ref, pid)
    return pid, ref


def _spawn_request(data: bytes, buffers: tuple[bytes, ...], link: Pid | None, monitor: tuple[Pid, Ref] | None,
                   leader: Pid | None) -> Pid:
    """Runs on the spawning node's behalf (an erpc call): start the process, return its pid."""
    node = current()
    fn, args, kwargs = payloads.loads(data, buffers)
    return node.processes.table.spawn(outcome.resolve(fn, node.name), args, kwargs, link=link, monitor=monitor,
                                      leader=leader)


def spawn(node: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Pid:
    """Start ``fn(*args, **kwargs)`` as a new process on ``node`` and return its pid.

    On this node it returns at once (``fn`` is not pickled: the process shares this process's
    memory); on another node after one round trip (``fn`` and the arguments travel pickled, as
    in erpc; the process's output comes home, :mod:`pynode.output`). Raises TypeError for a bad
    ``node`` or ``fn``, BadNodeName, EncodeError, NoConnection, and the resolution error of a
    ``"module:function"``."""
    return _spawn(node, fn, args, kwargs, link=False, monitor=False)[0]


def spawn_link(node: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Pid:
    """:func:`spawn`, linked to the calling process from the start (no exit can be missed)."""
    return _spawn(node, fn, args, kwargs, link=True, monitor=False)[0]


def spawn_monitor(node: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> tuple[Pid, Ref]:
    """:func:`spawn`, monitored by the calling process from the start: ``(pid, ref)``."""
    pid, ref = _spawn(node, fn, args, kwargs, link=False, monitor=True)
    assert ref is not None
    return pid, ref


def group_leader() -> Pid | None:
    """The group leader the calling process's (or call's) output goes to (Erlang's
    ``group_leader/0``; :mod:`pynode.output`): a pid on another node, or None when its output is
    written on this node."""
    return output.current_leader()


def set_group_leader(leader: Pid | None) -> None:
    """Send the calling process's ``sys.stdout``/``sys.stderr`` output to ``leader`` from now on
    (Erlang's ``group_leader(Leader, self())``): a leader that :func:`group_leader` returned in
    a call from another node, or None for this node's own streams. Lasts until the process (or
    the call) ends or the next change; what was written before goes to the old leader. Output
    for a leader whose node cannot be reached is written on this node. Raises TypeError for a
    non-pid; ValueError for a pid of this node (output here is written here)."""
    if leader is not None:
        if not isinstance(leader, Pid):
            raise TypeError(f"set_group_leader: leader must be a pynode Pid or None, got {type(leader).__name__} {leader!r}")
        if leader.node == current().name:
            raise ValueError(f"set_group_leader: {leader!r} is a pid of this node; output here is written here (pass None)")
    output.redirect(leader, current().processes.send_signal)


def monitor(pid: Pid) -> Ref:
    """Monitor ``pid``: the caller receives ``("DOWN", ref, pid, reason)`` once it ends (at once
    with ``"noproc"`` if it does not exist, ``"noconnection"`` if its node cannot be reached).
    Each call is a new monitor. Raises TypeError for a non-pid."""
    return current().processes.table.monitor(self_pid(), _check_pid(pid, "monitor"))


def demonitor(ref: Ref, flush: bool = False) -> bool:
    """End the caller's monitor ``ref``; True if it was active. With ``flush``, a ``DOWN`` of it
    already in the mailbox is removed too. Raises TypeError for a non-ref."""
    if not isinstance(ref, Ref):
        raise TypeError(f"demonitor: ref must be a monitor reference (pynode.Ref), got {type(ref).__name__} {ref!r}")
    return current().processes.table.demonitor(self_pid(), ref, flush)


def link(pid: Pid) -> None:
    """Link the calling process with ``pid`` (see the module docstring); a link to a process
    that does not exist sends the caller the exit signal ``"noproc"``, to one whose node cannot
    be reached ``"noconnection"``. Raises TypeError for a non-pid."""
    current().processes.table.link(self_pid(), _check_pid(pid, "link"))


def unlink(pid: Pid) -> None:
    """Remove the link between the calling process and ``pid`` (no error if there is none)."""
    current().processes.table.unlink(self_pid(), _check_pid(pid, "unlink"))


def trap_exit(flag: bool = True) -> bool:
    """With ``flag``, exit signals reach the calling process as ``("EXIT", pid, reason)``
    messages instead of stopping it (except ``exit(pid, "kill")``). Returns the old setting."""
    if not isinstance(flag, bool):
        raise TypeError(f"trap_exit: flag must be a bool, got {type(flag).__name__} {flag!r}")
    return current().processes.table.trap_exit(self_pid(), flag)


def exit(pid: Pid, reason: Any) -> None:  # noqa: A001 - Erlang's name
    """Send the exit signal ``reason`` to ``pid`` (Erlang's ``exit/2``; rules in the module
    docstring). Raises TypeError for a non-pid, EncodeError for a reason that cannot be pickled
    (to a remote pid)."""
    pid = _check_pid(pid, "exit")
    here = current()
    if pid.node != here.name:
        signals.encode_reason(reason)  # EncodeError names the reason
    here.processes.table.exit(self_pid(), pid, reason)


# --- registered names -------------------------------------------------------------------------


def register(name: str, pid: Pid | None = None) -> None:
    """Register ``pid`` (default: the calling process) as ``name`` on this node. Raises TypeError
    for a non-string name or a non-pid, ValueError for an empty name, a name already taken (the
    message names the holder), a process that already has a name, or a pid that is not a live
    process of this node."""
    check_name(name, "register")
    node = current()
    if pid is not None and not isinstance(pid, Pid):
        raise TypeError(f"register: pid must be a pynode Pid, got {type(pid).__name__} {pid!r}")
    node.processes.names.register(name, self_pid() if pid is None else pid)


def unregister(name: str) -> None:
    """Remove the registered name. Raises ValueError when it is not registered."""
    current().processes.names.unregister(name)


def whereis(name: str) -> Pid | None:
    """The pid registered as ``name`` on this node, or None."""
    return current().processes.names.whereis(name)


def registered() -> list[str]:
    """The names registered on this node, sorted."""
    return current().processes.names.registered()


def send(dest: Pid | str | tuple[str, str], message: Any) -> None:
    """Send ``message`` to ``dest`` and return at once: a pid (any node), a name registered on
    this node, or ``(name, node)``, a name on any node (fire-and-forget: no error when the name
    is not registered there or the node cannot be reached, as Erlang's ``{Name, Node} ! Msg``).

    Raises TypeError for any other ``dest`` (naming it), ValueError for a malformed name or a
    local name nobody holds (Erlang's badarg), BadNodeName, EncodeError for a message that
    cannot be pickled (when it must travel)."""
    if isinstance(dest, Pid):
        _send_to_pid(dest, message)
        return
    if isinstance(dest, BeamPid):  # a process of a BEAM node: the message goes as a term
        beam.send(dest, message)
        return
    node = current()
    if isinstance(dest, str):
        check_name(dest, "send")
        pid = node.processes.names.whereis(dest)
        if pid is None:
            raise ValueError(f"send: no process is registered as {dest!r} on {node.name}")
        _send_to_pid(pid, message)
        return
    if type(dest) is tuple and len(dest) == 2:
        name, where = dest
        check_name(name, "send")
        if not isinstance(where, str):
            raise TypeError(f"send: the node of {dest!r} must be a node name (str), got {type(where).__name__}")
        where = str(names.parse(where))
        if where == node.name:
            pid = node.processes.names.whereis(name)
            if pid is not None:
                _send_to_pid(pid, message)
            return
        try:
            if node.beam_peer(where) is not None:  # a name registered on a BEAM node: sent as a term
                beam.send((name, where), message)
                return
        except NoConnection as exc:  # fire-and-forget, as Erlang's {Name, Node} ! Msg
            log.info("message to %r dropped: %s", dest, exc)
            return
        try:
            data = _in_band(message)
        except Exception as exc:
            raise EncodeError(f"message to {dest!r} cannot be pickled: {type(exc).__name__}: {exc}") from exc
        node.processes.send_signal(where, signals.NamedSend(name, data))
        return
    raise TypeError(f"send: dest must be a Pid, a registered name (str) or a (name, node) tuple, "
                    f"got {type(dest).__name__} {dest!r}")


def _in_band(message: Any) -> bytes:
    """``message`` pickled into one bytes (a NamedSend carries no attachments): as erpc pickles
    it, or, when that puts large buffers out of band, by cloudpickle with them in band."""
    data, buffers = payloads.dumps(message)
    if not buffers:
        return bytes(data)
    return cloudpickle.dumps(message, protocol=payloads.PICKLE_PROTOCOL)
