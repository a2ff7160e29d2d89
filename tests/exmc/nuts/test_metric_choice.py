"""The automatic metric (``dense_mass="auto"``, the default; ``exmc/nuts/metric_choice.py``) and
the low-rank metric: Stan's diagonal path unchanged on well-conditioned targets, a low-rank
correction on strongly correlated ones, reported in ``Trace.info``, identical in every mode."""
import numpy as np
import pytest
from arviz_stats.base import array_stats

from exmc.nuts import Sampler
from exmc.nuts.metric import LowRankMetric
from exmc.nuts.metric_choice import SWITCH_CONDITION, fisher_directions

from gaussian_models import Gaussian, isotropic

#: A 3-d Gaussian with two coordinates correlated at 0.999 and very different scales (kilpisjarvi's
#: shape: an uncentred predictor): the diagonal metric needs ~2**7 leapfrog steps per draw.
SD = np.array([30.0, 0.01, 1.0])
CORR = np.array([[1.0, -0.999, 0.1], [-0.999, 1.0, -0.1], [0.1, -0.1, 1.0]])
COV = CORR * np.outer(SD, SD)
MEAN = np.array([5.0, -1.0, 0.5])


def _lowrank(dim, rank, seed=0):
    rng = np.random.default_rng(seed)
    vectors, _ = np.linalg.qr(rng.normal(size=(dim, rank)))
    return LowRankMetric(rng.uniform(0.5, 3.0, dim), vectors, rng.uniform(0.01, 50.0, rank))


@pytest.mark.parametrize("dim", [5, 200], ids=["materialised", "factored"])
def test_low_rank_metric_velocity_and_momentum_covariance(dim):
    metric = _lowrank(dim, 3)
    assert metric._dense == (dim <= LowRankMetric.DENSE_PRODUCT_MAX_DIM)
    p = np.random.default_rng(1).normal(size=(4, dim))
    np.testing.assert_allclose(metric.velocity(p[0]), metric.inverse @ p[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(metric.velocity(p), p @ metric.inverse, rtol=1e-10, atol=1e-12)
    # p = L z with L Lᵀ = M = (M⁻¹)⁻¹: check the map exactly through the batch path on the identity
    rng = np.random.default_rng(2)
    draws = metric.sample_momentum(rng, batch=20000)
    cov = np.cov(draws.T)
    expected = np.linalg.inv(metric.inverse)
    assert np.max(np.abs(cov - expected)) < 0.05 * np.max(np.abs(expected))
    single = metric.sample_momentum(np.random.default_rng(3))
    batch = metric.sample_momentum(np.random.default_rng(3), batch=1)[0]
    np.testing.assert_allclose(single, batch, rtol=1e-10, atol=1e-12)


def test_fisher_estimate_recovers_the_covariance_from_draws_that_have_barely_moved():
    # Draws spread 100x less than the posterior (a chain stuck in the ridge): the gradients still
    # give the full covariance, A # B⁻¹ = Σ.
    rng = np.random.default_rng(4)
    x = MEAN + 0.01 * rng.multivariate_normal(np.zeros(3), COV, size=60)
    g = -(x - MEAN) @ np.linalg.inv(COV)
    scale, values, vectors, condition = fisher_directions(x, g)
    assert condition >= SWITCH_CONDITION
    metric = LowRankMetric(scale, vectors, values)
    # Preconditioned by the metric, the posterior is nearly isotropic: directions within nutpie's
    # band [1/2, 2] are left uncorrected, so its eigenvalues lie there (instead of spanning 1e5).
    chol = np.linalg.cholesky(metric.inverse)
    whitened = np.linalg.solve(chol, np.linalg.solve(chol, COV).T)
    eigenvalues = np.linalg.eigvalsh(0.5 * (whitened + whitened.T))
    assert 0.4 < eigenvalues.min() and eigenvalues.max() < 2.5, eigenvalues
    assert np.linalg.cond(CORR) > 1e3


def test_gradients_far_out_of_scale_with_the_draws_give_no_directions():
    # A chain stuck where the gradient explodes (arma11 early in warmup: gradients ~1e105): the
    # Fisher scale would be ~1e-55, a metric no step size fits. No directions: Stan's diagonal.
    rng = np.random.default_rng(5)
    x = MEAN + 0.01 * rng.multivariate_normal(np.zeros(3), COV, size=60)
    g = -(x - MEAN) @ np.linalg.inv(COV)
    scale, values, vectors, condition = fisher_directions(x, g)
    assert values.size >= 1 and condition >= SWITCH_CONDITION  # the ridge, seen from 100x less spread
    scale, values, vectors, condition = fisher_directions(x, 1e100 * g)
    assert values.size == 0 and condition == 1.0
    np.testing.assert_array_equal(scale, np.ones(3))


def test_well_conditioned_targets_keep_stans_diagonal_path_bit_for_bit():
    model = Gaussian([0.0, 1.0, -1.0], np.diag([4.0, 1.0, 0.25]))
    auto = Sampler.sample_chains(model, 2, num_samples=200, num_warmup=300, seed=8, parallel=False)
    stan = Sampler.sample_chains(model, 2, num_samples=200, num_warmup=300, seed=8, parallel=False,
                                 dense_mass=False)
    for a, s in zip(auto, stan):
        np.testing.assert_array_equal(a["x"], s["x"])
        assert a.info["metric"] == "diag" and s.info["metric"] == "diag"
        assert all(w["kind"] == "diag" for w in a.info["metric_windows"])
        assert "metric_windows" not in s.info


def test_strong_correlations_switch_to_a_low_rank_metric_and_sample_correctly():
    model = Gaussian(MEAN, COV)
    auto = Sampler.sample_chains(model, 4, num_samples=500, num_warmup=500, seed=3, parallel=False)
    diag = Sampler.sample_chains(model, 1, num_samples=100, num_warmup=500, seed=3, parallel=False,
                                 dense_mass=False)
    for trace in auto:
        assert trace.info["metric"] == "lowrank" and trace.info["metric_rank"] >= 1
        assert any(w["kind"].startswith("lowrank") for w in trace.info["metric_windows"])
    draws = auto.stacked("x")
    for j in range(3):
        x = draws[..., j]
        mcse = float(array_stats.mcse(x, method="mean"))
        assert abs(x.mean() - MEAN[j]) <= 4 * mcse
        assert abs(x.std() / SD[j] - 1) <= 0.10
    steps_auto = np.mean([t.stats["n_steps"].mean() for t in auto])
    assert steps_auto < 15
    assert diag[0].stats["n_steps"].mean() > 5 * steps_auto


def test_automatic_choice_gives_the_same_draws_in_the_pool_and_in_sequence():
    model = Gaussian(MEAN, COV)
    kwargs = dict(num_samples=100, num_warmup=300, seed=12)
    pooled = Sampler.sample_chains(model, 2, parallel=True, max_workers=2, **kwargs)
    sequential = Sampler.sample_chains(model, 2, parallel=False, **kwargs)
    for a, b in zip(pooled, sequential):
        np.testing.assert_array_equal(a["x"], b["x"])
        assert a.info["metric_windows"] == b.info["metric_windows"]


def test_dense_mass_must_be_true_false_or_auto():
    with pytest.raises(ValueError, match="dense_mass"):
        Sampler.sample(isotropic(2), num_samples=10, num_warmup=10, dense_mass="yes")
