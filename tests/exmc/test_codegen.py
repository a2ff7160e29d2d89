"""The generated single-variant function (exmc.codegen) against its oracle, the closure program.

Bit for bit: log-density (value and type) and gradient, on the sampler bench's models, the model
zoo of test_model.py, the float-rows zoo and every posteriordb port (when the folder is there), at
points near the mode and far out (where exp overflows and densities leave the support). Running
the whole suite with ``EXMC_CODEGEN_CHECK=1`` extends the comparison to every evaluation of every
model the suite compiles.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import exmc
from exmc import codegen
from exmc.models import MODELS as PORTED_MODELS, build
from exmc.models import posteriordb
from exmc.program import build_program

from dist_checks import assert_close_grad, numerical_gradient
from test_bench_models import bench_models
from test_float_rows import float_zoo_ir, numpy_zoo_ir, vector_ir
from test_model import MODELS as ZOO

#: Points per model: scales of the standard-normal draws (the last ones push exp into overflow
#: and bounded rvs to their edges).
SCALES = (0.1, 0.5, 1.0, 3.0, 30.0)


def _same(a, b) -> bool:
    return type(a) is type(b) and np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def assert_generated_is_the_closures(model, seed: int = 0) -> None:
    program = model._single
    assert program.generated is not None, "no generated function"
    rng = np.random.default_rng(seed)
    with np.errstate(all="ignore"):
        for scale in SCALES:
            theta = rng.standard_normal(model.dim) * scale
            lp, grad = program.generated(theta.copy())
            lp_ref, grad_ref = program.run(theta.copy())
            assert _same(lp, lp_ref), (scale, lp, lp_ref, program.generated.source)
            assert _same(grad, grad_ref), (scale, grad, grad_ref, program.generated.source)


@pytest.mark.parametrize("name", list(bench_models.MODELS))
def test_bench_models(name):
    assert_generated_is_the_closures(exmc.compile(bench_models.MODELS[name].exmc_ir()))


@pytest.mark.parametrize("name", list(ZOO))
def test_model_zoo(name):
    assert_generated_is_the_closures(ZOO[name]())


@pytest.mark.parametrize("ir", [float_zoo_ir, numpy_zoo_ir, vector_ir])
def test_float_rows_zoo(ir):
    assert_generated_is_the_closures(exmc.compile(ir()))


PORTS = [name for name in posteriordb.list_posteriors()
         if posteriordb.load_posterior(name).model_name in PORTED_MODELS] if posteriordb.available() else []


@pytest.mark.skipif(not posteriordb.available(), reason="posteriordb folder not found")
@pytest.mark.parametrize("name", PORTS)
def test_posteriordb_ports(name):
    assert_generated_is_the_closures(exmc.compile(build(posteriordb.load_posterior(name))))


def test_the_model_evaluates_through_the_generated_function(monkeypatch):
    monkeypatch.delenv(codegen.CHECK_ENV, raising=False)
    model = exmc.compile(bench_models.MODELS["radon"].exmc_ir())
    assert model._single_run is model._single.generated
    # Straight-line code: no loop over steps, no closure calls left in the radon program.
    source = model._single.generated.source
    assert "for " not in source and "(v)" not in source
    theta = np.linspace(-1, 1, model.dim)
    lp, grad = model.logp_and_grad(theta)
    lp_ref, grad_ref = model._single.run(theta)
    assert lp == float(lp_ref) and np.array_equal(grad, grad_ref)


def test_without_codegen_or_a_snippet_the_closures_serve():
    model = exmc.compile(bench_models.MODELS["seed"].exmc_ir())
    plain = build_program(model._analysis, model._free, batched=False, codegen=False)
    assert plain.generated is None and all(not hasattr(step, "src") for step in plain.forward)
    program = build_program(model._analysis, model._free, batched=False)
    del program.forward[0].src  # a step the generator cannot write out
    assert codegen.generate(program, {}) is None
    # The batched variant is not generated.
    assert build_program(model._analysis, model._free, batched=True).generated is None


@pytest.mark.parametrize("ir", [float_zoo_ir, bench_models.MODELS["seed"].exmc_ir])
def test_float_rows_run_through_the_generated_row_function(ir):
    model = exmc.compile(ir())
    rows = build_program(model._analysis, model._free, batched=False, float_rows=True)
    plain = build_program(model._analysis, model._free, batched=False, float_rows=True, codegen=False)
    assert rows.generated is not None and plain.generated is None
    theta = np.random.default_rng(3).normal(size=(5, model.dim))
    lp, grad = rows.run_rows(theta)
    lp_ref, grad_ref = plain.run_rows(theta)
    assert np.array_equal(lp, lp_ref) and np.array_equal(grad, grad_ref)
    # and float rows still equal single calls bit for bit
    for i in range(5):
        single_lp, single_grad = model.logp_and_grad(theta[i])
        assert single_lp == lp[i] and np.array_equal(single_grad, grad[i])


def test_check_mode_raises_when_the_bits_differ(monkeypatch):
    model = exmc.compile(bench_models.MODELS["seed"].exmc_ir())
    generated = model._single.generated

    def off_by_one_ulp(theta):
        lp, grad = generated(theta)
        return np.nextafter(lp, np.inf), grad
    off_by_one_ulp.source = generated.source
    monkeypatch.setenv(codegen.CHECK_ENV, "1")
    checking = codegen.checked(off_by_one_ulp, model._single.run)
    with pytest.raises(AssertionError, match="differs from the closures"):
        checking(np.zeros(model.dim))
    assert codegen.checked(generated, model._single.run)(np.zeros(model.dim))[0] == model._single.run(
        np.zeros(model.dim))[0]
    monkeypatch.delenv(codegen.CHECK_ENV)
    assert codegen.checked(off_by_one_ulp, model._single.run) is off_by_one_ulp


def test_arithmetic_on_numpy_values_is_written_as_operators():
    """``mul``/``add`` of a numpy-typed value are operators in the generated text (no ufunc call
    on a scalar), vector rvs are read and written without reshapes, and an inlined gradient
    already of its argument's shape skips ``sum_to_shape``; the closures keep the ufuncs, and the
    two still agree bit for bit (the tests above)."""
    radon = exmc.compile(bench_models.MODELS["radon"].exmc_ir())._single
    source = radon.generated.source
    assert "reshape" not in source
    assert re.search(r"^    v\d+ = v\d+ \* v\d+$", source, re.M)  # a_dev = sigma_a * a_z
    assert re.search(r"^    v\d+ = v\d+ \+ v\d+$", source, re.M)  # a = a_mean + a_dev
    assert re.search(r"^    g\d+ = _g$", source, re.M)  # the add's gradients, as they are
    funnel = exmc.compile(bench_models.MODELS["funnel"].exmc_ir())._single.generated.source
    assert re.search(r"^    v\d+ = v\d+ \* c\d+$", funnel, re.M)  # v_half = v * 0.5 on a np.float64
    # Float rows compute on Python floats: there the ufunc stays (it returns np.float64).
    ir = exmc.Builder.rv(exmc.Builder.new_ir(), "a", exmc.Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    ir = exmc.Builder.det(ir, "b", "mul", ["a", 2.0])
    ir = exmc.Builder.rv(ir, "y", exmc.Dist.Normal, {"mu": "b", "sigma": 1.0})
    model = exmc.compile(exmc.Builder.obs(ir, "y_obs", "y", np.array([0.5, 1.5])))
    assert re.search(r"^    v\d+ = v\d+ \* c\d+$", model._single.generated.source, re.M)
    rows = build_program(model._analysis, model._free, batched=False, float_rows=True)
    assert not re.search(r"^    v\d+ = v\d+ \* c\d+$", rows.generated.source, re.M)
    assert_generated_is_the_closures(model)


def test_product_gradients_of_scalars_are_dot_products_equal_to_the_reduction():
    """``mul(sigma, z)`` and ``affine(c, s, x)`` with scalar ``sigma``/``s`` and vector ``z``/``x``:
    the single variant (closures and generated code alike) takes ``d/d sigma = g · z`` as one
    ``np.vdot``; it equals the batched variant's product-and-reduction (``sum_to_shape``) to
    rounding, and the finite differences of the log-density."""
    model = exmc.compile(bench_models.MODELS["radon"].exmc_ir())
    program = model._single
    assert re.search(r"^    g\d+ = k\d+\(_g, v\d+\)$", program.generated.source, re.M)  # sigma_a: g · a_z
    assert re.search(r"^    g\d+ = k\d+\(_g, c\d+\)$", program.generated.source, re.M)  # gamma: g · u
    batched = build_program(model._analysis, model._free, batched=True, fuse=False)
    rng = np.random.default_rng(14)
    for theta in rng.normal(scale=0.5, size=(3, model.dim)):
        lp, grad = program.run(theta)
        lp_b, grad_b = batched.run(theta[None])
        np.testing.assert_allclose(grad, grad_b[0], rtol=1e-11, atol=1e-11 * np.abs(grad_b).max())
        assert lp == pytest.approx(float(lp_b[0]), rel=1e-12)
    assert_close_grad(grad, numerical_gradient(lambda t: float(program.run(t)[0]), theta), "radon")
