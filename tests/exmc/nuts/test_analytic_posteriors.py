"""Conjugate models built with exmc.Builder, sampled through the pool, against exact posteriors:
|mean − truth| ≤ 4·MCSE and sd within 10 %."""
import numpy as np
import pytest
from arviz_stats.base import array_stats
from scipy import stats

import exmc
from exmc import Builder, Dist
from exmc.nuts import Sampler

from seed_model import SEED_Y, seed_ir


def _check(chains, name, mean, sd, index=()):
    draws = chains.stacked(name)[(slice(None), slice(None)) + index]
    mcse = float(array_stats.mcse(draws, method="mean"))
    assert abs(draws.mean() - mean) <= 4 * mcse, (name, index, draws.mean(), mean, mcse)
    assert abs(draws.std() / sd - 1) <= 0.10, (name, index, draws.std(), sd)


def _sample(ir, **kwargs):
    options = dict(num_samples=500, num_warmup=300, seed=1)
    options.update(kwargs)
    chains = Sampler.sample_chains(ir, 4, **options)
    assert sum(t.divergences for t in chains) == 0
    return chains


def test_normal_normal():
    y = np.random.default_rng(0).normal(1.5, 2.0, size=20)
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 3.0})
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": 2.0})
    ir = Builder.obs(ir, "y_obs", "y", y)
    precision = 1 / 3.0**2 + y.size / 2.0**2
    _check(_sample(ir), "mu", (y.sum() / 2.0**2) / precision, precision**-0.5)


def test_beta_bernoulli():
    y = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0])
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "p", Dist.Beta, {"alpha": 2.0, "beta": 3.0})
    ir = Builder.rv(ir, "y", Dist.Bernoulli, {"p": "p"})
    ir = Builder.obs(ir, "y_obs", "y", y)
    post = stats.beta(2 + y.sum(), 3 + y.size - y.sum())
    _check(_sample(ir), "p", post.mean(), post.std())


def test_gamma_poisson():
    y = np.array([3, 5, 2, 4, 6, 3, 4])
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "lam", Dist.Gamma, {"alpha": 3.0, "beta": 2.0})
    ir = Builder.rv(ir, "y", Dist.Poisson, {"mu": "lam"})
    ir = Builder.obs(ir, "y_obs", "y", y)
    post = stats.gamma(3 + y.sum(), scale=1 / (2 + y.size))
    _check(_sample(ir), "lam", post.mean(), post.std())


def test_correlated_gaussian_dense_mass():
    cov = np.array([[1.0, 0.9 * 2.0], [0.9 * 2.0, 4.0]])
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "x", Dist.MvNormal, {"mu": np.array([1.0, -1.0]), "cov": cov})
    chains = _sample(ir, dense_mass=True)
    _check(chains, "x", 1.0, 1.0, (0,))
    _check(chains, "x", -1.0, 2.0, (1,))
    assert chains[0].info["inverse_metric"].shape == (2, 2)


def test_seed_model_as_written_in_the_issue():
    chains = exmc.NUTS.Sampler.sample_chains(seed_ir(), 4, num_samples=1000, num_warmup=500)
    assert len(chains) == 4
    assert chains[0]["mu"].shape == (1000,)
    mu, sigma = chains.stacked("mu"), chains.stacked("sigma")
    # PyMC: mu 2.253 ± 0.115, sigma 0.357. Reference by quadrature of the 2-D posterior:
    grid_mu = np.linspace(1.0, 3.5, 801)
    grid_sigma = np.linspace(0.02, 2.0, 800)
    m, s = np.meshgrid(grid_mu, grid_sigma, indexing="ij")
    logp = (stats.norm.logpdf(m, 0, 10) + stats.halfnorm.logpdf(s, scale=2)
            + stats.norm.logpdf(SEED_Y[:, None, None], m, s).sum(axis=0))
    w = np.exp(logp - logp.max())
    w /= w.sum()
    mu_mean, sigma_mean = (w * m).sum(), (w * s).sum()
    mu_sd = np.sqrt((w * (m - mu_mean) ** 2).sum())
    assert abs(mu.mean() - mu_mean) <= 4 * float(array_stats.mcse(mu, method="mean"))
    assert abs(mu.std() / mu_sd - 1) <= 0.10
    assert abs(sigma.mean() - sigma_mean) <= 4 * float(array_stats.mcse(sigma, method="mean"))
    assert mu.mean() == pytest.approx(2.25, abs=0.03) and sigma.mean() == pytest.approx(0.36, abs=0.03)
    assert chains.warnings() == []
