"""Failover when a node is declared down by ticks: a compute node frozen with SIGSTOP mid-run
keeps its sockets open, so only the missing ticks tell (ticktime 2 s here, on every node and on
this coordinating client). Its unfinished chains are rerun elsewhere with the same seeds."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import exmc
from exmc.models.io_bound import io_bound_normal
from exmc.nuts.multinode import ChainPlaced, NodeLost
from exmc.nuts.progress import ProgressEvent
from pynode import Node
from pynode.testing import LocalCluster

NODES = ["exmc@127.0.5.35", "exmc@127.0.5.36", "exmc@127.0.5.37"]
CLIENT = "ticks_coordinator@127.0.5.34"
TICKTIME = 2.0  # declared down 2-2.5 s after the last byte (pynode.ticks)
SEED = 5
CHAINS = 6
# Chains of ~1 s (the gradient sleeps 0.5 ms): long enough that the freeze lands mid-chain.
SIZES = dict(num_samples=200, num_warmup=200)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(NODES, preload=["exmc"], ticktime=TICKTIME) as cluster:
        Node.start(CLIENT, cookie=cluster.cookie, hidden=True, ticktime=TICKTIME)
        try:
            yield cluster
        finally:
            Node.stop()


def test_a_node_frozen_mid_run_is_declared_down_by_ticks_and_its_chains_rerun(cluster):
    model = io_bound_normal(0.0005)
    undisturbed = exmc.NUTS.Sampler.sample_chains(model, CHAINS, seed=SEED, nodes=NODES, **SIZES)
    victim = NODES[1]
    placed: dict[int, str] = {}
    events: list = []
    frozen_at: list[float] = []

    def progress(event):
        events.append(event)
        if isinstance(event, ChainPlaced):
            placed[event.chain] = event.node
        elif (isinstance(event, ProgressEvent) and placed.get(event.chain) == victim and event.iteration >= 5
              and not frozen_at):
            frozen_at.append(time.monotonic())
            os.kill(cluster.pid(victim), signal.SIGSTOP)

    try:
        chains = exmc.NUTS.Sampler.sample_chains(model, CHAINS, seed=SEED, nodes=NODES, progress=progress,
                                                 **SIZES)
        assert frozen_at, "the victim never ran a chain"
        for got, want in zip(chains, undisturbed):
            np.testing.assert_array_equal(got["x"], want["x"])
            np.testing.assert_array_equal(got.stats["n_steps"], want.stats["n_steps"])
        (lost,) = [e for e in events if isinstance(e, NodeLost)]
        assert lost.node == victim and lost.moved and set(lost.moved.values()) <= {NODES[0], NODES[2]}
        assert "tick" in lost.reason  # declared down by ticks, not by a closed socket
        assert not any(t.info["node"] == victim for t in chains)
        assert all(chains[c].info["node"] == node for c, node in lost.moved.items())
        warning = chains.warnings()[0]
        assert f"node {victim} was lost" in warning and "tick" in warning
        assert all(f"chain {c} → " in warning for c in lost.moved)
        # The victim's process is still there (frozen, sockets open): only the ticks could tell.
        assert cluster.alive(victim)
    finally:
        os.kill(cluster.pid(victim), signal.SIGCONT)
        cluster.kill(victim)
