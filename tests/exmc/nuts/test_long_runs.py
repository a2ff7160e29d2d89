"""Longer statistical runs (``make validate``): high dimension, many scales, every mode."""
import numpy as np
import pytest
from arviz_stats.base import array_stats

from exmc.nuts import Sampler

from gaussian_models import Gaussian, LogGamma

pytestmark = pytest.mark.slow


def test_hundred_dimensional_gaussian_with_scales_over_four_decades():
    scales = np.logspace(-2, 2, 100)
    model = Gaussian(np.zeros(100), np.diag(scales**2))
    chains = Sampler.sample_chains(model, 4, num_samples=1000, num_warmup=1000, seed=3)
    draws = chains.stacked("x")  # (4, 1000, 100)
    mcse = array_stats.mcse(np.moveaxis(draws, -1, 0), method="mean")
    assert np.all(np.abs(draws.mean(axis=(0, 1))) <= 4 * mcse)
    np.testing.assert_allclose(draws.std(axis=(0, 1)) / scales, 1.0, atol=0.1)
    np.testing.assert_allclose(chains[0].info["inverse_metric"] / scales**2, 1.0, atol=0.5)
    assert chains.warnings() == []


@pytest.mark.parametrize("parallel", [True, False, "vectorized"])
def test_every_mode_samples_a_skewed_target(parallel):
    from scipy import special

    chains = Sampler.sample_chains(LogGamma(1.5, dim=5), 4, num_samples=2000, num_warmup=1000, seed=4,
                                   parallel=parallel)
    draws = chains.stacked("theta")
    for j in range(5):
        x = draws[..., j]
        assert abs(x.mean() - special.digamma(1.5)) <= 4 * float(array_stats.mcse(x, method="mean"))
        assert abs(x.std() / np.sqrt(special.polygamma(1, 1.5)) - 1) <= 0.05
