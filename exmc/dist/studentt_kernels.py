"""StudentT's observed kernel: the likelihood of constant data ``y`` with a scalar ``df`` (varying
or constant) and ``loc``/``scale`` that are scalars or of the data's shape (stochastic volatility:
``returns ~ StudentT(nu, 0, exp(volatility))``; robust regression).

Everything that depends on ``df`` alone (``lgamma``, ``digamma``, ``log(df pi)``) is computed once
per call on the scalar instead of per entry, and only the gradients of varying parameters are
formed. Other shapes are declined (``None``) and the model uses ``logp_and_grads``.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from scipy.special import digamma, gammaln

from exmc._numeric import LOG_PI, as_float
from exmc.dist.kernels import constant, scalar_log

__all__ = ["studentt_observed_kernel"]

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
