"""The sampler benchmark's models (bench/bench_models.py): each exmc model compiles, has a finite
log-density and gradient, and — when PyMC is installed — equals its PyMC twin's log-density up to a
constant, with the same gradient, on PyMC's unconstrained scale (log transforms, Jacobians included).
The NumPyro twins get the same check behind the ``slow`` marker (eager JAX tracing is slow).

If the twins differed, the benchmark would compare samplers on different posteriors.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import exmc

BENCH_MODELS_PATH = Path(__file__).resolve().parents[2] / "bench" / "bench_models.py"
#: Unconstrained points per model, drawn uniform(-HALF_WIDTH, HALF_WIDTH) like Stan's initialisation.
N_POINTS, HALF_WIDTH = 3, 1.0
#: Agreement of the two log-densities relative to their size. exmc's StudentT equals scipy's to
#: 1e-14; PyMC 5.28's differs from scipy by up to ~1e-8 of the total at small ``nu`` (measured).
LOGP_RTOL = 1e-8


def _load_bench_models():
    spec = importlib.util.spec_from_file_location("bench_models", BENCH_MODELS_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_models", module)
    spec.loader.exec_module(module)
    return module


bench_models = _load_bench_models()
MODEL_NAMES = list(bench_models.MODELS)


def _points(dim: int, name: str) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, name)))
    return rng.uniform(-HALF_WIDTH, HALF_WIDTH, size=(N_POINTS, dim))


@pytest.fixture(scope="module", params=MODEL_NAMES)
def compiled(request):
    spec = bench_models.MODELS[request.param]
    return spec, exmc.compile(spec.exmc_ir())


def test_every_model_is_registered_with_its_free_parameters(compiled):
    spec, model = compiled
    assert [name for name, _ in model.free_names] == list(spec.params)


def test_logp_and_grad_are_finite(compiled):
    spec, model = compiled
    for theta in _points(model.dim, spec.name):
        lp, grad = model.logp_and_grad(theta)
        assert np.isfinite(lp), f"{spec.name}: logp {lp} at {theta}"
        assert grad.shape == (model.dim,)
        assert np.all(np.isfinite(grad)), f"{spec.name}: gradient {grad} at {theta}"


def _pymc_logp_and_grad(pm_model, logp, dlogp, free_names, theta: np.ndarray) -> tuple[float, np.ndarray]:
    """PyMC's log-density and gradient (compiled ``logp``/``dlogp``) at exmc's unconstrained ``theta``,
    whose layout is exmc's ``free_names`` order; the gradient comes back in the same layout."""
    value_of = {rv.name: pm_model.rvs_to_values[rv].name for rv in pm_model.free_RVs}
    point, offset = {}, 0
    for name, shape in free_names:
        size = int(np.prod(shape, dtype=int))
        point[value_of[name]] = theta[offset:offset + size].reshape(shape)
        offset += size
    pm_grad = dlogp(point)
    by_value, offset = {}, 0  # PyMC's gradient is flat in pm_model.value_vars order
    for value_var in pm_model.value_vars:
        size = int(np.prod(point[value_var.name].shape, dtype=int))
        by_value[value_var.name] = pm_grad[offset:offset + size]
        offset += size
    grad = np.concatenate([by_value[value_of[name]] for name, _ in free_names])
    return float(logp(point)), grad


def test_matches_pymc_twin_up_to_a_constant(compiled):
    pytest.importorskip("pymc")
    spec, model = compiled
    pm_model = spec.pymc()
    # FAST_COMPILE: pytensor's Python implementations, no C compilation (keeps the test fast).
    logp = pm_model.compile_logp(jacobian=True, mode="FAST_COMPILE")
    dlogp = pm_model.compile_dlogp(jacobian=True, mode="FAST_COMPILE")
    differences, scale = [], 0.0
    for theta in _points(model.dim, spec.name):
        lp, grad = model.logp_and_grad(theta)
        pm_lp, pm_grad = _pymc_logp_and_grad(pm_model, logp, dlogp, model.free_names, theta)
        differences.append(lp - pm_lp)
        scale = max(scale, abs(lp))
        np.testing.assert_allclose(grad, pm_grad, rtol=1e-8, atol=1e-8, err_msg=f"{spec.name} gradient at {theta}")
    np.testing.assert_allclose(differences, differences[0], rtol=0, atol=LOGP_RTOL * (1.0 + scale),
                               err_msg=f"{spec.name}: logp - PyMC logp is not constant")


@pytest.mark.slow  # eager JAX tracing: ~20 s of CPU for the five models
def test_matches_numpyro_twin_up_to_a_constant(compiled):
    pytest.importorskip("numpyro")
    import jax
    from numpyro.infer.util import potential_energy

    jax.config.update("jax_enable_x64", True)  # compare in float64, as exmc computes
    spec, model = compiled
    numpyro_model = spec.numpyro()

    def neg_logp(params):  # NumPyro's potential energy: -logp on the unconstrained scale
        return potential_energy(numpyro_model, (), {}, params)

    differences = []
    for theta in _points(model.dim, spec.name):
        params, offset = {}, 0
        for name, shape in model.free_names:
            size = int(np.prod(shape, dtype=int))
            params[name] = theta[offset:offset + size].reshape(shape)
            offset += size
        lp, grad = model.logp_and_grad(theta)
        grads = jax.grad(neg_logp)(params)
        np_grad = -np.concatenate([np.ravel(grads[name]) for name, _ in model.free_names])
        differences.append(lp + float(neg_logp(params)))
        np.testing.assert_allclose(grad, np_grad, rtol=1e-8, atol=1e-8, err_msg=f"{spec.name} gradient at {theta}")
    np.testing.assert_allclose(differences, differences[0], rtol=0, atol=1e-10 * (1.0 + abs(lp)),
                               err_msg=f"{spec.name}: logp - NumPyro logp is not constant")
