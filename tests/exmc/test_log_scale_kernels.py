"""The log-scale kernels (issue 14): StudentT on the log scale
(:func:`exmc.dist.studentt_kernels.studentt_log_scale_kernel`) and the latent Normal on the log
scale (:func:`exmc.dist.normal_kernels.normal_log_scale_kernel`), both fused by :mod:`exmc.fusion`,
and the unbatched GaussianRandomWalk latent kernel. Each against its plain oracle (``logp_and_grads``
of the scale ``exp(eta)``, the chain rule through the ``exp`` written out) and against finite
differences of its own log-density, single and batched. Every test runs with each gradient
engine (``EXMC_GRAD``, :mod:`exmc.accel`): the numpy kernels and their compiled twins."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from exmc.dist import Dist
from exmc.dist.normal_kernels import normal_log_scale_kernel
from exmc.dist.studentt_kernels import studentt_log_scale_kernel

from dist_checks import assert_close_grad, numerical_gradient



@pytest.fixture(autouse=True, params=["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    importlib.util.find_spec("numba") is None, reason="numba not installed"))])
def engine(request, monkeypatch):
    monkeypatch.setenv("EXMC_GRAD", request.param)
    return request.param


CHAINS = 3
rng = np.random.default_rng(1401)
Y = 0.05 * rng.standard_t(4.0, size=12)
Y[3] = 0.0  # a zero return: t = 0 at that entry
ETA = np.log(0.04) + 0.5 * rng.normal(size=12)


def _plain(y, eta, df, loc):
    """The plain path: ``logp_and_grads`` of the scale ``exp(eta)``; ``d/d eta = d/d scale * scale``."""
    scale = np.exp(eta)
    lp, grads = Dist.StudentT.logp_and_grads(y, df=df, loc=loc, scale=scale)
    return lp.sum(axis=-1), grads["scale"] * scale, grads["df"].sum(axis=-1)


@pytest.mark.parametrize("loc", [0.0, 0.01, np.linspace(-0.02, 0.02, 12)], ids=["zero", "scalar", "array"])
@pytest.mark.parametrize("varying_df", [True, False], ids=["df", "fixed_df"])
def test_studentt_log_scale_kernel_equals_the_plain_path(loc, varying_df):
    df = 6.5
    for batched in (False, True):
        kernel = studentt_log_scale_kernel(Y, loc, None if varying_df else df, batched)
        if batched:
            etas = ETA + 0.3 * rng.normal(size=(CHAINS, 12))
            dfs = np.array([2.5, 6.5, 40.0])
            lp, grads = kernel(etas, dfs) if varying_df else kernel(etas)
            expected = _plain(Y, etas, (dfs if varying_df else np.full(CHAINS, df))[:, None], loc)
            assert np.shape(lp) == (CHAINS,) and grads[0].shape == etas.shape
        else:
            lp, grads = kernel(ETA, np.float64(df)) if varying_df else kernel(ETA)
            expected = _plain(Y, ETA, df, loc)
            assert grads[0].shape == ETA.shape
        np.testing.assert_allclose(lp, expected[0], rtol=1e-13)
        np.testing.assert_allclose(grads[0], expected[1], rtol=1e-12, atol=1e-13)
        if varying_df:
            assert np.shape(grads[1]) == ((CHAINS,) if batched else ())
            np.testing.assert_allclose(grads[1], expected[2], rtol=1e-10, atol=1e-12)
        else:
            assert len(grads) == 1


@pytest.mark.parametrize("varying_df", [True, False], ids=["df", "fixed_df"])
def test_studentt_log_scale_kernel_gradient_is_the_derivative_of_its_log_density(varying_df):
    df = 3.0
    kernel = studentt_log_scale_kernel(Y, 0.0, None if varying_df else df, False)
    args = (lambda eta, d: (eta, np.float64(d))) if varying_df else (lambda eta, d: (eta,))
    lp, grads = kernel(*args(ETA, df))
    assert_close_grad(grads[0], numerical_gradient(lambda e: kernel(*args(e, df))[0], ETA), "d/d eta")
    if varying_df:
        numeric = numerical_gradient(lambda d: kernel(*args(ETA, d[()]))[0], np.array(df))
        assert_close_grad(grads[1], numeric, "d/d df")
    # batched: each chain's row is the unbatched kernel's value and gradient
    batched = studentt_log_scale_kernel(Y, 0.0, None if varying_df else df, True)
    etas = np.stack([ETA, ETA - 1.0, ETA + 2.0])
    dfs = np.array([df, 1.5, 30.0]) if varying_df else np.full(CHAINS, df)
    lps, grads_b = batched(etas, dfs) if varying_df else batched(etas)
    for c in range(CHAINS):
        lp_c, grads_c = kernel(*args(etas[c], dfs[c]))
        np.testing.assert_allclose(lps[c], lp_c, rtol=1e-12)
        for g_b, g_c in zip(grads_b, grads_c):
            np.testing.assert_allclose(g_b[c], g_c, rtol=1e-12, atol=1e-13)


def test_studentt_log_scale_kernel_takes_data_of_any_rank():
    y, eta = Y.reshape(3, 4), ETA.reshape(3, 4)
    lp, (g, g_df) = studentt_log_scale_kernel(y, 0.0, None, False)(eta, np.float64(5.0))
    expected = _plain(y.ravel(), eta.ravel(), 5.0, 0.0)
    assert g.shape == (3, 4)
    np.testing.assert_allclose((lp, g_df), (expected[0], expected[2]), rtol=1e-12)
    np.testing.assert_allclose(g.ravel(), expected[1], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("varying, consts", [
    (("sigma",), {"init_sigma": 10.0}), (("sigma", "init_sigma"), {}), (("init_sigma", "sigma"), {}),
    (("init_sigma",), {"sigma": 0.3}),
], ids=["sigma", "both", "both_reordered", "init_sigma"])
@pytest.mark.parametrize("length", [2, 3, 50])
def test_random_walk_latent_kernel_gradient_is_the_derivative_of_its_log_density(varying, consts, length):
    walk_rng = np.random.default_rng(length)
    value = np.cumsum(walk_rng.normal(scale=0.2, size=length))
    point = {"sigma": 0.25, "init_sigma": 1.5}
    kernel = Dist.GaussianRandomWalk.latent_kernel((length,), tuple((n, ()) for n in varying), False, **consts)

    def lp_at(x, **changed):
        at = {**point, **changed}
        return kernel(x, *(np.float64(at[n]) for n in varying))[0]
    lp, grads = kernel(value, *(np.float64(point[n]) for n in varying))
    expected_lp, expected = Dist.GaussianRandomWalk.logp_and_grads(value, **{**point, **consts})
    np.testing.assert_allclose(lp, expected_lp, rtol=1e-13)
    assert grads[0].shape == (length,)
    assert_close_grad(grads[0], numerical_gradient(lp_at, value), "d/d value")
    for name, g in zip(varying, grads[1:]):
        numeric = numerical_gradient(lambda s: lp_at(value, **{name: s[()]}), np.array(point[name]))
        assert_close_grad(g, numeric, f"d/d {name}")
        np.testing.assert_allclose(g, expected[name], rtol=1e-12)


X = rng.normal(scale=2.0, size=(3, 4))  # a latent value of rank 2


@pytest.mark.parametrize("mu", [0.0, 0.7, None], ids=["zero", "constant", "varying"])
def test_normal_log_scale_kernel_equals_the_plain_path_and_finite_differences(mu):
    eta, mu_value = 0.4, 0.7 if mu is None else mu
    kernel = normal_log_scale_kernel(X.shape, mu, False)
    extra = (np.float64(mu_value),) if mu is None else ()
    lp, grads = kernel(X, np.float64(eta), *extra)
    expected_lp, expected = Dist.Normal.logp_and_grads(X, mu=mu_value, sigma=np.exp(eta))
    np.testing.assert_allclose(lp, expected_lp.sum(), rtol=1e-13)
    np.testing.assert_allclose(grads[0], expected["value"], rtol=1e-13)
    np.testing.assert_allclose(grads[1], (expected["sigma"] * np.exp(eta)).sum(), rtol=1e-12)
    assert len(grads) == (3 if mu is None else 2)
    if mu is None:
        np.testing.assert_allclose(grads[2], expected["mu"].sum(), rtol=1e-12)

    def lp_at(x=X, e=eta, m=mu_value):
        return kernel(x, np.float64(e), *((np.float64(m),) if mu is None else ()))[0]
    assert_close_grad(grads[0], numerical_gradient(lambda x: lp_at(x=x), X), "d/d value")
    assert_close_grad(grads[1], numerical_gradient(lambda e: lp_at(e=e[()]), np.array(eta)), "d/d eta")
    if mu is None:
        assert_close_grad(grads[2], numerical_gradient(lambda m: lp_at(m=m[()]), np.array(mu_value)), "d/d mu")
    # batched: each chain's row is the unbatched kernel's value and gradient
    batched = normal_log_scale_kernel(X.shape, mu, True)
    values = np.stack([X, -X, 0.5 * X])
    etas, mus = np.array([eta, -2.0, 3.0]), np.array([mu_value, -1.0, 2.0])
    lps, grads_b = batched(values, etas, *((mus,) if mu is None else ()))
    assert lps.shape == (CHAINS,) and grads_b[0].shape == values.shape
    for c in range(CHAINS):
        lp_c, grads_c = kernel(values[c], np.float64(etas[c]), *((np.float64(mus[c]),) if mu is None else ()))
        np.testing.assert_allclose(lps[c], lp_c, rtol=1e-13)
        for g_b, g_c in zip(grads_b, grads_c):
            np.testing.assert_allclose(g_b[c], g_c, rtol=1e-13, atol=1e-14)


def test_normal_log_scale_kernel_overflows_to_numpys_values():
    kernel = normal_log_scale_kernel((2,), 0.0, False)
    with np.errstate(all="ignore"):
        lp, (g_value, g_eta) = kernel(np.array([1.0, 0.0]), np.float64(-400.0))  # e^800: inf, not OverflowError
    assert lp == -np.inf and g_value[0] == -np.inf and g_eta == np.inf
