"""Custom with a log-density written with exmc ops (``exmc.math``, numpy ufuncs, or step entries):
no hand-written gradient, the program's exact VJPs instead -- checked against central differences
(single and chain-batched), against the built-in family it re-implements, and by sampling a
conjugate posterior."""
import cloudpickle
import numpy as np
import pytest
from arviz_stats.base import array_stats

import exmc
import exmc.math as em
from exmc import Builder as B
from exmc import Dist
from exmc.errors import ValidationError
from model_checks import check_model_gradients


def laplace_logp(value, mu, b):
    return -em.abs(value - mu) / b - em.log(2.0 * b)


def normal_logp(value, mu, sigma):
    z = (value - mu) / sigma
    return -0.5 * z ** 2 - em.log(sigma) - 0.5 * np.log(2 * np.pi)


def mixture_logp(value, w, s):
    """Two zero-mean normals of sd 1 and s, weight w on the first: logsumexp over a stacked axis."""
    first = em.log(w) - 0.5 * value ** 2
    second = em.log1p(-w) - 0.5 * (value / s) ** 2 - em.log(s)
    return em.logsumexp(em.stack(first, second, axis=-1), axis=-1) - 0.5 * np.log(2 * np.pi)


def _laplace_model():
    ir = B.rv(B.new_ir(), "m", "Normal", {"mu": 0.0, "sigma": 1.0})
    ir = B.rv(ir, "b", "HalfNormal", {"sigma": 1.0})
    ir = B.rv(ir, "x", Dist.Custom, {"logp": laplace_logp, "mu": "m", "b": "b"}, shape=(3,))
    return ir


def test_a_traced_density_has_exact_gradients_single_and_batched():
    model = check_model_gradients(_laplace_model(), seed=1, chains=3)
    theta = np.array([0.1, 0.2, 0.3, -0.4, 0.5])
    values = model.to_constrained(theta)
    expected = (-0.5 * values["m"] ** 2 - 0.5 * np.log(2 * np.pi)                       # m ~ N(0, 1)
                + np.log(2.0) - 0.5 * values["b"] ** 2 - 0.5 * np.log(2 * np.pi) + theta[1]  # b, log-Jacobian
                + np.sum(-np.abs(values["x"] - values["m"]) / values["b"] - np.log(2 * values["b"])))
    np.testing.assert_allclose(model.logp_and_grad(theta)[0], expected, rtol=1e-12)


def test_logsumexp_stack_and_a_batched_vector_value():
    ir = B.rv(B.new_ir(), "w", "Beta", {"alpha": 2.0, "beta": 2.0})
    ir = B.rv(ir, "s", "HalfNormal", {"sigma": 2.0})
    ir = B.rv(ir, "y", Dist.Custom, {"logp": mixture_logp, "w": "w", "s": "s"})
    ir = B.obs(ir, "y_obs", "y", np.array([-2.5, -0.3, 0.1, 0.8, 3.0]))
    model = check_model_gradients(ir, seed=2, chains=4)
    theta = np.array([0.3, -0.2])
    v = model.to_constrained(theta)
    y = np.array([-2.5, -0.3, 0.1, 0.8, 3.0])
    density = (v["w"] * np.exp(-0.5 * y ** 2) + (1 - v["w"]) * np.exp(-0.5 * (y / v["s"]) ** 2) / v["s"]) / np.sqrt(2 * np.pi)
    assert np.isclose(model.logp({"w": v["w"], "s": v["s"]}), model.logp({"w": v["w"], "s": v["s"]}))
    reference = exmc.compile(B.obs(B.rv(B.rv(B.rv(B.new_ir(), "w", "Beta", {"alpha": 2.0, "beta": 2.0}), "s",
                                                   "HalfNormal", {"sigma": 2.0}), "y", "Normal",
                                              {"mu": 0.0, "sigma": 1.0}), "y_obs", "y", np.zeros(0)))
    prior = reference.logp_and_grad(theta)[0]  # the two priors, Jacobians included (no data)
    np.testing.assert_allclose(model.logp_and_grad(theta)[0] - prior, np.sum(np.log(density)), rtol=1e-12)


@pytest.mark.parametrize("form", ["exmc.math", "numpy ufuncs", "step entries"])
def test_the_three_spellings_give_the_builtin_normal(form):
    """A Normal written as an ops density equals Dist.Normal, value and gradient, whichever way it
    is written."""
    logp = {
        "exmc.math": normal_logp,
        "numpy ufuncs": lambda value, mu, sigma: (-0.5 * np.square((value - mu) / sigma) - np.log(sigma)
                                                  - 0.5 * np.log(2 * np.pi)),
        "step entries": [("d", "sub", ["value", "mu"]), ("z", "div", ["d", "sigma"]), ("z2", "square", ["z"]),
                         ("half", "mul", [-0.5, "z2"]), ("ls", "log", ["sigma"]), ("a", "sub", ["half", "ls"]),
                         ("lp", "sub", ["a", 0.5 * np.log(2 * np.pi)])],
    }[form]

    def model(family, params):
        ir = B.rv(B.new_ir(), "mu", "Normal", {"mu": 0.0, "sigma": 2.0})
        ir = B.rv(ir, "sigma", "Lognormal", {"mu": 0.0, "sigma": 0.5})
        ir = B.rv(ir, "y", family, {**params, "mu": "mu", "sigma": "sigma"})
        return exmc.compile(B.obs(ir, "y_obs", "y", np.array([0.5, -1.0, 2.0, 0.3])))

    custom, builtin = model(Dist.Custom, {"logp": logp}), model("Normal", {})
    batch = np.random.default_rng(5).normal(size=(3, 2)) * 0.5
    for theta in (batch[0], batch):
        lp, grad = custom.logp_and_grad(theta)
        expected_lp, expected_grad = builtin.logp_and_grad(theta)
        np.testing.assert_allclose(lp, expected_lp, rtol=1e-12)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_sampling_a_conjugate_posterior_through_an_ops_likelihood():
    """mu ~ N(0, 10), y_i ~ CustomNormal(mu, 1), 20 points: the posterior is N(sum y / (n + 0.01),
    1 / sqrt(n + 0.01)); mean within 4 MCSE, sd within 4 of its MCSE."""
    y = np.random.default_rng(7).normal(1.5, 1.0, size=20)
    ir = B.rv(B.new_ir(), "mu", "Normal", {"mu": 0.0, "sigma": 10.0})
    ir = B.rv(ir, "y", Dist.Custom, {"logp": normal_logp, "mu": "mu", "sigma": 1.0})
    ir = B.obs(ir, "y_obs", "y", y)
    chains = exmc.NUTS.Sampler.sample_chains(ir, 2, num_samples=600, num_warmup=300, seed=11, parallel=False)
    draws = np.stack([np.asarray(trace["mu"]) for trace in chains])
    precision = y.size + 1.0 / 100.0
    mean, sd = y.sum() / precision, 1.0 / np.sqrt(precision)
    mcse_mean = float(array_stats.mcse(draws, chain_axis=0, draw_axis=1, method="mean"))
    mcse_sd = float(array_stats.mcse(draws, chain_axis=0, draw_axis=1, method="sd"))
    assert abs(draws.mean() - mean) <= 4 * mcse_mean
    assert abs(draws.std(ddof=1) - sd) <= 4 * mcse_sd


def test_an_ops_density_travels_with_the_ir():
    ir = cloudpickle.loads(cloudpickle.dumps(_laplace_model()))
    theta = np.array([0.1, 0.2, 0.3, -0.4, 0.5])
    np.testing.assert_allclose(exmc.compile(ir).logp_and_grad(theta)[1],
                               exmc.compile(_laplace_model()).logp_and_grad(theta)[1], rtol=1e-14)
    model = cloudpickle.loads(cloudpickle.dumps(exmc.compile(_laplace_model())))
    assert np.isfinite(model.logp_and_grad(theta)[0])


def _if_on_value(value):
    return -value if value > 0 else value


@pytest.mark.parametrize("logp, match", [
    (_if_on_value, "comparison of traced values"),
    (lambda value: np.where(value > 0, value, 0.0), "comparison of traced values"),
    (lambda value: np.logaddexp.reduce(value), "cannot be traced"),
    (lambda value: 3.0, "must return an expression"),
    ([("a", "log", ["valu"])], "unknown 'valu'"),
    ([("a", "nope", ["value"])], "unknown op"),
])
def test_an_untraceable_logp_without_grad_is_named(logp, match):
    ir = B.new_ir()
    with pytest.raises((ValueError, ValidationError), match=f"logp.*({match})|({match}).*grad"):
        exmc.compile(B.rv(ir, "x", Dist.Custom, {"logp": logp}))


def test_traced_ops_cover_where_maximum_and_softplus():
    def logp(value, c):
        hinge = em.maximum(value - c, 0.0)
        return -em.softplus(value) - hinge ** 2 + em.where(np.array([1.0, 0.0]), value, 0.0)

    ir = B.rv(B.new_ir(), "c", "Normal", {"mu": 0.0, "sigma": 1.0})
    ir = B.rv(ir, "x", Dist.Custom, {"logp": logp, "c": "c"}, shape=(2,))
    check_model_gradients(ir, seed=8, chains=3)
