"""StudentT's observed kernel: the likelihood of constant data ``y`` with a scalar ``df`` (varying
or constant) and ``loc``/``scale`` that are scalars or of the data's shape (stochastic volatility:
``returns ~ StudentT(nu, 0, exp(volatility))``; robust regression).

Everything that depends on ``df`` alone (``lgamma``, ``digamma``, ``log(df pi)``) is computed once
per call on the scalar instead of per entry, and only the gradients of varying parameters are
formed. Other shapes are declined (``None``) and the model uses ``logp_and_grads``.

:func:`studentt_log_scale_kernel` is the same likelihood as a function of ``eta = log scale``
(the fused ``scale = exp(eta)`` of :mod:`exmc.fusion`, the stochastic volatility model's form):
with ``t = (y - loc)² e^(-2 eta) / df``,

    lp       = n (lgamma((df+1)/2) - lgamma(df/2) - (log df + log pi)/2) - Σ eta - (df+1)/2 Σ log1p(t)
    d/d eta  = (df+1) t / (1 + t) - 1 = df - df (df+1) / u,   u = df (1 + t) = df + (y - loc)² e^(-2 eta)
    d/d df   = (n (digamma((df+1)/2) - digamma(df/2) - 1/df) - Σ log1p(t) + Σ (d/d eta + 1) / df) / 2

with ``Σ log1p(t) = Σ log u - n log df`` (numpy's ``log`` is vectorised, its ``log1p`` is not; the
cancellation costs an absolute ~n·1e-16 in the log-density). ``(y - loc)²`` is data (computed
once), the scale and its reciprocal are never formed, and the whole term is nine numpy calls over
the entries (ten with a varying ``df``), in place in one buffer where they can be: the plain path
(an ``exp`` det, this module's observed kernel of the scale, the chain rule through the ``exp``)
makes about twenty.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from scipy.special import digamma, gammaln

from exmc import accel
from exmc._numeric import LOG_PI, as_float
from exmc.dist.kernels import constant, scalar_log

__all__ = ["studentt_observed_kernel", "studentt_log_scale_kernel"]

#: ``ndarray.sum`` without its Python-level wrapper.
_sum = np.add.reduce


def _scalar_lgamma(x: float) -> float:
    """``math.lgamma`` (fast on floats) with scipy's value where math raises (poles at 0, -1, ...)."""
    return math.lgamma(x) if x > 0.0 else float(gammaln(x))


def studentt_observed_kernel(y: np.ndarray, varying: tuple[tuple[str, tuple[int, ...]], ...], batched: bool,
                             params: dict[str, Any]) -> Callable | None:
    """The kernel for ``y ~ StudentT(df, loc, scale)`` with ``y`` an array (see the module
    docstring), or ``None``."""
    y = as_float(y)
    shapes = dict(varying)
    if any(shape not in ((), y.shape) for shape in shapes.values()) or shapes.get("df", ()) != ():
        return None
    if y.ndim == 0 or ("df" not in shapes and np.ndim(params["df"]) != 0):
        return None
    n = float(y.size)
    axes = tuple(range(-y.ndim, 0))
    pad = (slice(None),) + (None,) * y.ndim
    # A varying scalar parameter carries a (C,) chain axis in the batched program: padded against y.
    lifted = {name: batched and shapes[name] == () for name in shapes}
    names = [name for name, _ in varying]
    consts = {name: constant(v) for name, v in params.items()}
    if "loc" not in shapes:
        y_centred = y - consts["loc"]
    if "scale" not in shapes:
        const_log_scale_total = float(np.sum(np.broadcast_to(np.log(consts["scale"]), y.shape)))
    lgamma, log = (gammaln, np.log) if batched else (_scalar_lgamma, scalar_log)

    def value(name, args):
        x = args[name] if name in args else consts[name]
        return x[pad] if lifted.get(name) else x

    def reduce(g, name):
        return _sum(g, axes) if shapes[name] == () else g

    def kernel(*given):
        args = dict(zip(names, given))
        df = args["df"] if "df" in args else consts["df"]
        df_y = df[pad] if lifted.get("df") else df  # df against the data's axes
        scale = value("scale", args)
        inv_scale = 1.0 / scale
        z = (y - value("loc", args) if "loc" in shapes else y_centred) * inv_scale
        z2 = z * z
        log1p_term = np.log1p(z2 / df_y)
        sum_log1p = _sum(log1p_term, axes)
        half_dfp1 = 0.5 * (df + 1.0)
        if "scale" not in shapes:
            log_scale_total = const_log_scale_total
        elif shapes["scale"] == ():
            log_scale_total = n * log(args["scale"])
        else:
            log_scale_total = _sum(np.log(scale), axes)
        lp = (n * (lgamma(half_dfp1) - lgamma(0.5 * df) - 0.5 * (log(df) + LOG_PI)) - log_scale_total
              - half_dfp1 * sum_log1p)
        r = (df_y + 1.0) / (df_y + z2)
        rz2 = r * z2
        grads = {}
        if "loc" in shapes:
            grads["loc"] = reduce(r * z * inv_scale, "loc")
        if "scale" in shapes:
            grads["scale"] = reduce((rz2 - 1.0) * inv_scale, "scale")
        if "df" in shapes:
            inv_df = 1.0 / df
            grads["df"] = 0.5 * (n * (digamma(half_dfp1) - digamma(0.5 * df) - inv_df) - sum_log1p
                                 + _sum(rz2, axes) * inv_df)
        return lp, tuple(grads[name] for name in names)
    return kernel


def studentt_log_scale_kernel(y: np.ndarray, loc: Any, df: float | None, batched: bool,
                              engine: str | None = None) -> Callable:
    """``kernel(eta[, df]) -> (lp, grads)`` of ``y ~ StudentT(df, loc, exp(eta))`` with ``eta``
    of ``y``'s shape (a leading chain axis when batched), a constant ``loc`` (broadcasting against
    ``y``) and ``df`` a constant scalar, or ``None`` when it is the kernel's second input (a scalar,
    ``(C,)`` when batched); see the module docstring.

    ``engine`` (default: :func:`exmc.accel.grad_kernel`'s choice) ``"numba"`` gives the compiled
    twin of :mod:`exmc.dist.kernels_numba` where it has one (data of one axis), ``"numpy"`` this
    module's kernel, its oracle."""
    if accel.grad_kernel(engine) == "numba":
        from exmc.dist import kernels_numba

        compiled = kernels_numba.studentt_log_scale_kernel(y, loc, df, batched)
        if compiled is not None:
            return accel.mark(compiled, "numba")
    y = as_float(y)
    centred = np.broadcast_to(y - constant(loc), y.shape)
    y2 = np.ascontiguousarray(centred * centred)
    n = float(y.size)
    if y.ndim == 1:  # sums as products with ones: one BLAS call, cheaper than a reduction here
        ones = np.ones(y.shape)

        def total(x):
            return x @ ones
    else:
        axes = tuple(range(-y.ndim, 0))

        def total(x):
            return _sum(x, axes)
    pad = (slice(None),) + (None,) * y.ndim
    minus_two = np.array(-2.0)  # a 0-d array operand costs less per call than a Python float
    lgamma, log = (gammaln, np.log) if batched else (_scalar_lgamma, scalar_log)
    fixed = df is not None
    if fixed:
        df = float(df)
        log_df = log(df)
        half_dfp1 = 0.5 * (df + 1.0)
        c_df = n * (lgamma(half_dfp1) - lgamma(0.5 * df) - 0.5 * (log_df + LOG_PI)) + half_dfp1 * n * log_df
        df_0d = np.array(df)
        minus_df_dfp1 = np.array(-df * (df + 1.0))

        def kernel(eta):
            u = np.multiply(eta, minus_two)
            np.exp(u, out=u)
            u *= y2
            u += df_0d  # u = df (1 + t)
            lp = c_df - total(eta) - half_dfp1 * total(np.log(u))
            g = np.divide(minus_df_dfp1, u, out=u)
            g += df_0d
            return lp, (g,)
        return kernel

    def kernel(eta, df):
        df_y = df[pad] if batched else df  # df against the data's axes
        u = np.multiply(eta, minus_two)
        np.exp(u, out=u)
        u *= y2
        u += df_y  # u = df (1 + t)
        log_df = log(df)
        half_dfp1 = 0.5 * (df + 1.0)
        sum_log1p = total(np.log(u)) - n * log_df
        lp = (n * (lgamma(half_dfp1) - lgamma(0.5 * df) - 0.5 * (log_df + LOG_PI)) - total(eta)
              - half_dfp1 * sum_log1p)
        g = np.divide(-df_y * (df_y + 1.0), u, out=u)
        g += df_y
        inv_df = 1.0 / df
        g_df = 0.5 * (n * (digamma(half_dfp1) - digamma(0.5 * df) - inv_df) - sum_log1p + (total(g) + n) * inv_df)
        return lp, (g, g_df)
    return kernel
