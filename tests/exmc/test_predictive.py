"""Prior and posterior predictive sampling."""
from __future__ import annotations

import numpy as np
import pytest

from exmc import Builder, Dist, Predictive, ValidationError
from seed_model import seed_ir


def regression_ir():
    X = np.arange(12.0).reshape(6, 2) / 10
    ir = Builder.data(Builder.new_ir(), "X", X)
    ir = Builder.rv(ir, "alpha", Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=2)
    ir = Builder.det(ir, "eta", "affine", ["alpha", 1.0, "Xb"])
    ir = Builder.det(ir, "Xb", "matmul", ["X", "beta"])
    ir = Builder.rv(ir, "y", Dist.Bernoulli, {"logit_p": "eta"})
    return Builder.obs(ir, "y_obs", "y", np.array([0, 1, 0, 1, 1, 1.0])), X


def test_prior_samples_shapes_and_moments():
    n = 4000
    draws = Predictive.prior_samples(seed_ir(), n, seed=1)
    assert set(draws) == {"mu", "sigma", "y"}
    assert draws["mu"].shape == (n,) and draws["sigma"].shape == (n,) and draws["y"].shape == (n, 10)
    # mu ~ N(0, 10): the sample mean is within 4 standard errors (10/sqrt(n)) of 0.
    assert abs(draws["mu"].mean()) < 4 * 10 / np.sqrt(n)
    # sigma ~ HalfNormal(2): E = 2*sqrt(2/pi), sd = 2*sqrt(1 - 2/pi).
    assert abs(draws["sigma"].mean() - 2 * np.sqrt(2 / np.pi)) < 4 * 2 * np.sqrt(1 - 2 / np.pi) / np.sqrt(n)
    # y | mu, sigma ~ N(mu, sigma): standardised residuals have unit variance.
    z = (draws["y"] - draws["mu"][:, None]) / draws["sigma"][:, None]
    assert abs(z.var() - 1.0) < 0.05


def test_prior_samples_are_reproducible_by_seed():
    a = Predictive.prior_samples(seed_ir(), 5, seed=3)
    b = Predictive.prior_samples(seed_ir(), 5, seed=3)
    c = Predictive.prior_samples(seed_ir(), 5, seed=4)
    np.testing.assert_array_equal(a["y"], b["y"])
    assert not np.allclose(a["mu"], c["mu"])


def test_prior_samples_compute_dets_per_draw():
    ir, X = regression_ir()
    draws = Predictive.prior_samples(ir, 50, seed=0)
    np.testing.assert_allclose(draws["eta"], draws["alpha"][:, None] + draws["beta"] @ X.T)
    assert set(np.unique(draws["y"])) <= {0.0, 1.0}


def test_posterior_predictive_keeps_leading_axes():
    ir, X = regression_ir()
    draws = {"alpha": np.full((2, 3), 40.0), "beta": np.zeros((2, 3, 2))}
    out = Predictive.posterior_predictive(ir, draws, seed=0)
    assert set(out) == {"y"} and out["y"].shape == (2, 3, 6)
    # logit 40: every draw is a success.
    assert np.all(out["y"] == 1.0)


def test_posterior_predictive_follows_the_draws():
    draws = {"mu": np.array([-5.0, 5.0]), "sigma": np.array([1e-9, 1e-9])}
    out = Predictive.posterior_predictive(seed_ir(), draws, seed=0)
    np.testing.assert_allclose(out["y"], np.repeat([[-5.0], [5.0]], 10, axis=1), atol=1e-6)


def test_posterior_predictive_errors():
    with pytest.raises(KeyError, match="sigma"):
        Predictive.posterior_predictive(seed_ir(), {"mu": np.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        Predictive.posterior_predictive(seed_ir(), {"mu": np.zeros(3), "sigma": np.ones(4)})
    bad = Builder.rv(Builder.new_ir(), "y", Dist.Normal, {"mu": "nope", "sigma": 1.0})
    with pytest.raises(ValidationError, match="nope"):
        Predictive.prior_samples(bad, 3)


def test_censored_observations_are_clipped_like_recorded_data():
    ir = Builder.rv(Builder.new_ir(), "y", Dist.Normal, {"mu": 0.0, "sigma": 5.0})
    ir = Builder.obs(ir, "y_obs", "y", np.zeros(50), censored=(-1.0, 1.0))
    draws = Predictive.prior_samples(ir, 20, seed=0)["y"]
    assert draws.min() == -1.0 and draws.max() == 1.0
