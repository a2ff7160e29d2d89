"""Vector families (MvNormal, GaussianRandomWalk, Dirichlet): logp against scipy, gradients
(value and every parameter, including the covariance matrix) against finite differences, event
shapes, batching, support checks and draws."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dist_checks import assert_close_grad, check_batched, check_gradients, numerical_gradient, stack_chains
from exmc import transforms
from exmc.dist import Dist


def _spd(rng, d, batch=()):
    a = rng.normal(size=batch + (d, d))
    return np.matmul(a, np.swapaxes(a, -1, -2)) + d * np.eye(d)


def _mvnormal(rng):
    # value: 3 draws of dimension 4; mu shared; cov batched over the 3 draws
    return rng.normal(size=(3, 4)), {"mu": rng.normal(size=(4,)), "cov": _spd(rng, 4, (3,))}


def _grw(rng):
    return np.cumsum(rng.normal(size=(2, 6)), axis=-1), {"sigma": rng.uniform(0.5, 2.0, (2,)), "init_sigma": np.asarray(1.7)}


def _dirichlet(rng):
    return rng.dirichlet(np.ones(4), size=3), {"alpha": rng.uniform(0.5, 4.0, (3, 4))}


def _mvn_ref(x, p):
    return np.array([stats.multivariate_normal.logpdf(x[i], p["mu"], p["cov"][i]) for i in range(x.shape[0])])


def _grw_ref(x, p):
    sigma = np.broadcast_to(p["sigma"], x.shape[:-1])[..., None]
    return (stats.norm.logpdf(x[..., 0], 0.0, p["init_sigma"])
            + stats.norm.logpdf(np.diff(x, axis=-1), 0.0, sigma).sum(axis=-1))


def _dir_ref(x, p):
    return np.array([stats.dirichlet.logpdf(x[i], p["alpha"][i]) for i in range(x.shape[0])])


CASES = {
    "MvNormal": (_mvnormal, _mvn_ref, {"value": 1, "mu": 1, "cov": 2}),
    "GaussianRandomWalk": (_grw, _grw_ref, {"value": 1}),
    "Dirichlet": (_dirichlet, _dir_ref, {"value": 1, "alpha": 1}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_logp_matches_scipy(name):
    maker, ref, _ = CASES[name]
    rng = np.random.default_rng(5)
    for _ in range(5):
        value, params = maker(rng)
        lp = getattr(Dist, name).logp(value, **params)
        assert lp.shape == value.shape[:-1]
        np.testing.assert_allclose(lp, ref(value, params), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name):
    maker, _, _ = CASES[name]
    value, params = maker(np.random.default_rng(6))
    family = getattr(Dist, name)
    assert set(family.logp_and_grads(value, **params)[1]) == {"value", *params}
    check_gradients(family, value, params)


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_per_chain(name):
    maker, _, event = CASES[name]
    rng = np.random.default_rng(7)
    draws = [maker(rng) for _ in range(3)]
    value, params = stack_chains([d[0] for d in draws], [d[1] for d in draws], event)
    check_batched(getattr(Dist, name), value, params, chains=3)


def test_mvnormal_broadcasts_single_cov_over_batch():
    rng = np.random.default_rng(8)
    cov = _spd(rng, 3)
    x, mu = rng.normal(size=(5, 3)), rng.normal(size=(3,))
    lp, grads = Dist.MvNormal.logp_and_grads(x, mu=mu, cov=cov)
    np.testing.assert_allclose(lp, stats.multivariate_normal.logpdf(x, mu, cov), rtol=1e-12)
    assert grads["cov"].shape == (5, 3, 3) and grads["mu"].shape == (5, 3)
    check_gradients(Dist.MvNormal, x, {"mu": mu, "cov": cov})


def test_mvnormal_check_params():
    good = np.array([[2.0, 0.5], [0.5, 1.0]])
    Dist.MvNormal.check_params({"mu": np.zeros(2), "cov": good})
    with pytest.raises(ValueError, match="param 'cov' must be symmetric"):
        Dist.MvNormal.check_params({"cov": np.array([[2.0, 0.5], [0.4, 1.0]])})
    with pytest.raises(ValueError, match="param 'cov' must be positive definite"):
        Dist.MvNormal.check_params({"cov": np.array([[1.0, 2.0], [2.0, 1.0]])})
    with pytest.raises(ValueError, match="param 'cov' must be a square matrix"):
        Dist.MvNormal.check_params({"cov": np.ones((2, 3))})
    with pytest.raises(ValueError, match="param 'mu' has last axis 3"):
        Dist.MvNormal.check_params({"mu": np.zeros(3), "cov": good})


def test_dirichlet_support_and_transform():
    value = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.6], [0.0, 0.5, 0.5]])
    assert Dist.Dirichlet.in_support(value).tolist() == [[True] * 3, [False] * 3, [False] * 3]
    assert Dist.Dirichlet.default_transform(alpha=np.ones(3)) is transforms.simplex
    with pytest.raises(ValueError, match="param 'alpha' must be a vector"):
        Dist.Dirichlet.check_params({"alpha": np.asarray(2.0)})
    assert Dist.Dirichlet.logp(value[2], alpha=np.full(3, 2.0)) == -np.inf


def test_dirichlet_through_simplex_transform_gradient():
    # The model's composition: logp(forward(x)) + logdet(x), differentiated in x.
    t, alpha = transforms.simplex, np.array([1.5, 2.0, 0.7, 3.0])
    x = np.random.default_rng(9).normal(size=(3,))

    def total(z):
        return float(Dist.Dirichlet.logp(t.forward(z), alpha=alpha) + t.log_det_jacobian(z))

    y = t.forward(x)
    _, g = Dist.Dirichlet.logp_and_grads(y, alpha=alpha)
    _, _, g_x = t.forward_and_log_det_grads(x, g["value"])
    assert_close_grad(g_x, numerical_gradient(total, x), "dirichlet o simplex")


def test_vector_samples_shapes_and_moments():
    rng = np.random.default_rng(10)
    cov = np.array([[2.0, 0.6], [0.6, 1.0]])
    draws = Dist.MvNormal.sample(rng, (20_000,), mu=np.array([1.0, -1.0]), cov=cov)
    assert draws.shape == (20_000, 2)
    np.testing.assert_allclose(draws.mean(axis=0), [1.0, -1.0], atol=5 * np.sqrt(2.0 / 20_000))
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.1, atol=0.05)

    alpha = np.array([1.0, 2.0, 3.0])
    d = Dist.Dirichlet.sample(rng, (20_000,), alpha=alpha)
    assert d.shape == (20_000, 3)
    np.testing.assert_allclose(d.mean(axis=0), alpha / 6.0, atol=0.01)
    assert Dist.Dirichlet.sample(rng, 4, shape=(2, 3), alpha=alpha).shape == (4, 2, 3)

    walk = Dist.GaussianRandomWalk.sample(rng, (20_000,), shape=(5,), sigma=np.asarray(0.5), init_sigma=np.asarray(2.0))
    assert walk.shape == (20_000, 5)
    # Var(x_t) = init_sigma^2 + t sigma^2
    np.testing.assert_allclose(walk.var(axis=0), 4.0 + 0.25 * np.arange(5), rtol=0.1)
    with pytest.raises(ValueError, match="needs the rv's shape"):
        Dist.GaussianRandomWalk.sample(rng, 3, sigma=np.asarray(1.0), init_sigma=np.asarray(1.0))
