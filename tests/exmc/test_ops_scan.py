"""The scan op: recursions written with ops, against plain numpy loops; gradients by reverse
accumulation against central differences, single and batched."""
import numpy as np
import pytest

import exmc
from exmc import Builder as B
from exmc.errors import ValidationError
from model_checks import check_model_gradients

ARMA_STEP = [("lag", "mul", ["p0", "carry"]), ("err", "sub", ["x0", "lag"])]


def _observe(ir, det, shape, seed=0):
    ir = B.rv(ir, f"{det}_y", "Normal", {"mu": det, "sigma": 1.0})
    return B.obs(ir, f"{det}_obs", f"{det}_y", np.random.default_rng(seed).normal(size=shape))


def test_linear_recursion_matches_a_loop_and_has_exact_gradients():
    ir = B.rv(B.new_ir(), "x", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(6,))
    ir = B.rv(ir, "theta", "Normal", {"mu": 0.0, "sigma": 0.5})
    ir = B.rv(ir, "e0", "Normal", {"mu": 0.0, "sigma": 1.0})
    ir = B.det(ir, "err", "scan", ["e0", "x", "theta"], step=ARMA_STEP, n_seq=1)
    model = check_model_gradients(_observe(ir, "err", (6,)), seed=1)
    v = model.to_constrained(np.random.default_rng(2).normal(size=model.dim))
    expected, carry = [], v["e0"]
    for x_t in v["x"]:
        carry = x_t - v["theta"] * carry
        expected.append(carry)
    np.testing.assert_allclose(v["err"], expected, rtol=1e-12)


def test_nonlinear_vector_carry_with_two_sequences_and_constants():
    """GARCH-like: s_t = a + b * x_t^2 + c * s_{t-1} * tanh(w_t), on a vector carry."""
    step = [("x2", "square", ["x0"]), ("shock", "mul", ["p0", "x2"]), ("tw", "tanh", ["x1"]),
            ("prev", "mul", ["carry", "tw"]), ("decay", "mul", ["p1", "prev"]),
            ("s", "add", ["shock", "decay"]), ("new", "add", ["s", 0.1])]
    ir = B.rv(B.new_ir(), "x", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(5, 2))
    ir = B.data(ir, "w", np.linspace(-1, 1, 10).reshape(5, 2))
    ir = B.rv(ir, "b", "HalfNormal", {"sigma": 1.0})
    ir = B.rv(ir, "c", "Normal", {"mu": 0.0, "sigma": 0.5}, shape=(2,))
    ir = B.det(ir, "s", "scan", [np.ones(2), "x", "w", "b", "c"], step=step, n_seq=2)
    model = check_model_gradients(_observe(ir, "s", (5, 2)), seed=3)
    v = model.to_constrained(np.random.default_rng(4).normal(size=model.dim))
    carry, expected = np.ones(2), []
    for x_t, w_t in zip(v["x"], np.linspace(-1, 1, 10).reshape(5, 2)):
        carry = v["b"] * x_t ** 2 + v["c"] * carry * np.tanh(w_t) + 0.1
        expected.append(carry)
    np.testing.assert_allclose(v["s"], expected, rtol=1e-12)


def test_constant_scan_is_folded_at_compile_time():
    ir = B.det(B.new_ir(), "h", "scan", [0.0, np.arange(4.0), 0.5], step=ARMA_STEP, n_seq=1)
    ir = B.rv(ir, "m", "Normal", {"mu": "h", "sigma": 1.0})
    model = exmc.compile(ir)
    np.testing.assert_allclose(model._analysis.consts["h"], [0.0, 1.0, 1.5, 2.25])


@pytest.mark.parametrize("step, n_seq, match", [
    ([("a", "nope", ["carry"])], 1, "unknown op"),
    ([("a", "add", ["carry", "zz"])], 1, "unknown 'zz'"),
    ([("a", "stack", ["carry", "carry"])], 1, "carry"),
    ([("a", "add", ["carry", "x0"])], 0, "at least one sequence"),
])
def test_malformed_steps_name_the_det(step, n_seq, match):
    ir = B.rv(B.new_ir(), "x", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(3,))
    ir = B.det(ir, "h", "scan", [0.0, "x"], step=step, n_seq=n_seq)
    with pytest.raises(ValidationError, match=match) as info:
        exmc.compile(ir)
    assert info.value.node == "h"


def test_step_must_be_a_list_of_entries():
    with pytest.raises(ValidationError, match="option 'step'"):
        B.det(B.new_ir(), "h", "scan", [0.0, [1.0, 2.0]], step="add")


@pytest.mark.parametrize("a_shape, step_shape", [((), ()), ((), (2,)), ((2,), (2,))])
def test_linear_recurrence_equals_the_scan_and_has_exact_gradients(a_shape, step_shape):
    ir = B.rv(B.new_ir(), "x", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(7,) + step_shape)
    ir = B.rv(ir, "a", "Normal", {"mu": 0.0, "sigma": 0.5}, shape=a_shape)
    ir = B.rv(ir, "h0", "Normal", {"mu": 0.0, "sigma": 1.0})
    ir = B.det(ir, "fast", "linear_recurrence", ["h0", "x", "a"])
    init = B.det(ir, "h0v", "add", ["h0", np.zeros(step_shape)])
    ir = B.det(init, "slow", "scan", ["h0v", "x", "a"],
               step=[("lag", "mul", ["p0", "carry"]), ("next", "add", ["x0", "lag"])], n_seq=1)
    ir = _observe(ir, "fast", (7,) + step_shape)
    model = check_model_gradients(ir, seed=5)
    v = model.to_constrained(np.random.default_rng(6).normal(size=model.dim))
    np.testing.assert_allclose(v["fast"], v["slow"], rtol=1e-12)


def test_ported_time_series_use_the_fast_recursion_and_match_a_loop():
    from exmc.models import time_series

    y = np.sin(np.arange(30) / 3.0)
    model = exmc.compile(time_series.arma11({"T": 30, "y": list(y)}))
    values = {"mu": 0.2, "phi": 0.5, "theta": -0.3, "sigma": 0.8}
    err, prev_y, prev_err = [], values["mu"], 0.0
    for y_t in y:
        e = y_t - (values["mu"] + values["phi"] * prev_y + values["theta"] * prev_err)
        err.append(e)
        prev_y, prev_err = y_t, e
    from scipy import stats

    expected = (stats.norm(0, 10).logpdf(0.2) + stats.norm(0, 2).logpdf(0.5) + stats.norm(0, 2).logpdf(-0.3)
                + stats.halfcauchy(0, 2.5).logpdf(0.8) + stats.norm(0, 0.8).logpdf(err).sum())
    np.testing.assert_allclose(model.logp(values), expected, rtol=1e-10)
    check_model_gradients(time_series.garch11({"T": 30, "y": list(y), "sigma1": 0.5}), seed=7, scale=0.3)


@pytest.mark.parametrize("name", ["arma11", "garch11"])
def test_the_time_series_ports_through_scan_equal_linear_recurrence(name):
    """arma11/garch11 with ``recursion="scan"`` (the compiled step program) give the linear_recurrence
    ports' log-density and gradient, single and chain-batched (the batched scan runs all chains in
    one pass of its elementwise step)."""
    from exmc.models import time_series

    rng = np.random.default_rng(9)
    y = np.cumsum(rng.normal(size=60)) * 0.1 + 1.0
    data = {"y": y, "T": y.size, "sigma1": 0.5}
    builder = getattr(time_series, name)
    fast, scanned = exmc.compile(builder(data)), exmc.compile(builder(data, recursion="scan"))
    theta = rng.normal(size=(3, fast.dim)) * 0.3
    for point in (theta[0], theta):
        lp, grad = scanned.logp_and_grad(point)
        expected_lp, expected_grad = fast.logp_and_grad(point)
        np.testing.assert_allclose(lp, expected_lp, rtol=1e-12)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-10)
    check_model_gradients(builder(data, recursion="scan"), seed=10, chains=3, scale=0.3)


def test_a_step_with_a_structural_op_runs_per_chain():
    """A step using a non-elementwise op (sum of a vector carry) falls back to one pass per chain;
    gradients still exact, batched rows equal single ones."""
    step = [("total", "sum", ["carry"]), ("scaled", "mul", ["p0", "total"]), ("new", "add", ["x0", "scaled"])]
    ir = B.rv(B.new_ir(), "x", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(4, 2))
    ir = B.rv(ir, "a", "Normal", {"mu": 0.0, "sigma": 0.3})
    ir = B.det(ir, "h", "scan", [np.zeros(2), "x", "a"], step=step, n_seq=1)
    check_model_gradients(_observe(ir, "h", (4, 2)), seed=12)
