"""Warmup machinery against Stan: window schedule, Welford estimators, dual averaging, heuristic."""
import math

import numpy as np
import pytest

from exmc.nuts import sampler
from exmc.nuts.adaptation import WelfordCovariance, WelfordVariance, WindowSchedule, adaptation_windows
from exmc.nuts.metric import DiagonalMetric
from exmc.nuts.stepsize import DualAveraging, StepSizeError, find_initial_step_size
from exmc.nuts.integrator import hamiltonian, leapfrog

from gaussian_models import Gaussian


def test_window_schedule_1000_matches_stan():
    # Stan, num_warmup=1000: init buffer [0,74], windows 75-99, 100-149, 150-249, 250-449, 450-949,
    # term buffer [950,999].
    assert adaptation_windows(1000) == [(75, 99), (100, 149), (150, 249), (250, 449), (450, 949)]


def test_window_schedule_500_matches_stan():
    assert adaptation_windows(500) == [(75, 99), (100, 149), (150, 249), (250, 449)]


def test_short_warmup_falls_back_to_15_75_10():
    # 100 < 75 + 25 + 50: init 15, one window of 75, term 10.
    schedule = WindowSchedule(100)
    assert (schedule.init_buffer, schedule.base_window, schedule.term_buffer) == (15, 75, 10)
    assert adaptation_windows(100) == [(15, 89)]


def test_no_metric_adaptation_below_20_warmup_iterations():
    assert adaptation_windows(19) == []


def test_welford_variance_and_regularization():
    x = np.random.default_rng(0).normal(size=(57, 3)) * [1.0, 2.0, 0.5]
    est = WelfordVariance(3)
    for row in x:
        est.add(row)
    np.testing.assert_allclose(est.variance(), x.var(axis=0, ddof=1), rtol=1e-12)
    n = 57.0
    expected = n / (n + 5) * x.var(axis=0, ddof=1) + 1e-3 * 5 / (n + 5)
    np.testing.assert_allclose(est.regularized(), expected, rtol=1e-12)
    est.restart()
    with pytest.raises(ValueError, match="at least 2"):
        est.variance()


def test_welford_covariance_and_regularization():
    x = np.random.default_rng(1).multivariate_normal([0, 1], [[2.0, 0.8], [0.8, 1.0]], size=40)
    est = WelfordCovariance(2)
    for row in x:
        est.add(row)
    np.testing.assert_allclose(est.variance(), np.cov(x.T), rtol=1e-12)
    expected = 40 / 45 * np.cov(x.T) + 1e-3 * 5 / 45 * np.eye(2)
    np.testing.assert_allclose(est.regularized(), expected, rtol=1e-12)


def test_dual_averaging_first_step_by_hand():
    da = DualAveraging(mu=math.log(10.0), target=0.8)
    eps = da.update(0.3)
    # eta = 1/11, s_bar = 0.5/11, x = log 10 - s_bar * 1 / 0.05; x_bar = x (weight 1 at t=1)
    x = math.log(10.0) - (0.5 / 11) / 0.05
    assert eps == pytest.approx(math.exp(x))
    assert da.final() == pytest.approx(math.exp(x))
    da.restart()
    assert da.final() == 1.0


def test_dual_averaging_reaches_target_acceptance():
    # Acceptance exp(-eps) as a function of the step size: the fixed point is eps* = -log(0.8).
    da = DualAveraging(mu=math.log(10.0), target=0.8)
    eps = 1.0
    for _ in range(2000):
        eps = da.update(math.exp(-eps))
    assert da.final() == pytest.approx(-math.log(0.8), rel=0.02)


def test_initial_step_size_heuristic_crosses_acceptance_08():
    model = Gaussian([0.0], [[0.01]])  # sd 0.1: a unit step is far too large
    metric = DiagonalMetric(np.ones(1))
    q = np.array([0.05])
    lp, g = model.logp_and_grad(q)
    eps = find_initial_step_size(model.logp_and_grad, metric, q, lp, g, 1.0, np.random.default_rng(0))
    assert eps < 1.0 and eps in {0.5 ** k for k in range(1, 20)}
    # At the returned step size a typical step is accepted with probability >= 0.8 (direction -1).
    rng = np.random.default_rng(1)
    accepts = []
    for _ in range(200):
        p = metric.sample_momentum(rng)
        _, p1, lp1, _, v1 = leapfrog(model.logp_and_grad, metric.velocity, q, p, g, eps)
        accepts.append(min(1.0, math.exp(hamiltonian(lp, p, metric.velocity(p)) - hamiltonian(lp1, p1, v1))))
    assert np.mean(accepts) > 0.7


def test_initial_step_size_heuristic_rejects_improper_posterior():
    flat = lambda q: (0.0, np.zeros_like(q))  # noqa: E731 - every step is accepted
    metric = DiagonalMetric(np.ones(1))
    with pytest.raises(StepSizeError, match="improper"):
        find_initial_step_size(flat, metric, np.zeros(1), 0.0, np.zeros(1), 1.0, np.random.default_rng(0))


def test_warmup_replays_stans_adapter_sequence(monkeypatch):
    """Stan's adapt_diag_e_nuts: every warmup transition feeds dual averaging; at each window end
    init_stepsize restarts from the latest step size, mu becomes log(10 ε) and the averaging restarts;
    sampling uses exp(x_bar) of the averaging restarted at the last window end."""
    events = []

    class SpyDual(DualAveraging):
        def update(self, accept_stat):
            eps = super().update(accept_stat)
            events.append(("update", accept_stat, eps))
            return eps

        def restart(self):
            events.append(("restart", self.mu))
            super().restart()

    def spy_heuristic(logp_and_grad, metric, q, lp, grad, step_size, rng):
        eps = find_initial_step_size(logp_and_grad, metric, q, lp, grad, step_size, rng)
        events.append(("heuristic", step_size, eps))
        return eps

    monkeypatch.setattr(sampler, "DualAveraging", SpyDual)
    monkeypatch.setattr(sampler, "find_initial_step_size", spy_heuristic)
    num_warmup = 300
    options = sampler.SamplerOptions(num_warmup=num_warmup, num_samples=5)
    trace = sampler.run_chain(Gaussian([0.0, 1.0], np.diag([0.04, 9.0])), 0, np.random.SeedSequence(3), options)

    window_ends = [last for _, last in adaptation_windows(num_warmup)]
    assert window_ends == [99, 149, 249]
    assert events[0] == ("heuristic", 1.0, events[0][2])  # Stan's first init_stepsize starts at 1
    updates = [e for e in events if e[0] == "update"]
    assert len(updates) == num_warmup
    for end in window_ends:  # right after the update of iteration `end`: heuristic, new mu, restart
        at = events.index(updates[end])
        heuristic, restart = events[at + 1], events[at + 2]
        assert heuristic[0] == "heuristic" and heuristic[1] == updates[end][2]
        assert restart == ("restart", math.log(10.0 * heuristic[2]))
    # The step size of the draws: the averaged iterate of the last 50 (term buffer) updates.
    last_restart = events[-51]
    assert last_restart[0] == "restart"
    replay = DualAveraging(last_restart[1], target=0.8)
    for _, accept_stat, _ in updates[-50:]:
        replay.update(accept_stat)
    assert trace.info["step_size"] == replay.final()
    assert np.all(trace.stats["step_size"] == replay.final())
