"""Detached jobs on this node (the compute node's side): start, follow, fetch, cancel, evict.

Jobs are pynode processes with registered names, so this test process is a (hidden) node."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest

import exmc
from exmc.models.io_bound import io_bound_normal
from exmc.nuts import jobs

from gaussian_models import isotropic

QUICK = dict(num_samples=30, num_warmup=30, parallel=False)


@pytest.fixture(scope="module", autouse=True)
def node():
    from pynode import Node

    Node.start("jobs_unit@127.0.5.38", cookie="jobs-unit-test", hidden=True)
    try:
        yield
    finally:
        Node.stop()


@pytest.fixture(autouse=True)
def clean_table():
    yield
    for job in jobs.jobs():
        jobs.forget(job["name"])
    jobs.set_limits(jobs.MAX_STORED, jobs.MAX_STORED_BYTES)


def test_a_job_runs_in_the_background_and_its_result_is_fetched_once():
    described = jobs.start("quick", isotropic(2), 2, dict(QUICK, seed=4))
    assert described["status"] == "running" and described["chains"] == 2
    chains = jobs.result("quick", timeout=60)
    direct = exmc.NUTS.Sampler.sample_chains(isotropic(2), 2, seed=4, **QUICK)
    np.testing.assert_array_equal(chains[1]["x"], direct[1]["x"])
    (row,) = jobs.jobs()
    assert row["status"] == "fetched" and row["iterations_done"] == 2 * 60 == row["iterations_total"]
    with pytest.raises(LookupError, match="gone"):
        jobs.result("quick")


def test_a_taken_name_and_bad_input_are_refused_before_anything_starts():
    jobs.start("radon-v2", isotropic(1), 1, QUICK)
    with pytest.raises(ValueError, match="'radon-v2' is taken by a job"):
        jobs.start("radon-v2", isotropic(1), 1, QUICK)
    with pytest.raises(ValueError, match="non-empty string"):
        jobs.start("", isotropic(1), 1, QUICK)
    with pytest.raises(ValueError, match="num_samples"):
        jobs.start("bad", isotropic(1), 1, dict(QUICK, num_samples=0))
    with pytest.raises(ValueError, match="dense_mass must be True, False or 'auto', got 'yes'"):
        jobs.start("bad", isotropic(1), 1, dict(QUICK, dense_mass="yes"))
    with pytest.raises(KeyError, match="no job named 'nope'.*radon-v2"):
        jobs.state("nope")
    assert [j["name"] for j in jobs.jobs()] == ["radon-v2"]


def test_cancel_keeps_the_completed_iterations_marked_partial():
    # 3 chains one after another; cancel once chain 1 is sampling (chain 2 has not started).
    jobs.start("long", io_bound_normal(0.0005), 3, dict(num_samples=150, num_warmup=50, parallel=False, seed=2))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = jobs.state("long")["progress"]
        if any(p["chain"] == 1 and p["phase"] == "sampling" and p["iteration"] > 60 for p in progress):
            break
        time.sleep(0.02)
    described = jobs.cancel("long")
    assert described["status"] == "cancelled"
    partial = jobs.result("long")
    assert [t.info["chain"] for t in partial] == [0, 1]
    length = partial[1].num_samples
    assert 0 < length < 150 and partial[0].num_samples == length
    direct = exmc.NUTS.Sampler.sample_chains(io_bound_normal(0.0005), 2, seed=2, num_samples=150, num_warmup=50,
                                             parallel=False)
    for got, want in zip(partial, direct):
        np.testing.assert_array_equal(got["x"], want["x"][:length])  # the iterations made, as they were
    assert partial[1].info["partial"] is True
    assert any(note.startswith("partial: job 'long' was cancelled") for note in partial.warnings())
    assert partial.summary().rows == ["x[0]", "x[1]"]


def test_draws_stream_while_a_job_runs_and_a_cursor_reads_each_once():
    jobs.start("streamed", io_bound_normal(0.0005), 2, dict(num_samples=300, num_warmup=20, parallel=False, seed=6))
    seen = {0: [], 1: []}
    cursor = None
    while True:
        answer = jobs.draws("streamed", cursor)
        for batch in answer["batches"]:
            assert batch.start == sum(len(block) for block in seen[batch.chain])
            seen[batch.chain].append(batch.draws["x"])
        cursor = answer["cursor"]
        if answer["status"] != "running" and not answer["batches"]:
            break
        time.sleep(0.05)
    chains = jobs.result("streamed")
    for chain in (0, 1):
        assert len(seen[chain]) > 1  # more than one batch: they came while sampling
        np.testing.assert_array_equal(np.concatenate(seen[chain]), chains[chain]["x"])


def test_a_failed_job_raises_its_own_exception_on_result():
    from exmc.models.io_bound import failing_normal

    jobs.start("broken", failing_normal(after=5), 1, QUICK)
    with pytest.raises(RuntimeError):
        jobs.result("broken", timeout=60)
    assert jobs.state("broken")["status"] == "failed" and jobs.state("broken")["error"]


def test_the_oldest_finished_result_is_evicted_over_the_limit_with_a_log_line(caplog):
    jobs.set_limits(count=2)
    for name in ("first", "second", "third"):
        jobs.start(name, isotropic(1), 1, QUICK)
        jobs.result(name, timeout=60, keep=True)
    with caplog.at_level(logging.WARNING, logger="exmc.nuts.jobs"):
        jobs.set_limits(count=1)
    statuses = {j["name"]: j["status"] for j in jobs.jobs()}
    assert statuses == {"first": "evicted", "second": "evicted", "third": "done"}
    assert any("evicting the result of job 'second'" in r.message for r in caplog.records)
    jobs.set_limits(count=10, nbytes=0)  # the memory limit evicts too
    assert jobs.state("third")["status"] == "evicted"
    with pytest.raises(ValueError, match="limit count"):
        jobs.set_limits(count=-1)


def _wait_sampling(name):
    """Until the job has streamed sampling draws (what a cancel keeps)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if jobs.draws(name)["batches"]:
            return
        time.sleep(0.02)
    raise AssertionError(f"job {name!r} never streamed a draw")


def test_a_running_job_is_a_registered_process_and_its_name_goes_with_it():
    import pynode

    jobs.start("named", io_bound_normal(0.0005), 1, dict(num_samples=100, num_warmup=20, parallel=False, seed=1))
    pid = pynode.whereis(jobs.JOB_PREFIX + "named")
    assert pid is not None and jobs.JOB_PREFIX + "named" in pynode.registered()
    assert pynode.whereis(jobs.KEEPER) is not None
    ref = pynode.monitor(pid)
    chains = jobs.result("named", timeout=60)
    assert len(chains) == 1
    down = pynode.receive(10, match=lambda m: m[0] == "DOWN" and m[1] == ref)
    assert down[3] == "normal" and pynode.whereis(jobs.JOB_PREFIX + "named") is None


def test_any_exit_signal_cancels_a_job_and_its_draws_so_far_are_kept():
    import pynode

    jobs.start("signalled", io_bound_normal(0.0005), 1, dict(num_samples=2000, num_warmup=20, parallel=False, seed=1))
    _wait_sampling("signalled")
    pid = pynode.whereis(jobs.JOB_PREFIX + "signalled")
    ref = pynode.monitor(pid)
    pynode.exit(pid, "enough")  # an exit signal from any process, not only jobs.cancel
    pynode.receive(30, match=lambda m: m[0] == "DOWN" and m[1] == ref)
    assert jobs.state("signalled")["status"] == "cancelled"
    partial = jobs.result("signalled")
    assert 0 < partial[0].num_samples < 2000 and partial[0].info["partial"] is True


def test_a_killed_job_process_is_seen_by_the_keepers_monitor():
    import pynode

    jobs.start("killed", io_bound_normal(0.0005), 1, dict(num_samples=2000, num_warmup=20, parallel=False, seed=1))
    _wait_sampling("killed")
    pynode.exit(pynode.whereis(jobs.JOB_PREFIX + "killed"), "kill")
    deadline = time.monotonic() + 30
    while jobs.state("killed")["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    described = jobs.state("killed")
    assert described["status"] == "failed" and "'killed'" in described["error"]
    with pytest.raises(jobs.JobDied, match="without handing over its result"):
        jobs.result("killed")
    assert [j["name"] for j in jobs.jobs()] == ["killed"]


def test_a_new_keeper_adopts_the_jobs_still_running_by_their_names():
    import pynode

    jobs.start("orphan", io_bound_normal(0.0005), 1, dict(num_samples=2000, num_warmup=20, parallel=False, seed=1))
    _wait_sampling("orphan")
    keeper = pynode.whereis(jobs.KEEPER)
    ref = pynode.monitor(keeper)
    pynode.exit(keeper, "kill")
    pynode.receive(10, match=lambda m: m[0] == "DOWN" and m[1] == ref)
    (row,) = jobs.jobs()  # a new keeper, which found the job by its registered name
    assert row["name"] == "orphan" and row["status"] == "running" and pynode.whereis(jobs.KEEPER) != keeper
    assert jobs.cancel("orphan")["status"] == "cancelled"
    assert jobs.result("orphan")[0].info["partial"] is True


def test_a_job_that_ends_while_no_keeper_runs_hands_its_result_to_the_next_one():
    # The keeper is killed and nobody asks for a job until it ends: the job's hand-over starts
    # the next keeper, which must take the result (not drop it as a forgotten job's).
    import pynode

    jobs.start("lonely", io_bound_normal(0.0005), 1, dict(num_samples=200, num_warmup=20, parallel=False, seed=3))
    pid = pynode.whereis(jobs.JOB_PREFIX + "lonely")
    keeper = pynode.whereis(jobs.KEEPER)
    refs = pynode.monitor(keeper), pynode.monitor(pid)
    pynode.exit(keeper, "kill")
    pynode.receive(10, match=lambda m: m[0] == "DOWN" and m[1] == refs[0])
    pynode.receive(60, match=lambda m: m[0] == "DOWN" and m[1] == refs[1])  # the job ended on its own
    chains = jobs.result("lonely", timeout=10)
    direct = exmc.NUTS.Sampler.sample_chains(io_bound_normal(0.0005), 1, seed=3, num_samples=200, num_warmup=20,
                                             parallel=False)
    np.testing.assert_array_equal(chains[0]["x"], direct[0]["x"])


def test_a_cancel_right_after_start_cancels_even_a_job_whose_thread_is_slow_to_start(monkeypatch):
    # On a loaded box the job's thread may not have run yet when start() has answered; an exit
    # signal then must still be a cancel (status "cancelled"), not kill it as "failed".
    real = jobs._job_main

    def slow_to_start(*args):
        time.sleep(0.3)
        real(*args)

    monkeypatch.setattr(jobs, "_job_main", slow_to_start)
    jobs.start("hasty", io_bound_normal(0.0005), 1, dict(num_samples=2000, num_warmup=20, parallel=False))
    described = jobs.cancel("hasty")
    assert described["status"] == "cancelled", described
    assert any("partial: job 'hasty' was cancelled" in note for note in jobs.result("hasty").warnings())


def test_every_bad_option_is_refused_before_the_job_starts():
    for options, message in (
        (dict(warmup="sharde"), "warmup must be one of"),
        (dict(parallel="yes"), "parallel must be True, False or 'vectorized'"),
        (dict(num_sample=10), r"unknown sampler option\(s\) \['num_sample'\]"),
        (dict(on_result=print), "a detached job sets 'on_result' itself"),
    ):
        with pytest.raises(ValueError, match=message):
            jobs.start("refused", isotropic(1), 1, dict(QUICK, **options))
    assert jobs.jobs() == []


def test_a_vectorized_job_runs_to_its_result():
    jobs.start("vectorized", isotropic(2), 2, dict(QUICK, parallel="vectorized", seed=4))
    chains = jobs.result("vectorized", timeout=60)
    assert len(chains) == 2 and chains[0].num_samples == QUICK["num_samples"]


@pytest.mark.parametrize("warmup", ["own", "shared"])
def test_a_job_cancelled_during_warmup_keeps_no_chain_and_says_so(warmup):
    jobs.start("warming", io_bound_normal(0.0005), 2,
               dict(num_samples=50, num_warmup=3000, parallel=False, seed=1, warmup=warmup))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p["iteration"] > 5 for p in jobs.state("warming")["progress"]):
            break
        time.sleep(0.02)
    assert jobs.cancel("warming")["status"] == "cancelled"
    partial = jobs.result("warming")
    assert len(partial) == 0
    assert any("cancelled before any sampling draw" in note for note in partial.warnings())


@pytest.mark.parametrize("num_chains", [0, 1.5, "2"])
def test_a_bad_chain_count_is_refused_before_the_job_starts(num_chains):
    with pytest.raises(ValueError, match="num_chains must be a positive integer"):
        jobs.start("miscounted", isotropic(1), num_chains, QUICK)
    assert jobs.jobs() == []
