"""Port of posteriordb's ``eight_schools_noncentered`` program.

Stan samples ``theta_trans`` and reports ``theta = theta_trans * tau + mu``; the reference draws
list ``theta``, ``mu`` and ``tau`` only, so :func:`parameters_from_reference` recovers the
sampled ``theta_trans`` from them."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc import Builder, Dist
from exmc.models._regression import vector

#: Stan: ``mu ~ normal(0, 5); tau ~ cauchy(0, 5)`` with ``<lower=0>``.
MU_SCALE = 5.0
TAU_SCALE = 5.0


def eight_schools_noncentered(data: Mapping[str, Any]):
    """``theta_trans ~ normal(0, 1); theta = theta_trans * tau + mu; y ~ normal(theta, sigma)``.

    Nodes: data ``sigma`` (the known standard errors), rvs ``theta_trans`` (J,), ``mu``, ``tau``,
    det ``theta``, observed rv ``y``.
    """
    y, sigma = vector(data, "y"), vector(data, "sigma")
    if y.shape != sigma.shape or y.shape != (int(data["J"]),):
        raise ValueError(f"eight_schools data: y {y.shape}, sigma {sigma.shape}, J={data['J']}")
    ir = Builder.new_ir()
    ir = Builder.data(ir, "sigma", sigma)
    ir = Builder.rv(ir, "theta_trans", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=y.shape)
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": MU_SCALE})
    ir = Builder.rv(ir, "tau", Dist.HalfCauchy, {"scale": TAU_SCALE})
    ir = Builder.det(ir, "theta", "affine", ["mu", "tau", "theta_trans"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "theta", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", y)


def parameters_from_reference(draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stan's parameters from reference draws: ``theta_trans = (theta - mu) / tau``.

    ``draws`` holds ``theta`` (n, J), ``mu`` (n,) and ``tau`` (n,) as grouped by
    :func:`exmc.models.posteriordb.group_stan_names`; raises ``KeyError`` naming a missing one.
    """
    theta, mu, tau = (np.asarray(draws[k]) for k in ("theta", "mu", "tau"))
    return {"theta_trans": (theta - mu[..., None]) / tau[..., None], "mu": mu, "tau": tau}
