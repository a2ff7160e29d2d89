"""pynode: an Erlang-style node runtime over rpyc.

::

    from pynode import Node, erpc
    Node.start("livebook@127.0.0.13", cookie="s3cret")
    erpc.call("exmc@127.0.0.14", lambda x: x + 1, 41, timeout=60)   # 42
"""

from pynode import erpc
from pynode.etf import Atom
from pynode.execution import cancelled
from pynode.mailbox import Pid, receive, self_pid, send
from pynode.node import Node

__all__ = ["Atom", "Node", "Pid", "cancelled", "erpc", "receive", "self_pid", "send"]
