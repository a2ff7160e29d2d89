"""More event families: ZeroSumNormal{sigma} (vectors summing to zero) and LKJCholesky{eta}
(Cholesky factors of correlation matrices).

- ZeroSumNormal: an isotropic Normal(0, sigma^2) on the ``n-1``-dimensional subspace of vectors
  summing to zero (the last axis): ``lp = -(n-1)/2 log(2 pi sigma^2) - |x|^2 / (2 sigma^2)``, which
  equals the sum of ``n-1`` standard normal log-densities of the vector's coordinates in an
  orthonormal basis of the subspace (:func:`exmc.transforms_extra.helmert_basis`). Sampled through
  the ``zerosum`` transform. ``sigma`` is per vector (batch-shaped).
- LKJCholesky (Stan's ``lkj_corr_cholesky``): the factor ``L`` of a correlation matrix ``R = L L^T``
  with ``R ~ LKJ(eta)``, density ``det(R)^(eta-1) / c_K(eta)``; on ``L``'s strictly lower entries
  ``lp = sum_{i=1}^{K-1} (K - 1 - i + 2 eta - 2) log L_ii - log c_K(eta)`` with
  ``log c_K = sum_{k=1}^{K-1} [(2 eta - 2 + K - k)(K - k) log 2 + (K - k) log B(b_k, b_k)]``,
  ``b_k = eta + (K - k - 1)/2`` (Lewandowski, Kurowicka & Joe 2009, eq. 16). Sampled through the
  ``cholesky_corr`` transform; a covariance factor is ``diag(sigma) L`` (a det: ``mul`` of
  ``sigma[:, None]`` and ``L``), which is what PyMC's LKJCholeskyCov returns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma

from exmc._numeric import LOG_2PI, as_float
from exmc.dist.base import Distribution, require, require_positive, size_tuple
from exmc.transforms_extra import cholesky_corr, helmert_basis, zerosum

__all__ = ["ZeroSumNormal", "LKJCholesky", "lkj_log_normalizer"]

#: Tolerance of the observed-value checks (zero sum; unit rows of a correlation factor).
ZERO_SUM_ATOL = 1e-8
LOG_2 = float(np.log(2.0))


@dataclass(frozen=True)
class ZeroSumNormalFamily(Distribution):
    """ZeroSumNormal{sigma} on the last axis (see the module docstring)."""

    def check_params(self, params):
        require_positive(params, "sigma")

    def default_transform(self, **params):
        return zerosum

    def in_support(self, value, **params):
        value = as_float(value)
        ok = np.all(np.isfinite(value), axis=-1) & (np.abs(np.sum(value, axis=-1)) <= ZERO_SUM_ATOL * value.shape[-1])
        return np.broadcast_to(ok[..., None], value.shape).copy()

    def logp_and_grads(self, value, **params):
        sigma = as_float(params["sigma"])
        n = value.shape[-1]
        inv_var = 1.0 / (sigma * sigma)
        square = np.sum(value * value, axis=-1)
        lp = -0.5 * (n - 1) * (LOG_2PI + 2.0 * np.log(sigma)) - 0.5 * square * inv_var
        batch = lp.shape
        return lp, {"value": np.broadcast_to(-value * inv_var[..., None], batch + (n,)).copy(),
                    "sigma": np.broadcast_to(-(n - 1) / sigma + square * inv_var / sigma, batch).copy()}

    def sample(self, rng, size, shape=None, **params):
        if not shape:
            raise ValueError("ZeroSumNormal.sample needs the rv's shape (its last axis is the vector length)")
        sigma = as_float(params["sigma"])
        batch = np.broadcast_shapes(tuple(shape)[:-1], sigma.shape)
        z = rng.standard_normal(size_tuple(size) + batch + (shape[-1] - 1,)) * sigma[..., None]
        return z @ helmert_basis(shape[-1])


def lkj_log_normalizer(eta, k: int):
    """``log c_K(eta)`` and its derivative in ``eta`` (see the module docstring)."""
    eta = as_float(eta)
    total, derivative = np.zeros(eta.shape), np.zeros(eta.shape)
    for i in range(1, k):
        m = k - i
        b = eta + (m - 1) / 2.0
        total = total + (2.0 * eta - 2.0 + m) * m * LOG_2 + m * betaln(b, b)
        derivative = derivative + 2.0 * m * LOG_2 + m * 2.0 * (digamma(b) - digamma(2.0 * b))
    return total, derivative


@dataclass(frozen=True)
class LKJCholeskyFamily(Distribution):
    """LKJCholesky{eta} on the last two axes (see the module docstring)."""

    def check_params(self, params):
        require_positive(params, "eta")

    def default_transform(self, **params):
        return cholesky_corr

    def in_support(self, value, **params):
        value = as_float(value)
        k = value.shape[-1]
        lower = np.all(np.abs(value[..., np.triu_indices(k, 1)[0], np.triu_indices(k, 1)[1]]) == 0, axis=-1)
        rows = np.all(np.abs(np.sum(value * value, axis=-1) - 1.0) <= 1e-8, axis=-1)
        diagonal = np.all(np.diagonal(value, axis1=-2, axis2=-1) > 0, axis=-1)
        ok = lower & rows & diagonal
        return np.broadcast_to(ok[..., None, None], value.shape).copy()

    def param_event_shape(self, key, event_shape):
        return None

    def logp_and_grads(self, value, **params):
        eta = as_float(params["eta"])
        k = value.shape[-1]
        diagonal = np.diagonal(value, axis1=-2, axis2=-1)[..., 1:]
        positive = np.all(diagonal > 0, axis=-1)
        log_diagonal = np.log(np.where(diagonal > 0, diagonal, 1.0))
        coefficient = (k - 2 - np.arange(k - 1)) + 2.0 * eta[..., None] - 2.0
        log_c, d_log_c = lkj_log_normalizer(eta, k)
        lp = np.sum(coefficient * log_diagonal, axis=-1) - log_c
        lp = np.where(positive, lp, -np.inf)
        batch = lp.shape
        g_value = np.zeros(batch + (k, k))
        rows = np.arange(1, k)
        g_value[..., rows, rows] = np.broadcast_to(coefficient / np.where(diagonal > 0, diagonal, 1.0),
                                                   batch + (k - 1,))
        g_eta = np.broadcast_to(2.0 * np.sum(log_diagonal, axis=-1) - d_log_c, batch).copy()
        return lp, {"value": g_value, "eta": g_eta}

    def sample(self, rng, size, shape=None, **params):
        """The C-vine draw (Lewandowski et al. 2009; Stan's ``lkj_corr_cholesky_rng``): partial
        correlations ``2 Beta(a, a) - 1`` column by column, ``a`` shrinking by 1/2 per column."""
        if not shape or len(shape) < 2:
            raise ValueError("LKJCholesky.sample needs the rv's shape (its last two axes are K x K)")
        eta = as_float(params["eta"])
        k = shape[-1]
        batch = size_tuple(size) + np.broadcast_shapes(tuple(shape)[:-2], eta.shape)
        eta = np.broadcast_to(eta, batch)
        lower = np.zeros(batch + (k, k))
        lower[..., 0, 0] = 1.0
        remaining = np.ones(batch + (k,))
        alpha = eta + 0.5 * (k - 1)
        for i in range(k - 1):
            alpha = alpha - 0.5
            cpc = 2.0 * rng.beta(alpha[..., None], alpha[..., None], size=batch + (k - 1 - i,)) - 1.0
            if i:
                lower[..., i, i] = np.sqrt(remaining[..., i])
            lower[..., i + 1:, i] = cpc * np.sqrt(remaining[..., i + 1:])
            remaining[..., i + 1:] *= 1.0 - cpc * cpc
        lower[..., k - 1, k - 1] = np.sqrt(remaining[..., k - 1])
        return lower


ZeroSumNormal = ZeroSumNormalFamily(name="ZeroSumNormal", params=("sigma",), support="zerosum", event_ndim=1)
LKJCholesky = LKJCholeskyFamily(name="LKJCholesky", params=("eta",), support="corr_cholesky", event_ndim=2)
