"""The coordinator of a run over nodes, against an in-process backend (no network, no pynode).

``InProcessBackend`` implements ``ClusterBackend`` by running each share in this process, chain
after chain, reporting the events a real backend would; a test can make a node "die" after some
chains. The real transport is tested with node processes in
``tests/integration/test_cluster_sampling.py``.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import exmc
from exmc.nuts.multinode import (
    ChainPlaced,
    NodeLost,
    ShareChainDone,
    ShareEnded,
    ShareFailed,
    ShareProgress,
    place,
)
from exmc.nuts.progress import Throttle
from exmc.nuts.sampler import load_model, run_chain

from gaussian_models import Gaussian, isotropic

SIZES = dict(num_samples=30, num_warmup=30)


class NodeGone(ConnectionError):
    pass


class InProcessBackend:
    """Shares run at poll time, one per poll; ``die[node] = k`` loses ``node`` after it finished
    ``k`` chains; ``fail[chain] = exc`` makes that chain raise."""

    def __init__(self, workers, die=None, fail=None):
        self.capacity = dict(workers)
        self.die = dict(die or {})
        self.fail = dict(fail or {})
        self.queue = []
        self.cancelled = []
        self.started = []
        self.closed = False

    def resolve(self, nodes):
        return list(self.capacity) if nodes == "all" else list(nodes)

    def workers(self, nodes):
        return {n: self.capacity[n] if self.capacity[n] is not None else NodeGone(f"{n} unreachable")
                for n in nodes}

    def start(self, node, payload, chains, seeds, options, max_workers, stream=False):
        run = (node, tuple(chains), len(self.started))
        self.started.append((node, list(chains), max_workers))
        self.queue.append((run, payload, chains, seeds, options))
        return run

    def poll(self, timeout):
        if not self.queue:
            return []
        run, payload, chains, seeds, options = self.queue.pop(0)
        node = run[0]
        events, model = [], load_model(payload)
        for done, (chain, seed) in enumerate(zip(chains, seeds)):
            if self.die.get(node) == done:
                events.append(ShareFailed(run, NodeGone(f"{node} died"), lost=True))
                return events
            if chain in self.fail:
                events.append(ShareFailed(run, self.fail[chain], lost=False))
                return events
            report = Throttle(lambda e: events.append(ShareProgress(run, e)))
            events.append(ShareChainDone(run, run_chain(model, chain, seed, options, report)))
        events.append(ShareEnded(run, list(chains)))
        return events

    def cancel(self, run):
        self.cancelled.append(run)

    def no_connection(self, message):
        return NodeGone(message)

    def close(self):
        self.closed = True


def sample(backend, chains=6, progress=None, nodes="all", **options):
    return exmc.NUTS.Sampler.sample_chains(isotropic(2), chains, seed=3, nodes=nodes, backend=backend,
                                           progress=progress, **SIZES, **options)


@pytest.fixture(scope="module")
def reference():
    return exmc.NUTS.Sampler.sample_chains(isotropic(2), 6, seed=3, parallel=False, **SIZES)


def assert_same(chains, reference):
    for got, want in zip(chains, reference, strict=True):
        np.testing.assert_array_equal(got["x"], want["x"])


def test_placement_follows_each_nodes_worker_count():
    assert place(range(12), {"a": 2, "b": 2, "c": 2}, {}) == {
        0: "a", 1: "b", 2: "c", 3: "a", 4: "b", 5: "c", 6: "a", 7: "b", 8: "c", 9: "a", 10: "b", 11: "c"}
    uneven = place(range(6), {"big": 4, "small": 2}, {})
    assert list(uneven.values()).count("big") == 4 and list(uneven.values()).count("small") == 2
    # Chains already running count: a busy node gets fewer new ones.
    assert list(place(range(2), {"a": 2, "b": 2}, {"a": 2}).values()) == ["b", "b"]


def test_shares_give_the_one_process_draws_in_chain_order(reference):
    backend = InProcessBackend({"a": 2, "b": 1})
    events = []
    chains = sample(backend, progress=events.append)
    assert_same(chains, reference)
    assert [t.info["chain"] for t in chains] == list(range(6))
    assert [(node, share, workers) for node, share, workers in backend.started] == [
        ("a", [0, 1, 3, 4], 2), ("b", [2, 5], 1)]
    assert {t.info["node"] for t in chains} == {"a", "b"} and backend.closed
    assert [e for e in events if isinstance(e, ChainPlaced)][:3] == [
        ChainPlaced(0, "a"), ChainPlaced(1, "a"), ChainPlaced(2, "b")]


@pytest.mark.parametrize("dense_mass, kind", [("auto", "lowrank"), (True, "dense"), (False, "diag")])
def test_every_share_samples_with_the_runs_metric_option(dense_mass, kind):
    # A target correlated at 0.999: the automatic metric turns low-rank, so a share that dropped
    # the option (or sampled with another default) would give other draws and another metric.
    sd = np.array([30.0, 0.01, 1.0])
    cov = np.array([[1.0, -0.999, 0.1], [-0.999, 1.0, -0.1], [0.1, -0.1, 1.0]]) * np.outer(sd, sd)
    model = Gaussian([5.0, -1.0, 0.5], cov)
    kwargs = dict(num_samples=40, num_warmup=300, seed=12, dense_mass=dense_mass)
    local = exmc.NUTS.Sampler.sample_chains(model, 3, parallel=False, **kwargs)
    over = exmc.NUTS.Sampler.sample_chains(model, 3, nodes="all", backend=InProcessBackend({"a": 2, "b": 1}),
                                           **kwargs)
    assert_same(over, local)
    for got, want in zip(over, local):
        assert got.info["metric"] == want.info["metric"] == kind
        assert got.info["dense_mass"] == dense_mass
        assert got.info.get("metric_windows") == want.info.get("metric_windows")


def test_a_run_over_nodes_keeps_log_likelihood_and_the_irs_groups():
    ir = exmc.Builder.rv(exmc.Builder.new_ir(), "mu", "Normal", {"mu": 0.0, "sigma": 5.0})
    ir = exmc.Builder.rv(ir, "y", "Normal", {"mu": "mu", "sigma": 1.0}, shape=(4,))
    ir = exmc.Builder.obs(ir, "y_obs", "y", np.array([0.5, 1.0, 1.5, 3.0]))
    kwargs = dict(seed=5, log_likelihood=True, **SIZES)
    local = exmc.NUTS.Sampler.sample_chains(ir, 3, parallel=False, **kwargs)
    over = exmc.NUTS.Sampler.sample_chains(ir, 3, nodes="all", backend=InProcessBackend({"a": 2, "b": 1}), **kwargs)
    for got, want in zip(over, local, strict=True):
        assert got.log_likelihood["y"].shape == (SIZES["num_samples"], 4)
        np.testing.assert_array_equal(got.log_likelihood["y"], want.log_likelihood["y"])
    assert over.ir is ir and over.notes == []
    np.testing.assert_array_equal(over.groups["observed_data"]["y"], local.groups["observed_data"]["y"])


def test_a_lost_node_reruns_only_its_unfinished_chains_elsewhere(reference):
    backend = InProcessBackend({"a": 2, "b": 2, "c": 2}, die={"b": 1})  # b finishes chain 1, then dies
    events = []
    chains = sample(backend, progress=events.append)
    assert_same(chains, reference)
    (lost,) = [e for e in events if isinstance(e, NodeLost)]
    assert lost.node == "b" and set(lost.moved) == {4} and lost.moved[4] in {"a", "c"}
    assert chains[1].info["node"] == "b"  # finished before the loss: kept
    assert chains[4].info["node"] == lost.moved[4]
    assert chains.warnings()[0] == lost.describe()
    assert "chain 4 → " in lost.describe() and "same seeds" in lost.describe()


def test_a_node_lost_during_the_shared_warmup_reruns_it_elsewhere_with_the_same_tuning():
    local = exmc.NUTS.Sampler.sample_chains(isotropic(2), 6, seed=3, parallel=False, warmup="shared", **SIZES)
    backend = InProcessBackend({"a": 2, "b": 2, "c": 2}, die={"a": 0})  # a dies in each phase's first chain
    events = []
    chains = sample(backend, progress=events.append, warmup="shared")
    assert_same(chains, local)
    assert all(t.info["step_size"] == local[0].info["step_size"] for t in chains)
    assert chains[0].info["shared_warmup"]["node"] == "b"  # the warmup moved from a
    warm, run = [e for e in events if isinstance(e, NodeLost)]
    assert warm.node == "a" and warm.moved == {-1: "b"} and "the shared warmup → b" in warm.describe()
    assert run.node == "a" and set(run.moved) == {0, 3} and not {t.info["node"] for t in chains} & {"a"}
    warnings = chains.warnings()
    assert warnings[0].startswith("shared warmup: node a was lost") and "the shared warmup → b" in warnings[0]
    assert "chain 0 → " in warnings[1]
    quiet = sample(InProcessBackend({"a": 2, "b": 2, "c": 2}, die={"a": 0}), warmup="shared")  # no progress
    assert quiet.warnings()[0] == warnings[0]


def test_every_node_lost_raises_the_backends_no_connection_with_the_partial_state():
    backend = InProcessBackend({"a": 1, "b": 1}, die={"a": 1, "b": 0})
    with pytest.raises(NodeGone) as caught:
        sample(backend, chains=4)
    message = str(caught.value)
    assert message.startswith("every node of the run was lost (")
    assert "finished: chains [0] on a" in message and "unfinished: chains [1, 2, 3]" in message


def test_a_chain_that_raises_stops_the_run_with_its_exception_and_chain():
    error = ZeroDivisionError("bug in a custom logp")
    error.exmc_chain = 2
    backend = InProcessBackend({"a": 2, "b": 2}, fail={2: error})
    with pytest.raises(ZeroDivisionError) as caught:
        sample(backend, chains=4)
    assert caught.value is error
    assert any("chain 2 failed on node a; the run over nodes was stopped" in n for n in error.__notes__)
    assert backend.cancelled and backend.closed  # the other share was cancelled


def test_unreachable_nodes_at_the_start_are_left_out_and_said():
    backend = InProcessBackend({"a": 2, "down": None})
    chains = sample(backend, chains=2)
    assert {t.info["node"] for t in chains} == {"a"}
    assert "down: NodeGone: down unreachable" in chains.warnings()[0]
    with pytest.raises(NodeGone, match="no node can sample"):
        sample(InProcessBackend({"down": None}), chains=2)


def test_should_stop_cancels_every_share():
    backend = InProcessBackend({"a": 2})
    with pytest.raises(InterruptedError):
        sample(backend, should_stop=lambda: True)
    assert backend.cancelled and backend.closed


def test_exmc_does_not_import_pynode():
    code = ("import sys, exmc, exmc.nuts, exmc.nuts.multinode, exmc.nuts.api, exmc.nuts.jobs, exmc.nuts.stream\n"
            "import exmc.nuts.shared_warmup\n"
            "exmc.NUTS.Sampler.sample_chains\n"
            "assert 'pynode' not in sys.modules, sorted(m for m in sys.modules if 'pynode' in m)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_nodes_need_a_running_node_with_pynode_backend():
    from pynode.errors import NodeNotStarted

    with pytest.raises(NodeNotStarted):
        exmc.NUTS.Sampler.sample_chains(isotropic(1), 2, nodes=["exmc@127.0.5.40"], **SIZES)
