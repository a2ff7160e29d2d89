"""Structured families: Mixture (flattened component params) and Custom (user callables)."""
from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pytest
from scipy import stats

from dist_checks import check_batched, check_gradients, stack_chains
from exmc import transforms
from exmc.dist import Dist
from exmc.dist.mixture import component_param_name


def _normal_mixture():
    return Dist.Mixture.resolve({
        "weights": np.array([0.3, 0.7]),
        "components": [(Dist.Normal, {"mu": "m0", "sigma": 1.0}), (Dist.Normal, {"mu": "m1", "sigma": "s1"})],
    })


def test_mixture_resolve_flattens_component_params():
    family, flat = _normal_mixture()
    assert family.params == ("weights", "c0_mu", "c0_sigma", "c1_mu", "c1_sigma")
    assert flat["c0_mu"] == "m0" and flat["c1_sigma"] == "s1" and flat["c0_sigma"] == 1.0
    assert family.param_event_ndim == {"weights": 1}
    assert family.support == "real" and not family.discrete
    assert family.default_transform() is transforms.identity
    assert component_param_name(3, "lambda") == "c3_lambda"
    # resolving again is a no-op; the specialised family pickles by value
    assert family.resolve(flat)[0] is family
    assert pickle.loads(pickle.dumps(family)) == family


def _mix_inputs(rng):
    value = rng.normal(0, 3, (3, 4))
    w = rng.dirichlet(np.ones(3), size=(4,))  # batch (4,) + K=3
    params = {"weights": w, "c0_mu": rng.normal(size=(4,)), "c0_sigma": rng.uniform(0.5, 2.0, (3, 1)),
              "c1_loc": np.asarray(1.0), "c1_scale": rng.uniform(0.5, 2.0, (4,)),
              "c2_df": np.asarray(4.0), "c2_loc": rng.normal(size=(3, 1)), "c2_scale": np.asarray(2.0)}
    return value, params


def _three_component_family():
    return Dist.Mixture.resolve({
        "weights": "w",
        "components": [(Dist.Normal, {"mu": 0.0, "sigma": 1.0}), (Dist.Cauchy, {"loc": 0.0, "scale": 1.0}),
                       (Dist.StudentT, {"df": 4.0, "loc": 0.0, "scale": 1.0})],
    })[0]


def test_mixture_logp_matches_weighted_scipy_densities():
    family = _three_component_family()
    value, p = _mix_inputs(np.random.default_rng(0))
    dens = (p["weights"][..., 0] * stats.norm.pdf(value, p["c0_mu"], p["c0_sigma"])
            + p["weights"][..., 1] * stats.cauchy.pdf(value, p["c1_loc"], p["c1_scale"])
            + p["weights"][..., 2] * stats.t.pdf(value, p["c2_df"], p["c2_loc"], p["c2_scale"]))
    np.testing.assert_allclose(family.logp(value, **p), np.log(dens), rtol=1e-12)


def test_mixture_gradients_match_finite_differences():
    family = _three_component_family()
    value, params = _mix_inputs(np.random.default_rng(1))
    assert set(family.logp_and_grads(value, **params)[1]) == {"value", *params}
    check_gradients(family, value, params)


def test_mixture_batched_equals_per_chain():
    family = _three_component_family()
    rng = np.random.default_rng(2)
    draws = [_mix_inputs(rng) for _ in range(2)]
    value, params = stack_chains([d[0] for d in draws], [d[1] for d in draws], {"weights": 1})
    check_batched(family, value, params, chains=2)


def test_mixture_far_tail_is_finite():
    family, _ = _normal_mixture()
    lp, grads = family.logp_and_grads(np.array(60.0), weights=np.array([0.5, 0.5]), c0_mu=np.array(0.0),
                                      c0_sigma=np.array(1.0), c1_mu=np.array(1.0), c1_sigma=np.array(1.0))
    assert np.isfinite(lp) and all(np.all(np.isfinite(g)) for g in grads.values())
    assert lp == pytest.approx(np.log(0.5) + stats.norm.logpdf(60.0, 1.0, 1.0), rel=1e-12)


def test_poisson_mixture_is_discrete_with_parameter_gradients():
    family, _ = Dist.Mixture.resolve({"weights": np.array([0.2, 0.8]),
                                      "components": [(Dist.Poisson, {"mu": 1.0}), (Dist.Poisson, {"mu": "lam"})]})
    assert family.discrete and family.support == "count"
    k = np.array([0.0, 1.0, 3.0, 7.0])
    params = {"weights": np.array([0.2, 0.8]), "c0_mu": np.asarray(1.0), "c1_mu": np.asarray(4.0)}
    ref = np.log(0.2 * stats.poisson.pmf(k, 1.0) + 0.8 * stats.poisson.pmf(k, 4.0))
    np.testing.assert_allclose(family.logp(k, **params), ref, rtol=1e-12)
    check_gradients(family, k, params, wrt=("weights", "c0_mu", "c1_mu"))
    assert family.in_support(np.array([0.0, 2.5])).tolist() == [True, False]
    with pytest.raises(ValueError, match="discrete"):
        family.default_transform()


@pytest.mark.parametrize("params, message", [
    ({"weights": [1.0]}, "param 'components' is missing"),
    ({"weights": [1.0], "components": []}, "non-empty list"),
    ({"weights": [1.0], "components": [Dist.Normal]}, r"components\[0\]' must be a \(family, params\) pair"),
    ({"weights": [1.0], "components": [(Dist.Normal, {"mu": 0.0})]}, r"components\[0\]': Normal takes \{mu, sigma\}"),
    ({"weights": [0.5, 0.5], "components": [(Dist.Normal, {"mu": 0.0, "sigma": 1.0}), (Dist.HalfNormal, {"sigma": 1.0})]},
     "mixes supports"),
    ({"weights": [1.0], "components": [(Dist.MvNormal, {"mu": np.zeros(2), "cov": np.eye(2)})]}, "not a scalar family"),
    ({"weights": [1.0], "components": [(Dist.Normal, {"mu": 0.0, "sigma": 1.0})], "extra": 1}, "param 'extra'"),
])
def test_mixture_resolve_errors_name_the_field(params, message):
    with pytest.raises(ValueError, match=message):
        Dist.Mixture.resolve(params)


def test_mixture_check_params():
    family, _ = _normal_mixture()
    family.check_params({"weights": np.array([0.4, 0.6]), "c0_sigma": np.asarray(1.0)})
    with pytest.raises(ValueError, match="param 'weights' must be non-negative and sum to 1"):
        family.check_params({"weights": np.array([0.4, 0.7])})
    with pytest.raises(ValueError, match="one weight per component"):
        family.check_params({"weights": np.array([0.2, 0.3, 0.5])})
    with pytest.raises(ValueError, match=r"components\[0\]' \(Normal\): param 'sigma'"):
        family.check_params({"c0_sigma": np.asarray(-1.0)})


def test_mixture_sample_moments():
    family, _ = _normal_mixture()
    rng = np.random.default_rng(3)
    params = {"weights": np.array([0.3, 0.7]), "c0_mu": np.asarray(-2.0), "c0_sigma": np.asarray(0.5),
              "c1_mu": np.asarray(3.0), "c1_sigma": np.asarray(1.0)}
    draws = family.sample(rng, (40_000,), **params)
    assert draws.shape == (40_000,)
    mean = 0.3 * -2.0 + 0.7 * 3.0
    var = 0.3 * (0.25 + 4.0) + 0.7 * (1.0 + 9.0) - mean ** 2
    assert abs(draws.mean() - mean) < 5 * np.sqrt(var / 40_000)
    assert np.mean(draws < 0.5) == pytest.approx(0.3, abs=0.01)


def _laplace_like():
    return Dist.Custom.resolve({
        "logp": lambda value, scale: -np.abs(value) / scale - np.log(2 * scale),
        "grad": lambda value, scale: {"value": -np.sign(value) / scale,
                                      "scale": np.abs(value) / scale ** 2 - 1 / scale},
        "support": "real",
        "scale": "s",
    })


def test_custom_resolve_and_logp_and_grads():
    family, flat = _laplace_like()
    assert family.params == ("scale",) and flat == {"scale": "s"}
    value, params = np.array([[-1.5, 0.3, 2.0]]), {"scale": np.array([0.5, 1.0, 2.0])}
    np.testing.assert_allclose(family.logp(value, **params), stats.laplace.logpdf(value, 0, params["scale"]), rtol=1e-12)
    check_gradients(family, value, params)


def test_custom_value_only_grad_and_total_over_trailing_axis():
    family, _ = Dist.Custom.resolve({"logp": lambda value: -0.5 * np.sum(value ** 2, axis=-1),
                                     "grad": lambda value: -value, "support": "real"})
    value = np.arange(6.0).reshape(2, 3)
    lp, grads = family.logp_and_grads(value)
    assert lp.shape == (2,) and set(grads) == {"value"}
    np.testing.assert_array_equal(grads["value"], -value)


def test_custom_travels_with_cloudpickle():
    family, _ = _laplace_like()
    clone = cloudpickle.loads(cloudpickle.dumps(family))
    np.testing.assert_array_equal(clone.logp(np.array([1.0, -2.0]), scale=np.asarray(2.0)),
                                  family.logp(np.array([1.0, -2.0]), scale=np.asarray(2.0)))


def test_custom_support_transform_and_sample():
    family, _ = Dist.Custom.resolve({"logp": lambda value: -value, "grad": lambda value: -np.ones_like(value),
                                     "support": "positive",
                                     "sample": lambda rng, size: rng.exponential(1.0, size)})
    assert family.default_transform() is transforms.log
    assert family.in_support(np.array([-1.0, 1.0])).tolist() == [False, True]
    assert family.sample(np.random.default_rng(0), 5, shape=(2,)).shape == (5, 2)
    no_sampler, _ = Dist.Custom.resolve({"logp": lambda value: -value, "grad": lambda value: -1.0})
    with pytest.raises(ValueError, match="'sample' callable"):
        no_sampler.sample(np.random.default_rng(0), 3)


@pytest.mark.parametrize("params, message", [
    ({"grad": abs}, "param 'logp' is missing"),
    ({"logp": abs, "grad": 3.0}, "param 'grad' must be a callable"),
    ({"logp": abs, "grad": abs, "support": "simplex"}, "param 'support' must be one of"),
])
def test_custom_resolve_errors(params, message):
    with pytest.raises(ValueError, match=message):
        Dist.Custom.resolve(params)


def test_custom_bad_gradient_shape_is_reported():
    family, _ = Dist.Custom.resolve({"logp": lambda value: -value ** 2, "grad": lambda value: np.zeros(5)})
    with pytest.raises(ValueError, match=r"Custom grad returned shape \(5,\) for a value of shape \(3,\)"):
        family.logp_and_grads(np.zeros(3))


def test_unresolved_structured_families_refuse_to_evaluate():
    with pytest.raises(ValueError, match="must be resolved first"):
        Dist.Mixture.logp_and_grads(np.zeros(2), weights=np.array([1.0]))
    with pytest.raises(ValueError, match="must be resolved first"):
        Dist.Custom.logp_and_grads(np.zeros(2))
