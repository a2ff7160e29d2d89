"""Compiled models: exact gradients of whole models, batched = single, conversions, logp, pickling."""
from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pytest
from scipy import stats

import exmc
from exmc import Builder, Dist
from exmc.model import ROWWISE_MAX_CHAINS
from dist_checks import numerical_gradient
from seed_model import SEED_Y, seed_ir

RNG = np.random.default_rng(7)
#: Central differences (dist_checks.numerical_gradient, step 1e-6 * max(1, |x|)) on these O(1)-O(100)
#: log-densities are accurate to ~1e-8 relative; the issue asks for ~1e-6.
RTOL = 1e-6


def logistic_ir(n=60, k=4):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, k))
    y = (rng.random(n) < 0.4).astype(float)
    ir = Builder.data(Builder.new_ir(), "X", X)
    ir = Builder.rv(ir, "alpha", Dist.Normal, {"mu": 0.0, "sigma": 2.5})
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=k)
    ir = Builder.det(ir, "Xb", "matmul", ["X", "beta"])
    ir = Builder.det(ir, "eta", "add", ["alpha", "Xb"])
    ir = Builder.rv(ir, "y", Dist.Bernoulli, {"logit_p": "eta"})
    return Builder.obs(ir, "y_obs", "y", y), X, y


def hierarchical_ir(reparam=None):
    rng = np.random.default_rng(4)
    groups = rng.integers(0, 5, size=30)
    y = rng.normal(groups * 0.5, 1.0)
    ir = Builder.data(Builder.new_ir(), "group_idx", groups)
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 5.0})
    ir = Builder.rv(ir, "tau", Dist.HalfCauchy, {"scale": 2.5})
    ir = Builder.rv(ir, "theta", Dist.Normal, {"mu": "mu", "sigma": "tau"}, shape=5, reparam=reparam)
    ir = Builder.det(ir, "theta_group", "index", ["theta", "group_idx"])
    ir = Builder.rv(ir, "sigma", Dist.Exponential, {"lambda": 1.0})
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "theta_group", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", y), groups, y


def dirichlet_ir():
    counts = np.array([3.0, 7.0, 1.0, 4.0])
    ir = Builder.rv(Builder.new_ir(), "w", Dist.Dirichlet, {"alpha": np.ones(4) * 1.5})
    ir = Builder.det(ir, "logw", "log", ["w"])
    ir = Builder.det(ir, "ll", "mul", ["logw", counts])
    ir = Builder.det(ir, "total", "sum", ["ll"])
    # A Normal "likelihood" of a constant 0 with mean -total ties the simplex to data (a multinomial
    # kernel up to a constant) and makes the gradient flow through log, mul, sum.
    ir = Builder.rv(ir, "z", Dist.Normal, {"mu": "total", "sigma": 10.0})
    return Builder.obs(ir, "z_obs", "z", np.array(0.0))


def censored_ir():
    y = np.array([0.3, 1.2, 2.0, 2.0, -1.0, 0.7, -1.0, 1.5])
    ir = Builder.rv(Builder.new_ir(), "mu", Dist.Normal, {"mu": 0.0, "sigma": 3.0})
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": 2.0})
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", y, censored=(-1.0, 2.0)), y


def mixture_ir():
    y = np.array([-1.2, -0.8, -1.0, 2.1, 1.8, 2.4, -0.9])
    ir = Builder.rv(Builder.new_ir(), "m0", Dist.Normal, {"mu": -1.0, "sigma": 2.0})
    ir = Builder.rv(ir, "m1", Dist.Normal, {"mu": 1.0, "sigma": 2.0})
    ir = Builder.rv(ir, "w", Dist.Dirichlet, {"alpha": np.ones(2)})
    ir = Builder.rv(ir, "s", Dist.HalfNormal, {"sigma": 1.0})
    components = [(Dist.Normal, {"mu": "m0", "sigma": "s"}), (Dist.Normal, {"mu": "m1", "sigma": "s"})]
    ir = Builder.rv(ir, "y", Dist.Mixture, {"weights": "w", "components": components})
    return Builder.obs(ir, "y_obs", "y", y)


def multivariate_ir():
    ir = Builder.rv(Builder.new_ir(), "mu", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=3)
    ir = Builder.rv(ir, "x", Dist.MvNormal, {"mu": "mu", "cov": np.eye(3) * 2 + 0.5})
    ir = Builder.rv(ir, "s", Dist.HalfNormal, {"sigma": 1.0})
    return Builder.rv(ir, "walk", Dist.GaussianRandomWalk, {"sigma": "s", "init_sigma": 1.0}, shape=6)


def ops_chain_ir():
    """Many ops in one model, a scalar rv meeting vectors and matrices, values used several times."""
    ir = Builder.rv(Builder.new_ir(), "a", Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    ir = Builder.rv(ir, "s", Dist.HalfNormal, {"sigma": 1.0})
    ir = Builder.rv(ir, "u", Dist.Uniform, {"lower": -1.0, "upper": 2.0}, shape=3)
    ir = Builder.rv(ir, "M", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=(2, 3))
    ir = Builder.det(ir, "c", "cumsum", ["u"])
    ir = Builder.det(ir, "st", "stack", ["c", "u"], axis=1)          # (3, 2)
    ir = Builder.det(ir, "Mst", "matmul", ["M", "st"])                # (2, 2)
    ir = Builder.det(ir, "flat", "concat", ["Mst", np.ones((1, 2))])  # (3, 2)
    ir = Builder.det(ir, "tot", "sum", ["flat"], axis=0)              # (2,)
    ir = Builder.det(ir, "sig", "sigmoid", ["tot"])
    ir = Builder.det(ir, "p", "pow", ["s", 1.5])
    ir = Builder.det(ir, "mean", "affine", ["a", "p", "sig"])
    ir = Builder.det(ir, "sd", "softplus", ["s"])
    ir = Builder.det(ir, "sd2", "add", ["sd", "p"])
    ir = Builder.det(ir, "m2", "tanh", ["mean"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "m2", "sigma": "sd2"})
    return Builder.obs(ir, "y_obs", "y", np.array([[0.2, -0.4], [0.5, 0.1], [0.0, 0.3]]))


def noncentered_corner_cases_ir():
    """A noncentered rv nothing depends on, and one with constant mu and sigma."""
    ir = Builder.rv(Builder.new_ir(), "m", Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    ir = Builder.rv(ir, "s", Dist.HalfNormal, {"sigma": 1.0})
    ir = Builder.rv(ir, "lonely", Dist.Normal, {"mu": "m", "sigma": "s"}, shape=3, reparam="noncentered")
    ir = Builder.rv(ir, "fixed", Dist.Normal, {"mu": 1.0, "sigma": 2.0}, shape=2, reparam="noncentered")
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "fixed", "sigma": "s"})
    return Builder.obs(ir, "y_obs", "y", np.array([0.5, 1.5]))


def assert_gradient_exact(model, theta):
    lp, grad = model.logp_and_grad(theta)
    assert np.isfinite(lp)
    numeric = numerical_gradient(lambda t: model.logp_and_grad(t)[0], theta)
    scale = np.maximum(1.0, np.abs(numeric))
    assert np.max(np.abs(grad - numeric) / scale) < RTOL, (grad, numeric)


MODELS = {
    "seed": lambda: exmc.compile(seed_ir()),
    "logistic": lambda: exmc.compile(logistic_ir()[0]),
    "hierarchical": lambda: exmc.compile(hierarchical_ir()[0]),
    "hierarchical_noncentered": lambda: exmc.compile(hierarchical_ir("noncentered")[0]),
    "hierarchical_ncp_auto": lambda: exmc.compile(hierarchical_ir()[0], ncp="auto"),
    "dirichlet": lambda: exmc.compile(dirichlet_ir()),
    "censored": lambda: exmc.compile(censored_ir()[0]),
    "mixture": lambda: exmc.compile(mixture_ir()),
    "multivariate": lambda: exmc.compile(multivariate_ir()),
    "ops_chain": lambda: exmc.compile(ops_chain_ir()),
    "noncentered_corners": lambda: exmc.compile(noncentered_corner_cases_ir()),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_whole_model_gradient_matches_central_differences(name):
    model = MODELS[name]()
    for _ in range(3):
        assert_gradient_exact(model, RNG.uniform(-1.5, 1.5, size=model.dim))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("chains", [4, ROWWISE_MAX_CHAINS + 1])  # scalar models: float rows, batched program
def test_batched_evaluation_agrees_with_single(name, chains):
    model = MODELS[name]()
    thetas = RNG.uniform(-2, 2, size=(chains, model.dim))
    lp, grad = model.logp_and_grad(thetas)
    assert lp.shape == (chains,) and grad.shape == (chains, model.dim)
    for c in range(chains):
        lp_c, grad_c = model.logp_and_grad(thetas[c])
        assert lp[c] == pytest.approx(lp_c, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(grad[c], grad_c, rtol=1e-11, atol=1e-12)
    values = model.to_constrained(thetas)
    for c in range(chains):
        for key, value in model.to_constrained(thetas[c]).items():
            np.testing.assert_allclose(values[key][c], value, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_to_unconstrained_inverts_to_constrained(name):
    model = MODELS[name]()
    theta = RNG.uniform(-1, 1, size=model.dim)
    np.testing.assert_allclose(model.to_unconstrained(model.to_constrained(theta)), theta, atol=1e-10)
    thetas = RNG.uniform(-1, 1, size=(3, model.dim))
    np.testing.assert_allclose(model.to_unconstrained(model.to_constrained(thetas)), thetas, atol=1e-10)


REAL_PARAMS = {"mu", "loc", "logit_p"}
UNIT_PARAMS = {"p"}
#: (family, constant params, observed data or None for a free rv of shape (2,))
FAMILY_CASES = [
    ("Normal", {}, None), ("HalfNormal", {}, None), ("HalfCauchy", {}, None),
    ("TruncatedNormal", {"lower": -1.0, "upper": 2.0}, None), ("Lognormal", {}, None), ("Exponential", {}, None),
    ("Gamma", {}, None), ("InverseGamma", {}, None), ("Weibull", {}, None), ("Beta", {}, None),
    ("Uniform", {"lower": -1.0, "upper": 2.0}, None), ("Uniform01", {}, None), ("Cauchy", {}, None),
    ("StudentT", {}, None), ("Laplace", {}, None), ("Logistic", {}, None), ("Flat", {}, None), ("HalfFlat", {}, None),
    ("Bernoulli", {}, np.array([0.0, 1.0, 1.0])), ("Binomial", {"n": 5}, np.array([0.0, 3.0, 5.0])),
    ("Poisson", {}, np.array([0.0, 2.0, 7.0])), ("NegativeBinomial", {}, np.array([0.0, 2.0, 7.0])),
]


def family_ir(name, constants, data):
    """The family's random parameters are rvs themselves (so gradients flow into them)."""
    family = getattr(Dist, name)
    alternatives = family.alternatives or (family.params,)
    chosen = alternatives[-1] if name in ("Bernoulli", "Binomial") else alternatives[0]
    ir, params = Builder.new_ir(), dict(constants)
    for key in chosen:
        if key in params:
            continue
        hyper = f"h_{key}"
        if key in REAL_PARAMS and family.support not in ("count", "bounded_count"):
            ir = Builder.rv(ir, hyper, Dist.Normal, {"mu": 0.0, "sigma": 1.0})
        elif key in UNIT_PARAMS:
            ir = Builder.rv(ir, hyper, Dist.Uniform01, {})
        else:
            ir = Builder.rv(ir, hyper, Dist.HalfNormal, {"sigma": 2.0})
        params[key] = hyper
    if data is None:
        return Builder.rv(ir, "x", family, params, shape=2)
    ir = Builder.rv(ir, "x", family, params)
    return Builder.obs(ir, "x_obs", "x", data)


@pytest.mark.parametrize("name,constants,data", FAMILY_CASES, ids=[c[0] for c in FAMILY_CASES])
def test_every_scalar_family_through_the_model(name, constants, data):
    """Transforms, Jacobians and parameter gradients of each family, inside a compiled model."""
    model = exmc.compile(family_ir(name, constants, data))
    theta = RNG.uniform(-1, 1, size=model.dim)
    assert_gradient_exact(model, theta)
    thetas = RNG.uniform(-1, 1, size=(3, model.dim))
    lp, grad = model.logp_and_grad(thetas)
    for c in range(3):
        np.testing.assert_allclose(grad[c], model.logp_and_grad(thetas[c])[1], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(model.to_unconstrained(model.to_constrained(thetas)), thetas, atol=1e-9)


def test_seed_model_logp_matches_scipy_and_jacobian():
    model = exmc.compile(seed_ir())
    assert model.free_names == [("mu", ()), ("sigma", ())]
    values = {"mu": 2.2, "sigma": 0.4}
    expected = (stats.norm(0, 10).logpdf(2.2) + stats.halfnorm(scale=2).logpdf(0.4)
                + stats.norm(2.2, 0.4).logpdf(SEED_Y).sum())
    assert model.logp(values) == pytest.approx(expected, rel=1e-12)
    # On the unconstrained scale the log transform adds log(sigma).
    assert model.logp(values, jacobian=True) == pytest.approx(expected + np.log(0.4), rel=1e-12)
    theta = model.to_unconstrained(values)
    np.testing.assert_allclose(theta, [2.2, np.log(0.4)])
    assert model.logp_and_grad(theta)[0] == pytest.approx(expected + np.log(0.4), rel=1e-12)


def test_logistic_regression_logp_matches_direct_formula():
    ir, X, y = logistic_ir()
    model = exmc.compile(ir)
    alpha, beta = 0.3, np.array([0.5, -1.0, 0.2, 0.0])
    eta = alpha + X @ beta
    expected = (stats.norm(0, 2.5).logpdf(alpha) + stats.norm(0, 1).logpdf(beta).sum()
                + np.sum(y * eta - np.logaddexp(0, eta)))
    assert model.logp({"alpha": alpha, "beta": beta}) == pytest.approx(expected, rel=1e-12)


def test_noncentered_model_reports_original_scale_and_same_density():
    centered = exmc.compile(hierarchical_ir()[0])
    noncentered = exmc.compile(hierarchical_ir("noncentered")[0])
    assert centered.free_names == noncentered.free_names
    values = {"mu": 0.4, "tau": 0.8, "theta": np.array([0.1, 0.5, 1.0, 1.4, 2.1]), "sigma": 1.1}
    # The constrained density is the same model, whatever the parametrisation.
    assert noncentered.logp(values) == pytest.approx(centered.logp(values), rel=1e-12)
    theta = noncentered.to_unconstrained(values)
    z = theta[2:7]
    np.testing.assert_allclose(z, (values["theta"] - 0.4) / 0.8)
    out = noncentered.to_constrained(theta)
    np.testing.assert_allclose(out["theta"], values["theta"])
    np.testing.assert_allclose(out["theta_group"], values["theta"][hierarchical_ir()[1]])


def test_ncp_auto_applies_where_mu_and_sigma_are_references():
    model = exmc.compile(hierarchical_ir()[0], ncp="auto")
    assert model.ir.get("theta").reparam == "noncentered"
    assert model.ir.get("mu").reparam is None  # constant mu and sigma: left centred
    assert exmc.compile(hierarchical_ir()[0]).ir.get("theta").reparam is None
    with pytest.raises(ValueError, match="ncp"):
        exmc.compile(hierarchical_ir()[0], ncp=True)


def test_dirichlet_rv_lives_on_the_simplex_with_k_minus_one_coordinates():
    model = exmc.compile(dirichlet_ir())
    assert model.dim == 3 and model.free_names[0] == ("w", (4,))
    w = model.to_constrained(RNG.normal(size=3))["w"]
    assert w.shape == (4,) and w.sum() == pytest.approx(1.0) and np.all(w > 0)
    values = {"w": np.array([0.1, 0.2, 0.3, 0.4])}
    counts = np.array([3.0, 7.0, 1.0, 4.0])
    expected = stats.dirichlet(np.ones(4) * 1.5).logpdf(values["w"]) + stats.norm(
        -np.sum(counts * np.log(values["w"])), 10).logpdf(0.0)
    assert model.logp(values) == pytest.approx(expected, rel=1e-10)


def test_censored_likelihood_uses_cdf_and_survival():
    ir, y = censored_ir()
    model = exmc.compile(ir)
    mu, sigma = 0.5, 1.3
    dist = stats.norm(mu, sigma)
    middle = (y > -1.0) & (y < 2.0)
    expected = (stats.norm(0, 3).logpdf(mu) + stats.halfnorm(scale=2).logpdf(sigma) + dist.logpdf(y[middle]).sum()
                + (y <= -1.0).sum() * dist.logcdf(-1.0) + (y >= 2.0).sum() * dist.logsf(2.0))
    assert model.logp({"mu": mu, "sigma": sigma}) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("family,params,scipy_dist", [
    ("Exponential", {"lambda": 0.7}, stats.expon(scale=1 / 0.7)),
    ("Weibull", {"k": 1.5, "lambda": 2.0}, stats.weibull_min(1.5, scale=2.0)),
    ("Lognormal", {"mu": 0.2, "sigma": 0.6}, stats.lognorm(0.6, scale=np.exp(0.2))),
    ("Logistic", {"mu": 0.2, "s": 0.6}, stats.logistic(0.2, 0.6)),
    ("Cauchy", {"loc": 0.2, "scale": 0.6}, stats.cauchy(0.2, 0.6)),
])
def test_censoring_of_other_families_matches_scipy_and_has_exact_gradients(family, params, scipy_dist):
    y = np.array([0.5, 1.0, 2.5, 3.0, 0.2])
    lower, upper = 0.5, 2.5
    ir = Builder.new_ir()
    names = {}
    for key, value in params.items():
        names[key] = f"p_{key}"
        prior = Dist.HalfNormal if family != "Logistic" or key != "mu" else Dist.Normal
        prior_params = {"sigma": 3.0} if prior is Dist.HalfNormal else {"mu": 0.0, "sigma": 3.0}
        if family in ("Lognormal", "Logistic", "Cauchy") and key in ("mu", "loc"):
            prior, prior_params = Dist.Normal, {"mu": 0.0, "sigma": 3.0}
        ir = Builder.rv(ir, names[key], prior, prior_params)
    ir = Builder.rv(ir, "y", getattr(Dist, family), names)
    ir = Builder.obs(ir, "y_obs", "y", y, censored=(lower, upper))
    model = exmc.compile(ir)
    values = {names[k]: v for k, v in params.items()}
    likelihood = (scipy_dist.logpdf(y[(y > lower) & (y < upper)]).sum() + (y <= lower).sum() * scipy_dist.logcdf(lower)
                  + (y >= upper).sum() * scipy_dist.logsf(upper))
    prior_lp = model.logp(values) - likelihood
    # The prior part must not depend on the data: recompute it with an uncensored model of no data.
    priors_only = exmc.compile(Builder.new_ir().__class__(tuple(n for n in ir.nodes if n.name not in ("y", "y_obs"))))
    assert prior_lp == pytest.approx(priors_only.logp(values), rel=1e-10, abs=1e-10)
    assert_gradient_exact(model, model.to_unconstrained(values))


def test_one_sided_truncation_keeps_its_infinite_default_bound():
    ir = Builder.rv(Builder.new_ir(), "x", Dist.TruncatedNormal, {"mu": 0.5, "sigma": 1.5, "lower": 0.0})
    model = exmc.compile(ir)
    value = 1.2
    expected = stats.truncnorm((0.0 - 0.5) / 1.5, np.inf, loc=0.5, scale=1.5).logpdf(value)
    assert model.logp({"x": value}) == pytest.approx(expected, rel=1e-12)
    assert_gradient_exact(model, model.to_unconstrained({"x": value}))


def test_family_kernels_are_used_and_agree_with_the_generic_path():
    from dataclasses import dataclass

    from exmc.dist.continuous import NormalFamily

    calls = []

    @dataclass(frozen=True)
    class CountingNormal(NormalFamily):
        def prior_kernel(self, shape, batched, value_in_support, **params):
            calls.append(("prior", shape, batched))
            return super().prior_kernel(shape, batched, value_in_support, **params)

        def observed_kernel(self, value, varying, batched, **params):
            calls.append(("observed", varying, batched))
            return super().observed_kernel(value, varying, batched, **params)

    @dataclass(frozen=True)
    class GenericNormal(NormalFamily):  # no kernels: every term through logp_and_grads
        def prior_kernel(self, shape, batched, value_in_support, **params):
            return None

        def observed_kernel(self, value, varying, batched, **params):
            return None

    def build(family):
        ir = Builder.rv(Builder.new_ir(), "beta", family, {"mu": 0.5, "sigma": 2.0}, shape=3)
        ir = Builder.rv(ir, "m", family, {"mu": 0.0, "sigma": 1.0})
        ir = Builder.rv(ir, "s", Dist.HalfNormal, {"sigma": 1.0})
        ir = Builder.rv(ir, "y", family, {"mu": "beta", "sigma": "s"})  # vector mu: no observed kernel
        ir = Builder.obs(ir, "y_obs", "y", np.array([0.1, 0.4, -0.3]))
        ir = Builder.rv(ir, "z", family, {"sigma": "s", "mu": "m"})  # scalar params: sufficient statistics
        return exmc.compile(Builder.obs(ir, "z_obs", "z", np.array([0.3, -0.2, 0.9, 1.4])))

    hooked, plain = build(CountingNormal(name="CountingNormal", params=("mu", "sigma"))), build(
        GenericNormal(name="GenericNormal", params=("mu", "sigma")))
    assert sorted(calls) == [("observed", (("mu", (3,)), ("sigma", ())), False),
                             ("observed", (("sigma", ()), ("mu", ())), False),
                             ("prior", (), False), ("prior", (3,), False)]
    theta = RNG.normal(size=5)
    lp, grad = hooked.logp_and_grad(theta)
    assert lp == pytest.approx(plain.logp_and_grad(theta)[0], rel=1e-13)
    np.testing.assert_allclose(grad, plain.logp_and_grad(theta)[1], rtol=1e-12)
    assert_gradient_exact(hooked, theta)
    thetas = RNG.normal(size=(2, 5))
    lp, grad = hooked.logp_and_grad(thetas)
    assert ("prior", (3,), True) in calls and ("observed", (("sigma", ()), ("mu", ())), True) in calls
    np.testing.assert_allclose(lp, plain.logp_and_grad(thetas)[0], rtol=1e-13)
    np.testing.assert_allclose(grad, plain.logp_and_grad(thetas)[1], rtol=1e-12)


def test_to_constrained_includes_every_det_even_unused_ones():
    ir = Builder.det(seed_ir(), "mu_sq", "square", ["mu"])
    ir = Builder.det(ir, "const", "exp", [np.array([0.0, 1.0])])
    model = exmc.compile(ir)
    out = model.to_constrained(np.array([1.5, 0.0]))
    assert set(out) == {"mu", "sigma", "mu_sq", "const"}
    assert out["mu_sq"] == pytest.approx(2.25)
    np.testing.assert_allclose(out["const"], [1.0, np.e])
    batched = model.to_constrained(np.array([[1.5, 0.0], [2.0, 0.0]]))
    np.testing.assert_allclose(batched["mu_sq"], [2.25, 4.0])
    assert batched["const"].shape == (2, 2)
    # An unused det changes nothing in the density.
    theta = np.array([0.3, 0.1])
    assert model.logp_and_grad(theta)[0] == exmc.compile(seed_ir()).logp_and_grad(theta)[0]


def test_model_pickles_and_recompiles_identically():
    model = exmc.compile(logistic_ir()[0])
    theta = RNG.normal(size=model.dim)
    for module in (pickle, cloudpickle):
        back = module.loads(module.dumps(model))
        assert back.free_names == model.free_names and back.dim == model.dim
        lp, grad = back.logp_and_grad(theta)
        assert lp == model.logp_and_grad(theta)[0]
        np.testing.assert_array_equal(grad, model.logp_and_grad(theta)[1])


def test_custom_family_travels_with_cloudpickle():
    def logp(x, loc):
        return -0.5 * (x - loc) ** 2

    def grad(x, loc):
        return {"value": -(x - loc), "loc": x - loc}

    ir = Builder.rv(Builder.new_ir(), "x", Dist.Custom, {"logp": logp, "grad": grad, "support": "real", "loc": 1.0})
    model = cloudpickle.loads(cloudpickle.dumps(exmc.compile(ir)))
    lp, g = model.logp_and_grad(np.array([3.0]))
    assert lp == pytest.approx(-2.0) and g[0] == pytest.approx(-2.0)


def test_compile_rejects_what_is_not_an_ir():
    with pytest.raises(TypeError, match="expects an IR"):
        exmc.compile({"mu": 1.0})


def test_wrong_theta_shape_is_rejected():
    model = exmc.compile(seed_ir())
    with pytest.raises(ValueError, match="dim=2"):
        model.logp_and_grad(np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        model.logp_and_grad(np.zeros((2, 2, 2)))
    with pytest.raises(KeyError, match="sigma"):
        model.to_unconstrained({"mu": 1.0})
