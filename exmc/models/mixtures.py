"""Ports of posteriordb's ``low_dim_gauss_mix`` and ``hmm_example`` (ordered and
positive_ordered parameters, a two-component mixture, a marginalised two-state HMM)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc import Builder, Dist
from exmc.models._regression import vector

#: low_dim_gauss_mix: ``sigma ~ normal(0, 2)`` (``<lower=0>``), ``mu ~ normal(0, 2)``, ``theta ~ beta(5, 5)``.
MIX_SCALE = 2.0
THETA_PRIOR = {"alpha": 5.0, "beta": 5.0}
#: hmm_example: ``mu[1] ~ normal(3, 1)``, ``mu[2] ~ normal(10, 1)``; unit emission sd.
HMM_MU_MEANS = (3.0, 10.0)
HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))


def low_dim_gauss_mix(data: Mapping[str, Any]):
    """``y ~ theta N(mu[1], sigma[1]) + (1 - theta) N(mu[2], sigma[2])`` with ``mu`` ordered."""
    y = vector(data, "y")
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": MIX_SCALE}, shape=(2,), transform="ordered")
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": MIX_SCALE}, shape=(2,))
    ir = Builder.rv(ir, "theta", Dist.Beta, THETA_PRIOR)
    for k in range(2):
        ir = Builder.det(ir, f"mu{k}", "index", ["mu", np.array(k)])
        ir = Builder.det(ir, f"sigma{k}", "index", ["sigma", np.array(k)])
    ir = Builder.det(ir, "theta_c", "sub", [1.0, "theta"])
    ir = Builder.det(ir, "weights", "stack", ["theta", "theta_c"])
    ir = Builder.rv(ir, "y", Dist.Mixture, {
        "weights": "weights",
        "components": [(Dist.Normal, {"mu": f"mu{k}", "sigma": f"sigma{k}"}) for k in range(2)],
    })
    return Builder.obs(ir, "y_obs", "y", y)


def hmm_example(data: Mapping[str, Any]):
    """Two states with rows ``theta1``, ``theta2`` (simplexes) of the transition matrix, emission
    ``y_t ~ normal(mu[z_t], 1)`` with ``mu`` positive_ordered, states marginalised (``HMM``).

    Stan's forward algorithm starts from ``gamma[1, k] = normal_lpdf(y[1] | mu[k], 1)`` (no initial
    distribution); a uniform ``init`` differs from it by the constant ``log K`` only."""
    y = vector(data, "y")
    k = int(data["K"])
    if k != 2:
        raise ValueError(f"hmm_example has two states (theta1, theta2), got K={k}")
    ir = Builder.data(Builder.new_ir(), "y", y[:, None])
    ir = Builder.rv(ir, "theta1", Dist.Dirichlet, {"alpha": np.ones(k)})
    ir = Builder.rv(ir, "theta2", Dist.Dirichlet, {"alpha": np.ones(k)})
    ir = Builder.det(ir, "theta", "stack", ["theta1", "theta2"])
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": np.array(HMM_MU_MEANS), "sigma": 1.0}, transform="positive_ordered")
    ir = Builder.det(ir, "resid", "sub", ["y", "mu"])
    ir = Builder.det(ir, "sq", "square", ["resid"])
    ir = Builder.det(ir, "log_emission", "affine", [-HALF_LOG_2PI, -0.5, "sq"])
    return Builder.hmm(ir, "y_hmm", np.full(k, 1.0 / k), "theta", "log_emission")


#: hmm_drive_0/1: ``phi[1] ~ normal(0, 1), phi[2] ~ normal(3, 1)``, the same for ``lambda``.
DRIVE_MEANS = (0.0, 3.0)


def _drive(data: Mapping[str, Any], normal: bool):
    """hmm_drive_0 (exponential emissions, positive_ordered rates) and hmm_drive_1 (normal
    emissions with known sds ``tau``, ``rho``; ordered means): two emissions per step, ``u`` (1/speed)
    and ``v`` (hoop distance), rows ``theta1``, ``theta2`` with Dirichlet(``alpha[k]``) priors."""
    u, v = vector(data, "u"), vector(data, "v")
    alpha = np.asarray(data["alpha"], dtype=float)
    k = int(data["K"])
    if k != 2:
        raise ValueError(f"hmm_drive has two states (theta1, theta2), got K={k}")
    ordering = "ordered" if normal else "positive_ordered"
    ir = Builder.data(Builder.new_ir(), "u", u[:, None])
    ir = Builder.data(ir, "v", v[:, None])
    ir = Builder.rv(ir, "theta1", Dist.Dirichlet, {"alpha": alpha[0]})
    ir = Builder.rv(ir, "theta2", Dist.Dirichlet, {"alpha": alpha[1]})
    ir = Builder.det(ir, "theta", "stack", ["theta1", "theta2"])
    for name in ("phi", "lambda"):
        ir = Builder.rv(ir, name, Dist.Normal, {"mu": np.array(DRIVE_MEANS), "sigma": 1.0}, transform=ordering)
    terms = []
    for name, observed, sd_key in (("phi", "u", "tau"), ("lambda", "v", "rho")):
        if normal:
            sd = float(data[sd_key])
            ir = Builder.det(ir, f"{observed}_resid", "sub", [observed, name])
            ir = Builder.det(ir, f"{observed}_sq", "square", [f"{observed}_resid"])
            ir = Builder.det(ir, f"{observed}_le", "affine",
                             [-HALF_LOG_2PI - np.log(sd), -0.5 / (sd * sd), f"{observed}_sq"])
        else:  # exponential_lpdf(x | rate) = log(rate) - rate x
            ir = Builder.det(ir, f"{name}_log", "log", [name])
            ir = Builder.det(ir, f"{observed}_rate_x", "mul", [name, observed])
            ir = Builder.det(ir, f"{observed}_le", "sub", [f"{name}_log", f"{observed}_rate_x"])
        terms.append(f"{observed}_le")
    ir = Builder.det(ir, "log_emission", "add", terms)
    return Builder.hmm(ir, "drive_hmm", np.full(k, 1.0 / k), "theta", "log_emission")


def hmm_drive_0(data: Mapping[str, Any]):
    """hmm_drive_0 (see :func:`_drive`)."""
    return _drive(data, normal=False)


def hmm_drive_1(data: Mapping[str, Any]):
    """hmm_drive_1 (see :func:`_drive`)."""
    return _drive(data, normal=True)
