"""Ports of posteriordb's Gaussian-process programs ``gp_regr`` and ``gp_pois_regr``.

Both build Stan's ``gp_exp_quad_cov(x, alpha, rho) = alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2))`` from
the constant squared distances with elementwise ops. ``gp_regr`` adds ``sigma`` (not ``sigma^2``:
Stan's program adds ``diag_matrix(rep_vector(sigma, N))``) and observes ``y ~ MvNormal(0, cov)``;
``gp_pois_regr`` is the non-centred latent GP ``f = cholesky(cov + 1e-10 I) f_tilde`` with
``k ~ poisson_log(f)`` (the ``cholesky`` and ``matmul`` ops).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc import Builder, Dist
from exmc.models._regression import vector

#: Stan: ``rho ~ gamma(25, 4); alpha ~ normal(0, 2)`` (``<lower=0>``); gp_regr ``sigma ~ normal(0, 1)``.
RHO_PRIOR = {"alpha": 25.0, "beta": 4.0}
ALPHA_SCALE = 2.0
SIGMA_SCALE = 1.0
#: gp_pois_regr's diagonal jitter, as in the Stan program.
JITTER = 1e-10


def _exp_quad_cov(ir, x: np.ndarray):
    """Nodes ``K = alpha^2 exp(-d2 / (2 rho^2))`` for free rvs ``rho`` and ``alpha`` already in ``ir``."""
    ir = Builder.data(ir, "half_d2", -0.5 * (x[:, None] - x[None, :]) ** 2)
    ir = Builder.det(ir, "rho2", "square", ["rho"])
    ir = Builder.det(ir, "scaled", "div", ["half_d2", "rho2"])
    ir = Builder.det(ir, "kernel", "exp", ["scaled"])
    ir = Builder.det(ir, "alpha2", "square", ["alpha"])
    return Builder.det(ir, "K", "mul", ["alpha2", "kernel"])


def _priors(ir):
    ir = Builder.rv(ir, "rho", Dist.Gamma, RHO_PRIOR)
    return Builder.rv(ir, "alpha", Dist.HalfNormal, {"sigma": ALPHA_SCALE})


def gp_regr(data: Mapping[str, Any]):
    """``y ~ multi_normal(0, K + diag(sigma))`` with ``rho``, ``alpha``, ``sigma`` free."""
    x, y = vector(data, "x"), vector(data, "y")
    n = x.shape[0]
    ir = _priors(Builder.new_ir())
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": SIGMA_SCALE})
    ir = _exp_quad_cov(ir, x)
    ir = Builder.det(ir, "noise", "mul", ["sigma", np.eye(n)])
    ir = Builder.det(ir, "cov", "add", ["K", "noise"])
    ir = Builder.rv(ir, "y", Dist.MvNormal, {"mu": np.zeros(n), "cov": "cov"})
    return Builder.obs(ir, "y_obs", "y", y)


def gp_pois_regr(data: Mapping[str, Any]):
    """``f = cholesky(K + 1e-10 I) f_tilde``, ``f_tilde ~ normal(0, 1)``, ``k ~ poisson(exp(f))``."""
    x, k = vector(data, "x"), np.asarray(data["k"], dtype=np.int64)
    n = x.shape[0]
    ir = _priors(Builder.new_ir())
    ir = Builder.rv(ir, "f_tilde", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=(n,))
    ir = _exp_quad_cov(ir, x)
    ir = Builder.det(ir, "cov", "add", ["K", JITTER * np.eye(n)])
    ir = Builder.det(ir, "L_cov", "cholesky", ["cov"])
    ir = Builder.det(ir, "f", "matmul", ["L_cov", "f_tilde"])
    ir = Builder.det(ir, "rate", "exp", ["f"])
    ir = Builder.rv(ir, "k", Dist.Poisson, {"mu": "rate"})
    return Builder.obs(ir, "k_obs", "k", k)


def gp_pois_regr_parameters_from_reference(draws: Mapping[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """Stan's parameters of gp_pois_regr from its reference draws, which list ``f``, not
    ``f_tilde``: ``f_tilde = L^-1 f`` with ``L = cholesky(K(rho, alpha) + 1e-10 I)`` per draw."""
    rho, alpha, f = (np.asarray(draws[k], dtype=float) for k in ("rho", "alpha", "f"))
    d2 = (x[:, None] - x[None, :]) ** 2
    f_tilde = np.empty_like(f)
    for i in range(f.shape[0]):
        cov = alpha[i] ** 2 * np.exp(-0.5 * d2 / rho[i] ** 2) + JITTER * np.eye(len(x))
        f_tilde[i] = np.linalg.solve(np.linalg.cholesky(cov), f[i])
    return {"rho": rho, "alpha": alpha, "f_tilde": f_tilde}
