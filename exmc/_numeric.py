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

__all__ = ["LOG_2PI", "HALF_LOG_2PI", "LOG_PI", "softplus", "log_sigmoid", "sigmoid", "as_float"]

sigmoid = expit


def softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` without overflow for large ``x`` or underflow for very negative ``x``."""
    return np.logaddexp(0.0, x)


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """``log(sigmoid(x)) = -softplus(-x)``, exact in both tails."""
    return -np.logaddexp(0.0, -x)


def as_float(x) -> np.ndarray:
    """The input as a float64 array (no copy when it already is one)."""
    return np.asarray(x, dtype=np.float64)
