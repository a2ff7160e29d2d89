"""A process on a node that hangs (SIGSTOP: its sockets stay open) is reported down by ticks:
its monitor fires ("DOWN", ref, pid, "noconnection") and a trapping linked process receives
("EXIT", pid, "noconnection"), within about ticktime (p10-core's ticks, the node's nodedown
path)."""

from __future__ import annotations

import os
import signal
import sys
import time

import cloudpickle

import pynode
from pynode import Node
from pynode.testing import LocalCluster, this_node

cloudpickle.register_pickle_by_value(sys.modules[__name__])

FROZEN = "tick_f@127.0.2.26"
ME = "tick_test@127.0.2.25"
TICKTIME = 2.0
WAIT = 10.0


def wait_forever():
    pynode.receive()


def linker(parent, target):
    pynode.trap_exit(True)
    pynode.link(target)
    pynode.send(parent, "linked")
    pynode.send(parent, ("got", pynode.receive(WAIT * 2)))


def test_a_hung_nodes_processes_are_reported_noconnection_by_ticks() -> None:
    with LocalCluster([FROZEN], ticktime=TICKTIME) as cluster:
        with this_node(ME, cookie=cluster.cookie, ticktime=TICKTIME):
            remote = pynode.spawn(FROZEN, wait_forever)
            ref = pynode.monitor(remote)
            pynode.spawn(Node.self(), linker, pynode.self_pid(), remote)
            assert pynode.receive(WAIT) == "linked"
            os.kill(cluster.pid(FROZEN), signal.SIGSTOP)
            try:
                stopped = time.monotonic()
                assert pynode.receive(WAIT, match=lambda m: m[0] == "DOWN") == ("DOWN", ref, remote, "noconnection")
                assert time.monotonic() - stopped < TICKTIME * 2 + 1  # ticktime to 1.25 x ticktime, loaded box
                assert pynode.receive(WAIT) == ("got", ("EXIT", remote, "noconnection"))
            finally:
                os.kill(cluster.pid(FROZEN), signal.SIGCONT)
