"""The Normal family's observed kernels: the likelihood of constant data ``y`` (see
:meth:`exmc.dist.base.Distribution.observed_kernel`), the most common term of regression and
hierarchical models, written with as few array passes as the parameter shapes allow.

- Scalar ``mu`` and ``sigma`` (iid data): the sum over the data depends on it only through its
  count, mean and centred sum of squares, computed once; a call does scalar arithmetic only.
- ``mu`` with the data's shape (a regression's linear predictor, a group mean gathered per row) and
  a scalar or constant ``sigma``: one residual, one sum of squares, one scaled residual.
- ``mu`` constant and a scalar ``sigma``: the sum of squares is a constant.
Other shapes (a varying ``sigma`` per entry, a ``mu`` broadcast along the data) are declined
(``None``), and the model uses ``logp_and_grads``.

The latent kernel covers a free vector with scalar ``mu`` and ``sigma`` (varying or constant): the
centred hierarchical prior ``theta ~ Normal(mu, tau)`` and Neal's funnel.

:func:`normal_log_scale_kernel` is that latent term as a function of ``eta = log sigma`` (the
fused ``sigma = exp(eta)`` of :mod:`exmc.fusion`: Neal's funnel, ``exp(log_tau)`` hierarchies):
``lp = -n log(2 pi)/2 - n eta - q/2`` with ``q = Σ (x - mu)² e^(-2 eta)``, ``d/dx = -(x - mu)
e^(-2 eta)``, ``d/d eta = q - n``, ``d/d mu = e^(-2 eta) Σ (x - mu)``: no ``exp`` det, no ``log``
of it, no chain rule through it, and with a constant ``mu = 0`` two numpy calls.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from exmc._numeric import HALF_LOG_2PI, as_float
from exmc.dist.kernels import bind, chainwise, constant, scalar_log

__all__ = ["normal_observed_kernel", "normal_latent_kernel", "normal_log_scale_kernel"]

_ORDER = ("mu", "sigma")
#: ``ndarray.sum`` without its Python-level wrapper.
_sum = np.add.reduce


def normal_observed_kernel(y: np.ndarray, varying: tuple[tuple[str, tuple[int, ...]], ...], batched: bool,
                           params: dict[str, Any]) -> Callable | None:
    """The kernel for ``y ~ Normal(mu, sigma)`` (see the module docstring), or ``None``."""
    y = as_float(y)
    shapes = dict(varying)
    names = [name for name, _ in varying]
    if "sigma" in shapes and shapes["sigma"] != ():
        return None
    if "mu" in shapes and shapes["mu"] not in ((), y.shape):
        return None
    if "mu" in shapes and shapes["mu"] == ():
        if "sigma" not in shapes and np.ndim(params["sigma"]):
            return None
        return _iid(y, names, batched, params)
    if "mu" not in shapes:
        return _constant_mean(y, batched, params)
    if "sigma" not in shapes:
        return _constant_scale(y, batched, params["sigma"])
    return bind(_residual(y, batched), _ORDER, names, params)


def _iid(y: np.ndarray, names: list[str], batched: bool, params: dict[str, Any]) -> Callable:
    """Scalar ``mu`` and ``sigma``: sufficient statistics."""
    params = {name: constant(value) for name, value in params.items()}  # a constant one: a float
    n = float(y.size)
    mean = float(y.mean())
    centred_ss = float(np.sum((y - mean) ** 2))
    c = -n * HALF_LOG_2PI

    def full_with(log):
        def full(mu, sigma):
            inv_sigma = 1.0 / sigma
            t = (mean - mu) * inv_sigma  # standardised distance of the mean
            nt = n * t
            q = centred_ss * (inv_sigma * inv_sigma) + nt * t  # sum((y - mu)^2) / sigma^2
            return c - n * log(sigma) - 0.5 * q, (nt * inv_sigma, (q - n) * inv_sigma)
        return full

    scalar = bind(full_with(scalar_log), _ORDER, names, params)
    if not batched:
        return scalar
    return chainwise(scalar, bind(full_with(np.log), _ORDER, names, params), len(names))


def _constant_mean(y: np.ndarray, batched: bool, params: dict[str, Any]) -> Callable:
    """Constant ``mu`` (any shape), scalar ``sigma``: ``sum((y - mu)^2)`` is a constant."""
    n = float(y.size)
    ss = float(np.sum((y - np.asarray(params["mu"])) ** 2))
    c = -n * HALF_LOG_2PI

    def full_with(log):
        def full(sigma):
            inv_sigma = 1.0 / sigma
            q = ss * (inv_sigma * inv_sigma)
            return c - n * log(sigma) - 0.5 * q, ((q - n) * inv_sigma,)
        return full

    if not batched:
        return full_with(scalar_log)
    return chainwise(full_with(scalar_log), full_with(np.log), 1)


def _constant_scale(y: np.ndarray, batched: bool, sigma: Any) -> Callable:
    """``mu`` of the data's shape, constant ``sigma`` (scalar or array)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    inv_var = 1.0 / (sigma * sigma)
    inv_var = float(inv_var) if inv_var.ndim == 0 else inv_var
    c_total = float(np.sum(np.broadcast_to(-np.log(sigma) - HALF_LOG_2PI, y.shape)))
    if not batched:
        def kernel(mu):
            r = y - mu
            w = r * inv_var
            return c_total - 0.5 * np.vdot(w, r), (w,)
        return kernel
    axes = tuple(range(-y.ndim, 0))

    def batched_kernel(mu):
        r = y - mu
        w = r * inv_var
        return c_total - 0.5 * _sum(w * r, axes), (w,)
    return batched_kernel


def _residual(y: np.ndarray, batched: bool) -> Callable:
    """``mu`` of the data's shape and a scalar ``sigma``, both varying."""
    n = float(y.size)
    c = -n * HALF_LOG_2PI
    if not batched:
        def full(mu, sigma):
            r = y - mu
            inv_sigma = 1.0 / sigma
            inv_var = inv_sigma * inv_sigma
            q = np.vdot(r, r) * inv_var
            return c - n * scalar_log(sigma) - 0.5 * q, (r * inv_var, (q - n) * inv_sigma)
        return full
    axes = tuple(range(-y.ndim, 0))
    pad = (slice(None),) + (None,) * y.ndim  # (C,) -> (C, 1, ..., 1) against the residual

    def batched_full(mu, sigma):
        r = y - mu
        inv_sigma = 1.0 / sigma
        inv_var = inv_sigma * inv_sigma
        q = _sum(r * r, axes) * inv_var
        return c - n * np.log(sigma) - 0.5 * q, (r * inv_var[pad], (q - n) * inv_sigma)
    return batched_full


def normal_latent_kernel(shape: tuple[int, ...], varying: tuple[tuple[str, tuple[int, ...]], ...], batched: bool,
                         params: dict[str, Any]) -> Callable | None:
    """``value ~ Normal(mu, sigma)`` for a free ``value`` of ``shape`` with scalar ``mu`` and
    ``sigma`` (at least one varying), or ``None`` for other parameter shapes."""
    if not shape or any(s != () for _, s in varying) or any(np.ndim(p) for p in params.values()):
        return None
    n = float(np.prod(shape))
    c = -n * HALF_LOG_2PI
    names = ["value"] + [name for name, _ in varying]
    order = ("value",) + _ORDER
    if not batched:
        def full(value, mu, sigma):
            r = value - mu
            inv_sigma = 1.0 / sigma
            inv_var = inv_sigma * inv_sigma
            q = np.vdot(r, r) * inv_var
            g_value = r * -inv_var
            return (c - n * scalar_log(sigma) - 0.5 * q,
                    (g_value, inv_var * _sum(r, None), (q - n) * inv_sigma))
        return bind(full, order, names, params)
    axes = tuple(range(-len(shape), 0))
    pad = (slice(None),) + (None,) * len(shape)

    def padded(x):  # a varying (C,) parameter against the (C,) + shape value; constants stay
        return x[pad] if isinstance(x, np.ndarray) else x

    def batched_full(value, mu, sigma):
        r = value - padded(mu)
        inv_sigma = 1.0 / sigma
        inv_var = inv_sigma * inv_sigma
        q = _sum(r * r, axes) * inv_var
        g_value = r * padded(-inv_var)
        return (c - n * np.log(sigma) - 0.5 * q,
                (g_value, inv_var * _sum(r, axes), (q - n) * inv_sigma))
    return bind(batched_full, order, names, params)


def _scalar_exp(x: float) -> float:
    """``math.exp`` with numpy's result (inf) instead of ``OverflowError``."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def normal_log_scale_kernel(shape: tuple[int, ...], mu: float | None, batched: bool) -> Callable:
    """``kernel(value, eta[, mu]) -> (lp, grads)`` of ``value ~ Normal(mu, exp(eta))`` for a free
    ``value`` of ``shape`` (non-scalar) with a scalar ``eta``; ``mu`` a constant scalar, or
    ``None`` when it is the kernel's third input (a scalar). See the module docstring."""
    n = float(np.prod(shape))
    c = -n * HALF_LOG_2PI
    varying_mu = mu is None
    centred = not varying_mu and float(mu) == 0.0
    mu = None if varying_mu else float(mu)
    if not batched:
        vdot = np.vdot

        def kernel(value, eta, *given):
            r = value if centred else value - (given[0] if varying_mu else mu)
            w = _scalar_exp(-2.0 * eta)  # 1 / sigma²
            q = vdot(r, r) * w
            lp = c - n * eta - 0.5 * q
            if varying_mu:
                return lp, (r * -w, q - n, w * _sum(r, None))
            return lp, (r * -w, q - n)
        return kernel
    axes = tuple(range(-len(shape), 0))
    pad = (slice(None),) + (None,) * len(shape)

    def batched_kernel(value, eta, *given):
        r = value if centred else value - (given[0][pad] if varying_mu else mu)
        w = np.exp(-2.0 * eta)
        q = _sum(r * r, axes) * w
        lp = c - n * eta - 0.5 * q
        g_value = r * (-w)[pad]
        if varying_mu:
            return lp, (g_value, q - n, w * _sum(r, axes))
        return lp, (g_value, q - n)
    return batched_kernel
