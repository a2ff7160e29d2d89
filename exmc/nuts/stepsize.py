"""Step size: Stan's initial heuristic (``base_hmc::init_stepsize``) and dual averaging
(``stepsize_adaptation.hpp``, Hoffman & Gelman 2014, §3.2.1, after Nesterov 2009)."""
from __future__ import annotations

import math

import numpy as np

from exmc.nuts.integrator import LogpAndGrad, hamiltonian, leapfrog

# Dual-averaging constants: Stan's defaults (CmdStan ``gamma``, ``kappa``, ``t0``, ``delta``).
DEFAULT_GAMMA = 0.05
DEFAULT_KAPPA = 0.75
DEFAULT_T0 = 10.0
DEFAULT_TARGET_ACCEPT = 0.8
# Stan's initial nominal step size (CmdStan ``stepsize=1``).
DEFAULT_INITIAL_STEP_SIZE = 1.0
# init_stepsize doubles/halves until the one-step acceptance crosses 0.8 (log(0.8) in Stan).
_HEURISTIC_LOG_ACCEPT = math.log(0.8)
# Stan gives up above this step size ("Posterior is improper").
_MAX_HEURISTIC_STEP_SIZE = 1e7


class StepSizeError(RuntimeError):
    """The step-size heuristic found no usable step size (improper or discontinuous posterior)."""


class DualAveraging:
    """Nesterov dual averaging of ``log(step_size)`` towards a mean acceptance of ``target``.

    ``mu`` is the shrinkage point (Stan sets ``log(10 * step_size)``). ``update`` returns the step
    size to use next; ``final`` the averaged step size used after warmup.
    """

    def __init__(
        self,
        mu: float,
        target: float = DEFAULT_TARGET_ACCEPT,
        gamma: float = DEFAULT_GAMMA,
        kappa: float = DEFAULT_KAPPA,
        t0: float = DEFAULT_T0,
    ) -> None:
        if not 0.0 < target < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {target}")
        self.mu = mu
        self.target = target
        self.gamma = gamma
        self.kappa = kappa
        self.t0 = t0
        self.restart()

    def restart(self) -> None:
        """Forget the history (Stan restarts after every metric update)."""
        self.counter = 0
        self.s_bar = 0.0
        self.x_bar = 0.0

    def update(self, accept_stat: float) -> float:
        """Learn from one transition's mean acceptance; returns the new step size."""
        self.counter += 1
        accept_stat = min(accept_stat, 1.0)
        eta = 1.0 / (self.counter + self.t0)
        self.s_bar = (1.0 - eta) * self.s_bar + eta * (self.target - accept_stat)
        x = self.mu - self.s_bar * math.sqrt(self.counter) / self.gamma
        x_eta = self.counter ** (-self.kappa)
        self.x_bar = (1.0 - x_eta) * self.x_bar + x_eta * x
        return math.exp(x)

    def final(self) -> float:
        """The averaged step size ``exp(x_bar)`` (Stan's ``complete_adaptation``)."""
        return math.exp(self.x_bar)


def find_initial_step_size(
    logp_and_grad: LogpAndGrad,
    metric,
    q: np.ndarray,
    lp: float,
    grad: np.ndarray,
    step_size: float,
    rng: np.random.Generator,
) -> float:
    """Stan's ``init_stepsize``: double or halve ``step_size`` until one leapfrog step's acceptance
    ``exp(H0 - H)`` crosses 0.8, drawing a fresh momentum for every trial.

    Returns ``step_size`` unchanged when it is 0, NaN or above 1e7 (as Stan does). Raises
    :class:`StepSizeError` when the step size grows past 1e7 (improper posterior) or shrinks to 0.
    """
    if step_size == 0 or step_size != step_size or step_size > _MAX_HEURISTIC_STEP_SIZE:
        return step_size

    def log_accept() -> float:
        p = metric.sample_momentum(rng)
        h0 = hamiltonian(lp, p, metric.velocity(p))
        _, p1, lp1, _, v1 = leapfrog(logp_and_grad, metric.velocity, q, p, grad, step_size)
        return h0 - hamiltonian(lp1, p1, v1)

    direction = 1 if log_accept() > _HEURISTIC_LOG_ACCEPT else -1
    while True:
        delta = log_accept()
        if direction == 1 and not delta > _HEURISTIC_LOG_ACCEPT:
            return step_size
        if direction == -1 and not delta < _HEURISTIC_LOG_ACCEPT:
            return step_size
        step_size = 2.0 * step_size if direction == 1 else 0.5 * step_size
        if step_size > _MAX_HEURISTIC_STEP_SIZE:
            raise StepSizeError("step size heuristic exceeded 1e7: the posterior is probably improper")
        if step_size == 0:
            raise StepSizeError("no acceptably small step size: the posterior may not be continuous")
