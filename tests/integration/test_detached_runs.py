"""Detached runs on real exmc nodes: started by one process, fetched by another after it exited."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import exmc
from exmc.models.io_bound import io_bound_normal
from livebook_client import attach
from pynode import Node
from pynode.testing import LocalCluster

NODES = ["exmc@127.0.5.5", "exmc@127.0.5.6"]
CLIENT = "jobs_client@127.0.5.15"
DELAY = 0.0005
SIZES = dict(num_samples=100, num_warmup=100)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(NODES, preload=["exmc"]) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def session(cluster):
    Node.start(CLIENT, cookie=cluster.cookie, hidden=True)
    try:
        yield attach(NODES[0])
    finally:
        Node.stop()


class Recorder:
    def __init__(self):
        self.updates, self.completed = [], None

    def update(self, progress):
        self.updates.append(progress)

    def close(self, *, completed):
        self.completed = completed


def test_a_job_outlives_the_process_that_started_it_and_is_fetched_by_another(cluster, session):
    starter = textwrap.dedent(f"""
        import livebook_client
        from exmc.models.io_bound import io_bound_normal
        session = livebook_client.attach({NODES[0]!r}, cookie={cluster.cookie!r})
        job = session.start(io_bound_normal({DELAY}), chains=4, seed=8, name="radon-v2",
                            num_samples={SIZES['num_samples']}, num_warmup={SIZES['num_warmup']})
        print(job.name, job.status)
    """)
    started = subprocess.run([sys.executable, "-c", starter], capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == ["radon-v2", "running"]  # the starter exited while it ran
    listed = session.jobs()
    assert "radon-v2" in listed.names() and "radon-v2" in repr(listed) and "<table" in listed._repr_html_()
    recorder = Recorder()
    chains = session.job("radon-v2").result(timeout=120, progress=recorder)
    reference = exmc.NUTS.Sampler.sample_chains(io_bound_normal(DELAY), 4, seed=8, parallel=False, **SIZES)
    for got, want in zip(chains, reference, strict=True):
        np.testing.assert_array_equal(got["x"], want["x"])
    assert recorder.completed is True
    assert [j["status"] for j in session.jobs() if j["name"] == "radon-v2"] == ["fetched"]
    with pytest.raises(ValueError, match="'radon-v2' is taken"):
        session.start(io_bound_normal(DELAY), chains=1, name="radon-v2")
    with pytest.raises(KeyError, match="no job named 'radon-v3'"):
        session.job("radon-v3")


def test_cancel_stops_the_job_and_keeps_the_chains_that_finished(session):
    job = session.start(io_bound_normal(DELAY), chains=3, seed=3, name="to-cancel", **SIZES)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p["chain"] == 2 for p in job.state()["progress"]):
        time.sleep(0.05)  # chains 0 and 1 run first on the node's 2 workers; then chain 2
    assert job.cancel()["status"] == "cancelled"
    partial = job.result(progress=False)
    assert [t.info["chain"] for t in partial] == [0, 1]
    assert any("partial: job 'to-cancel' was cancelled" in w for w in partial.warnings())


def test_a_detached_job_can_spread_its_chains_over_nodes(session):
    job = session.start(io_bound_normal(DELAY), chains=4, seed=5, name="spread", nodes=NODES,
                        num_samples=40, num_warmup=40)
    chains = job.result(timeout=120, progress=False)
    assert {t.info["node"] for t in chains} == set(NODES)
    assert [t.info["chain"] for t in chains] == [0, 1, 2, 3]
