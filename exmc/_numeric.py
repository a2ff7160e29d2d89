"""Numerically stable elementwise helpers shared by distributions and transforms.

Everything here is a numpy/scipy *ufunc* composition: no Python loops, no per-call set-up, so they
are cheap inside the sampler's inner loop. ``scipy.special`` is used only for functions numpy lacks
(``expit``, ``gammaln``, ``digamma``, ``ndtr``...), all of which are ufuncs themselves.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

#: log(2*pi), the Gaussian normalising constant's logarithm.
LOG_2PI = math.log(2.0 * math.pi)
#: 0.5*log(2*pi): the log of sqrt(2*pi) in the normal density.
HALF_LOG_2PI = 0.5 * LOG_2PI
#: log(pi): Cauchy normalising constant.
LOG_PI = math.log(math.pi)

__all__ = ["LOG_2PI", "HALF_LOG_2PI", "LOG_PI", "softplus", "log_sigmoid", "log_sigmoid_pair", "sigmoid", "as_float",
           "minus_inf_below_zero", "nan_to_minus_inf"]

sigmoid = expit

#: -inf as a numpy scalar (it has ``.shape``, like every other lp a family returns).
_MINUS_INF = np.float64(-np.inf)


def softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` without overflow for large ``x`` or underflow for very negative ``x``.

    Arrays: ``max(x, 0) + log1p(exp(-|x|))``, measured ~2.5x faster than ``np.logaddexp(0, x)``
    on 2000 entries (logaddexp's generic two-argument loop); a scalar takes the single call.
    """
    if getattr(x, "ndim", 0) == 0:
        return np.logaddexp(0.0, x)
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """``log(sigmoid(x)) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|))``, exact in both tails."""
    if getattr(x, "ndim", 0) == 0:
        return -np.logaddexp(0.0, -x)
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def log_sigmoid_pair(x: np.ndarray) -> np.ndarray:
    """``log sigmoid(x) + log sigmoid(-x) = -|x| - 2 log1p(exp(-|x|))`` (the logit transform's
    log-Jacobian) in four ufunc calls instead of two ``log_sigmoid``."""
    a = np.abs(x)
    return -a - 2.0 * np.log1p(np.exp(-a))


def as_float(x) -> np.ndarray:
    """The input as a float64 array (no copy when it already is one)."""
    return np.asarray(x, dtype=np.float64)


def minus_inf_below_zero(lp: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``lp`` where ``value >= 0``, ``-inf`` where ``value < 0`` (support ``[0, inf)``).

    Two ufuncs instead of ``np.where`` (which costs several times more on the small arrays of the
    sampler's inner loop): ``copysign(inf, value + 0.0)`` is ``+inf`` on the support (``+ 0.0`` turns
    ``-0.0`` into ``+0.0``) and ``-inf`` below it, and ``minimum`` keeps ``lp`` or takes ``-inf``.
    """
    if getattr(value, "ndim", 0) == 0 and getattr(lp, "ndim", 0) == 0:
        # numpy scalars: a Python branch is ~50x cheaper than two ufunc calls
        return lp if value >= 0 else _MINUS_INF
    return np.minimum(lp, np.copysign(np.inf, value + 0.0))


def nan_to_minus_inf(lp: np.ndarray) -> np.ndarray:
    """Map nan entries of ``lp`` to ``-inf`` (``fmax`` ignores nan), leaving numbers unchanged.

    Densities written with ``log(value)`` are nan outside their support (and when a computed
    parameter leaves its domain); the sampler must see ``-inf`` there, i.e. a rejected point.
    """
    if getattr(lp, "ndim", 0) == 0:
        return lp if lp == lp else _MINUS_INF  # nan is the only value not equal to itself
    return np.fmax(lp, -np.inf)
