"""NUTS transition invariants (as NumPyro/Stan test them), for both implementations of the
transition: the plain numpy one (``exmc.nuts.tree``) and the compiled one (``exmc.nuts.tree_numba``,
the optional ``fast`` extra), each checked bit for bit against the recursive transcription of Stan."""
import importlib.util

import numpy as np
import pytest

from exmc.nuts import tree
from exmc.nuts.integrator import drive
from exmc.nuts.metric import DenseMetric, DiagonalMetric, LowRankMetric

import reference_tree
from gaussian_models import Failing, Gaussian, LogGamma, isotropic

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
KERNELS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed"))]


@pytest.fixture(params=KERNELS)
def kernel(request):
    return request.param


def _transition_function(kernel):
    """``nuts_transition(logp_and_grad, metric, q, lp, grad, step_size, rng, max_depth)`` of a kernel."""
    steps = tree.transition_steps_function(kernel)

    def transition(logp_and_grad, metric, q, lp, grad, step_size, rng, max_depth=tree.DEFAULT_MAX_TREE_DEPTH):
        return drive(steps(metric, q, lp, grad, step_size, rng, max_depth), logp_and_grad)
    return transition


def _transitions(transition, model, metric, q, step_size, max_depth, n, seed, after=None):
    """``n`` successive transitions of ``transition`` (ours or the reference) from ``q``; with a
    list ``after``, the generator's PCG64 state after each transition is appended to it (where the
    transition left the random stream)."""
    rng = np.random.default_rng(seed)
    lp, g = model.logp_and_grad(q)
    out = []
    for _ in range(n):
        t = transition(model.logp_and_grad, metric, q, lp, g, step_size, rng, max_depth)
        q, lp, g = t.q, t.lp, t.grad
        out.append(t)
        if after is not None:
            after.append(rng.bit_generator.state["state"]["state"])
    return out


def _run(model, step_size, n=200, max_depth=10, seed=0, kernel="numpy"):
    """Our transitions from 0.3 in every coordinate, with a unit diagonal metric."""
    metric = DiagonalMetric(np.ones(model.dim))
    return _transitions(_transition_function(kernel), model, metric, np.full(model.dim, 0.3), step_size, max_depth,
                        n, seed)


def test_huge_step_size_diverges_on_the_first_step(kernel):
    for t in _run(Gaussian([0.0, 0.0], np.eye(2)), step_size=100.0, n=20, kernel=kernel):
        assert t.divergent and t.n_steps == 1 and t.tree_depth == 0
        assert t.accept_prob < 1e-100  # exp(H0 - H) with an energy error > 1000


def test_stops_early_only_by_u_turn_or_divergence(monkeypatch):
    model = Gaussian([0.0, 0.0, 0.0], np.eye(3))
    normal = _run(model, 0.2, n=50, max_depth=6)
    assert all(t.tree_depth < 6 for t in normal)  # a Gaussian turns after ~pi/0.2 ≈ 16 steps
    # With the criterion disabled, every non-divergent trajectory runs to the maximum depth.
    monkeypatch.setattr(tree, "_no_u_turn", lambda *args: True)
    forced = _run(model, 0.2, n=50, max_depth=6)
    assert all(t.tree_depth == 6 and t.n_steps == 2**6 - 1 and not t.divergent for t in forced)


def test_step_counts_are_consistent_with_depth(kernel):
    for t in _run(Gaussian([0.0], [[1.0]]), 0.5, n=300, kernel=kernel):
        assert 2 ** t.tree_depth - 1 <= t.n_steps <= 2 ** (t.tree_depth + 1) - 1
        assert 0.0 <= t.accept_prob <= 1.0


def test_tiny_step_size_accepts_everything(kernel):
    stats = _run(Gaussian([0.0], [[1.0]]), 1e-3, n=5, max_depth=4, kernel=kernel)
    assert all(t.accept_prob > 0.999 and t.tree_depth == 4 for t in stats)


def test_model_exceptions_are_divergences_not_crashes(kernel):
    stats = _run(Failing(threshold=0.8), 0.5, n=300, kernel=kernel)
    assert any(t.divergent for t in stats)
    assert all(t.q[0] <= 0.8 for t in stats)


def test_energy_of_the_draw_is_reported(kernel):
    model = Gaussian([0.0], [[1.0]])
    for t in _run(model, 0.5, n=20, kernel=kernel):
        assert t.energy >= -t.lp  # kinetic energy is non-negative
        assert t.lp == pytest.approx(model.logp_and_grad(t.q)[0])


def _low_rank(dim: int, rank: int) -> LowRankMetric:
    vectors, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((dim, rank)))
    return LowRankMetric(np.linspace(0.5, 1.5, dim), vectors, np.linspace(0.3, 3.0, rank))


@pytest.mark.parametrize("case", ["diag", "dense", "skewed", "failing", "divergent", "shallow", "deep",
                                  "lowrank", "lowrank-factored"])
def test_iterative_tree_is_the_recursive_transcription_of_stan_bit_for_bit(case, kernel):
    # "deep": 255-leaf trees, hundreds of uniforms in one transition; "lowrank-factored": dim
    # 150 > LowRankMetric.DENSE_PRODUCT_MAX_DIM.
    model, metric, step_size, max_depth = {
        "diag": (Gaussian([0.5, -1.0, 2.0], np.diag([1.0, 4.0, 0.25])),
                 DiagonalMetric(np.array([1.0, 3.0, 0.5])), 0.4, 10),
        "dense": (Gaussian([0.0, 1.0], [[1.0, 0.8], [0.8, 2.0]]),
                  DenseMetric(np.array([[1.0, 0.7], [0.7, 2.0]])), 0.3, 10),
        "skewed": (LogGamma(1.5, dim=4), DiagonalMetric(np.ones(4)), 0.7, 10),
        "failing": (Failing(threshold=0.8), DiagonalMetric(np.ones(1)), 0.5, 10),
        "divergent": (Gaussian([0.0, 0.0], np.eye(2)), DiagonalMetric(np.ones(2)), 3.5, 10),
        "shallow": (Gaussian([0.0, 0.0], np.eye(2)), DiagonalMetric(np.ones(2)), 0.05, 3),
        "deep": (Gaussian([0.0, 0.0], np.eye(2)), DiagonalMetric(np.ones(2)), 0.004, 8),
        "lowrank": (isotropic(20), _low_rank(20, 5), 0.3, 10),
        "lowrank-factored": (isotropic(150), _low_rank(150, 5), 0.3, 10),
    }[case]
    n = 8 if case == "deep" else 60
    q = np.linspace(-0.4, 0.5, model.dim)
    fast_stream, slow_stream = [], []
    fast = _transitions(_transition_function(kernel), model, metric, q, step_size, max_depth, n, 11, fast_stream)
    slow = _transitions(reference_tree.nuts_transition, model, metric, q, step_size, max_depth, n, 11, slow_stream)
    depths = {t.tree_depth for t in fast}
    assert len(depths) > 1 or case in ("shallow", "divergent", "deep")  # the comparison covers several tree shapes
    for a, b in zip(fast, slow):
        assert np.array_equal(a.q, b.q) and np.array_equal(a.grad, b.grad)
        assert (a.lp, a.accept_prob, a.tree_depth, a.n_steps, a.divergent, a.energy) == (
            b.lp, b.accept_prob, b.tree_depth, b.n_steps, b.divergent, b.energy)
    # Each transition leaves the random stream where the reference leaves it (the compiled kernel
    # draws its uniforms from the generator's C interface).
    assert fast_stream == slow_stream
    if case in ("failing", "divergent"):
        assert any(t.divergent for t in fast)
    if case == "deep":
        assert all(t.tree_depth == 8 and t.n_steps == 255 for t in fast)


def test_the_compiled_kernel_hands_other_generators_to_the_plain_path():
    pytest.importorskip("numba")
    model, metric = Gaussian([0.5, -1.0], np.eye(2)), DiagonalMetric(np.array([1.0, 2.0]))
    q = np.array([0.1, 0.2])
    runs = []
    for kernel in ("numpy", "numba"):
        rng = np.random.Generator(np.random.MT19937(3))  # not PCG64: the compiled path does not run it
        t = _transition_function(kernel)(model.logp_and_grad, metric, q, *model.logp_and_grad(q), 0.4, rng)
        runs.append((t, rng.random()))
    (a, ua), (b, ub) = runs
    assert np.array_equal(a.q, b.q) and (a.n_steps, a.energy, ua) == (b.n_steps, b.energy, ub)


def test_tree_kernel_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.setenv(tree.TREE_ENV, "numpy")
    assert tree.transition_kernel() == "numpy"
    assert tree.transition_steps_function("numpy") is tree.nuts_transition_steps
    monkeypatch.setenv(tree.TREE_ENV, "fortran")
    with pytest.raises(ValueError, match="EXMC_TREE='fortran'"):
        tree.transition_kernel()
    monkeypatch.delenv(tree.TREE_ENV)
    assert tree.transition_kernel() == ("numba" if HAVE_NUMBA else "numpy")
    with pytest.raises(ValueError, match="unknown tree kernel"):
        tree.transition_steps_function("fortran")


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_whole_chains_are_the_same_with_either_kernel(monkeypatch):
    # Warmup (step size, metric windows, the automatic low-rank choice) and sampling: the same
    # random stream and the same arithmetic give the same draws, and Trace.info says which ran.
    from exmc.nuts import Sampler

    model = Gaussian([0.0, 1.0, -1.0], [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 4.0]])
    traces = {}
    for kernel in ("numpy", "numba"):
        monkeypatch.setenv(tree.TREE_ENV, kernel)
        traces[kernel] = Sampler.sample_chains(model, 1, num_samples=150, num_warmup=150, seed=3, parallel=False)[0]
    a, b = traces["numpy"], traces["numba"]
    assert (a.info["tree_kernel"], b.info["tree_kernel"]) == ("numpy", "numba")
    np.testing.assert_array_equal(a["x"], b["x"])
    for name in ("n_steps", "energy", "accept_prob", "step_size"):
        np.testing.assert_array_equal(a.stats[name], b.stats[name])
