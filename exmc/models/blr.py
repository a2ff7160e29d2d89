"""Port of posteriordb's ``blr`` program (Bayesian linear regression without intercept), used by
the ``sblrc`` (correlated predictors) and ``sblri`` (independent predictors) data sets."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc import Builder, Dist
from exmc.models._regression import vector

#: Stan: ``normal_lpdf(beta | 0, 10)`` and ``normal_lpdf(sigma | 0, 10)`` with ``<lower=0>``.
PRIOR_SCALE = 10.0


def blr(data: Mapping[str, Any]):
    """``beta ~ normal(0, 10); sigma ~ half-normal(10); y ~ normal(X * beta, sigma)``.

    Nodes: data ``X`` (N, D), rvs ``beta`` (D,) and ``sigma``, det ``mu``. Raises ``ValueError``
    when ``X`` is not ``(N, D)`` for the data's ``N`` and ``D``.
    """
    X = np.asarray(data["X"], dtype=float)
    y = vector(data, "y")
    if X.shape != (int(data["N"]), int(data["D"])) or y.shape != (X.shape[0],):
        raise ValueError(f"blr data: X has shape {X.shape}, y {y.shape}; N={data['N']}, D={data['D']}")
    ir = Builder.new_ir()
    ir = Builder.data(ir, "X", X)
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": 0.0, "sigma": PRIOR_SCALE}, shape=(X.shape[1],))
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": PRIOR_SCALE})
    ir = Builder.det(ir, "mu", "matmul", ["X", "beta"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", y)
