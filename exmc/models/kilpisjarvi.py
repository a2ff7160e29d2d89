"""Port of posteriordb's ``kilpisjarvi`` program: linear trend of Kilpisjärvi summer temperatures
with data-given normal priors on intercept and slope and an improper flat prior on ``sigma``.

The predictor (year) is not centred, so the posterior of ``alpha`` and ``beta`` is strongly
correlated: a hard case for a diagonal metric, kept so on purpose (it is Stan's program)."""
from __future__ import annotations

from typing import Any, Mapping

from exmc import Builder, Dist
from exmc.models._regression import vector


def kilpisjarvi(data: Mapping[str, Any]):
    """``alpha ~ normal(pmualpha, psalpha); beta ~ normal(pmubeta, psbeta);
    y ~ normal(alpha + beta * x, sigma)``. Nodes: rvs alpha, beta, sigma; det ``mu``."""
    ir = Builder.new_ir()
    ir = Builder.data(ir, "x", vector(data, "x"))
    ir = Builder.rv(ir, "alpha", Dist.Normal, {"mu": float(data["pmualpha"]), "sigma": float(data["psalpha"])})
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": float(data["pmubeta"]), "sigma": float(data["psbeta"])})
    ir = Builder.rv(ir, "sigma", Dist.HalfFlat, {})
    ir = Builder.det(ir, "mu", "affine", ["alpha", "beta", "x"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", vector(data, "y"))
