"""warmup="shared": one warmup chain adapts, every chain samples with its step size and metric."""
from __future__ import annotations

import numpy as np
import pytest
from arviz_stats.base import array_stats

from exmc import Builder, Dist
from exmc.nuts import Sampler
from exmc.nuts.progress import ProgressEvent
from exmc.nuts.shared_warmup import STARTS_SPACING, Tuning, warmup_seed

from gaussian_models import isotropic

SIZES = dict(num_samples=500, num_warmup=300)
MEAN = np.array([1.0, -1.0])
COV = np.array([[1.0, 0.9 * 2.0], [0.9 * 2.0, 4.0]])


def correlated():
    ir = Builder.new_ir()
    return Builder.rv(ir, "x", Dist.MvNormal, {"mu": MEAN, "cov": COV})


@pytest.fixture(scope="module")
def shared():
    return Sampler.sample_chains(correlated(), 4, seed=7, dense_mass=True, warmup="shared", **SIZES)


def test_every_chain_samples_with_the_warmup_chains_step_size_and_metric(shared):
    # The warmup chain alone, as the scheme runs it: its seed, its warmup, 2 draws per chain.
    warm = Sampler.sample_chains(correlated(), 1, seed=warmup_seed(7, 4), dense_mass=True,
                                 num_samples=STARTS_SPACING * 4, num_warmup=SIZES["num_warmup"])[0]
    for trace in shared:
        info = trace.info
        assert info["warmup"] == "shared" and info["num_warmup"] == 0 and info["warmup_steps"] == 0
        assert info["step_size"] == warm.info["step_size"]
        np.testing.assert_array_equal(info["inverse_metric"], warm.info["inverse_metric"])
        assert info["metric"] == "dense" and info["inverse_metric"].shape == (2, 2)
        assert np.all(trace.stats["step_size"] == warm.info["step_size"])  # no adaptation while sampling
        assert info["shared_warmup"]["num_warmup"] == SIZES["num_warmup"]
        assert info["shared_warmup"]["step_size"] == warm.info["step_size"]
    # Each chain its own stream: no two chains alike.
    firsts = {float(trace["x"][0, 0]) for trace in shared}
    assert len(firsts) == 4


def test_shared_warmup_draws_are_statistically_sane(shared):
    draws = shared.stacked("x")
    for index, sd in ((0, 1.0), (1, 2.0)):
        column = draws[:, :, index]
        mcse = float(array_stats.mcse(column, method="mean"))
        assert abs(column.mean() - MEAN[index]) <= 4 * mcse, (index, column.mean(), mcse)
        assert abs(column.std() / sd - 1) <= 0.10, (index, column.std())
    assert sum(trace.divergences for trace in shared) == 0
    assert float(np.max(array_stats.rhat(draws[:, :, 0]))) < 1.01


def test_shared_warmup_draws_do_not_depend_on_where_chains_run():
    pooled = Sampler.sample_chains(isotropic(2), 3, seed=2, warmup="shared", max_workers=2, num_samples=50,
                                   num_warmup=50)
    sequential = Sampler.sample_chains(isotropic(2), 3, seed=2, warmup="shared", parallel=False, num_samples=50,
                                       num_warmup=50)
    for a, b in zip(pooled, sequential):
        np.testing.assert_array_equal(a["x"], b["x"])
    own = Sampler.sample_chains(isotropic(2), 3, seed=2, parallel=False, num_samples=50, num_warmup=50)
    assert not np.array_equal(own[0]["x"], sequential[0]["x"])


def test_progress_shows_the_shared_warmup_on_every_chain_then_each_chains_sampling():
    events = []
    Sampler.sample_chains(isotropic(1), 3, seed=2, warmup="shared", parallel=False, num_samples=40,
                          num_warmup=30, progress=events.append)
    assert all(isinstance(e, ProgressEvent) and e.total == 70 for e in events)
    warmup = [e for e in events if e.phase == "warmup"]
    assert {e.chain for e in warmup} == {0, 1, 2} and max(e.iteration for e in warmup) <= 30
    sampling = [e for e in events if e.phase == "sampling"]
    assert all(e.iteration > 30 for e in sampling)
    assert {e.chain for e in sampling if e.done and e.iteration == 70} == {0, 1, 2}
    assert events.index(warmup[-1]) < events.index(sampling[0])


def test_a_tuning_can_be_reused_and_bad_values_are_refused():
    first = Sampler.sample_chains(isotropic(2), 2, seed=3, warmup="shared", parallel=False, num_samples=20,
                                  num_warmup=30)
    tuning = Tuning.from_trace(first[0])
    again = Sampler.sample_chains(isotropic(2), 2, seed=4, warmup=tuning, parallel=False, num_samples=20)
    assert all(t.info["step_size"] == tuning.step_size and t.info["num_warmup"] == 0 for t in again)
    with pytest.raises(ValueError, match="warmup must be one of"):
        Sampler.sample_chains(isotropic(2), 2, warmup="pooled", parallel=False)
    wrong = tuning._replace(inverse=np.ones(3))
    with pytest.raises(ValueError, match=r"shape \(3,\) does not fit a model of dimension 2"):
        Sampler.sample_chains(isotropic(2), 1, warmup=wrong, parallel=False, num_samples=5)


def test_a_shared_tuning_runs_single_chains_and_vectorized_refuses_it():
    first = Sampler.sample_chains(isotropic(2), 1, seed=3, warmup="shared", parallel=False, num_samples=20,
                                  num_warmup=30)
    tuning = Tuning.from_trace(first[0])
    grouped = Sampler.sample_chains(isotropic(2), 4, seed=4, warmup=tuning, parallel=False, num_samples=20,
                                    layout=2)  # lockstep chains adapt together: not with a given tuning
    assert all(t.info["layout"] == "single" and "lockstep_chains" not in t.info for t in grouped)
    assert all(t.info["step_size"] == tuning.step_size for t in grouped)
    for warmup in ("shared", tuning):
        with pytest.raises(ValueError, match="not supported with parallel='vectorized'"):
            Sampler.sample_chains(isotropic(2), 2, warmup=warmup, parallel="vectorized", num_samples=5)
