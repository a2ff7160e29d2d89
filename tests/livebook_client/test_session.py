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
