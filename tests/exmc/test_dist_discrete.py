"""Discrete (observed-only) families: pmf against scipy.stats, parameter gradients against finite
differences, support checks, batching, draws, and the refusal to build a NUTS transform."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from dist_checks import check_batched, check_gradients, stack_chains
from exmc.dist import Dist

SHAPE = (3, 4)


def _bernoulli_p(rng):
    return rng.integers(0, 2, SHAPE).astype(float), {"p": rng.uniform(0.05, 0.95, (4,))}


def _bernoulli_logit(rng):
    return rng.integers(0, 2, SHAPE).astype(float), {"logit_p": rng.normal(0, 3, (3, 1))}


def _binomial_p(rng):
    n = rng.integers(1, 20, (4,)).astype(float)
    return np.floor(rng.uniform(0, 1, SHAPE) * (n + 1)), {"n": n, "p": rng.uniform(0.05, 0.95, (3, 1))}


def _binomial_logit(rng):
    n = rng.integers(1, 20, (3, 1)).astype(float)
    return np.floor(rng.uniform(0, 1, SHAPE) * (n + 1)), {"n": n, "logit_p": rng.normal(0, 2, (4,))}


def _poisson(rng):
    return rng.integers(0, 15, SHAPE).astype(float), {"mu": rng.uniform(0.2, 10.0, (4,))}


def _negbin(rng):
    return rng.integers(0, 25, SHAPE).astype(float), {"mu": rng.uniform(0.5, 10.0, (4,)), "alpha": rng.uniform(0.3, 20.0, (3, 1))}


CASES = {
    "Bernoulli-p": ("Bernoulli", _bernoulli_p, lambda k, p: stats.bernoulli.logpmf(k, p["p"])),
    "Bernoulli-logit_p": ("Bernoulli", _bernoulli_logit, lambda k, p: stats.bernoulli.logpmf(k, expit(p["logit_p"]))),
    "Binomial-p": ("Binomial", _binomial_p, lambda k, p: stats.binom.logpmf(k, p["n"], p["p"])),
    "Binomial-logit_p": ("Binomial", _binomial_logit, lambda k, p: stats.binom.logpmf(k, p["n"], expit(p["logit_p"]))),
    "Poisson": ("Poisson", _poisson, lambda k, p: stats.poisson.logpmf(k, p["mu"])),
    "NegativeBinomial": ("NegativeBinomial", _negbin,
                         lambda k, p: stats.nbinom.logpmf(k, p["alpha"], p["alpha"] / (p["alpha"] + p["mu"]))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logpmf_matches_scipy(case):
    name, maker, ref = CASES[case]
    rng = np.random.default_rng(len(case))
    for _ in range(8):
        value, params = maker(rng)
        np.testing.assert_allclose(getattr(Dist, name).logp(value, **params), ref(value, params), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", sorted(CASES))
def test_parameter_gradients_match_finite_differences(case):
    name, maker, _ = CASES[case]
    family = getattr(Dist, name)
    value, params = maker(np.random.default_rng(3))
    lp, grads = family.logp_and_grads(value, **params)
    assert "value" not in grads and "n" not in grads
    continuous = tuple(k for k in params if k not in family.integer_params)
    assert set(grads) == set(continuous)
    check_gradients(family, value, params, wrt=continuous)


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_equals_per_chain(case):
    name, maker, _ = CASES[case]
    rng = np.random.default_rng(4)
    draws = [maker(rng) for _ in range(2)]
    value, params = stack_chains([d[0] for d in draws], [d[1] for d in draws])
    check_batched(getattr(Dist, name), value, params, chains=2)


def test_bernoulli_extreme_logits_are_finite():
    lp, grads = Dist.Bernoulli.logp_and_grads(np.array([1.0, 0.0, 1.0, 0.0]), logit_p=np.array([800.0, 800.0, -800.0, -800.0]))
    np.testing.assert_allclose(lp, [0.0, -800.0, -800.0, 0.0])
    np.testing.assert_allclose(grads["logit_p"], [0.0, -1.0, 1.0, 0.0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the gradient at p = 0 or 1 divides by zero
def test_poisson_and_binomial_edge_probabilities():
    assert Dist.Poisson.logp(np.array(0.0), mu=np.array(1e-300)) == pytest.approx(-1e-300)
    assert Dist.Binomial.logp(np.array(5.0), n=np.array(5.0), p=np.array(1.0)) == 0.0
    assert Dist.Bernoulli.logp(np.array(0.0), p=np.array(0.0)) == 0.0


@pytest.mark.parametrize("name, params, good, bad", [
    ("Bernoulli", {}, [0, 1], [1.5, -1, 2, np.nan]),
    ("Binomial", {"n": 3.0}, [0, 1, 3], [4, -1, 0.5, np.inf]),
    ("Binomial", {}, [0, 7, 100], [-1, 2.5]),
    ("Poisson", {}, [0, 1, 250], [-1, 0.5, np.inf, np.nan]),
    ("NegativeBinomial", {}, [0, 3], [-2, 1.5]),
])
def test_in_support(name, params, good, bad):
    family = getattr(Dist, name)
    params = {k: np.asarray(v) for k, v in params.items()}
    assert family.in_support(np.array(good, dtype=float), **params).all()
    assert not family.in_support(np.array(bad, dtype=float), **params).any()


@pytest.mark.parametrize("name, params, bad", [
    ("Bernoulli", {"p": 1.5}, "p"),
    ("Bernoulli", {"logit_p": np.inf}, "logit_p"),
    ("Binomial", {"n": 2.5, "p": 0.5}, "n"),
    ("Binomial", {"n": -1.0, "p": 0.5}, "n"),
    ("Poisson", {"mu": -1.0}, "mu"),
    ("NegativeBinomial", {"mu": 1.0, "alpha": 0.0}, "alpha"),
])
def test_check_params_names_the_parameter(name, params, bad):
    with pytest.raises(ValueError, match=f"param '{bad}'"):
        getattr(Dist, name).check_params({k: np.asarray(v) for k, v in params.items()})


@pytest.mark.parametrize("name", ["Bernoulli", "Binomial", "Poisson", "NegativeBinomial"])
def test_discrete_families_have_no_transform(name):
    family = getattr(Dist, name)
    assert family.discrete
    with pytest.raises(ValueError, match="discrete.*only be observed"):
        family.default_transform()


N_DRAWS = 40_000


@pytest.mark.parametrize("name, params, mean, var", [
    ("Bernoulli", {"p": 0.3}, 0.3, 0.21),
    ("Bernoulli", {"logit_p": 0.0}, 0.5, 0.25),
    ("Binomial", {"n": 10, "p": 0.3}, 3.0, 2.1),
    ("Binomial", {"n": 10, "logit_p": 0.0}, 5.0, 2.5),
    ("Poisson", {"mu": 4.0}, 4.0, 4.0),
    ("NegativeBinomial", {"mu": 4.0, "alpha": 2.0}, 4.0, 4.0 + 16.0 / 2.0),
])
def test_sample_moments(name, params, mean, var):
    draws = getattr(Dist, name).sample(np.random.default_rng(11), (N_DRAWS,), **{k: np.asarray(v) for k, v in params.items()})
    assert draws.shape == (N_DRAWS,)
    assert abs(draws.mean() - mean) < 5 * np.sqrt(var / N_DRAWS)
    assert draws.var() == pytest.approx(var, rel=0.1)
    assert getattr(Dist, name).in_support(draws.astype(float), **{k: np.asarray(v) for k, v in params.items()}).all()


def test_negative_binomial_with_large_alpha():
    # Near the Poisson limit alpha * log(alpha/(alpha+mu)) is computed as -alpha*log1p(mu/alpha).
    k, mu = np.arange(12.0), np.asarray(3.5)
    for alpha in (1e3, 1e6):
        lp = Dist.NegativeBinomial.logp(k, mu=mu, alpha=np.asarray(alpha))
        np.testing.assert_allclose(lp, stats.nbinom.logpmf(k, alpha, alpha / (alpha + 3.5)), rtol=0, atol=1e-8)
    assert np.all(np.abs(lp - stats.poisson.logpmf(k, 3.5)) < 1e-4)
