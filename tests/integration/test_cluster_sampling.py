"""Chains over several real exmc nodes: placement, identical draws, progress, failover, errors.

Three exmc node processes (``pynode start --preload exmc``) serve the module; this test process
is the coordinating (hidden) client node. The model's gradient sleeps (``exmc.models.io_bound``),
so chains take a predictable wall time without loading the 2-core box.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import pytest
from process_watch import busy_descendants

import exmc
from exmc.models.io_bound import buggy_normal, failing_normal, io_bound_normal
from exmc.nuts.stepsize import StepSizeError
from exmc.nuts.errors import ModelError
from exmc.nuts.multinode import ChainPlaced, NodeLost
from exmc.nuts.progress import ProgressEvent
from livebook_client import attach
from livebook_client.progress import ChainProgress
from pynode import Node
from pynode.errors import NoConnection
from pynode.testing import LocalCluster, wait_until

NODES = ["exmc@127.0.5.1", "exmc@127.0.5.2", "exmc@127.0.5.3"]
CLIENT = "coordinator@127.0.5.10"

# ~0.3 s of sleeping per chain: long enough to kill a node mid-chain, short for the suite.
DELAY = 0.0005
SIZES = dict(num_samples=60, num_warmup=60)
CHAINS = 6
SEED = 11
# Chains of ~1 s for the tests that kill nodes mid-run: a kill, even on a loaded box, lands long
# before they finish.
LONG = dict(num_samples=200, num_warmup=200)


def model():
    return io_bound_normal(DELAY)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(NODES, preload=["exmc"]) as cluster:
        Node.start(CLIENT, cookie=cluster.cookie, hidden=True)
        try:
            yield cluster
        finally:
            Node.stop()


@pytest.fixture(scope="module")
def reference():
    """The same run in this process, one chain after another: what every placement must give."""
    return exmc.NUTS.Sampler.sample_chains(model(), CHAINS, seed=SEED, parallel=False, **SIZES)


def assert_same_draws(chains, reference):
    assert len(chains) == len(reference)
    for index, (got, want) in enumerate(zip(chains, reference)):
        assert got.info["chain"] == index
        np.testing.assert_array_equal(got["x"], want["x"])
        np.testing.assert_array_equal(got.stats["n_steps"], want.stats["n_steps"])


def worker_pids(cluster, node):
    return {child.pid for child in psutil.Process(cluster.pid(node)).children(recursive=True)}


def test_chains_spread_over_nodes_give_the_single_node_draws(cluster, reference):
    events = []
    chains = exmc.NUTS.Sampler.sample_chains(model(), CHAINS, seed=SEED, nodes=NODES, progress=events.append,
                                             **SIZES)
    assert_same_draws(chains, reference)
    # Two chains per node (each has 2 workers, queried from the node), in chain order.
    placed = {e.chain: e.node for e in events if isinstance(e, ChainPlaced)}
    assert sorted(placed) == list(range(CHAINS)) and set(placed.values()) == set(NODES)
    assert all(list(placed.values()).count(node) == 2 for node in NODES)
    for trace in chains:
        assert trace.info["node"] == placed[trace.info["chain"]]
        assert trace.info["worker"] in worker_pids(cluster, trace.info["node"])
    # Progress of every chain came home, ending with its last iteration.
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert {e.chain for e in progress} == set(range(CHAINS))
    assert all(max(e.iteration for e in progress if e.chain == c) == 120 for c in range(CHAINS))
    assert chains.notes == []


def test_sampler_options_travel_to_every_node(cluster):
    # dense_mass=True (Stan's dense metric; the default is "auto") must reach the nodes' workers.
    options = dict(SIZES, dense_mass=True, target_accept=0.9)
    chains = exmc.NUTS.Sampler.sample_chains(model(), 3, seed=SEED, nodes=NODES, **options)
    local = exmc.NUTS.Sampler.sample_chains(model(), 3, seed=SEED, parallel=False, **options)
    assert_same_draws(chains, local)
    assert {t.info["node"] for t in chains} == set(NODES)
    assert all(t.info["metric"] == "dense" and t.info["dense_mass"] is True for t in chains)


def test_session_samples_on_all_nodes_with_one_display(cluster, reference):
    session = attach(NODES[0])
    for node in NODES[1:]:
        Node.connect(node)
    shown = []

    class Board:
        def update(self, progress):
            shown.append(progress)

        def note(self, message):
            shown.append(message)

        def close(self, *, completed):
            shown.append(("closed", completed))

    chains = session.sample(model(), chains=CHAINS, seed=SEED, nodes="all", progress=Board(), **SIZES)
    assert_same_draws(chains, reference)
    assert {t.info["node"] for t in chains} == set(NODES)
    records = [p for p in shown if isinstance(p, ChainProgress)]
    assert {(p.chain, p.node) for p in records if p.phase == "queued"} == {
        (t.info["chain"], t.info["node"]) for t in chains}
    running = [p for p in records if p.phase != "queued"]
    assert {p.chain for p in running} == set(range(CHAINS)) and all(p.node for p in running)
    assert shown[-1] == ("closed", True)


def test_a_node_killed_mid_run_has_its_chains_rerun_with_the_same_draws(cluster):
    undisturbed = exmc.NUTS.Sampler.sample_chains(model(), CHAINS, seed=SEED, nodes=NODES, **LONG)
    victim = NODES[1]
    events = []
    placed: dict[int, str] = {}
    killed = threading.Event()

    def progress(event):
        events.append(event)
        if isinstance(event, ChainPlaced):
            placed[event.chain] = event.node
        elif (isinstance(event, ProgressEvent) and placed.get(event.chain) == victim and event.iteration >= 5
              and not killed.is_set()):
            killed.set()
            threading.Thread(target=cluster.kill, args=(victim,), daemon=True).start()

    try:
        chains = exmc.NUTS.Sampler.sample_chains(model(), CHAINS, seed=SEED, nodes=NODES, progress=progress,
                                                 **LONG)
        assert killed.is_set() and not cluster.alive(victim)
        assert_same_draws(chains, undisturbed)
        (lost,) = [e for e in events if isinstance(e, NodeLost)]
        assert lost.node == victim and lost.moved
        assert set(lost.moved.values()) <= {NODES[0], NODES[2]}
        assert all(chains[c].info["node"] == node for c, node in lost.moved.items())
        assert not any(t.info["node"] == victim for t in chains)
        warning = chains.warnings()[0]
        assert f"node {victim} was lost" in warning
        assert all(f"chain {c} → " in warning for c in lost.moved)
    finally:
        cluster.restart(victim)


def test_every_node_lost_is_no_connection_describing_what_finished(cluster):
    two = NODES[:2]
    placed: dict[int, str] = {}
    killed = threading.Event()

    def progress(event):
        if isinstance(event, ChainPlaced):
            placed[event.chain] = event.node
        elif isinstance(event, ProgressEvent) and event.iteration >= 5 and not killed.is_set():
            killed.set()
            threading.Thread(target=lambda: [cluster.kill(n) for n in two], daemon=True).start()

    try:
        with pytest.raises(NoConnection, match=r"every node of the run was lost") as caught:
            exmc.NUTS.Sampler.sample_chains(model(), 4, seed=SEED, nodes=two, progress=progress, **LONG)
        message = str(caught.value)
        assert all(node in message for node in two) and "unfinished: chains [" in message
    finally:
        for node in two:
            cluster.restart(node)


def test_a_chain_that_raises_fails_the_run_naming_its_chain_and_node(cluster):
    started = time.monotonic()
    # The gradient's ZeroDivisionError is a divergence inside a trajectory; the chain itself then
    # fails in the step-size heuristic: the chain's own exception (StepSizeError).
    with pytest.raises(StepSizeError) as caught:
        exmc.NUTS.Sampler.sample_chains(failing_normal(after=30), 4, seed=SEED, nodes=NODES, **SIZES)
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    chain = caught.value.exmc_chain
    assert chain in range(4) and f"in exmc chain {chain} (worker pid" in notes
    assert f"chain {chain} failed on node exmc@127.0.5." in notes and "the run over nodes was stopped" in notes
    assert time.monotonic() - started < 30
    # No chain is left running anywhere, and every node still samples.
    assert wait_until(lambda: all(not busy(cluster, n) for n in NODES), timeout=10)
    chains = exmc.NUTS.Sampler.sample_chains(model(), 3, seed=SEED, nodes=NODES, num_samples=10, num_warmup=10)
    assert len(chains) == 3


def test_a_bug_in_the_model_is_model_error_with_its_fields_and_notes_from_the_node(cluster):
    # A KeyError is a bug, not a domain error: ModelError, raised in a node's worker, carried to its
    # pool and on to this coordinator pickled, keeps chain, iteration, phase and both notes.
    with pytest.raises(ModelError) as caught:
        exmc.NUTS.Sampler.sample_chains(buggy_normal(after=30), 4, seed=SEED, nodes=NODES, **SIZES,
                                        init_values={"x": 0.0})
    error = caught.value
    assert error.chain == error.exmc_chain and error.chain in range(4)
    assert error.phase == "warmup" and 1 <= error.iteration <= SIZES["num_warmup"]
    assert error.error.startswith("KeyError") and "bug in a custom gradient" in error.error
    notes = "\n".join(error.__notes__)
    assert f"in exmc chain {error.chain} (worker pid" in notes
    assert f"chain {error.chain} failed on node exmc@127.0.5." in notes
    assert wait_until(lambda: all(not busy(cluster, n) for n in NODES), timeout=10)


def busy(cluster, node):
    """The sampling runs in progress on ``node`` (its exmc.nuts.runs table)."""
    from pynode import erpc

    return erpc.call(node, "exmc.nuts.runs:snapshot", timeout=10)


def test_status_lists_nodes_workers_load_memory_and_running_runs(cluster):
    session = attach(NODES[0])
    Node.connect(NODES[2])
    done = threading.Event()
    outcome = {}

    def background():
        try:
            outcome["chains"] = exmc.NUTS.Sampler.sample_chains(
                io_bound_normal(0.002), 2, seed=1, nodes=[NODES[2]], num_samples=150, num_warmup=150)
        finally:
            done.set()

    thread = threading.Thread(target=background, daemon=True)
    thread.start()
    assert wait_until(lambda: busy(cluster, NODES[2]), timeout=20)
    status = session.status()
    row = status[NODES[2]]
    assert row.error is None and row.workers == 2 and row.busy >= 1 and row.free == row.workers - row.busy
    assert len(row.runs) == 1 and row.runs[0]["chains"] == [0, 1]
    assert row.mem_total > row.mem_available > 0 and row.rss > 0 and len(row.load) == 3
    first = status[NODES[0]]
    assert first.error is None and first.runs == []
    html = status._repr_html_()
    assert html.count("<tr>") == 1 + len(status.nodes) and NODES[2] in html and "busy" in html
    assert NODES[2] in repr(status) and "chains [0, 1]" in repr(status)
    done.wait(60)
    thread.join()
    assert len(outcome["chains"]) == 2


def test_a_timeout_over_nodes_is_erpc_timeout_and_stops_every_chain(cluster):
    from pynode.errors import ErpcTimeout

    session = attach(NODES[0])
    started = time.monotonic()
    with pytest.raises(ErpcTimeout, match=r"did not finish within 1.0 s"):
        session.sample(model(), chains=CHAINS, seed=SEED, nodes=NODES, progress=False, timeout=1.0,
                       num_samples=100_000, num_warmup=50)
    assert time.monotonic() - started < 10
    assert wait_until(lambda: all(not busy(cluster, n) for n in NODES), timeout=10)
    assert all(busy_descendants(cluster.pid(n)) == [] for n in NODES)  # no chain worker still sampling


def test_a_compute_node_can_coordinate_a_run_over_nodes_seed_style(cluster, reference):
    """The seed's way: ship a closure to one node, which spreads the chains over the others."""
    from pynode import erpc

    def run_there(ir, nodes):
        import exmc as remote_exmc

        chains = remote_exmc.NUTS.Sampler.sample_chains(ir, CHAINS, seed=SEED, nodes=nodes, **SIZES)
        everyone = remote_exmc.NUTS.Sampler.sample_chains(ir, 2, seed=SEED, nodes="all", **SIZES)
        return chains, {t.info["node"] for t in everyone}

    chains, all_nodes = erpc.call(NODES[0], run_there, model(), NODES[1:], timeout=120)
    assert_same_draws(chains, reference)
    assert {t.info["node"] for t in chains} == set(NODES[1:])
    # "all" from a visible compute node: its visible peers with exmc, never this hidden client.
    assert all_nodes <= set(NODES[1:]) and CLIENT not in all_nodes


@pytest.mark.slow
def test_two_nodes_killed_one_after_the_other_still_give_the_undisturbed_draws(cluster):
    undisturbed = exmc.NUTS.Sampler.sample_chains(model(), 12, seed=SEED, nodes=NODES, **LONG)
    victims = [NODES[1], NODES[2]]
    placed: dict[int, str] = {}
    kills: list[str] = []

    def progress(event):
        if isinstance(event, ChainPlaced):
            placed[event.chain] = event.node
        elif isinstance(event, ProgressEvent) and len(kills) < 2:
            victim = victims[len(kills)]
            if placed.get(event.chain) == victim and event.iteration >= 5 * (len(kills) + 1):
                kills.append(victim)
                threading.Thread(target=cluster.kill, args=(victim,), daemon=True).start()

    try:
        chains = exmc.NUTS.Sampler.sample_chains(model(), 12, seed=SEED, nodes=NODES, progress=progress, **LONG)
        assert kills == victims
        assert_same_draws(chains, undisturbed)
        assert sum("was lost" in w for w in chains.warnings()) == 2
    finally:
        for victim in victims:
            cluster.restart(victim)


def test_shared_warmup_on_nodes_gives_the_local_shared_draws(cluster):
    """warmup="shared" over nodes: the warmup chain runs on one node, every chain samples with its
    tuning; placement does not change the draws (nor does going through a session)."""
    local = exmc.NUTS.Sampler.sample_chains(model(), CHAINS, seed=SEED, warmup="shared", parallel=False, **SIZES)
    events = []
    chains = exmc.NUTS.Sampler.sample_chains(model(), CHAINS, seed=SEED, nodes=NODES, warmup="shared",
                                             progress=events.append, **SIZES)
    assert_same_draws(chains, local)
    assert {t.info["node"] for t in chains} == set(NODES)
    assert chains[0].info["shared_warmup"]["node"] in NODES
    assert all(t.info["warmup"] == "shared" and t.info["step_size"] == local[0].info["step_size"] for t in chains)
    warmup = [e for e in events if isinstance(e, ProgressEvent) and e.phase == "warmup"]
    assert {e.chain for e in warmup} == set(range(CHAINS))
    session = attach(NODES[0])
    for via in (session.sample(model(), chains=CHAINS, seed=SEED, warmup="shared", progress=False, **SIZES),
                session.sample(model(), chains=CHAINS, seed=SEED, nodes=NODES, warmup="shared", progress=False,
                               **SIZES)):
        assert_same_draws(via, local)
