"""Ports of posteriordb's ``arma11`` and ``garch11``: recursions written with the ``linear_recurrence`` op (the ``scan`` of
``MA_STEP``/``AR_STEP`` below, in one numpy operation per step; tests check the two agree).

arma11: ``err_t = y_t - (mu + phi y_{t-1} + theta err_{t-1})`` with ``y_0 = mu``, ``err_0 = 0``
and ``err ~ normal(0, sigma)``. With ``x_t = y_t - mu - phi y_{t-1}`` the recursion is
``err_t = x_t - theta err_{t-1}`` (a scan); the map from ``y`` to ``err`` is triangular with unit
diagonal, so ``err ~ normal(0, sigma)`` is ``y ~ normal(y - err, sigma)``, an ordinary observation.

garch11: ``sigma_1 = sigma1`` (data), ``sigma_t^2 = alpha0 + alpha1 (y_{t-1} - mu)^2 + beta1
sigma_{t-1}^2`` (a scan on ``sigma^2``), ``y ~ normal(mu, sigma)``; no priors (Stan's implicit
flat ones) and the parameter-dependent bound ``beta1 < 1 - alpha1``: ``beta1 = (1 - alpha1) u``
with ``u`` uniform on (0, 1), and the Jacobian ``log(1 - alpha1)`` as a potential, so the density
in ``(alpha1, beta1)`` is Stan's.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc import Builder, Dist
from exmc.models._regression import vector

#: arma11 priors: ``mu ~ normal(0, 10); phi, theta ~ normal(0, 2); sigma ~ cauchy(0, 2.5)`` (``<lower=0>``).
MU_SCALE, COEF_SCALE, SIGMA_SCALE = 10.0, 2.0, 2.5
#: ``carry_t = x_t - p0 carry_{t-1}`` and ``carry_t = x_t + p0 carry_{t-1}``.
MA_STEP = (("lag", "mul", ["p0", "carry"]), ("err", "sub", ["x0", "lag"]))
AR_STEP = (("lag", "mul", ["p0", "carry"]), ("next", "add", ["x0", "lag"]))


def arma11(data: Mapping[str, Any], recursion: str = "linear_recurrence"):
    """ARMA(1, 1) (see the module docstring); free rvs ``mu``, ``phi``, ``theta``, ``sigma``.
    ``recursion="scan"`` writes the error recursion as the ``scan`` of :data:`MA_STEP` instead of
    ``linear_recurrence`` (the same density; the validation report samples both)."""
    y = vector(data, "y")
    ir = Builder.data(Builder.new_ir(), "y_data", y)
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": MU_SCALE})
    ir = Builder.rv(ir, "phi", Dist.Normal, {"mu": 0.0, "sigma": COEF_SCALE})
    ir = Builder.rv(ir, "theta", Dist.Normal, {"mu": 0.0, "sigma": COEF_SCALE})
    ir = Builder.rv(ir, "sigma", Dist.HalfCauchy, {"scale": SIGMA_SCALE})
    ir = Builder.det(ir, "mu_vec", "stack", ["mu"])
    ir = Builder.det(ir, "y_lag", "concat", ["mu_vec", y[:-1]])        # y_0 = mu
    ir = Builder.det(ir, "ar", "mul", ["phi", "y_lag"])
    ir = Builder.det(ir, "mean", "add", ["mu", "ar"])
    ir = Builder.det(ir, "x", "sub", ["y_data", "mean"])
    if recursion == "scan":
        ir = Builder.det(ir, "err", "scan", [0.0, "x", "theta"], step=MA_STEP, n_seq=1)
    else:
        ir = Builder.det(ir, "neg_theta", "neg", ["theta"])
        ir = Builder.det(ir, "err", "linear_recurrence", [0.0, "x", "neg_theta"])  # the scan MA_STEP
    ir = Builder.det(ir, "nu", "sub", ["y_data", "err"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "nu", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", y)


def garch11(data: Mapping[str, Any], recursion: str = "linear_recurrence"):
    """GARCH(1, 1) (see the module docstring); free rvs ``mu``, ``alpha0``, ``alpha1``,
    ``beta1_unit`` (det ``beta1``). ``recursion="scan"``: the variance recursion as the ``scan``
    of :data:`AR_STEP`."""
    y = vector(data, "y")
    sigma1 = float(data["sigma1"])
    ir = Builder.data(Builder.new_ir(), "y_prev", y[:-1])
    ir = Builder.rv(ir, "mu", Dist.Flat, {})
    ir = Builder.rv(ir, "alpha0", Dist.HalfFlat, {})
    ir = Builder.rv(ir, "alpha1", Dist.Uniform01, {})
    ir = Builder.rv(ir, "beta1_unit", Dist.Uniform01, {})
    ir = Builder.det(ir, "beta1_upper", "sub", [1.0, "alpha1"])
    ir = Builder.det(ir, "beta1", "mul", ["beta1_upper", "beta1_unit"])
    ir = Builder.det(ir, "log_jacobian", "log", ["beta1_upper"])
    ir = Builder.potential(ir, "beta1_bound", "log_jacobian")
    ir = Builder.det(ir, "resid", "sub", ["y_prev", "mu"])
    ir = Builder.det(ir, "resid2", "square", ["resid"])
    ir = Builder.det(ir, "shock", "affine", ["alpha0", "alpha1", "resid2"])
    if recursion == "scan":
        ir = Builder.det(ir, "var_rest", "scan", [sigma1 ** 2, "shock", "beta1"], step=AR_STEP, n_seq=1)
    else:
        ir = Builder.det(ir, "var_rest", "linear_recurrence", [sigma1 ** 2, "shock", "beta1"])  # AR_STEP
    ir = Builder.det(ir, "sd_rest", "sqrt", ["var_rest"])
    ir = Builder.det(ir, "sigma", "concat", [np.array([sigma1]), "sd_rest"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", y)


def garch11_parameters_from_reference(draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The port's parameters from Stan's: ``beta1_unit = beta1 / (1 - alpha1)``."""
    alpha1 = np.asarray(draws["alpha1"], dtype=float)
    return {"mu": np.asarray(draws["mu"], dtype=float), "alpha0": np.asarray(draws["alpha0"], dtype=float),
            "alpha1": alpha1, "beta1_unit": np.asarray(draws["beta1"], dtype=float) / (1.0 - alpha1)}
