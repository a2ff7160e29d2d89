"""NUTS transition invariants (as NumPyro/Stan test them)."""
import numpy as np
import pytest

from exmc.nuts import tree
from exmc.nuts.metric import DenseMetric, DiagonalMetric
from exmc.nuts.tree import nuts_transition

import reference_tree
from gaussian_models import Failing, Gaussian, LogGamma


def _transitions(transition, model, metric, q, step_size, max_depth, n, seed):
    """``n`` successive transitions of ``transition`` (ours or the reference) from ``q``."""
    rng = np.random.default_rng(seed)
    lp, g = model.logp_and_grad(q)
    out = []
    for _ in range(n):
        t = transition(model.logp_and_grad, metric, q, lp, g, step_size, rng, max_depth)
        q, lp, g = t.q, t.lp, t.grad
        out.append(t)
    return out


def _run(model, step_size, n=200, max_depth=10, seed=0):
    """Our transitions from 0.3 in every coordinate, with a unit diagonal metric."""
    metric = DiagonalMetric(np.ones(model.dim))
    return _transitions(nuts_transition, model, metric, np.full(model.dim, 0.3), step_size, max_depth, n, seed)


def test_huge_step_size_diverges_on_the_first_step():
    for t in _run(Gaussian([0.0, 0.0], np.eye(2)), step_size=100.0, n=20):
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


def test_step_counts_are_consistent_with_depth():
    for t in _run(Gaussian([0.0], [[1.0]]), 0.5, n=300):
        assert 2 ** t.tree_depth - 1 <= t.n_steps <= 2 ** (t.tree_depth + 1) - 1
        assert 0.0 <= t.accept_prob <= 1.0


def test_tiny_step_size_accepts_everything():
    stats = _run(Gaussian([0.0], [[1.0]]), 1e-3, n=5, max_depth=4)
    assert all(t.accept_prob > 0.999 and t.tree_depth == 4 for t in stats)


def test_model_exceptions_are_divergences_not_crashes():
    stats = _run(Failing(threshold=0.8), 0.5, n=300)
    assert any(t.divergent for t in stats)
    assert all(t.q[0] <= 0.8 for t in stats)


def test_energy_of_the_draw_is_reported():
    model = Gaussian([0.0], [[1.0]])
    for t in _run(model, 0.5, n=20):
        assert t.energy >= -t.lp  # kinetic energy is non-negative
        assert t.lp == pytest.approx(model.logp_and_grad(t.q)[0])


@pytest.mark.parametrize("case", ["diag", "dense", "skewed", "failing", "divergent", "shallow"])
def test_iterative_tree_is_the_recursive_transcription_of_stan_bit_for_bit(case):
    model, metric, step_size, max_depth = {
        "diag": (Gaussian([0.5, -1.0, 2.0], np.diag([1.0, 4.0, 0.25])),
                 DiagonalMetric(np.array([1.0, 3.0, 0.5])), 0.4, 10),
        "dense": (Gaussian([0.0, 1.0], [[1.0, 0.8], [0.8, 2.0]]),
                  DenseMetric(np.array([[1.0, 0.7], [0.7, 2.0]])), 0.3, 10),
        "skewed": (LogGamma(1.5, dim=4), DiagonalMetric(np.ones(4)), 0.7, 10),
        "failing": (Failing(threshold=0.8), DiagonalMetric(np.ones(1)), 0.5, 10),
        "divergent": (Gaussian([0.0, 0.0], np.eye(2)), DiagonalMetric(np.ones(2)), 3.5, 10),
        "shallow": (Gaussian([0.0, 0.0], np.eye(2)), DiagonalMetric(np.ones(2)), 0.05, 3),
    }[case]
    q = np.linspace(-0.4, 0.5, model.dim)
    fast = _transitions(nuts_transition, model, metric, q, step_size, max_depth, n=60, seed=11)
    slow = _transitions(reference_tree.nuts_transition, model, metric, q, step_size, max_depth, n=60, seed=11)
    depths = {t.tree_depth for t in fast}
    assert len(depths) > 1 or case in ("shallow", "divergent")  # the comparison covers several tree shapes
    for a, b in zip(fast, slow):
        assert np.array_equal(a.q, b.q) and np.array_equal(a.grad, b.grad)
        assert (a.lp, a.accept_prob, a.tree_depth, a.n_steps, a.divergent, a.energy) == (
            b.lp, b.accept_prob, b.tree_depth, b.n_steps, b.divergent, b.energy)
    if case in ("failing", "divergent"):
        assert any(t.divergent for t in fast)
