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
    # Chains 0 and 1 had finished; chain 2 is kept too if it had reached sampling (then all are
    # cut to its length).
    assert [t.info["chain"] for t in partial][:2] == [0, 1]
    assert len({t.num_samples for t in partial}) == 1
    assert any("partial: job 'to-cancel' was cancelled" in w for w in partial.warnings())


def test_a_detached_job_can_spread_its_chains_over_nodes(session):
    job = session.start(io_bound_normal(DELAY), chains=4, seed=5, name="spread", nodes=NODES,
                        num_samples=40, num_warmup=40)
    chains = job.result(timeout=120, progress=False)
    assert {t.info["node"] for t in chains} == set(NODES)
    assert [t.info["chain"] for t in chains] == [0, 1, 2, 3]


def test_stream_yields_draws_while_sampling_and_result_gives_the_chains(session):
    stream = session.sample(io_bound_normal(DELAY), chains=2, seed=4, stream=True, num_samples=500, num_warmup=20)
    seen = {0: [], 1: []}
    status_at_first = None
    for batch in stream:
        assert batch.start == sum(len(block) for block in seen[batch.chain])
        seen[batch.chain].append(batch.draws["x"])
        if status_at_first is None:
            status_at_first = stream.job.status
    chains = stream.result()
    for chain in (0, 1):
        np.testing.assert_array_equal(np.concatenate(seen[chain]), chains[chain]["x"])
    assert status_at_first == "running"  # draws came while the chains ran


def test_leaving_a_stream_early_cancels_the_sampling(session):
    stream = session.sample(io_bound_normal(DELAY), chains=2, seed=4, stream=True, num_samples=2000, num_warmup=20)
    for batch in stream:
        break
    stream_job = stream.job
    assert stream_job.status == "cancelled"
    partial = stream.result()
    assert 0 < partial[0].num_samples < 2000 and partial[0].info["partial"]


def test_chains_over_nodes_stream_their_draws(session):
    from exmc.nuts.stream import DrawLog

    log = DrawLog()
    chains = exmc.NUTS.Sampler.sample_chains(io_bound_normal(DELAY), 4, seed=2, nodes=NODES, draws=log.add,
                                             num_samples=50, num_warmup=20)
    for trace in chains:
        streamed, stats = log.arrays(trace.info["chain"])
        np.testing.assert_array_equal(streamed["x"], trace["x"])
        np.testing.assert_array_equal(stats["n_steps"], trace.stats["n_steps"])


def test_sample_with_a_live_trace_follows_the_run_and_returns_its_chains(session):
    chains = session.sample(io_bound_normal(DELAY), chains=2, seed=4, live_trace="x", progress=False,
                            num_samples=100, num_warmup=20)
    assert len(chains) == 2 and chains[0]["x"].shape == (100, 2)
    assert all(j["status"] == "fetched" for j in session.jobs() if j["name"].startswith("job-"))
    with pytest.raises(KeyError, match="live trace: variable 'nope'"):
        session.sample(io_bound_normal(DELAY), chains=1, live_trace="nope", progress=False,
                       num_samples=400, num_warmup=20)


def test_status_lists_a_running_detached_job(session):
    job = session.start(io_bound_normal(DELAY), chains=2, seed=1, name="watched", num_samples=5000, num_warmup=20)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not job.state()["progress"]:
            time.sleep(0.05)
        row = session.status()[NODES[0]]
        assert [run["label"] for run in row.runs].count("job watched") == 1 and row.busy >= 1
    finally:
        job.forget()
    assert "watched" not in session.jobs().names()


def test_a_job_is_a_registered_process_on_its_node_that_a_remote_exit_signal_cancels(session):
    import pynode
    from pynode import erpc

    job = session.start(io_bound_normal(DELAY), chains=1, seed=2, name="by-signal", num_samples=5000, num_warmup=20)
    assert "exmc.job:by-signal" in erpc.call(NODES[0], "pynode:registered", timeout=10)
    pid = erpc.call(NODES[0], "pynode:whereis", "exmc.job:by-signal", timeout=10)
    assert pid.node == NODES[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p["phase"] == "sampling" and p["iteration"] > 100
                                                  for p in job.state()["progress"]):
        time.sleep(0.05)
    ref = pynode.monitor(pid)  # a monitor across nodes sees the job's process end
    pynode.exit(pid, "cancel")  # an exit signal from this process, over the wire
    down = pynode.receive(30, match=lambda m: m[0] == "DOWN" and m[1] == ref)
    assert down[3] == "normal"  # it traps exits: the signal asked it to stop; it handed its draws over and ended
    partial = job.result(progress=False)
    assert job.status == "fetched" and 0 < partial[0].num_samples < 5000 and partial[0].info["partial"]
    assert "exmc.job:by-signal" not in erpc.call(NODES[0], "pynode:registered", timeout=10)
