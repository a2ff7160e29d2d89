"""The sequential driver (``sampler.run_chain``: transitions that evaluate the log-density
themselves) against the plain path, the generator protocol with the numpy tree (``chain_steps``
answered by ``integrator.drive``, as the vectorized driver and the pool's protocol use it): whole
chains, warmup included, bit for bit, with either tree kernel."""
import importlib.util

import numpy as np
import pytest

from exmc.nuts import tree
from exmc.nuts.errors import ModelError
from exmc.nuts.integrator import drive
from exmc.nuts.sampler import SamplerOptions, chain_steps, run_chain

from gaussian_models import Failing, Gaussian, LogGamma

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
KERNELS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed"))]


def _correlated(dim: int = 6, rho: float = 0.995) -> Gaussian:
    """Strongly correlated pairs: the automatic metric switches to a low-rank one during warmup."""
    cov = np.eye(dim)
    for i in range(0, dim - 1, 2):
        cov[i, i + 1] = cov[i + 1, i] = rho
    return Gaussian(np.linspace(-1.0, 1.0, dim), cov)


MODELS = {
    "gaussian": lambda: Gaussian([0.5, -1.0, 2.0], np.diag([1.0, 4.0, 0.25])),
    "skewed": lambda: LogGamma(1.5, dim=4),
    "lowrank": _correlated,
    "failing": lambda: Failing(threshold=0.8),  # domain errors: divergences in both drivers
}


def _plain(model, seed, options):
    """The oracle: the chain generator with the numpy tree, every request answered by ``drive``."""
    with np.errstate(all="ignore"):
        return drive(chain_steps(model, 0, seed, options), model.logp_and_grad)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("kernel", KERNELS)
def test_direct_chain_gives_the_plain_paths_draws_bit_for_bit(name, kernel, monkeypatch):
    options = SamplerOptions(num_samples=120, num_warmup=150)
    seed = np.random.SeedSequence(7)
    monkeypatch.setenv(tree.TREE_ENV, "numpy")
    reference = _plain(MODELS[name](), seed, options)
    monkeypatch.setenv(tree.TREE_ENV, kernel)
    direct = run_chain(MODELS[name](), 0, seed, options)
    assert direct.info["tree_kernel"] == kernel
    np.testing.assert_array_equal(direct.unconstrained, reference.unconstrained)
    for column in reference.stats:
        np.testing.assert_array_equal(direct.stats[column], reference.stats[column], err_msg=column)
    assert direct.info["step_size"] == reference.info["step_size"]
    np.testing.assert_array_equal(direct.info["inverse_metric"], reference.info["inverse_metric"])
    assert direct.info["metric"] == reference.info["metric"]
    if name == "lowrank":  # the comparison covers a metric change and the low-rank kernel
        assert direct.info["metric"] == "lowrank"
    if name == "failing":
        assert direct.info["warmup_divergences"] + int(direct.stats["divergent"].sum()) > 0


class _Buggy(Gaussian):
    """Raises a non-domain error after ``after`` evaluations: a bug in the model."""

    def __init__(self, after: int) -> None:
        super().__init__([0.0, 0.0], np.eye(2))
        self.after = after

    def logp_and_grad(self, theta):
        if self.calls >= self.after:
            raise KeyError("no such column")
        return super().logp_and_grad(theta)


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_model_bug_inside_a_trajectory_is_the_same_model_error_in_both_drivers(kernel, monkeypatch):
    options = SamplerOptions(num_samples=50, num_warmup=50)
    seed = np.random.SeedSequence(2)
    monkeypatch.setenv(tree.TREE_ENV, kernel)
    errors = []
    for run in (lambda m: _plain(m, seed, options), lambda m: run_chain(m, 0, seed, options)):
        with pytest.raises(ModelError) as info:
            run(_Buggy(after=300))
        errors.append((str(info.value), type(info.value.__cause__)))
    assert errors[0] == errors[1]
    assert "chain 0, sampling iteration" in errors[0][0] and errors[0][1] is KeyError


def test_a_chain_in_this_process_gives_the_pools_draws_at_102_dimensions():
    # The automatic metric's estimate (matrix products and eigendecompositions of 102 x 102
    # matrices) rounds differently with OpenBLAS's threads; pool workers run one thread, and so
    # must a chain run here, or the two modes give other draws (they did for the bench's SV).
    from exmc.nuts import Sampler

    model = _correlated(dim=102, rho=0.999)
    kw = dict(num_samples=40, num_warmup=500, seed=4, keep_deterministics=False)
    here = Sampler.sample_chains(model, 1, parallel=False, **kw)[0]
    pooled = Sampler.sample_chains(model, 1, parallel=True, max_workers=1, **kw)[0]
    assert here.info["metric"] == "lowrank"  # the metric went through the 102 x 102 estimate
    np.testing.assert_array_equal(here.unconstrained, pooled.unconstrained)


def _blas_threads():
    from threadpoolctl import threadpool_info

    return sorted(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")


def test_overlapping_chains_share_one_blas_limit_lifted_by_the_last(monkeypatch):
    from exmc.nuts.sampler import BLAS_THREAD_VARIABLES, single_threaded_blas

    for name in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = _blas_threads()
    first, second = single_threaded_blas(), single_threaded_blas()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # chains in two threads: the first one ends first
    assert set(_blas_threads()) == {1}
    second.__exit__(None, None, None)
    assert _blas_threads() == before
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # the user's choice: left alone
    with single_threaded_blas():
        assert _blas_threads() == before


def test_a_lockstep_group_in_this_process_gives_the_pools_draws_at_102_dimensions():
    # The same for parallel="vectorized": the group runs here with one BLAS thread, as the same
    # lockstep group (layout=2) does in a pool worker.
    from exmc.nuts import Sampler

    model = _correlated(dim=102, rho=0.999)
    kw = dict(num_samples=40, num_warmup=500, seed=4, keep_deterministics=False)
    here = Sampler.sample_chains(model, 2, parallel="vectorized", **kw)
    pooled = Sampler.sample_chains(model, 2, parallel=True, max_workers=1, layout=2, **kw)
    assert [t.info["lockstep_chains"] for t in pooled] == [[0, 1], [0, 1]]
    assert here[0].info["metric"] == "lowrank"
    for a, b in zip(here, pooled):
        np.testing.assert_array_equal(a.unconstrained, b.unconstrained)
