"""Leapfrog and metrics: energy conservation, reversibility, momentum distribution, guards."""
import numpy as np
import pytest

from exmc.nuts.integrator import guarded_logp_and_grad, hamiltonian, leapfrog
from exmc.nuts.metric import DenseMetric, DiagonalMetric

from gaussian_models import Gaussian


def _energy_error(step_size: float, n_steps: int) -> float:
    model = Gaussian([0.0, 0.0], [[1.0, 0.3], [0.3, 2.0]])
    metric = DiagonalMetric(np.array([1.0, 2.0]))
    q = np.array([1.0, -0.5])
    p = np.array([0.3, 0.8])
    lp, grad = model.logp_and_grad(q)
    h0 = hamiltonian(lp, p, metric.velocity(p))
    worst = 0.0
    for _ in range(n_steps):
        q, p, lp, grad, v = leapfrog(model.logp_and_grad, metric.velocity, q, p, grad, step_size)
        worst = max(worst, abs(hamiltonian(lp, p, v) - h0))
    return worst


def test_leapfrog_energy_error_is_second_order():
    # Same integration time, step halved: the energy error of a symplectic 2nd-order scheme drops ~4x.
    coarse = _energy_error(0.1, 20)
    fine = _energy_error(0.05, 40)
    assert coarse < 1e-2
    assert 3.0 < coarse / fine < 5.0


def test_leapfrog_is_reversible():
    model = Gaussian([0.5], [[0.7]])
    metric = DiagonalMetric(np.array([1.3]))
    q0, p0 = np.array([0.2]), np.array([1.1])
    lp, g = model.logp_and_grad(q0)
    q, p = q0, p0
    for _ in range(7):
        q, p, lp, g, _ = leapfrog(model.logp_and_grad, metric.velocity, q, p, g, 0.3)
    for _ in range(7):
        q, p, lp, g, _ = leapfrog(model.logp_and_grad, metric.velocity, q, p, g, -0.3)
    np.testing.assert_allclose(q, q0, atol=1e-12)
    np.testing.assert_allclose(p, p0, atol=1e-12)


@pytest.mark.parametrize("metric", [
    DiagonalMetric(np.array([0.25, 4.0])),
    DenseMetric(np.array([[2.0, 0.6], [0.6, 0.5]])),
])
def test_momentum_covariance_is_the_metric(metric):
    rng = np.random.default_rng(0)
    draws = metric.sample_momentum(rng, batch=200_000)
    inverse = np.diag(metric.inverse) if metric.inverse.ndim == 1 else metric.inverse
    np.testing.assert_allclose(np.cov(draws.T), np.linalg.inv(inverse), rtol=0.02, atol=0.01)
    single = metric.sample_momentum(np.random.default_rng(1))
    assert single.shape == (2,)


def test_metric_validation_names_the_problem():
    with pytest.raises(ValueError, match="positive"):
        DiagonalMetric(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="positive definite"):
        DenseMetric(np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_guard_maps_domain_errors_and_nonfinite_to_minus_infinity():
    def raises(q):
        raise ValueError("math domain error")

    lp, g = guarded_logp_and_grad(raises, np.zeros(2))
    assert lp == -np.inf and g.shape == (2,)
    assert guarded_logp_and_grad(lambda q: (np.nan, q), np.zeros(2))[0] == -np.inf
    assert guarded_logp_and_grad(lambda q: (np.inf, q), np.zeros(2))[0] == -np.inf
    assert hamiltonian(np.nan, np.ones(1), np.ones(1)) == np.inf
