"""The leapfrog integrator and the guarded log-density evaluation it uses.

Stan's ``expl_leapfrog``: half momentum step with the gradient of the log-density, full position
step along the velocity ``M⁻¹ p``, half momentum step with the new gradient. Positive step sizes
move forward in time, negative ones backward.

A log-density that returns a non-finite value, or raises a *domain* error (see
:func:`is_domain_error`), must never crash a trajectory: the state gets ``lp = -inf`` so its energy
is infinite and the tree builder records a divergence (Stan treats ``std::domain_error`` inside the
integrator the same way). Any other exception is a bug in the model: it is raised as
:class:`LogDensityError`, which the chain turns into a :class:`~exmc.nuts.errors.ModelError`
naming the chain and iteration (Stan, too, stops on exceptions other than domain errors).
"""
from __future__ import annotations

import logging
from typing import Callable, Generator

import numpy as np

logger = logging.getLogger(__name__)

LogpAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]

_INF = float("inf")
_NEG_INF = -_INF

#: The ``ValueError`` message of :mod:`math` functions outside their domain (``math.log(-1)``).
MATH_DOMAIN_MESSAGE = "math domain error"


def is_domain_error(exc: BaseException) -> bool:
    """Whether an exception raised by a log-density means "outside the domain" (a rejected point):
    ``ArithmeticError`` (floating-point errors, overflow, division by zero), ``LinAlgError`` (a
    matrix that is not positive definite), :class:`exmc.errors.DomainError`, or the ``ValueError``
    of a :mod:`math` function outside its domain."""
    from exmc.errors import DomainError

    if isinstance(exc, (ArithmeticError, np.linalg.LinAlgError, DomainError)):
        return True
    return type(exc) is ValueError and MATH_DOMAIN_MESSAGE in str(exc)


class LogDensityError(Exception):
    """A log-density raised a non-domain exception ``cause`` at position ``q``.

    Raised by :func:`guarded_logp_and_grad` and thrown into the chain generator by the drivers,
    which re-raises it as :class:`~exmc.nuts.errors.ModelError` with the chain and iteration.
    """

    def __init__(self, cause: BaseException, q: np.ndarray) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
        self.q = q


def guarded_logp_and_grad(logp_and_grad: LogpAndGrad, q: np.ndarray) -> tuple[float, np.ndarray]:
    """``logp_and_grad(q)`` with domain failures mapped to ``(-inf, zeros)``.

    A domain error (:func:`is_domain_error`) or a non-finite log-density gives ``-inf``; a
    non-finite gradient is kept as is (it makes the momentum, hence the energy, NaN, which the tree
    builder treats as divergent). Any other ``Exception`` is raised as :class:`LogDensityError`
    (``KeyboardInterrupt``/``SystemExit`` propagate unchanged).
    """
    try:
        lp, grad = logp_and_grad(q)
    except Exception as exc:  # noqa: BLE001 - sorted into domain errors and bugs below
        return failed_evaluation(exc, q)
    lp = float(lp)
    if lp != lp or lp == _INF:  # NaN or +inf: no valid density there
        return _NEG_INF, np.zeros_like(q)
    return lp, grad


def failed_evaluation(exc: Exception, q: np.ndarray) -> tuple[float, np.ndarray]:
    """What :func:`guarded_logp_and_grad` answers when the log-density raised ``exc`` at ``q``:
    ``(-inf, zeros)`` for a domain error; any other exception is raised as
    :class:`LogDensityError`. For drivers that inline the guard's fast path (the direct transition
    of :mod:`exmc.nuts.tree_numba`)."""
    if not is_domain_error(exc):
        raise LogDensityError(exc, q) from exc
    logger.debug("log-density raised %r at %s; treated as divergence", exc, q)
    return _NEG_INF, np.zeros_like(q)


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
    answering each with :func:`guarded_logp_and_grad`; returns the generator's return value.
    A :class:`LogDensityError` is thrown into the generator (so the chain can say where it was)."""
    try:
        q = next(steps)
        while True:
            try:
                answer = guarded_logp_and_grad(logp_and_grad, q)
            except LogDensityError as exc:
                q = steps.throw(exc)
                continue
            q = steps.send(answer)
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
