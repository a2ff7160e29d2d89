"""The process-wide slot holding the local node (set by ``Node.start``, cleared by ``Node.stop``).

Kept apart from :mod:`pynode.node` so that modules the node is built from (mailboxes, erpc) can
find the running node without importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pynode.errors import NodeNotStarted

if TYPE_CHECKING:
    from pynode.node import LocalNode

_local: LocalNode | None = None


def current() -> LocalNode:
    """The running local node. Raises NodeNotStarted when this process is not a node."""
    node = _local
    if node is None:
        raise NodeNotStarted("this process is not a node: call pynode.Node.start('name@host') first")
    return node


def running() -> LocalNode | None:
    return _local


def install(node: LocalNode | None) -> None:
    global _local
    _local = node
