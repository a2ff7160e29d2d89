"""Float rows: a batched call over a few chains of a model whose free rvs are all scalars, and whose
program computes on Python floats alone, runs the unbatched program once per chain on floats
(``Program.run_rows``). It must compute the same function as the batched program and as single
evaluations, fall back to the batched program where Python floats raise, and not be used where it
does not apply (vector rvs, many chains, a program that calls numpy)."""
from __future__ import annotations

import numpy as np
import pytest

import exmc
from exmc import Builder, Dist
from exmc.model import ROWWISE_MAX_CHAINS
from exmc.program import Program, build_program
from dist_checks import numerical_gradient
from seed_model import seed_ir

#: As in test_model: central differences on these O(1)-O(100) log-densities are accurate to ~1e-8.
RTOL = 1e-6


def float_zoo_ir():
    """Scalar rvs whose every step computes on floats: identity and log transforms, the scalar
    prior kernels of eight families, and Normal likelihoods by sufficient statistics with both
    parameters varying, a constant mean and a constant scale; ``a``, ``c`` and ``s`` feed several
    terms as mean or scale, so their gradients are sums of contributions."""
    y = np.array([0.3, 1.1, -0.4, 0.9, 2.2])
    ir = Builder.rv(Builder.new_ir(), "a", Dist.Normal, {"mu": 0.5, "sigma": 3.0})
    ir = Builder.rv(ir, "c", Dist.Cauchy, {"loc": -0.2, "scale": 2.0})
    ir = Builder.rv(ir, "t", Dist.StudentT, {"df": 4.0, "loc": 0.1, "scale": 1.5})
    ir = Builder.rv(ir, "s", Dist.HalfNormal, {"sigma": 2.0})
    ir = Builder.rv(ir, "h", Dist.HalfCauchy, {"scale": 1.0})
    ir = Builder.rv(ir, "e", Dist.Exponential, {"lambda": 1.5})
    ir = Builder.rv(ir, "g", Dist.Gamma, {"alpha": 2.0, "beta": 1.0})
    ir = Builder.rv(ir, "l", Dist.Lognormal, {"mu": 0.2, "sigma": 0.8})
    for name, params, data in [("y1", {"mu": "a", "sigma": "s"}, y), ("y2", {"mu": "c", "sigma": "h"}, y[:3]),
                               ("y3", {"mu": 1.0, "sigma": "g"}, y + 1.0), ("y4", {"mu": "t", "sigma": 0.7}, y[1:]),
                               ("y5", {"mu": "a", "sigma": "e"}, y[::2]), ("y6", {"mu": "a", "sigma": "l"}, -y),
                               ("y7", {"mu": "c", "sigma": "s"}, 2.0 * y)]:
        ir = Builder.rv(ir, name, Dist.Normal, params)
        ir = Builder.obs(ir, name + "_obs", name, data)
    return ir


def numpy_zoo_ir():
    """Scalar rvs with steps that call numpy: interval and logit transforms; generic latent,
    noncentered, censored, discrete and Custom terms; dets between scalars."""
    def custom_logp(value, loc):
        return -0.5 * (value - loc) ** 2 - 0.25 * (value - loc) ** 4

    def custom_grad(value, loc):
        d = value - loc
        return {"value": -d - d ** 3, "loc": d + d ** 3}

    ir = Builder.rv(Builder.new_ir(), "a", Dist.Normal, {"mu": 0.5, "sigma": 3.0})
    ir = Builder.rv(ir, "s", Dist.HalfNormal, {"sigma": 2.0})
    ir = Builder.rv(ir, "u", Dist.Uniform, {"lower": -1.0, "upper": 2.0})
    ir = Builder.rv(ir, "p", Dist.Beta, {"alpha": 2.0, "beta": 3.0})
    ir = Builder.rv(ir, "g", Dist.Gamma, {"alpha": 2.0, "beta": 1.0})
    ir = Builder.rv(ir, "z", Dist.Normal, {"mu": "a", "sigma": "s"}, reparam="noncentered")
    ir = Builder.rv(ir, "t", Dist.StudentT, {"df": 4.0, "loc": "a", "scale": "s"})
    ir = Builder.rv(ir, "c", Dist.Custom, {"logp": custom_logp, "grad": custom_grad, "support": "real", "loc": "z"})
    ir = Builder.det(ir, "up", "mul", ["u", "p"])
    ir = Builder.det(ir, "m", "add", ["a", "up"])
    ir = Builder.det(ir, "sd", "softplus", ["s"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "m", "sigma": "sd"})
    ir = Builder.obs(ir, "y_obs", "y", np.array([0.3, 1.1, -0.4, 0.9, 2.2]))
    ir = Builder.rv(ir, "yc", Dist.Normal, {"mu": "t", "sigma": "g"})
    ir = Builder.obs(ir, "yc_obs", "yc", np.array([-1.0, 0.2, 1.5, 1.5]), censored=(-1.0, 1.5))
    ir = Builder.rv(ir, "k", Dist.Poisson, {"mu": "g"})
    ir = Builder.obs(ir, "k_obs", "k", np.array([1.0, 3.0, 0.0, 2.0]))
    ir = Builder.det(ir, "logit", "sub", ["c", "u"])
    ir = Builder.rv(ir, "b", Dist.Bernoulli, {"logit_p": "logit"})
    return Builder.obs(ir, "b_obs", "b", np.array([1.0, 0.0, 1.0]))


def vector_ir():
    """The seed model with a vector mean: a free rv of shape (3,), so float rows do not apply."""
    ir = Builder.rv(Builder.new_ir(), "mu", Dist.Normal, {"mu": 0.0, "sigma": 10.0}, shape=3)
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": 2.0})
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", np.array([2.1, 2.5, 1.8]))


@pytest.fixture
def row_calls(monkeypatch):
    """``(rows, outcome)`` of each ``Program.run_rows`` call in call order: ``"ok"`` when it
    returned, else the name of the exception it raised."""
    calls: list[tuple[int, str]] = []
    original = Program.run_rows

    def spy(self, theta):
        try:
            result = original(self, theta)
        except Exception as exc:
            calls.append((len(theta), type(exc).__name__))
            raise
        calls.append((len(theta), "ok"))
        return result
    monkeypatch.setattr(Program, "run_rows", spy)
    return calls


def _numpy_batched(model, thetas):
    """The batched program's result for ``thetas``: the rows padded past ROWWISE_MAX_CHAINS."""
    padded = np.concatenate([thetas, np.zeros((ROWWISE_MAX_CHAINS + 1 - len(thetas), model.dim))])
    lp, grad = model.logp_and_grad(padded)
    return lp[:len(thetas)], grad[:len(thetas)]


@pytest.mark.parametrize("ir", [seed_ir, float_zoo_ir, numpy_zoo_ir], ids=["seed", "float_zoo", "numpy_zoo"])
@pytest.mark.parametrize("chains", [1, 4, ROWWISE_MAX_CHAINS])
def test_small_batches_equal_the_batched_program_and_single_calls(ir, chains, row_calls):
    model = exmc.compile(ir())
    thetas = np.random.default_rng(chains).uniform(-1.5, 1.5, size=(chains, model.dim))
    lp, grad = model.logp_and_grad(thetas)
    # float rows served this call, except where the program calls numpy
    assert row_calls == ([] if ir is numpy_zoo_ir else [(chains, "ok")])
    assert lp.shape == (chains,) and grad.shape == (chains, model.dim)
    assert lp.dtype == grad.dtype == np.float64
    numpy_lp, numpy_grad = _numpy_batched(model, thetas)
    assert len(row_calls) <= 1  # not for the padded batch
    np.testing.assert_allclose(lp, numpy_lp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, numpy_grad, rtol=1e-11, atol=1e-12)
    for c in range(chains):
        single_lp, single_grad = model.logp_and_grad(thetas[c])
        assert lp[c] == pytest.approx(single_lp, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(grad[c], single_grad, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("ir", [seed_ir, float_zoo_ir], ids=["seed", "float_zoo"])
def test_float_rows_and_single_calls_agree_bit_for_bit(ir):
    # Same operations in the same order on the same IEEE doubles (both take libm's exp): a
    # vectorized sampler over a few chains then follows the pool's chains exactly.
    model = exmc.compile(ir())
    thetas = np.random.default_rng(5).uniform(-2.0, 2.0, size=(ROWWISE_MAX_CHAINS, model.dim))
    lp, grad = model.logp_and_grad(thetas)
    for c in range(len(thetas)):
        single_lp, single_grad = model.logp_and_grad(thetas[c])
        assert lp[c] == single_lp
        np.testing.assert_array_equal(grad[c], single_grad)


def test_float_zoo_gradient_matches_central_differences():
    # Several likelihoods add into the gradients of a, c (means) and s (a scale): the term
    # closures must sum them, in every variant.
    model = exmc.compile(float_zoo_ir())
    rng = np.random.default_rng(11)
    thetas = rng.uniform(-1.5, 1.5, size=(3, model.dim))
    _, rows_grad = model.logp_and_grad(thetas)
    for theta, rows in zip(thetas, rows_grad):
        _, grad = model.logp_and_grad(theta)
        numeric = numerical_gradient(lambda t: model.logp_and_grad(t)[0], theta)
        scale = np.maximum(1.0, np.abs(numeric))
        assert np.max(np.abs(grad - numeric) / scale) < RTOL
        assert np.max(np.abs(rows - numeric) / scale) < RTOL


def test_a_probe_row_tells_float_programs_from_numpy_ones():
    for ir, expected in ((seed_ir, True), (float_zoo_ir, True), (numpy_zoo_ir, False)):
        model = exmc.compile(ir())
        program = build_program(model._analysis, model._free, batched=False, float_rows=True)
        assert program.computes_on_floats(model.dim) is expected, ir.__name__
    # the single variant's values are numpy scalars (theta's entries, and its exp returns one)
    model = exmc.compile(seed_ir())
    assert not model._single.computes_on_floats(model.dim)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow and division by zero
@pytest.mark.parametrize("log_sigma, error", [(800.0, "OverflowError"), (-800.0, "ZeroDivisionError")],
                         ids=["exp_overflows", "sigma_underflows_to_zero"])
def test_where_floats_raise_the_batched_program_answers(log_sigma, error, row_calls):
    # exp(800) overflows (math.exp raises OverflowError, np.exp gives inf); exp(-800) is 0.0 and
    # the likelihood divides by sigma (ZeroDivisionError on floats, inf on numpy).
    model = exmc.compile(seed_ir())
    thetas = np.array([[2.0, -1.0], [2.2, log_sigma], [1.9, -0.8]])
    lp, grad = model.logp_and_grad(thetas)
    assert row_calls == [(3, error)]  # tried, raised, and the batched program answered
    numpy_lp, numpy_grad = _numpy_batched(model, thetas)
    np.testing.assert_array_equal(lp, numpy_lp)
    np.testing.assert_array_equal(grad, numpy_grad)
    assert not np.isfinite(lp[1])
    assert lp[0] == pytest.approx(model.logp_and_grad(thetas[0])[0], rel=1e-12)


def test_float_rows_are_not_used_for_vector_rvs_or_many_chains(row_calls):
    vector = exmc.compile(vector_ir())
    lp, grad = vector.logp_and_grad(np.zeros((4, vector.dim)))
    assert lp.shape == (4,) and grad.shape == (4, vector.dim)
    scalar = exmc.compile(seed_ir())
    scalar.logp_and_grad(np.zeros((ROWWISE_MAX_CHAINS + 1, scalar.dim)))
    assert row_calls == []


def test_float_rows_need_an_unbatched_program_of_scalar_rvs():
    model = exmc.compile(vector_ir())
    with pytest.raises(ValueError, match="all scalars"):
        build_program(model._analysis, model._free, batched=False, float_rows=True)
    model = exmc.compile(seed_ir())
    with pytest.raises(ValueError, match="unbatched"):
        build_program(model._analysis, model._free, batched=True, float_rows=True)
