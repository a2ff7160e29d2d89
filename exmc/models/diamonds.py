"""Port of posteriordb's ``diamonds`` program (brms 2.10): log price of 5000 diamonds on 24
centred predictors, with a Student-t intercept and a half-Student-t residual scale.

The posterior is badly conditioned (correlated polynomial terms); it is the heaviest port
(N=5000, K=24) and the slowest to sample."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc import Builder, Dist, transforms
from exmc.models._regression import vector

#: brms defaults in the Stan program: ``student_t(3, 8, 10)`` intercept, ``student_t(3, 0, 10)`` scale.
T_DF = 3.0
INTERCEPT_LOC = 8.0
T_SCALE = 10.0


def diamonds(data: Mapping[str, Any]):
    """``b ~ normal(0, 1); Intercept ~ student_t(3, 8, 10); sigma ~ student_t(3, 0, 10)`` truncated
    to ``sigma > 0`` (a constant), ``Y ~ normal(Intercept + Xc * b, sigma)`` with ``Xc`` the
    non-intercept columns of ``X`` centred at their means. ``prior_only`` drops the likelihood.

    Nodes: data ``Xc``, rvs ``b`` (K-1,), ``Intercept``, ``sigma`` (log transform), dets
    ``Xc_b`` and ``mu``. Raises ``ValueError`` when ``X`` is not ``(N, K)``.
    """
    X = np.asarray(data["X"], dtype=float)
    if X.shape != (int(data["N"]), int(data["K"])):
        raise ValueError(f"diamonds data: X has shape {X.shape}, N={data['N']}, K={data['K']}")
    Xc = X[:, 1:] - X[:, 1:].mean(axis=0)
    ir = Builder.new_ir()
    ir = Builder.data(ir, "Xc", Xc)
    ir = Builder.rv(ir, "b", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=(Xc.shape[1],))
    ir = Builder.rv(ir, "Intercept", Dist.StudentT, {"df": T_DF, "loc": INTERCEPT_LOC, "scale": T_SCALE})
    ir = Builder.rv(ir, "sigma", Dist.StudentT, {"df": T_DF, "loc": 0.0, "scale": T_SCALE}, transform=transforms.log)
    if data.get("prior_only"):
        return ir
    ir = Builder.det(ir, "Xc_b", "matmul", ["Xc", "b"])
    ir = Builder.det(ir, "mu", "add", ["Intercept", "Xc_b"])
    ir = Builder.rv(ir, "Y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, "Y_obs", "Y", vector(data, "Y"))
