"""The compiled gradient kernels (:mod:`exmc.dist.kernels_numba`) against their numpy oracles and
finite differences, and the switch that chooses them (:mod:`exmc.accel`, ``EXMC_GRAD``): what a
model records, what runs with numba absent, and draws that are the same in pool, sequential and
vectorized runs."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.special import digamma, gammaln

import exmc
from exmc import accel
from exmc.dist.multivariate import grw_latent_kernel
from exmc.dist.studentt_kernels import studentt_log_scale_kernel

from dist_checks import assert_close_grad, numerical_gradient

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
BENCH = Path(__file__).resolve().parents[2] / "bench"

rng = np.random.default_rng(1414)
T = 40
Y = 0.05 * rng.standard_t(4.0, size=T)
Y[5] = 0.0
ETA = np.log(0.04) + 0.5 * rng.normal(size=T)
CHAINS = 3
ETAS = ETA + 0.3 * rng.normal(size=(CHAINS, T))
DFS = np.array([2.5, 6.5, 40.0])
WALK = np.cumsum(rng.normal(scale=0.2, size=T))
WALKS = WALK + 0.1 * rng.normal(size=(CHAINS, T))
GRW_CASES = [(("sigma",), {"init_sigma": 10.0}), (("init_sigma",), {"sigma": 0.3}),
             (("sigma", "init_sigma"), {}), (("init_sigma", "sigma"), {})]
GRW_IDS = ["sigma", "init_sigma", "both", "both_reordered"]
POINT = {"sigma": 0.25, "init_sigma": 1.5}


def _close(a, b, rtol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(b)))))


def _same_results(got, expected, rtol=1e-12):
    (lp, grads), (lp_ref, grads_ref) = got, expected
    _close(lp, lp_ref, rtol)
    assert len(grads) == len(grads_ref)
    for g, g_ref in zip(grads, grads_ref):
        assert np.shape(g) == np.shape(g_ref)
        _close(g, g_ref, rtol)


@needs_numba
@pytest.mark.parametrize("loc", [0.0, 0.01, np.linspace(-0.02, 0.02, T)], ids=["zero", "scalar", "array"])
@pytest.mark.parametrize("df", [None, 6.5], ids=["varying_df", "fixed_df"])
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_studentt_numba_kernel_equals_its_numpy_oracle(loc, df, batched):
    args = (ETAS,) if batched else (ETA,)
    if df is None:
        args += (DFS,) if batched else (6.5,)
    numba = studentt_log_scale_kernel(Y, loc, df, batched, engine="numba")
    numpy = studentt_log_scale_kernel(Y, loc, df, batched, engine="numpy")
    assert numba.grad_kernel == "numba" and getattr(numpy, "grad_kernel", "numpy") == "numpy"
    _same_results(numba(*args), numpy(*args))


@needs_numba
@pytest.mark.parametrize("varying, consts", GRW_CASES, ids=GRW_IDS)
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_random_walk_numba_kernel_equals_its_numpy_oracle(varying, consts, batched):
    shapes = tuple((name, ()) for name in varying)
    numba = grw_latent_kernel((T,), shapes, batched, consts, engine="numba")
    numpy = grw_latent_kernel((T,), shapes, batched, consts, engine="numpy")
    if batched:
        args = (WALKS,) + tuple(POINT[name] * np.array([0.5, 1.0, 2.0]) for name in varying)
    else:
        args = (WALK,) + tuple(POINT[name] for name in varying)
    _same_results(numba(*args), numpy(*args))


@needs_numba
@pytest.mark.parametrize("df", [None, 3.0], ids=["varying_df", "fixed_df"])
def test_studentt_numba_kernel_is_the_derivative_of_its_log_density(df):
    kernel = studentt_log_scale_kernel(Y, 0.01, df, False, engine="numba")
    at_df = 3.0 if df is None else None
    extra = (at_df,) if df is None else ()
    lp, grads = kernel(ETA, *extra)
    assert_close_grad(grads[0], numerical_gradient(lambda e: kernel(e, *extra)[0], ETA), "d/d eta")
    if df is None:
        numeric = numerical_gradient(lambda d: kernel(ETA, float(d[()]))[0], np.array(at_df))
        assert_close_grad(grads[1], numeric, "d/d df")


@needs_numba
@pytest.mark.parametrize("varying, consts", GRW_CASES, ids=GRW_IDS)
def test_random_walk_numba_kernel_is_the_derivative_of_its_log_density(varying, consts):
    kernel = grw_latent_kernel((T,), tuple((n, ()) for n in varying), False, consts, engine="numba")

    def lp_at(x, **changed):
        at = {**POINT, **changed}
        return kernel(x, *(at[n] for n in varying))[0]
    lp, grads = kernel(WALK, *(POINT[n] for n in varying))
    assert_close_grad(grads[0], numerical_gradient(lp_at, WALK), "d/d value")
    for name, g in zip(varying, grads[1:]):
        numeric = numerical_gradient(lambda s: lp_at(WALK, **{name: float(s[()])}), np.array(POINT[name]))
        assert_close_grad(g, numeric, f"d/d {name}")


@needs_numba
def test_batched_numba_kernels_give_each_row_the_single_kernels_bits():
    # What keeps vectorized (lockstep) chains on the draws of single chains.
    st_single = studentt_log_scale_kernel(Y, 0.0, None, False, engine="numba")
    st_batched = studentt_log_scale_kernel(Y, 0.0, None, True, engine="numba")
    lps, (g, g_df) = st_batched(ETAS, DFS)
    grw_single = grw_latent_kernel((T,), (("sigma", ()),), False, {"init_sigma": 10.0}, engine="numba")
    grw_batched = grw_latent_kernel((T,), (("sigma", ()),), True, {"init_sigma": 10.0}, engine="numba")
    sigmas = np.array([0.1, 0.2, 0.3])
    walk_lps, (walk_g, walk_gs) = grw_batched(WALKS, sigmas)
    for c in range(CHAINS):
        lp, (g_c, g_df_c) = st_single(ETAS[c], float(DFS[c]))
        assert (lp, g_df_c) == (lps[c], g_df[c]) and np.array_equal(g_c, g[c])
        lp, (g_c, gs_c) = grw_single(WALKS[c], float(sigmas[c]))
        assert (lp, gs_c) == (walk_lps[c], walk_gs[c]) and np.array_equal(g_c, walk_g[c])


@needs_numba
def test_digamma_and_lgamma_match_scipy():
    from exmc.dist.kernels_numba import _digamma, _lgamma

    positive = np.concatenate([np.geomspace(1e-8, 1e6, 400), [1.0, 2.0, 9.999, 10.0, 10.001]])
    got = np.array([_digamma(x) for x in positive])
    np.testing.assert_allclose(got, digamma(positive), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose([_lgamma(x) for x in positive], gammaln(positive), rtol=1e-13, atol=1e-14)
    # Below 0 by reflection (near the poles digamma is ill-conditioned: a looser tolerance).
    negative = -np.linspace(0.05, 30.0, 211)
    np.testing.assert_allclose([_digamma(x) for x in negative], digamma(negative), rtol=1e-10)
    special = np.array([0.0, -1.0, -2.0, np.nan])
    np.testing.assert_array_equal([_digamma(x) for x in special], digamma(special))
    np.testing.assert_array_equal([_lgamma(x) for x in special], gammaln(special))


def test_the_switch_is_read_when_a_model_is_compiled(monkeypatch):
    sys.path.insert(0, str(BENCH))
    import bench_models

    ir = bench_models.sv_ir()
    theta = np.random.default_rng(3).normal(scale=0.3, size=102)
    monkeypatch.setenv(accel.GRAD_ENV, "numpy")
    plain = exmc.compile(ir)
    assert plain.grad_kernel == "numpy"
    if HAVE_NUMBA:
        monkeypatch.setenv(accel.GRAD_ENV, "numba")
        compiled = exmc.compile(ir)
        assert compiled.grad_kernel == "numba"
        monkeypatch.setenv(accel.GRAD_ENV, "numpy")  # already compiled: the choice stays
        assert compiled.grad_kernel == "numba"
        for a, b in zip(compiled.logp_and_grad(theta), plain.logp_and_grad(theta)):
            _close(a, b)
        for a, b in zip(compiled.logp_and_grad(np.stack([theta, -theta])),
                        plain.logp_and_grad(np.stack([theta, -theta]))):
            _close(a, b)
    monkeypatch.delenv(accel.GRAD_ENV)
    assert accel.grad_kernel() == ("numba" if HAVE_NUMBA else "numpy")
    # A model without a compiled twin of its terms records numpy whatever the switch says.
    ir = exmc.Builder.rv(exmc.Builder.new_ir(), "x", exmc.Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    assert exmc.compile(ir).grad_kernel == "numpy"
    monkeypatch.setenv(accel.GRAD_ENV, "fortran")
    with pytest.raises(ValueError, match="EXMC_GRAD='fortran'"):
        exmc.compile(bench_models.sv_ir())


@needs_numba
def test_a_batched_sv_gradient_row_is_the_single_gradient(monkeypatch):
    sys.path.insert(0, str(BENCH))
    import bench_models

    monkeypatch.setenv(accel.GRAD_ENV, "numba")
    model = exmc.compile(bench_models.sv_ir())
    theta = np.random.default_rng(5).normal(scale=0.3, size=(3, model.dim))
    lps, grads = model.logp_and_grad(theta)
    for c in range(3):
        lp, grad = model.logp_and_grad(theta[c])
        assert lp == lps[c] and np.array_equal(grad, grads[c])


def test_without_numba_auto_gives_numpy_and_numba_raises(monkeypatch):
    monkeypatch.setitem(accel._imports, accel.KERNELS_MODULE, ImportError("No module named 'numba'"))
    monkeypatch.delenv(accel.GRAD_ENV, raising=False)
    assert accel.grad_kernel() == "numpy"
    with pytest.raises(ImportError, match="numba"):
        accel.grad_kernel("numba")


def test_a_process_without_numba_samples_sv_on_the_numpy_kernels():
    # numba made unimportable: the SV model compiles, runs its numpy kernels and samples.
    script = textwrap.dedent(f"""
        import sys
        sys.modules["numba"] = None
        sys.path.insert(0, {str(BENCH)!r})
        import numpy as np, bench_models, exmc
        model = exmc.compile(bench_models.sv_ir())
        assert model.grad_kernel == "numpy", model.grad_kernel
        trace = exmc.NUTS.Sampler.sample_chains(model, 1, num_samples=30, num_warmup=30, seed=1,
                                                parallel=False)[0]
        assert trace.info["grad_kernel"] == trace.info["tree_kernel"] == "numpy", trace.info
        assert np.all(np.isfinite(trace["volatility"]))
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_sv_draws_are_the_same_in_pool_and_sequential_runs_and_across_runs():
    sys.path.insert(0, str(BENCH))
    import bench_models

    model = exmc.compile(bench_models.sv_ir())
    run = dict(num_samples=40, num_warmup=60, seed=7)
    sequential = exmc.NUTS.Sampler.sample_chains(model, 2, parallel=False, **run)
    again = exmc.NUTS.Sampler.sample_chains(model, 2, parallel=False, **run)
    pooled = exmc.NUTS.Sampler.sample_chains(model, 2, max_workers=2, **run)
    for a, b, c in zip(sequential, again, pooled):
        assert a.info["grad_kernel"] == c.info["grad_kernel"] == model.grad_kernel
        for name in ("volatility", "nu", "step_size"):
            np.testing.assert_array_equal(a[name], b[name])
            np.testing.assert_array_equal(a[name], c[name])
