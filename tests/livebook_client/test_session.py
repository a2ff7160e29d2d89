"""Session helpers that need no network: node naming, loopback detection, shipped closures."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import cloudpickle
import pytest

from livebook_client import session
from pynode.errors import BadNodeName


def test_default_name_listens_on_the_targets_loopback_address():
    assert session.default_node_name("exmc@127.0.0.14") == f"livebook_{os.getpid()}@127.0.0.14"
    assert session.default_node_name("exmc@localhost") == f"livebook_{os.getpid()}@localhost"


def test_default_name_off_loopback_uses_this_machines_name():
    assert session.default_node_name("exmc@10.0.0.4") == f"livebook_{os.getpid()}@{socket.getfqdn()}"


def test_default_name_refuses_a_malformed_target():
    with pytest.raises(BadNodeName):
        session.default_node_name("no-at-sign")


def test_loopback_detection():
    assert session.is_loopback("exmc@127.0.0.14")
    assert not session.is_loopback("exmc@10.0.0.4")


def test_versions_are_compatible_on_major_and_minor():
    assert session._compatible("0.1.0", "0.1.7")
    assert not session._compatible("0.1.0", "0.2.0")


def test_shipped_sampler_runs_without_livebook_client_on_the_node():
    """The compute node has pynode and exmc; the closure must unpickle and run without
    livebook_client (here: one short chain in-process, no caller to report progress to)."""
    from livebook_client.demo import seed_model

    options = {"num_samples": 20, "num_warmup": 20, "parallel": False, "should_stop": lambda: False}
    payload = cloudpickle.dumps((session._remote_sampler_fn(None, "token"), seed_model(), options))
    code = ("import sys, pickle; sys.modules['livebook_client'] = None; "
            "sampler, ir, options = pickle.loads(sys.stdin.buffer.read()); "
            "print(sampler(ir, 1, options)[0]['mu'].shape)")
    result = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "(20,)"


def test_a_failed_attach_to_a_host_without_port_mapper_starts_no_daemon():
    from livebook_client import AttachError
    from pynode import Node, portmapper

    host = "127.0.5.31"  # nothing runs here on this test session's port-mapper port
    assert not portmapper.is_running(host)
    with pytest.raises(AttachError, match=r"no port mapper answers on 127\.0\.5\.31"):
        session.attach(f"exmc@{host}")
    assert not portmapper.is_running(host), "a port-mapper daemon was left running by a failed lookup"
    assert not Node.alive()


def test_attach_to_an_unregistered_name_says_so_and_starts_nothing(local_cluster):
    from livebook_client import AttachError
    from pynode import Node

    cluster = local_cluster(["other@127.0.5.32"])
    with pytest.raises(AttachError, match=r"has no node named 'exmc'"):
        session.attach("exmc@127.0.5.32", cookie=cluster.cookie)
    assert not Node.alive()


def test_a_typo_in_the_model_fails_on_the_caller_before_anything_is_sent():
    import exmc
    from exmc import Builder, Dist

    ir = Builder.new_ir()
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 10.0})
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigam"})
    # A session to a node that does not exist: sending anything would raise NoConnection.
    nowhere = session.Session("nobody@127.0.5.33", {"exmc": exmc.__version__})
    with pytest.raises(exmc.ValidationError, match="refers to unknown node 'sigam'"):
        nowhere.sample(ir, chains=2, progress=False)
