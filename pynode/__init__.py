"""pynode: an Erlang-style node runtime over rpyc.

::

    from pynode import Node, erpc
    Node.start("livebook@127.0.0.13", cookie="s3cret")
    erpc.call("exmc@127.0.0.14", lambda x: x + 1, 41, timeout=60)   # 42
"""

from pynode import erpc, global_names
from pynode.etf import Atom
from pynode.execution import cancelled
from pynode.mailbox import Pid, receive, self_pid
from pynode.node import Node
from pynode.tls import TLS

# Last: ``pynode.link`` is the process-link function, not the module of that name.
from pynode.process import (  # noqa: E402
    Ref, demonitor, exit, group_leader, link, monitor, register, registered, send, set_group_leader, spawn,
    spawn_link, spawn_monitor, trap_exit, unlink, unregister, whereis,
)

__all__ = [
    "TLS", "Atom", "Node", "Pid", "Ref", "cancelled", "demonitor", "erpc", "exit", "global_names", "group_leader",
    "link", "monitor", "receive", "register", "registered", "self_pid", "send", "set_group_leader", "spawn", "spawn_link", "spawn_monitor",
    "trap_exit", "unlink", "unregister", "whereis",
]
