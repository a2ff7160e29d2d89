"""Observed kernels of the count families and Gamma: the likelihood of constant data ``y`` with
every term that depends on the data alone computed once, at compile time (see
:meth:`exmc.dist.base.Distribution.observed_kernel`).

On every call ``logp_and_grads`` recomputes ``gammaln(y + 1)`` (Poisson, NegativeBinomial), the
binomial coefficients (Binomial with a constant ``n``) and ``log y`` (Gamma): on a Poisson GLM of
20,000 rows that was 570 of the gradient's 874 µs (issue 14's profile). Here they are one constant
``c`` (or, where they multiply a varying parameter, one stored array), and a scalar parameter uses
the data's sums (``Σy``, ``Σ log y``) instead of a pass over the rows.

Shapes: ``y`` with at least one axis; each varying parameter a scalar or of ``y``'s shape (a
leading chain axis when batched). Other shapes, and Binomial's ``n`` varying or of another shape,
are declined (``None``) and the model uses ``logp_and_grads``. The results equal
``logp_and_grads``' summed log-density and reduced gradients up to rounding (the constants are
summed first: ``tests/exmc/test_observed_kernels.py`` checks them against that plain path).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.special import digamma, gammaln, xlog1py, xlogy

from exmc._numeric import as_float

__all__ = ["poisson_observed_kernel", "binomial_observed_kernel", "negative_binomial_observed_kernel",
           "gamma_observed_kernel"]

#: ``ndarray.sum`` without its Python-level wrapper.
_sum = np.add.reduce


class _Layout:
    """How the varying parameters of one term meet the data: which are scalars (padded against
    the data when batched) and how a gradient is reduced back to its parameter's shape."""

    def __init__(self, y: np.ndarray, varying, batched: bool) -> None:
        self.y = y
        self.batched = batched
        self.shapes = dict(varying)
        self.names = [name for name, _ in varying]
        self.axes = tuple(range(-y.ndim, 0))
        self.n = float(y.size)

    def accepts(self) -> bool:
        return self.y.ndim >= 1 and all(shape in ((), self.y.shape) for shape in self.shapes.values())

    def scalar(self, name: str) -> bool:
        return self.shapes[name] == ()

    def spread(self, name: str, x):
        """A varying parameter ready to broadcast against the data."""
        if self.batched and self.scalar(name):
            return x.reshape(x.shape + (1,) * self.y.ndim)
        return x

    def total(self, lp):
        """Sum an elementwise log-density over the data axes (the chain axis stays)."""
        return _sum(lp, self.axes)

    def reduce(self, name: str, g):
        """An elementwise gradient reduced to its parameter's shape."""
        if self.scalar(name):
            return _sum(g, self.axes)
        return g


def _constant_params(params: dict[str, Any], names) -> dict[str, Any]:
    return {key: as_float(value) for key, value in params.items() if key not in names}


def poisson_observed_kernel(y, varying, batched, params) -> Callable | None:
    """``y ~ Poisson(mu)`` with ``mu`` varying: ``lp = Σ y log mu - Σ mu - Σ log y!``."""
    y = as_float(y)
    layout = _Layout(y, varying, batched)
    if not layout.accepts() or layout.names != ["mu"]:
        return None
    c = -float(np.sum(gammaln(y + 1.0)))
    if layout.scalar("mu"):
        sum_y, n = float(np.sum(y)), layout.n

        def kernel(mu):
            return xlogy(sum_y, mu) - n * mu + c, (sum_y / mu - n,)
        return kernel

    def kernel(mu):
        return _sum(xlogy(y, mu), layout.axes) - _sum(mu, layout.axes) + c, (y / mu - 1.0,)
    return kernel


def poisson_log_rate_kernel(y: np.ndarray, batched: bool) -> Callable:
    """``y ~ Poisson(exp(eta))`` as a function of ``eta`` of ``y``'s shape (the fused log link, see
    :mod:`exmc.program`): ``lp = y·eta - Σ exp(eta) - Σ log y!`` and ``d lp / d eta = y - exp(eta)``,
    three passes over the rows, no log or division (``mu = exp(eta)`` is never formed as a value
    of its own)."""
    y = as_float(y)
    c = -float(np.sum(gammaln(y + 1.0)))
    axes = tuple(range(-y.ndim, 0))
    flat = y.ndim == 1

    def kernel(eta):
        rate = np.exp(eta)
        if flat:
            return np.dot(eta, y) - _sum(rate, -1) + c, (y - rate,)
        return _sum(eta * y, axes) - _sum(rate, axes) + c, (y - rate,)
    return kernel


def binomial_observed_kernel(y, varying, batched, params) -> Callable | None:
    """``y ~ Binomial(n, p | logit_p)`` with a constant ``n`` (scalar or of ``y``'s shape) and
    ``p`` or ``logit_p`` varying; the binomial coefficients are one constant."""
    y = as_float(y)
    layout = _Layout(y, varying, batched)
    if not layout.accepts() or layout.names not in (["p"], ["logit_p"]) or "n" not in params:
        return None
    n = as_float(params["n"])
    if n.shape not in ((), y.shape):
        return None
    n_minus_k = n - y
    c = float(np.sum(gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n_minus_k + 1.0)))
    name = layout.names[0]
    if name == "logit_p":
        def kernel(eta):
            eta = layout.spread(name, eta)
            sp = np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta)))  # softplus
            lp = layout.total(y * eta - n * sp) + c
            return lp, (layout.reduce(name, y - n * np.exp(eta - sp)),)
        return kernel

    def kernel(p):
        p = layout.spread(name, p)
        lp = layout.total(xlogy(y, p) + xlog1py(n_minus_k, -p)) + c
        return lp, (layout.reduce(name, y / p - n_minus_k / (1.0 - p)),)
    return kernel


def negative_binomial_observed_kernel(y, varying, batched, params) -> Callable | None:
    """``y ~ NegativeBinomial(mu, alpha)``, either or both varying: ``log y!`` is one constant,
    and with a constant ``alpha`` so are ``lgamma(y + alpha) - lgamma(alpha)`` and the digammas
    are not needed."""
    y = as_float(y)
    layout = _Layout(y, varying, batched)
    if not layout.accepts() or not set(layout.names) <= {"mu", "alpha"}:
        return None
    const = _constant_params(params, layout.names)
    c = -float(np.sum(gammaln(y + 1.0)))
    alpha_const = "alpha" not in layout.shapes
    if alpha_const:
        alpha0 = const["alpha"]
        if np.shape(alpha0) not in ((), y.shape):
            return None
        c += float(np.sum(gammaln(y + alpha0) - gammaln(alpha0) * np.ones_like(y)))
    if "mu" not in layout.shapes and np.shape(const["mu"]) not in ((), y.shape):
        return None
    names = layout.names

    def kernel(*args):
        values = dict(zip(names, args))
        mu = layout.spread("mu", values["mu"]) if "mu" in values else const["mu"]
        alpha = layout.spread("alpha", values["alpha"]) if "alpha" in values else const["alpha"]
        log_ratio = -np.log1p(mu / alpha)
        k_alpha = y + alpha
        inv_total = 1.0 / (alpha + mu)
        elementwise = alpha * log_ratio + xlogy(y, mu) - y * np.log(alpha + mu)
        if not alpha_const:
            elementwise = elementwise + gammaln(k_alpha) - gammaln(alpha)
        grads = []
        for name in names:
            if name == "mu":
                g = y / mu - k_alpha * inv_total
            else:
                g = digamma(k_alpha) - digamma(alpha) + log_ratio + (mu - y) * inv_total
            grads.append(layout.reduce(name, np.broadcast_to(g, np.broadcast_shapes(np.shape(g), elementwise.shape))))
        return layout.total(elementwise) + c, tuple(grads)
    return kernel


def gamma_observed_kernel(y, varying, batched, params) -> Callable | None:
    """``y ~ Gamma(alpha, beta)`` (rate ``beta``), either or both varying: ``log y`` is computed
    once; with scalar parameters the data enter only through ``Σ log y`` and ``Σ y``."""
    y = as_float(y)
    layout = _Layout(y, varying, batched)
    if not layout.accepts() or not set(layout.names) <= {"alpha", "beta"}:
        return None
    if not np.all(y > 0):
        return None  # -inf terms: the plain path's support handling decides
    const = _constant_params(params, layout.names)
    if any(np.shape(value) not in ((), y.shape) for value in const.values()):
        return None
    log_y = np.log(y)
    names = layout.names
    scalars = all(layout.scalar(name) for name in names) and all(np.ndim(v) == 0 for v in const.values())
    if scalars:
        n, sum_log_y, sum_y = layout.n, float(np.sum(log_y)), float(np.sum(y))

        def kernel(*args):
            values = dict(zip(names, args))
            alpha = values.get("alpha", const.get("alpha"))
            beta = values.get("beta", const.get("beta"))
            log_beta = np.log(beta)
            lp = n * (alpha * log_beta - gammaln(alpha)) + (alpha - 1.0) * sum_log_y - beta * sum_y
            grads = tuple(n * (log_beta - digamma(alpha)) + sum_log_y if name == "alpha" else n * alpha / beta - sum_y
                          for name in names)
            return lp, grads
        return kernel

    def kernel(*args):
        values = dict(zip(names, args))
        alpha = layout.spread("alpha", values["alpha"]) if "alpha" in values else const["alpha"]
        beta = layout.spread("beta", values["beta"]) if "beta" in values else const["beta"]
        log_beta = np.log(beta)
        elementwise = alpha * log_beta - gammaln(alpha) + (alpha - 1.0) * log_y - beta * y
        shape = elementwise.shape
        grads = []
        for name in names:
            g = log_beta - digamma(alpha) + log_y if name == "alpha" else alpha / beta - y
            grads.append(layout.reduce(name, np.broadcast_to(g, shape)))
        return layout.total(elementwise), tuple(grads)
    return kernel
