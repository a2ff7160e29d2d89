"""pynode as an Erlang node: the distribution protocol on pynode's own listening port.

A running pynode node (``Node.start``; ``beam=False`` / ``pynode start --no-beam`` refuses) is
also a node that ``erl``, ``iex`` and Livebook can connect to: ``net_adm:ping``, ``:erpc.call``,
``:erpc.cast``, ``:erpc.multicall``, ``:rpc.call``, ``Node.spawn`` and ``send`` to registered names
work against it, and ``pynode.erpc.call(beam_node, "lists:reverse", [1, 2, 3])`` works the other
way. Terms map as :mod:`pynode.etf` says; docs/erlang.md is the user's guide.

Modules: :mod:`~pynode.beam.handshake` (version 6), :mod:`~pynode.beam.connection` (packets,
ticks), :mod:`~pynode.beam.dist` (the signals), :mod:`~pynode.beam.calls` (Python -> BEAM),
:mod:`~pynode.beam.tasks` (Python functions run for peers), :mod:`~pynode.beam.exports` (MFA -> Python function), :mod:`~pynode.beam.local` (the seam to
pynode's processes), :mod:`~pynode.beam.procs` (pynode processes <-> Erlang processes: monitors,
links, exit signals).
"""

from __future__ import annotations

from typing import Any

from pynode import runtime
from pynode.beam.exports import export, unexport
from pynode.errors import NoConnection
from pynode.etf import Atom, BeamPid
from pynode.mailbox import Pid


def register(name: str, pid: Pid | None = None) -> None:
    """An alias of :func:`pynode.register`: Erlang's ``send({name, :"py@host"}, msg)`` and
    ``monitor(process, {name, :"py@host"})`` look in the node's one name table."""
    from pynode import process

    process.register(name, pid)


def unregister(name: str) -> None:
    """An alias of :func:`pynode.unregister`."""
    from pynode import process

    process.unregister(name)


def send(dest: BeamPid | tuple[str, str], message: Any) -> None:
    """Send ``message`` to a BEAM pid or to ``(registered_name, beam_node)``; returns at once.
    Raises EncodeError when the message has no Erlang form (nothing sent), NoConnection when the
    node is not a reachable BEAM node, TypeError for another destination."""
    from pynode.beam import calls

    node = runtime.current()
    if isinstance(dest, BeamPid):
        peer, target = dest.node, dest
    elif isinstance(dest, tuple) and len(dest) == 2:
        target, peer = str(dest[0]), str(dest[1])
    else:
        raise TypeError(f"send needs a BeamPid or a (name, node) pair, got {dest!r}")
    conn = node.beam_peer(peer)
    if (conn is None or node.beam is None) and isinstance(dest, BeamPid):
        # a pid of a pynode node that came back through a BEAM node: it is a pynode Pid
        from pynode.mailbox import send as send_to_pid

        send_to_pid(Pid(dest.node, dest.id | dest.serial << 32), message)
        return
    if conn is None or node.beam is None:
        raise NoConnection(f"{peer} is not a reachable BEAM node")
    calls.send(node.beam, conn, target, message)


__all__ = ["Atom", "BeamPid", "export", "register", "send", "unexport", "unregister"]
