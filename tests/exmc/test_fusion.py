"""Fused link kernels (``exmc/fusion.py``): a model compiled with them computes the same
log-density and gradient as the plain program (``build_program(..., fuse=False)``, the oracle),
single and batched; a det that also feeds another node is not absorbed."""
from __future__ import annotations

import numpy as np
import pytest

import exmc
from exmc import Builder, Dist
from exmc.fusion import find_fusions
from exmc.program import build_program

RTOL = 1e-10
rng = np.random.default_rng(1414)
N, K = 300, 4
X = rng.normal(size=(N, K))
X_SHIFTED = X + 5.0  # uncentred columns: the sum of squares must not cancel
Y_REAL = 40.0 + X_SHIFTED @ np.array([0.5, -1.0, 0.2, 2.0]) + rng.normal(0.0, 0.3, size=N)
Y_COUNT = rng.poisson(np.exp(0.3 + X @ np.array([0.2, -0.1, 0.3, 0.0]))).astype(float)


def _poisson(extra_consumer=False, linear=True, family="Poisson"):
    ir = Builder.new_ir()
    ir = Builder.data(ir, "X", X)
    ir = Builder.rv(ir, "alpha", Dist.Normal, {"mu": 0.0, "sigma": 2.0})
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=(K,))
    ir = Builder.det(ir, "Xb", "matmul", ["X", "beta"])
    if linear:
        ir = Builder.det(ir, "eta", "add", ["alpha", "Xb"])
    else:  # not a linear predictor: only the exp is fused
        ir = Builder.det(ir, "Xb_sin", "tanh", ["Xb"])
        ir = Builder.det(ir, "eta", "add", ["alpha", "Xb_sin"])
    if family == "Bernoulli":
        ir = Builder.rv(ir, "y", Dist.Bernoulli, {"logit_p": "eta"})
        return Builder.obs(ir, "y_obs", "y", (Y_COUNT > 1).astype(float))
    ir = Builder.det(ir, "rate", "exp", ["eta"])
    ir = Builder.rv(ir, "y", Dist.Poisson, {"mu": "rate"})
    if extra_consumer:  # the rate also feeds a second likelihood: it must stay a det of its own
        ir = Builder.rv(ir, "z", Dist.Poisson, {"mu": "rate"})
        ir = Builder.obs(ir, "z_obs", "z", Y_COUNT)
    return Builder.obs(ir, "y_obs", "y", Y_COUNT)


def _normal(form, sigma_varying=True):
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": 2.0}) if sigma_varying else ir
    sigma = "sigma" if sigma_varying else 0.4
    if form == "affine":
        ir = Builder.data(ir, "x", X_SHIFTED[:, 0])
        ir = Builder.rv(ir, "c", Dist.Normal, {"mu": 0.0, "sigma": 50.0})
        ir = Builder.rv(ir, "s", Dist.Normal, {"mu": 0.0, "sigma": 5.0})
        ir = Builder.det(ir, "mu", "affine", ["c", "s", "x"])
    else:
        ir = Builder.data(ir, "X", X_SHIFTED)
        ir = Builder.rv(ir, "b", Dist.Normal, {"mu": 0.0, "sigma": 5.0}, shape=(K,))
        if form == "matmul":
            ir = Builder.det(ir, "mu", "matmul", ["X", "b"])
        else:
            ir = Builder.rv(ir, "c", Dist.Normal, {"mu": 0.0, "sigma": 50.0})
            ir = Builder.det(ir, "Xb", "matmul", ["X", "b"])
            ir = Builder.det(ir, "mu", "add", ["c", "Xb"] if form == "add" else ["Xb", "c"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": sigma})
    return Builder.obs(ir, "y_obs", "y", Y_REAL)


GROUPS = rng.integers(0, 12, size=N)
GROUPS[:12] = np.arange(12)  # every group has a row


def _varying_intercept(with_slope=True):
    ir = Builder.new_ir()
    ir = Builder.data(ir, "group", GROUPS)
    ir = Builder.data(ir, "x", X_SHIFTED[:, 0])
    ir = Builder.rv(ir, "a", Dist.Normal, {"mu": 40.0, "sigma": 10.0}, shape=(12,))
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": 2.0})
    ir = Builder.det(ir, "a_row", "index", ["a", "group"])
    if with_slope:
        ir = Builder.rv(ir, "s", Dist.Normal, {"mu": 0.0, "sigma": 5.0})
        ir = Builder.det(ir, "mu", "affine", ["a_row", "s", "x"])
        ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    else:
        ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "a_row", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", Y_REAL)


Y_RETURNS = 0.05 * rng.standard_t(4.0, size=40)


def _stochastic_volatility(df="varying", scale_op="exp", extra_consumer=False, loc=0.0):
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "step", Dist.Exponential, {"lambda": 10.0})
    ir = Builder.rv(ir, "h", Dist.GaussianRandomWalk, {"sigma": "step", "init_sigma": 1.0}, shape=(40,))
    ir = Builder.det(ir, "log_vol", "add", ["h", -3.0])
    if df == "varying":
        ir = Builder.rv(ir, "nu", Dist.Exponential, {"lambda": 0.1})
    ir = Builder.det(ir, "vol", scale_op, ["log_vol"])
    ir = Builder.rv(ir, "r", Dist.StudentT, {"df": "nu" if df == "varying" else 5.0, "loc": loc, "scale": "vol"})
    if extra_consumer:  # the scale also feeds a second likelihood: it must stay a det of its own
        ir = Builder.rv(ir, "r2", Dist.Normal, {"mu": 0.0, "sigma": "vol"})
        ir = Builder.obs(ir, "r2_obs", "r2", Y_RETURNS)
    return Builder.obs(ir, "r_obs", "r", Y_RETURNS)


def _funnel(mu="zero", shared=False, vector_eta=False):
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "v", Dist.Normal, {"mu": 0.0, "sigma": 3.0}, shape=(5,) if vector_eta else None)
    ir = Builder.det(ir, "v_half", "mul", ["v", 0.5])
    ir = Builder.det(ir, "x_scale", "exp", ["v_half"])
    if mu == "varying":
        ir = Builder.rv(ir, "m", Dist.Normal, {"mu": 1.0, "sigma": 2.0})
    ir = Builder.rv(ir, "x", Dist.Normal, {"mu": {"zero": 0.0, "constant": 1.5, "varying": "m"}[mu],
                                           "sigma": "x_scale"}, shape=(5,))
    if shared:  # the scale also feeds a likelihood: it must stay a det of its own
        ir = Builder.rv(ir, "y", Dist.Normal, {"mu": 0.0, "sigma": "x_scale"})
        ir = Builder.obs(ir, "y_obs", "y", Y_RETURNS[:5])
    return ir


CASES = {
    "normal-log-scale": (_funnel, ("normal_log_scale",)),
    "normal-log-scale-mu": (lambda: _funnel(mu="constant"), ("normal_log_scale",)),
    "normal-log-scale-varying-mu": (lambda: _funnel(mu="varying"), ("normal_log_scale",)),
    "normal-shared-log-scale": (lambda: _funnel(shared=True), ()),
    "normal-vector-log-scale": (lambda: _funnel(vector_eta=True), ()),
    "studentt-log-scale": (_stochastic_volatility, ("studentt_log_scale",)),
    "studentt-log-scale-fixed-df": (lambda: _stochastic_volatility(df="fixed"), ("studentt_log_scale",)),
    "studentt-log-scale-loc-array": (lambda: _stochastic_volatility(loc=np.linspace(-0.01, 0.01, 40)),
                                     ("studentt_log_scale",)),
    "studentt-shared-scale": (lambda: _stochastic_volatility(extra_consumer=True), ()),
    "studentt-softplus-scale": (lambda: _stochastic_volatility(scale_op="softplus"), ()),
    "normal-varying-intercept-slope": (_varying_intercept, ("normal_linear",)),
    "normal-varying-intercept": (lambda: _varying_intercept(with_slope=False), ("normal_linear",)),
    "poisson-glm": (_poisson, ("glm",)),
    "poisson-log": (lambda: _poisson(linear=False), ("poisson_log",)),
    "bernoulli-glm": (lambda: _poisson(family="Bernoulli"), ("glm",)),
    "normal-matmul": (lambda: _normal("matmul"), ("normal_linear",)),
    "normal-add": (lambda: _normal("add"), ("normal_linear",)),
    "normal-add-reversed": (lambda: _normal("add_reversed"), ("normal_linear",)),
    "normal-affine": (lambda: _normal("affine"), ("normal_linear",)),
    "normal-constant-sigma": (lambda: _normal("add", sigma_varying=False), ("normal_linear",)),
    "poisson-shared-rate": (lambda: _poisson(extra_consumer=True), ()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_program_equals_plain_program(case):
    make, expected_fusions = CASES[case]
    model = exmc.compile(make())
    kinds = tuple(f.kind for f in find_fusions(model._analysis, model._single.varying))
    assert kinds == expected_fusions
    plain = build_program(model._analysis, model._free, batched=False, fuse=False)
    plain_batched = build_program(model._analysis, model._free, batched=True, fuse=False)
    thetas = rng.uniform(-1.0, 1.0, size=(3, model.dim))
    for theta in thetas:
        lp, grad = model.logp_and_grad(theta)
        lp0, grad0 = plain.run(theta)
        assert lp == pytest.approx(float(lp0), rel=RTOL)
        np.testing.assert_allclose(grad, grad0, rtol=RTOL, atol=RTOL * np.max(np.abs(grad0)))
    lps, grads = model.logp_and_grad(thetas)
    lps0, grads0 = plain_batched.run(thetas)
    np.testing.assert_allclose(lps, lps0, rtol=RTOL)
    np.testing.assert_allclose(grads, grads0, rtol=RTOL, atol=RTOL * np.max(np.abs(grads0)))
    # the absorbed dets are still reported with the draws
    values = model.to_constrained(thetas[0])
    assert {"mu", "rate", "eta", "a_row", "vol", "x_scale"} & set(values)


def test_a_noncentered_rv_is_not_fused():
    """With ``ncp="auto"`` the funnel's ``x`` takes noncentered coordinates: its term is the
    standard normal of those, not the fused log-scale Normal."""
    model = exmc.compile(_funnel(mu="varying"), ncp="auto")
    assert [f.kind for f in find_fusions(model._analysis, model._single.varying)] == []
    plain = build_program(model._analysis, model._free, batched=False, fuse=False)
    theta = rng.uniform(-1.0, 1.0, size=model.dim)
    lp, grad = model.logp_and_grad(theta)
    lp0, grad0 = plain.run(theta)
    assert lp == float(lp0) and np.array_equal(grad, grad0)
