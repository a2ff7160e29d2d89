"""Compile-time kernels of the families (``prior_kernel``, ``observed_kernel``): each must compute the
same function as ``logp_and_grads`` (summed log-density, the gradients it keeps), for scalar and array
values, single and batched, inside and outside the support."""
from __future__ import annotations

import math

import numpy as np
import pytest

from exmc.dist import Dist
from exmc.dist.kernels import CHAINWISE_MAX_CHAINS, bind, scalar_log, scalar_log1p

# family name -> (scalar constant params, array constant params broadcasting to (2, 3), value maker)
ROW, COLUMN = np.array([0.5, -1.0, 2.0]), np.array([[1.0], [3.0]])  # broadcasting to (2, 3) two ways
SHAPES_ROW = np.array([0.5, 1.0, 4.0])  # positive shape parameters below, at and above 1
PRIORS = {
    "Normal": ({"mu": 0.0, "sigma": 2.5}, {"mu": ROW, "sigma": COLUMN}, "real"),
    "Cauchy": ({"loc": 0.3, "scale": 2.0}, {"loc": ROW, "scale": COLUMN}, "real"),
    "StudentT": ({"df": 4.0, "loc": -0.2, "scale": 1.5}, {"df": SHAPES_ROW, "loc": 0.0, "scale": COLUMN}, "real"),
    "HalfNormal": ({"sigma": 2.0}, {"sigma": np.array([1.0, 2.0, 0.5])}, "positive"),
    "HalfCauchy": ({"scale": 5.0}, {"scale": COLUMN}, "positive"),
    "Lognormal": ({"mu": 0.5, "sigma": 1.2}, {"mu": ROW, "sigma": 0.7}, "positive"),
    "Exponential": ({"lambda": 1.5}, {"lambda": np.array([0.1, 1.0, 10.0])}, "positive"),
    "Gamma": ({"alpha": 2.0, "beta": 0.5}, {"alpha": SHAPES_ROW, "beta": 2.0}, "positive"),
    "Beta": ({"alpha": 2.0, "beta": 3.0}, {"alpha": SHAPES_ROW, "beta": np.array([[2.0], [0.7]])}, "unit"),
}
SHAPES = [(), (3,), (2, 3)]
CHAINS = 4


def _values(rng, support, shape):
    if support == "real":
        return rng.normal(0.0, 2.0, size=shape)
    if support == "positive":
        return rng.uniform(0.05, 4.0, size=shape)
    return rng.uniform(0.02, 0.98, size=shape)


def _expected(family, value, params, axes):
    lp, grads = family.logp_and_grads(value, **params)
    return np.sum(lp, axis=axes), grads["value"]


@pytest.mark.parametrize("name", sorted(PRIORS))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["scalar_params", "array_params"])
@pytest.mark.parametrize("value_in_support", [False, True])
def test_prior_kernel_equals_logp_and_grads(name, shape, kind, value_in_support):
    family = getattr(Dist, name)
    scalar_params, array_params, support = PRIORS[name]
    params = scalar_params if kind == "scalar_params" or shape != (2, 3) else array_params
    rng = np.random.default_rng(len(name) + len(shape))
    axes = tuple(range(-len(shape), 0))
    value = _values(rng, support, shape)
    lp, g = family.prior_kernel(shape, False, value_in_support, **params)(value[()] if not shape else value)
    expected_lp, expected_g = _expected(family, value, params, axes)
    assert lp == pytest.approx(float(expected_lp), rel=1e-13, abs=1e-13)
    np.testing.assert_allclose(np.broadcast_to(g, value.shape), expected_g, rtol=1e-13, atol=1e-15)
    values = _values(rng, support, (CHAINS,) + shape)
    lp, g = family.prior_kernel(shape, True, value_in_support, **params)(values)
    expected_lp, expected_g = _expected(family, values, params, axes)
    assert lp.shape == (CHAINS,) and g.shape == values.shape
    np.testing.assert_allclose(lp, expected_lp, rtol=1e-13)
    np.testing.assert_allclose(g, expected_g, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name, outside", [
    ("HalfNormal", -0.5), ("HalfCauchy", -2.0), ("Exponential", -1.0),
    ("Lognormal", -1.0), ("Lognormal", 0.0), ("Gamma", -1.0), ("Beta", 1.5), ("Beta", -0.1),
])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # logs of values outside the support
def test_prior_kernel_is_minus_inf_outside_the_support(name, outside):
    family = getattr(Dist, name)
    params, _, support = PRIORS[name]
    # a numpy scalar (as the model passes a scalar rv): no exception from the math module
    assert family.prior_kernel((), False, False, **params)(np.float64(outside))[0] == -np.inf
    values = _values(np.random.default_rng(0), support, (CHAINS, 3))
    values[1, 2] = outside
    lp = family.prior_kernel((3,), True, False, **params)(values)[0]
    assert lp[1] == -np.inf and np.all(np.isfinite(np.delete(lp, 1)))


@pytest.mark.parametrize("varying", [("mu", "sigma"), ("sigma", "mu"), ("mu",), ("sigma",)])
def test_normal_observed_kernel_from_sufficient_statistics(varying):
    y = np.array([2.1, 2.5, 1.8, 2.3, 2.7, 1.9, 2.4, 2.2, 2.6, 2.0]) + 1e3  # large mean: no cancellation
    point = {"mu": 1000.3, "sigma": 0.45}
    consts = {k: v for k, v in point.items() if k not in varying}
    kernel = Dist.Normal.observed_kernel(y, tuple((k, ()) for k in varying), False, **consts)
    lp, grads = kernel(*(np.float64(point[k]) for k in varying))
    expected_lp, expected_grads = Dist.Normal.logp_and_grads(y, **point)
    assert lp == pytest.approx(expected_lp.sum(), rel=1e-12)
    for key, g in zip(varying, grads):
        assert g == pytest.approx(expected_grads[key].sum(), rel=1e-9)
    # batched: one (C,) array per varying parameter
    rng = np.random.default_rng(1)
    chains = {"mu": 1000.0 + rng.normal(size=CHAINS), "sigma": rng.uniform(0.2, 2.0, size=CHAINS)}
    kernel = Dist.Normal.observed_kernel(y, tuple((k, ()) for k in varying), True, **consts)
    lp, grads = kernel(*(chains[k] for k in varying))
    for c in range(CHAINS):
        at = {k: (chains[k][c] if k in varying else consts[k]) for k in ("mu", "sigma")}
        expected_lp, expected_grads = Dist.Normal.logp_and_grads(y, **at)
        assert lp[c] == pytest.approx(expected_lp.sum(), rel=1e-12)
        for key, g in zip(varying, grads):
            assert g[c] == pytest.approx(expected_grads[key].sum(), rel=1e-9)


def test_observed_kernels_decline_what_they_do_not_specialise():
    y = np.array([0.0, 1.0, 1.0])
    assert Dist.Normal.observed_kernel(y, (("mu", (1,)),), False, sigma=1.0) is None  # mu broadcast along y
    assert Dist.Normal.observed_kernel(y, (("mu", ()),), False, sigma=np.ones(3)) is None
    assert Dist.Normal.observed_kernel(y, (("sigma", (3,)),), False, mu=0.0) is None  # a scale per entry
    assert Dist.Bernoulli.observed_kernel(y, (("p", (3,)),), False) is None
    assert Dist.Bernoulli.observed_kernel(y, (("logit_p", ()),), False) is None  # broadcasting
    assert Dist.Bernoulli.observed_kernel(np.ones((2, 3)), (("logit_p", (2, 3)),), False) is None
    assert Dist.Poisson.observed_kernel(y, (("mu", (1,)),), False) is None  # broadcasting along y


def test_bernoulli_logit_kernel_matches_logp_and_grads_in_the_tails():
    eta = np.array([-800.0, -40.0, -3.0, 0.0, 1e-12, 2.5, 40.0, 800.0])
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    kernel = Dist.Bernoulli.observed_kernel(y, (("logit_p", y.shape),), False)
    lp, (g,) = kernel(eta)
    expected_lp, expected = Dist.Bernoulli.logp_and_grads(y, logit_p=eta)
    assert lp == pytest.approx(expected_lp.sum(), rel=1e-15)
    # y - sigmoid(eta) cancels where y == 1 and eta >> 0, in both forms: agreement to a few ulps of 1
    np.testing.assert_allclose(g, expected["logit_p"], rtol=1e-12, atol=1e-15)
    etas = np.stack([eta, -eta, 0.5 * eta])
    lp, (g,) = Dist.Bernoulli.observed_kernel(y, (("logit_p", y.shape),), True)(etas)
    expected_lp, expected = Dist.Bernoulli.logp_and_grads(y, logit_p=etas)
    np.testing.assert_allclose(lp, expected_lp.sum(axis=1), rtol=1e-15)
    np.testing.assert_allclose(g, expected["logit_p"], rtol=1e-12, atol=1e-15)


def test_scalar_logs_give_numpys_values_instead_of_raising():
    assert scalar_log(0.0) == -math.inf and math.isnan(scalar_log(-1.0)) and scalar_log(math.e) == 1.0
    assert scalar_log1p(-1.0) == -math.inf and math.isnan(scalar_log1p(-2.0)) and scalar_log1p(0.0) == 0.0
    assert math.isnan(scalar_log(math.nan))


def test_bind_passes_constants_and_reorders():
    def full(a, b, c):
        return a + 10 * b + 100 * c, (1, 2, 3)
    kernel = bind(full, ("a", "b", "c"), ["c", "a"], {"b": 5})
    assert kernel(7, 1) == (1 + 50 + 700, (3, 1))
    assert bind(full, ("a", "b", "c"), ["a", "b", "c"], {}) is full


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # sigma = 0: numpy's division by zero
@pytest.mark.parametrize("chains", [3, CHAINWISE_MAX_CHAINS + 5])
def test_chainwise_and_numpy_paths_of_a_batched_kernel_agree(chains):
    y = np.array([0.5, 1.5, -0.2])
    rng = np.random.default_rng(chains)
    mu, sigma = rng.normal(size=chains), rng.uniform(0.3, 2.0, size=chains)
    vector = Dist.Normal.observed_kernel(y, (("mu", ()), ("sigma", ())), True)
    scalar = Dist.Normal.observed_kernel(y, (("mu", ()), ("sigma", ())), False)
    lp, (g_mu, g_sigma) = vector(mu, sigma)
    for c in range(chains):
        expected_lp, (e_mu, e_sigma) = scalar(np.float64(mu[c]), np.float64(sigma[c]))
        assert (lp[c], g_mu[c], g_sigma[c]) == pytest.approx((expected_lp, e_mu, e_sigma), rel=1e-14)
    sigma[1] = 0.0  # a float division by zero: the chain-by-chain loop falls back to numpy
    lp, (g_mu, _) = vector(mu, sigma)
    assert np.isnan(lp[1]) or lp[1] == -np.inf
    assert lp[0] == pytest.approx(scalar(np.float64(mu[0]), np.float64(sigma[0]))[0], rel=1e-14)


# Normal observed kernels by parameter shapes: (varying {name: shape}, constants) for data of shape (2, 3)
NORMAL_CASES = {
    "iid": ({"mu": (), "sigma": ()}, {}),
    "iid_constant_sigma": ({"mu": ()}, {"sigma": 0.8}),
    "constant_mean_array": ({"sigma": ()}, {"mu": np.array([0.1, -0.4, 0.3])}),
    "regression": ({"mu": (2, 3), "sigma": ()}, {}),
    "regression_reordered": ({"sigma": (), "mu": (2, 3)}, {}),
    "constant_scale_array": ({"mu": (2, 3)}, {"sigma": np.array([[0.5], [2.0]])}),
    "constant_scale": ({"mu": (2, 3)}, {"sigma": 1.7}),
}


@pytest.mark.parametrize("case", sorted(NORMAL_CASES))
def test_normal_observed_kernels_equal_logp_and_grads(case):
    shapes, consts = NORMAL_CASES[case]
    rng = np.random.default_rng(len(case))
    y = rng.normal(size=(2, 3))
    draw = {"mu": lambda shape: rng.normal(size=shape), "sigma": lambda shape: rng.uniform(0.3, 2.0, size=shape)}
    varying = tuple(shapes.items())
    for batched, lead in ((False, ()), (True, (CHAINS,))):
        kernel = Dist.Normal.observed_kernel(y, varying, batched, **consts)
        args = [draw[name](lead + shape) for name, shape in varying]
        lp, grads = kernel(*(a[()] if a.ndim == 0 else a for a in args))
        full = {**consts, **{name: (a.reshape(a.shape + (1, 1)) if batched and a.ndim == 1 else a)
                             for (name, _), a in zip(varying, args)}}
        expected_lp, expected = Dist.Normal.logp_and_grads(y, **full)
        axes = tuple(range(-2, 0))
        np.testing.assert_allclose(lp, expected_lp.sum(axis=axes), rtol=1e-12)
        for (name, shape), a, g in zip(varying, args, grads):
            assert np.shape(g) == a.shape
            e = expected[name] if shape else expected[name].sum(axis=axes)
            np.testing.assert_allclose(g, e, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("varying, consts", [
    (("mu", "sigma"), {}), (("sigma", "mu"), {}), (("mu",), {"sigma": 1.3}), (("sigma",), {"mu": 0.0}),
], ids=["both", "both_reordered", "mu", "sigma"])
def test_normal_latent_kernel_equals_logp_and_grads(varying, consts):
    shape = (2, 3)
    rng = np.random.default_rng(len(varying))
    for batched, lead in ((False, ()), (True, (CHAINS,))):
        kernel = Dist.Normal.latent_kernel(shape, tuple((name, ()) for name in varying), batched, **consts)
        value = rng.normal(size=lead + shape)
        args = {"mu": rng.normal(size=lead), "sigma": rng.uniform(0.3, 2.0, size=lead)}
        lp, grads = kernel(value, *(args[name][()] if not batched else args[name] for name in varying))
        full = {**consts, **{name: args[name].reshape(lead + (1, 1)) for name in varying}}
        expected_lp, expected = Dist.Normal.logp_and_grads(value, **full)
        np.testing.assert_allclose(lp, expected_lp.sum(axis=(-2, -1)), rtol=1e-12)
        np.testing.assert_allclose(grads[0], expected["value"], rtol=1e-12)
        for name, g in zip(varying, grads[1:]):
            assert np.shape(g) == lead
            np.testing.assert_allclose(g, expected[name].sum(axis=(-2, -1)), rtol=1e-11, atol=1e-13)


def test_normal_latent_kernel_declines_scalar_values_and_vector_parameters():
    assert Dist.Normal.latent_kernel((), (("mu", ()),), False, sigma=1.0) is None
    assert Dist.Normal.latent_kernel((3,), (("mu", (3,)),), False, sigma=1.0) is None
    assert Dist.Normal.latent_kernel((3,), (("mu", ()),), False, sigma=np.ones(3)) is None


# StudentT observed kernels: (varying {name: shape}, constants) for data of shape (2, 3)
STUDENTT_CASES = {
    "stochastic_volatility": ({"df": (), "scale": (2, 3)}, {"loc": 0.0}),
    "all_scalar": ({"df": (), "loc": (), "scale": ()}, {}),
    "regression": ({"loc": (2, 3), "scale": ()}, {"df": 4.0}),
    "df_only": ({"df": ()}, {"loc": np.array([0.5, -1.0, 0.0]), "scale": np.array([[1.0], [2.5]])}),
    "reordered": ({"scale": (2, 3), "loc": (), "df": ()}, {}),
}


@pytest.mark.parametrize("case", sorted(STUDENTT_CASES))
def test_studentt_observed_kernels_equal_logp_and_grads(case):
    shapes, consts = STUDENTT_CASES[case]
    rng = np.random.default_rng(len(case))
    y = 2.0 * rng.standard_t(3.0, size=(2, 3))
    draw = {"df": lambda s: rng.uniform(0.5, 20.0, size=s), "loc": lambda s: rng.normal(size=s),
            "scale": lambda s: rng.uniform(0.3, 3.0, size=s)}
    varying = tuple(shapes.items())
    for batched, lead in ((False, ()), (True, (CHAINS,))):
        kernel = Dist.StudentT.observed_kernel(y, varying, batched, **consts)
        args = [draw[name](lead + shape) for name, shape in varying]
        lp, grads = kernel(*(a[()] if a.ndim == 0 else a for a in args))
        full = {**consts, **{name: (a.reshape(a.shape + (1, 1)) if batched and a.ndim == 1 else a)
                             for (name, _), a in zip(varying, args)}}
        expected_lp, expected = Dist.StudentT.logp_and_grads(y, **full)
        np.testing.assert_allclose(lp, expected_lp.sum(axis=(-2, -1)), rtol=1e-12)
        for (name, shape), a, g in zip(varying, args, grads):
            assert np.shape(g) == a.shape
            e = expected[name] if shape else expected[name].sum(axis=(-2, -1))
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def test_studentt_observed_kernel_declines_a_df_per_entry_and_scalar_data():
    y = np.array([0.5, -1.0, 2.0])
    assert Dist.StudentT.observed_kernel(y, (("df", (3,)),), False, loc=0.0, scale=1.0) is None
    assert Dist.StudentT.observed_kernel(y, (("loc", ()),), False, df=np.ones(3), scale=1.0) is None
    assert Dist.StudentT.observed_kernel(np.array(0.5), (("loc", ()),), False, df=3.0, scale=1.0) is None


@pytest.mark.parametrize("varying, consts", [
    (("sigma",), {"init_sigma": 100.0}), (("init_sigma", "sigma"), {}), (("init_sigma",), {"sigma": 0.3}),
], ids=["sigma", "both", "init_sigma"])
@pytest.mark.parametrize("length", [2, 7])
def test_random_walk_latent_kernel_equals_logp_and_grads(varying, consts, length):
    rng = np.random.default_rng(length)
    family = Dist.GaussianRandomWalk
    for batched, lead in ((False, ()), (True, (CHAINS,))):
        kernel = family.latent_kernel((length,), tuple((name, ()) for name in varying), batched, **consts)
        value = np.cumsum(rng.normal(size=lead + (length,)), axis=-1)
        args = {name: rng.uniform(0.2, 3.0, size=lead) for name in varying}
        lp, grads = kernel(value, *(args[name][()] if not batched else args[name] for name in varying))
        expected_lp, expected = family.logp_and_grads(value, **consts, **args)
        np.testing.assert_allclose(lp, expected_lp, rtol=1e-12)
        np.testing.assert_allclose(grads[0], expected["value"], rtol=1e-12, atol=1e-14)
        for name, g in zip(varying, grads[1:]):
            assert np.shape(g) == lead
            np.testing.assert_allclose(g, expected[name], rtol=1e-12)


def test_random_walk_latent_kernel_declines_batches_of_walks_and_vector_scales():
    assert Dist.GaussianRandomWalk.latent_kernel((2, 5), (("sigma", ()),), False, init_sigma=1.0) is None
    assert Dist.GaussianRandomWalk.latent_kernel((5,), (("sigma", (5,)),), False, init_sigma=1.0) is None
    assert Dist.GaussianRandomWalk.latent_kernel((1,), (("sigma", ()),), False, init_sigma=1.0) is None
