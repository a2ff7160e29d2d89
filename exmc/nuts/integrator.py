"""The leapfrog integrator and the guarded log-density evaluation it uses.

Stan's ``expl_leapfrog``: half momentum step with the gradient of the log-density, full position
step along the velocity ``M⁻¹ p``, half momentum step with the new gradient. Positive step sizes
move forward in time, negative ones backward.

A log-density that raises, or returns a non-finite value, must never crash a trajectory: the state
gets ``lp = -inf`` so its energy is infinite and the tree builder records a divergence (Stan treats
exceptions inside the integrator the same way).
"""
from __future__ import annotations

import logging
from typing import Callable, Generator

import numpy as np

logger = logging.getLogger(__name__)

LogpAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


def guarded_logp_and_grad(logp_and_grad: LogpAndGrad, q: np.ndarray) -> tuple[float, np.ndarray]:
    """``logp_and_grad(q)`` with failures mapped to ``(-inf, zeros)``.

    An exception of type ``Exception`` (not ``KeyboardInterrupt``/``SystemExit``, which must
    propagate) or a non-finite log-density gives ``-inf``; a non-finite gradient is kept as is
    (it makes the momentum, hence the energy, NaN, which the tree builder treats as divergent).
    """
    try:
        lp, grad = logp_and_grad(q)
    except Exception as exc:  # noqa: BLE001 - any model failure is a divergence, by design
        logger.debug("log-density raised %r at %s; treated as divergence", exc, q)
        return -np.inf, np.zeros_like(q)
    lp = float(lp)
    if lp != lp or lp == np.inf:  # NaN or +inf: no valid density there
        return -np.inf, np.zeros_like(q)
    return lp, grad


def leapfrog_steps(
    velocity: Callable[[np.ndarray], np.ndarray],
    q: np.ndarray,
    p: np.ndarray,
    grad: np.ndarray,
    step_size: float,
) -> Generator[np.ndarray, tuple[float, np.ndarray], tuple]:
    """One leapfrog step from ``(q, p)`` with the gradient ``grad`` of the log-density at ``q``,
    as a generator: it yields the new position and expects ``(lp, grad)`` there to be sent back.

    Written as a generator so that one implementation serves both the sequential sampler
    (:func:`drive` evaluates each request at once) and the vectorized one (requests of all chains
    are evaluated in one batched call). Returns ``(q, p, lp, grad, v)`` at the new point, with the
    velocity ``v = M⁻¹ p`` (Stan's ``p_sharp``). Inputs are not modified.
    """
    half = 0.5 * step_size
    p_half = p + half * grad
    q_new = q + step_size * velocity(p_half)
    lp, grad_new = yield q_new
    p_new = p_half + half * grad_new
    return q_new, p_new, lp, grad_new, velocity(p_new)


def drive(steps: Generator, logp_and_grad: LogpAndGrad):
    """Run a generator of log-density requests (see :func:`leapfrog_steps`) to completion,
    answering each with :func:`guarded_logp_and_grad`; returns the generator's return value."""
    try:
        q = next(steps)
        while True:
            q = steps.send(guarded_logp_and_grad(logp_and_grad, q))
    except StopIteration as stop:
        return stop.value


def leapfrog(
    logp_and_grad: LogpAndGrad,
    velocity: Callable[[np.ndarray], np.ndarray],
    q: np.ndarray,
    p: np.ndarray,
    grad: np.ndarray,
    step_size: float,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """One leapfrog step evaluated at once; returns ``(q, p, lp, grad, v)`` (see
    :func:`leapfrog_steps`)."""
    return drive(leapfrog_steps(velocity, q, p, grad, step_size), logp_and_grad)


def hamiltonian(lp: float, p: np.ndarray, v: np.ndarray) -> float:
    """Energy ``H = -log p(q) + ½ pᵀ M⁻¹ p`` given the velocity ``v = M⁻¹ p``; NaN becomes +inf."""
    h = -lp + 0.5 * float(p.dot(v))
    return np.inf if h != h else h
