"""Whole chains in the calling process: correctness on Gaussians, reproducibility, options, init."""
import numpy as np
import pytest
from arviz_stats.base import array_stats

from exmc.nuts import InitializationError, Sampler

from gaussian_models import Gaussian, LogGamma, isotropic


def _check_moments(chains, name, mean, sd):
    draws = chains.stacked(name)  # (C, N, d)
    for j in range(draws.shape[-1]):
        x = draws[..., j]
        mcse = float(array_stats.mcse(x, method="mean"))
        assert abs(x.mean() - mean[j]) <= 4 * mcse, (j, x.mean(), mean[j], mcse)
        assert abs(x.std() / sd[j] - 1) <= 0.10, (j, x.std(), sd[j])


def test_isotropic_gaussian_moments():
    chains = Sampler.sample_chains(isotropic(3), 4, num_samples=500, num_warmup=500, seed=11, parallel=False)
    _check_moments(chains, "x", [0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    assert sum(t.divergences for t in chains) == 0
    assert 0.7 < np.mean([t.stats["accept_prob"].mean() for t in chains]) < 0.98


def test_correlated_gaussian_with_dense_mass():
    cov = np.array([[1.0, 1.9], [1.9, 4.0]])  # correlation 0.95
    chains = Sampler.sample_chains(Gaussian([1.0, -1.0], cov), 4, num_samples=500, num_warmup=500, seed=5,
                                   parallel=False, dense_mass=True)
    _check_moments(chains, "x", [1.0, -1.0], [1.0, 2.0])
    inverse = chains[0].info["inverse_metric"]
    assert inverse.shape == (2, 2)
    np.testing.assert_allclose(inverse, cov, rtol=0.35)  # the adapted metric estimates the covariance
    # With the covariance learnt, trajectories are short (diagonal metric would need ~depth 4).
    assert np.mean([t.stats["tree_depth"].mean() for t in chains]) < 2.5


@pytest.mark.parametrize("parallel", [False, "vectorized"])
def test_skewed_target_moments_and_quantiles(parallel):
    from scipy import special, stats

    chains = Sampler.sample_chains(LogGamma(2.5, dim=2), 4, num_samples=500, num_warmup=300, seed=21,
                                   parallel=parallel)
    _check_moments(chains, "theta", [special.digamma(2.5)] * 2, [np.sqrt(special.polygamma(1, 2.5))] * 2)
    # The 10 % quantile of theta is log of Gamma(2.5)'s: checks the shape, not only two moments.
    draws = chains.stacked("theta")[..., 0]
    q10 = float(np.log(stats.gamma(2.5).ppf(0.1)))
    mcse = float(array_stats.mcse(draws, method="quantile", prob=0.1))
    assert abs(np.quantile(draws, 0.1) - q10) <= 4 * mcse


def test_diagonal_metric_learns_scales():
    model = Gaussian([0.0, 0.0], np.diag([100.0, 0.01]))
    trace = Sampler.sample(model, num_samples=200, num_warmup=500, seed=2)
    np.testing.assert_allclose(trace.info["inverse_metric"], [100.0, 0.01], rtol=0.4)


def test_trace_layout_and_stats():
    trace = Sampler.sample(isotropic(2), num_samples=50, num_warmup=30, seed=0)
    assert trace["x"].shape == (50, 2) and trace["x_sq"].shape == (50, 2)
    np.testing.assert_allclose(trace["x_sq"], trace["x"] ** 2)
    assert set(trace.stats) == {"lp", "accept_prob", "step_size", "tree_depth", "n_steps", "divergent", "energy"}
    assert all(v.shape == (50,) for v in trace.stats.values())
    assert np.all(trace.stats["step_size"] == trace.info["step_size"])
    assert trace.info["chain"] == 0 and trace.info["warmup_seconds"] > 0
    assert trace.info["warmup_steps"] >= 30 and trace.info["warmup_divergences"] >= 0
    with pytest.raises(KeyError, match="no variable 'y'"):
        trace["y"]


def test_same_seed_same_draws_and_sample_equals_chain_zero():
    model = isotropic(2)
    one = Sampler.sample(model, num_samples=40, num_warmup=40, seed=9)
    many = Sampler.sample_chains(model, 2, num_samples=40, num_warmup=40, seed=9, parallel=False)
    np.testing.assert_array_equal(one["x"], many[0]["x"])
    assert not np.array_equal(many[0]["x"], many[1]["x"])
    other = Sampler.sample(model, num_samples=40, num_warmup=40, seed=10)
    assert not np.array_equal(one["x"], other["x"])


def test_init_values_set_the_start():
    model = Gaussian([0.0], [[1.0]])
    trace = Sampler.sample(model, init_values={"x": np.array([50.0])}, num_samples=1, num_warmup=0, seed=0)
    assert trace["x"][0, 0] > 10  # one transition from 50 cannot get near the mode
    with pytest.raises(ValueError, match="'nope'"):
        Sampler.sample(model, init_values={"nope": 1.0}, num_samples=1, num_warmup=0)


def test_initialization_failure_names_the_chain():
    class Nowhere(Gaussian):
        def logp_and_grad(self, theta):
            return -np.inf, np.zeros_like(theta)

    with pytest.raises(InitializationError, match="chain 0: no initial point .* 100 uniform"):
        Sampler.sample(Nowhere([0.0], [[1.0]]), num_samples=5, num_warmup=5)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_samples": 0}, "num_samples"),
    ({"num_warmup": -1}, "num_warmup"),
    ({"target_accept": 1.0}, "target_accept"),
    ({"max_tree_depth": 0}, "max_tree_depth"),
    ({"parallel": "threads"}, "parallel"),
])
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sampler.sample_chains(isotropic(1), 2, **kwargs)


def test_progress_events_in_sequential_mode():
    events = []
    Sampler.sample_chains(isotropic(1), 2, num_samples=100, num_warmup=100, parallel=False, progress=events.append)
    finals = [e for e in events if e.done]
    assert [e.chain for e in finals] == [0, 1]
    assert all(e.iteration == 200 and e.total == 200 and e.phase == "sampling" for e in finals)
    assert events[0].phase == "warmup"


def test_should_stop_interrupts_a_chain():
    calls = iter(range(10**6))
    with pytest.raises(InterruptedError, match="chain 0"):
        Sampler.sample(isotropic(1), num_samples=1000, num_warmup=1000, should_stop=lambda: next(calls) > 5)


def test_chains_survive_pickling_for_the_trip_back_to_a_notebook():
    import pickle

    chains = Sampler.sample_chains(isotropic(1), 2, num_samples=20, num_warmup=20, parallel=False)
    copy = pickle.loads(pickle.dumps(chains))
    assert type(copy).__name__ == "Chains" and len(copy) == 2
    np.testing.assert_array_equal(copy[1]["x"], chains[1]["x"])
    assert copy[1].info["chain"] == 1 and copy.summary().rows == ["x[0]", "x_sq[0]"]


def _regression_ir():
    import exmc
    from exmc import Builder, Dist

    x = np.linspace(-1.0, 1.0, 50)
    ir = Builder.new_ir()
    ir = Builder.data(ir, "x", x)
    ir = Builder.rv(ir, "a", Dist.Normal, {"mu": 0.0, "sigma": 5.0})
    ir = Builder.rv(ir, "b", Dist.Normal, {"mu": 0.0, "sigma": 5.0})
    ir = Builder.det(ir, "bx", "mul", ["b", "x"])
    ir = Builder.det(ir, "eta", "add", ["a", "bx"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "eta", "sigma": 1.0})
    ir = Builder.obs(ir, "y_obs", "y", 1.0 + 2.0 * x)
    return exmc.compile(ir)


@pytest.mark.parametrize("parallel", [False, True, "vectorized"])
def test_keep_deterministics_selects_what_the_draws_carry(parallel):
    model = _regression_ir()
    run = dict(num_samples=30, num_warmup=30, seed=3, parallel=parallel)
    everything = Sampler.sample_chains(model, 2, **run)
    assert set(everything[0]) == {"a", "b", "bx", "eta"}
    only_eta = Sampler.sample_chains(model, 2, keep_deterministics=["eta"], **run)
    assert set(only_eta[0]) == {"a", "b", "eta"}
    np.testing.assert_array_equal(only_eta[1]["eta"], everything[1]["eta"])  # same draws, fewer kept
    none = Sampler.sample_chains(model, 2, keep_deterministics=False, **run)
    assert set(none[0]) == {"a", "b"}
    np.testing.assert_array_equal(none[0]["a"], everything[0]["a"])


def test_keep_deterministics_names_an_unknown_det_before_sampling():
    model = _regression_ir()
    with pytest.raises(ValueError, match=r"\['mu'\].*it has \['bx', 'eta'\]"):
        Sampler.sample_chains(model, 2, keep_deterministics=["eta", "mu"], parallel=False,
                              should_stop=lambda: pytest.fail("sampling started"))
    with pytest.raises(ValueError, match="keep_deterministics"):
        Sampler.sample_chains(model, 2, keep_deterministics="eta", parallel=False)
