"""Port of posteriordb's ``arK`` program: an autoregressive model of order K.

Stan loops ``y[t] ~ normal(alpha + sum_k beta[k] * y[t-k], sigma)`` for ``t = K+1..T``; the port
builds the lag matrix once (row t, column k holds ``y[t-k]``) so the mean is one ``matmul``."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc import Builder, Dist
from exmc.models._regression import vector

#: Stan: ``alpha ~ normal(0, 10); beta ~ normal(0, 10); sigma ~ cauchy(0, 2.5)`` (``<lower=0>``).
COEF_SCALE = 10.0
SIGMA_SCALE = 2.5


def lag_matrix(y: np.ndarray, K: int) -> np.ndarray:
    """``(T-K, K)`` matrix whose row ``t-K`` is ``(y[t-1], ..., y[t-K])`` for ``t = K..T-1`` (0-based).

    Raises ``ValueError`` when the series is not longer than the order.
    """
    T = len(y)
    if not 0 < K < T:
        raise ValueError(f"arK: order K={K} needs 0 < K < T={T}")
    return np.column_stack([y[K - k: T - k] for k in range(1, K + 1)])


def arK(data: Mapping[str, Any]):
    """Nodes: data ``lags``, rvs ``alpha``, ``beta`` (K,), ``sigma``; dets ``lag_sum``, ``mu``."""
    K = int(data["K"])
    y = vector(data, "y")
    if y.shape != (int(data["T"]),):
        raise ValueError(f"arK data: y has shape {y.shape}, T={data['T']}")
    ir = Builder.new_ir()
    ir = Builder.data(ir, "lags", lag_matrix(y, K))
    ir = Builder.rv(ir, "alpha", Dist.Normal, {"mu": 0.0, "sigma": COEF_SCALE})
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": 0.0, "sigma": COEF_SCALE}, shape=(K,))
    ir = Builder.rv(ir, "sigma", Dist.HalfCauchy, {"scale": SIGMA_SCALE})
    ir = Builder.det(ir, "lag_sum", "matmul", ["lags", "beta"])
    ir = Builder.det(ir, "mu", "add", ["alpha", "lag_sum"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", y[K:])
