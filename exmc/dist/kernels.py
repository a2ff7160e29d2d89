"""Helpers for the families' compile-time kernels (the model compiler's performance hooks).

A family may specialise its log-density to one term of a model, once, at compile time (see
``prior_kernel``, ``observed_kernel`` and ``latent_kernel`` on :class:`exmc.dist.base.Distribution`):
constants are folded (``log sigma + log(2 pi)/2`` for a constant ``sigma``), the log-density comes
back already summed over the rv's entries (a scalar, or ``(C,)`` for C chains), and only the
gradients the model reads are computed. Scalar work is done on Python floats with the ``math``
module: on numpy scalars or 0-d arrays every operation costs ~10x more, and the scalar priors of
small models are the sampler's hot path.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["constant", "scalar_log", "scalar_log1p", "log_fns", "summed", "bind", "chainwise",
           "CHAINWISE_MAX_CHAINS"]

#: ``ndarray.sum`` without its Python-level wrapper.
_sum = np.add.reduce

#: Up to this many chains, a batched kernel of scalar parameters runs its ``math``-module version
#: chain by chain (see :func:`chainwise`). Measured with the Normal observed kernel (about 15
#: operations) on a 2-core box: 2 chains 7 vs 13 us, 4 chains 11 vs 15 us, 8 chains 16 vs 21 us,
#: 16 chains 22 vs 24 us, 32 chains 39 vs 25 us (chain by chain vs numpy calls on (C,) arrays).
CHAINWISE_MAX_CHAINS = 8


def constant(x: Any) -> float | np.ndarray:
    """A constant parameter as a Python float when it is a scalar, else a float64 array."""
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def scalar_log(x: float) -> float:
    """``math.log`` with numpy's results instead of exceptions: ``log 0 = -inf``, ``log(x < 0) = nan``."""
    if x > 0.0:
        return math.log(x)
    return -math.inf if x == 0.0 else math.nan


def scalar_log1p(x: float) -> float:
    """``math.log1p`` with numpy's results at and below -1 (``-inf``, nan)."""
    if x > -1.0:
        return math.log1p(x)
    return -math.inf if x == -1.0 else math.nan


def log_fns(shape: tuple[int, ...], batched: bool) -> tuple[Callable, Callable]:
    """``(log, log1p)`` for a kernel's values: the ``math`` versions when every value is one scalar
    (unbatched scalar rv), numpy's ufuncs otherwise."""
    if not shape and not batched:
        return scalar_log, scalar_log1p
    return np.log, np.log1p


def summed(elementwise: Callable, shape: tuple[int, ...]) -> Callable:
    """A prior kernel from an elementwise ``value -> (lp, g_value)``: ``lp`` summed over the rv's
    ``len(shape)`` trailing axes (a leading chain axis, if any, stays)."""
    if not shape:
        return elementwise
    axes = tuple(range(-len(shape), 0))

    def kernel(value):
        lp, g = elementwise(value)
        return _sum(lp, axes), g
    return kernel


def bind(full: Callable, order: Sequence[str], names: Sequence[str], params: dict[str, Any]) -> Callable:
    """Adapt ``full(*all params in order) -> (lp, grads in order)`` to an observed kernel taking the
    varying params ``names`` (in that order; the others are the constants in ``params``)."""
    names = tuple(names)
    if names == tuple(order):
        return full
    positions = [order.index(name) for name in names]
    fixed = [params.get(name) for name in order]

    def kernel(*args):
        values = list(fixed)
        for position, arg in zip(positions, args):
            values[position] = arg
        lp, grads = full(*values)
        return lp, tuple(grads[p] for p in positions)
    return kernel


def chainwise(scalar_full: Callable, vector_full: Callable, n_grads: int) -> Callable:
    """A batched kernel of scalar parameters (each argument ``(C,)``) that evaluates
    ``scalar_full`` (Python floats, ``math`` module) once per chain when there are at most
    :data:`CHAINWISE_MAX_CHAINS` chains, and ``vector_full`` (numpy on ``(C,)`` arrays) otherwise.

    A numpy call on a tiny array costs ~0.5 us whatever its length, a float operation ~20 ns: for a
    few chains, a loop of float arithmetic beats a dozen numpy calls. Python floats raise where
    numpy returns inf/nan (division by zero, overflow); such a call falls back to ``vector_full``,
    so both give the same results. Both return ``(lp, grads)`` with ``n_grads`` gradients.
    """
    def kernel(*args):
        if len(args[0]) > CHAINWISE_MAX_CHAINS:
            return vector_full(*args)
        try:
            rows = [scalar_full(*values) for values in zip(*[a.tolist() for a in args])]
        except ArithmeticError:
            return vector_full(*args)
        lp = np.array([row[0] for row in rows])
        return lp, tuple(np.array([row[1][i] for row in rows]) for i in range(n_grads))
    return kernel
