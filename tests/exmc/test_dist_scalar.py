"""Scalar families: logp against scipy.stats, exact gradients against finite differences,
gradient shapes, batched (leading chain axis) evaluation, support checks and draws."""
from __future__ import annotations

import pickle
import zlib

import numpy as np
import pytest
from scipy import stats

from dist_checks import check_batched, check_gradients, stack_chains
from exmc.dist import Dist

VALUE_SHAPE = (3, 4)
#: Parameter shapes cycled over the parameters of a family, so every broadcasting pattern occurs.
PARAM_SHAPES = [(4,), (3, 1), ()]


def _pos(rng, shape, lo=0.3, hi=3.0):
    return rng.uniform(lo, hi, size=shape)


def _real(rng, shape, scale=2.0):
    return rng.normal(0.0, scale, size=shape)


def _shapes(n):
    return [PARAM_SHAPES[i % len(PARAM_SHAPES)] for i in range(n)]


# Each case: (family, maker(rng) -> (value, params), scipy logpdf(value, params)).
def _normal(rng):
    s = _shapes(2)
    return _real(rng, VALUE_SHAPE), {"mu": _real(rng, s[0]), "sigma": _pos(rng, s[1])}


def _cauchy(rng):
    s = _shapes(2)
    return _real(rng, VALUE_SHAPE, 4.0), {"loc": _real(rng, s[0]), "scale": _pos(rng, s[1])}


def _studentt(rng):
    s = _shapes(3)
    return _real(rng, VALUE_SHAPE, 3.0), {"df": _pos(rng, s[0], 0.5, 30.0), "loc": _real(rng, s[1]), "scale": _pos(rng, s[2])}


def _laplace(rng):
    s = _shapes(2)
    return _real(rng, VALUE_SHAPE), {"mu": _real(rng, s[0]), "b": _pos(rng, s[1])}


def _logistic(rng):
    s = _shapes(2)
    return _real(rng, VALUE_SHAPE, 5.0), {"mu": _real(rng, s[0]), "s": _pos(rng, s[1])}


def _halfnormal(rng):
    return _pos(rng, VALUE_SHAPE, 0.01, 5.0), {"sigma": _pos(rng, (4,))}


def _halfcauchy(rng):
    return _pos(rng, VALUE_SHAPE, 0.01, 8.0), {"scale": _pos(rng, (3, 1))}


def _lognormal(rng):
    s = _shapes(2)
    return _pos(rng, VALUE_SHAPE, 0.05, 6.0), {"mu": _real(rng, s[0], 1.0), "sigma": _pos(rng, s[1])}


def _exponential(rng):
    return _pos(rng, VALUE_SHAPE, 0.01, 5.0), {"lambda": _pos(rng, (4,))}


def _gamma(rng):
    s = _shapes(2)
    return _pos(rng, VALUE_SHAPE, 0.05, 6.0), {"alpha": _pos(rng, s[0], 0.5, 5.0), "beta": _pos(rng, s[1])}


def _invgamma(rng):
    s = _shapes(2)
    return _pos(rng, VALUE_SHAPE, 0.05, 6.0), {"alpha": _pos(rng, s[0], 0.5, 5.0), "beta": _pos(rng, s[1])}


def _weibull(rng):
    s = _shapes(2)
    return _pos(rng, VALUE_SHAPE, 0.05, 4.0), {"k": _pos(rng, s[0], 0.5, 4.0), "lambda": _pos(rng, s[1])}


def _beta(rng):
    s = _shapes(2)
    return rng.uniform(0.02, 0.98, VALUE_SHAPE), {"alpha": _pos(rng, s[0], 0.3, 6.0), "beta": _pos(rng, s[1], 0.3, 6.0)}


def _uniform(rng):
    lower = _real(rng, (4,))
    upper = lower + _pos(rng, (3, 1), 0.5, 3.0)
    value = lower + (upper - lower) * rng.uniform(0.05, 0.95, VALUE_SHAPE)
    return value, {"lower": lower, "upper": upper}


def _truncnormal(rng):
    mu, sigma = _real(rng, (4,)), _pos(rng, (3, 1))
    lower = mu + rng.uniform(-3.0, 1.0, (4,))
    upper = lower + _pos(rng, (3, 1), 0.5, 4.0)
    value = lower + (upper - lower) * rng.uniform(0.05, 0.95, VALUE_SHAPE)
    return value, {"mu": mu, "sigma": sigma, "lower": lower, "upper": upper}


def _truncnormal_far_tail(rng):
    # Both bounds many sigmas above the mean: the mass is ~1e-30 and must still be exact.
    mu, sigma = _real(rng, (4,), 0.5), _pos(rng, (3, 1), 0.5, 1.0)
    lower = mu + 12.0 * sigma
    upper = lower + 0.5
    value = lower + (upper - lower) * rng.uniform(0.05, 0.95, VALUE_SHAPE)
    return value, {"mu": mu, "sigma": sigma, "lower": lower, "upper": upper}


def _truncnormal_lower_only(rng):
    mu, sigma = _real(rng, (4,)), _pos(rng, (3, 1))
    lower = mu + rng.uniform(-2.0, 2.0, (4,))
    value = lower + _pos(rng, VALUE_SHAPE, 0.01, 3.0)
    return value, {"mu": mu, "sigma": sigma, "lower": lower}


def _tn_scipy(x, p):
    lower = p.get("lower", -np.inf)
    upper = p.get("upper", np.inf)
    return stats.truncnorm.logpdf(x, (lower - p["mu"]) / p["sigma"], (upper - p["mu"]) / p["sigma"], p["mu"], p["sigma"])


CONTINUOUS = {
    "Normal": (_normal, lambda x, p: stats.norm.logpdf(x, p["mu"], p["sigma"])),
    "Cauchy": (_cauchy, lambda x, p: stats.cauchy.logpdf(x, p["loc"], p["scale"])),
    "StudentT": (_studentt, lambda x, p: stats.t.logpdf(x, p["df"], p["loc"], p["scale"])),
    "Laplace": (_laplace, lambda x, p: stats.laplace.logpdf(x, p["mu"], p["b"])),
    "Logistic": (_logistic, lambda x, p: stats.logistic.logpdf(x, p["mu"], p["s"])),
    "HalfNormal": (_halfnormal, lambda x, p: stats.halfnorm.logpdf(x, scale=p["sigma"])),
    "HalfCauchy": (_halfcauchy, lambda x, p: stats.halfcauchy.logpdf(x, scale=p["scale"])),
    "Lognormal": (_lognormal, lambda x, p: stats.lognorm.logpdf(x, p["sigma"], scale=np.exp(p["mu"]))),
    "Exponential": (_exponential, lambda x, p: stats.expon.logpdf(x, scale=1.0 / p["lambda"])),
    "Gamma": (_gamma, lambda x, p: stats.gamma.logpdf(x, p["alpha"], scale=1.0 / p["beta"])),
    "InverseGamma": (_invgamma, lambda x, p: stats.invgamma.logpdf(x, p["alpha"], scale=p["beta"])),
    "Weibull": (_weibull, lambda x, p: stats.weibull_min.logpdf(x, p["k"], scale=p["lambda"])),
    "Beta": (_beta, lambda x, p: stats.beta.logpdf(x, p["alpha"], p["beta"])),
    "Uniform": (_uniform, lambda x, p: stats.uniform.logpdf(x, p["lower"], p["upper"] - p["lower"])),
    "TruncatedNormal": (_truncnormal, _tn_scipy),
}
EXTRA_CASES = {
    "TruncatedNormal-far-tail": ("TruncatedNormal", _truncnormal_far_tail, _tn_scipy),
    "TruncatedNormal-lower-only": ("TruncatedNormal", _truncnormal_lower_only, _tn_scipy),
}
ALL_CASES = {name: (name, maker, ref) for name, (maker, ref) in CONTINUOUS.items()} | EXTRA_CASES

#: Random parameter draws per family for the scipy comparison (12 values each).
N_TRIALS = 8


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_logp_matches_scipy(case):
    family_name, maker, ref = ALL_CASES[case]
    family = getattr(Dist, family_name)
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    for _ in range(N_TRIALS):
        value, params = maker(rng)
        lp = family.logp(value, **params)
        assert lp.shape == VALUE_SHAPE
        np.testing.assert_allclose(lp, ref(value, params), rtol=1e-10, atol=1e-10, err_msg=case)


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_gradients_match_finite_differences(case):
    family_name, maker, _ = ALL_CASES[case]
    family = getattr(Dist, family_name)
    rng = np.random.default_rng(1 + zlib.crc32(case.encode()))
    for _ in range(2):
        value, params = maker(rng)
        check_gradients(family, value, params)
        lp, grads = family.logp_and_grads(value, **params)
        assert set(grads) == {"value", *params}


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_batched_equals_per_chain(case):
    family_name, maker, _ = ALL_CASES[case]
    family = getattr(Dist, family_name)
    rng = np.random.default_rng(2)
    draws = [maker(rng) for _ in range(3)]
    value, params = stack_chains([d[0] for d in draws], [d[1] for d in draws])
    check_batched(family, value, params, chains=3)


def test_scalar_inputs_give_scalar_outputs():
    lp, grads = Dist.Normal.logp_and_grads(np.float64(1.0), mu=np.float64(0.0), sigma=np.float64(2.0))
    assert np.shape(lp) == () and all(np.shape(g) == () for g in grads.values())
    assert lp == pytest.approx(stats.norm.logpdf(1.0, 0.0, 2.0), rel=1e-14)


@pytest.mark.parametrize("family_name, value", [
    ("HalfNormal", -0.5), ("HalfCauchy", -1.0), ("Exponential", -0.1), ("Gamma", -1.0), ("Gamma", 0.0),
    ("Lognormal", -1.0), ("InverseGamma", -2.0), ("Weibull", -1.0), ("Beta", 1.2), ("Beta", 0.0),
    ("Uniform", 3.5), ("TruncatedNormal", -1.5), ("HalfFlat", -1.0), ("Uniform01", 1.5),
])
def test_logp_is_minus_inf_outside_support(family_name, value):
    params = {"HalfNormal": {"sigma": 1.0}, "HalfCauchy": {"scale": 1.0}, "Exponential": {"lambda": 1.0},
              "Gamma": {"alpha": 2.0, "beta": 1.0}, "Lognormal": {"mu": 0.0, "sigma": 1.0},
              "InverseGamma": {"alpha": 2.0, "beta": 1.0}, "Weibull": {"k": 2.0, "lambda": 1.0},
              "Beta": {"alpha": 2.0, "beta": 2.0}, "Uniform": {"lower": 0.0, "upper": 3.0},
              "TruncatedNormal": {"mu": 0.0, "sigma": 1.0, "lower": -1.0, "upper": 1.0},
              "HalfFlat": {}, "Uniform01": {}}[family_name]
    family = getattr(Dist, family_name)
    params = {k: np.asarray(v) for k, v in params.items()}
    with np.errstate(all="ignore"):
        assert family.logp(np.asarray(value), **params) == -np.inf
    assert not family.in_support(np.asarray(value), **params)


def test_in_support_accepts_interior_points():
    assert Dist.Normal.in_support(np.array([-1e300, 0.0, 3.0])).all()
    assert not Dist.Normal.in_support(np.array([np.inf])).any()
    assert Dist.HalfNormal.in_support(np.array([0.0, 2.0])).all()
    assert Dist.Uniform.in_support(np.array([0.0, 1.0, 2.0]), lower=np.array(0.0)).all()


@pytest.mark.parametrize("family_name, params, bad", [
    ("Normal", {"mu": 0.0, "sigma": -1.0}, "sigma"),
    ("Normal", {"mu": np.nan, "sigma": 1.0}, "mu"),
    ("HalfNormal", {"sigma": 0.0}, "sigma"),
    ("Exponential", {"lambda": -2.0}, "lambda"),
    ("Gamma", {"alpha": 1.0, "beta": -1.0}, "beta"),
    ("StudentT", {"df": 0.0, "loc": 0.0, "scale": 1.0}, "df"),
    ("Beta", {"alpha": -1.0, "beta": 1.0}, "alpha"),
    ("Uniform", {"lower": 2.0, "upper": 1.0}, "upper"),
    ("TruncatedNormal", {"mu": 0.0, "sigma": 1.0, "lower": 1.0, "upper": 0.0}, "upper"),
    ("Weibull", {"k": 1.0, "lambda": np.array([1.0, -1.0])}, "lambda"),
])
def test_check_params_names_the_parameter(family_name, params, bad):
    family = getattr(Dist, family_name)
    with pytest.raises(ValueError, match=f"param '{bad}'"):
        family.check_params({k: np.asarray(v) for k, v in params.items()})


def test_check_params_accepts_valid_and_partial_params():
    Dist.Normal.check_params({"mu": np.asarray(0.0), "sigma": np.asarray([1.0, 2.0])})
    Dist.Normal.check_params({"sigma": np.asarray(1.0)})  # mu is a reference: not checked


#: Draws for the moment checks; the tolerance is 5 standard errors of the sample mean.
N_DRAWS = 40_000


@pytest.mark.parametrize("family_name, params, mean, var", [
    ("Normal", {"mu": 1.5, "sigma": 2.0}, 1.5, 4.0),
    ("HalfNormal", {"sigma": 2.0}, 2.0 * np.sqrt(2 / np.pi), 4.0 * (1 - 2 / np.pi)),
    ("Exponential", {"lambda": 2.0}, 0.5, 0.25),
    ("Gamma", {"alpha": 3.0, "beta": 2.0}, 1.5, 0.75),
    ("InverseGamma", {"alpha": 6.0, "beta": 5.0}, 1.0, 0.25),
    ("Lognormal", {"mu": 0.0, "sigma": 0.5}, np.exp(0.125), (np.exp(0.25) - 1) * np.exp(0.25)),
    ("Weibull", {"k": 2.0, "lambda": 1.0}, stats.weibull_min.mean(2.0), stats.weibull_min.var(2.0)),
    ("Beta", {"alpha": 2.0, "beta": 5.0}, 2 / 7, 10 / (49 * 8)),
    ("Uniform", {"lower": -1.0, "upper": 3.0}, 1.0, 16 / 12),
    ("Uniform01", {}, 0.5, 1 / 12),
    ("StudentT", {"df": 5.0, "loc": 1.0, "scale": 2.0}, 1.0, 4.0 * 5 / 3),
    ("Laplace", {"mu": -1.0, "b": 0.5}, -1.0, 0.5),
    ("Logistic", {"mu": 2.0, "s": 0.5}, 2.0, 0.25 * np.pi ** 2 / 3),
    ("TruncatedNormal", {"mu": 0.0, "sigma": 1.0, "lower": 0.0, "upper": 2.0},
     stats.truncnorm.mean(0, 2), stats.truncnorm.var(0, 2)),
])
def test_sample_moments_and_shape(family_name, params, mean, var):
    family = getattr(Dist, family_name)
    rng = np.random.default_rng(7)
    params = {k: np.asarray(v) for k, v in params.items()}
    draws = family.sample(rng, (N_DRAWS,), **params)
    assert draws.shape == (N_DRAWS,)
    assert abs(draws.mean() - mean) < 5 * np.sqrt(var / N_DRAWS)
    assert draws.var() == pytest.approx(var, rel=0.1)


def test_sample_shape_is_size_then_param_shape():
    rng = np.random.default_rng(0)
    draws = Dist.Normal.sample(rng, (5,), mu=np.zeros(3), sigma=np.ones((2, 1)))
    assert draws.shape == (5, 2, 3)
    assert Dist.Gamma.sample(rng, None, alpha=np.ones(4), beta=np.asarray(1.0)).shape == (4,)
    assert Dist.Cauchy.sample(rng, 7, loc=np.asarray(0.0), scale=np.asarray(1.0)).shape == (7,)


def test_improper_families_have_zero_logp_and_no_draws():
    value = np.array([-3.0, 0.5, 4.0])
    lp, grads = Dist.Flat.logp_and_grads(value)
    assert np.array_equal(lp, np.zeros(3)) and np.array_equal(grads["value"], np.zeros(3))
    with pytest.raises(ValueError, match="improper"):
        Dist.HalfFlat.sample(np.random.default_rng(0), (2,))


def test_families_are_hashable_and_read_only():
    assert len({Dist.Normal, Dist.Normal, Dist.TruncatedNormal}) == 2
    assert Dist.TruncatedNormal.optional["lower"] == -np.inf
    with pytest.raises(TypeError):
        Dist.TruncatedNormal.optional["lower"] = 0.0
    with pytest.raises(AttributeError, match="read-only"):
        Dist.Normal2 = Dist.Normal


def test_families_pickle_by_name():
    for name in ("Normal", "Gamma", "TruncatedNormal", "Bernoulli"):
        family = getattr(Dist, name)
        assert pickle.loads(pickle.dumps(family)) is family


def test_lognormal_alias_and_unknown_name():
    assert Dist.LogNormal is Dist.Lognormal
    with pytest.raises(AttributeError, match="'Normall'.*known: .*Normal"):
        Dist.Normall


@pytest.mark.parametrize("family_name, value", [
    ("Flat", np.array([-3.0, 0.5, 40.0])), ("HalfFlat", np.array([0.1, 2.0])), ("Uniform01", np.array([0.2, 0.9])),
])
def test_improper_and_unit_uniform_gradients(family_name, value):
    check_gradients(getattr(Dist, family_name), value, {})


@pytest.mark.parametrize("family_name, params, median, iqr", [
    ("Cauchy", {"loc": 1.0, "scale": 2.0}, 1.0, 4.0),
    ("HalfCauchy", {"scale": 2.0}, 2.0, 2.0 * (np.tan(3 * np.pi / 8) - np.tan(np.pi / 8))),
])
def test_heavy_tailed_samples_by_quantiles(family_name, params, median, iqr):
    # No moments: compare the median (standard error ~ 1 / (2 f(m) sqrt(n))) and the IQR.
    draws = getattr(Dist, family_name).sample(np.random.default_rng(12), (N_DRAWS,), **{k: np.asarray(v) for k, v in params.items()})
    lp_median = getattr(Dist, family_name).logp(np.asarray(median), **{k: np.asarray(v) for k, v in params.items()})
    se = 1.0 / (2.0 * np.exp(lp_median) * np.sqrt(N_DRAWS))
    assert abs(np.median(draws) - median) < 5 * se
    q1, q3 = np.quantile(draws, [0.25, 0.75])
    assert q3 - q1 == pytest.approx(iqr, rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_many_random_points_against_scipy_and_finite_differences(case):
    # The default run checks 8 parameter draws per family; this one checks 200 (and 20 for gradients).
    family_name, maker, ref = ALL_CASES[case]
    family = getattr(Dist, family_name)
    rng = np.random.default_rng(100 + zlib.crc32(case.encode()))
    for trial in range(200):
        value, params = maker(rng)
        np.testing.assert_allclose(family.logp(value, **params), ref(value, params), rtol=1e-9, atol=1e-9, err_msg=case)
        if trial < 20:
            check_gradients(family, value, params)
