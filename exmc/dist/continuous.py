"""Continuous families on the whole real line (default transform: identity).

Normal{mu, sigma} · Cauchy{loc, scale} · StudentT{df, loc, scale} · Laplace{mu, b} · Logistic{mu, s}
· Flat{} (improper). Each ``logp_and_grads`` is a handful of ufunc calls: the standardised residual
``z`` is computed once and every partial derivative is written in terms of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln

from exmc._numeric import HALF_LOG_2PI, LOG_PI, as_float, sigmoid
from exmc.dist.base import Distribution, draw_shape, require_finite, require_positive
from exmc.dist.kernels import constant, log_fns, summed
from exmc.dist.normal_kernels import normal_latent_kernel, normal_observed_kernel
from exmc.dist.studentt_kernels import studentt_observed_kernel

__all__ = ["Normal", "Cauchy", "StudentT", "Laplace", "Logistic", "Flat"]


class _RealLine(Distribution):
    """Shared support check for families on the real line."""

    def in_support(self, value, **params):
        return np.isfinite(value)


@dataclass(frozen=True)
class NormalFamily(_RealLine):
    """Normal{mu, sigma}: ``-z^2/2 - log sigma - log(2 pi)/2`` with ``z = (x - mu)/sigma``."""

    def check_params(self, params):
        require_finite(params, "mu")
        require_positive(params, "sigma")

    def logp_and_grads(self, value, **params):
        mu, sigma = params["mu"], params["sigma"]
        inv_sigma = 1.0 / sigma
        z = (value - mu) * inv_sigma
        z2 = z * z
        lp = -0.5 * z2 - np.log(sigma) - HALF_LOG_2PI
        d_mu = z * inv_sigma
        return lp, {"value": -d_mu, "mu": d_mu, "sigma": (z2 - 1.0) * inv_sigma}

    def prior_kernel(self, shape, batched, value_in_support, **params):
        mu, sigma = constant(params["mu"]), constant(params["sigma"])
        inv_var = 1.0 / (sigma * sigma)
        c = constant(-np.log(sigma) - HALF_LOG_2PI)
        centred = np.any(mu != 0.0)
        if not shape or batched or np.ndim(c):
            def elementwise(value):
                d = value - mu if centred else value
                g = -inv_var * d
                return c + 0.5 * g * d, g
            return summed(elementwise, shape)
        c_total = c * math.prod(shape)

        def kernel(value):  # one vector: the sum of squares is one dot product
            d = value - mu if centred else value
            g = -inv_var * d
            return c_total + 0.5 * np.vdot(g, d), g
        return kernel

    def observed_kernel(self, value, varying, batched, **params):
        return normal_observed_kernel(value, varying, batched, params)

    def latent_kernel(self, shape, varying, batched, **params):
        return normal_latent_kernel(shape, varying, batched, params)

    def sample(self, rng, size, shape=None, **params):
        mu, sigma = params["mu"], params["sigma"]
        return rng.normal(mu, sigma, size=draw_shape(size, shape, mu, sigma))


@dataclass(frozen=True)
class CauchyFamily(_RealLine):
    """Cauchy{loc, scale}: ``-log(pi) - log scale - log1p(z^2)``."""

    def check_params(self, params):
        require_finite(params, "loc")
        require_positive(params, "scale")

    def logp_and_grads(self, value, **params):
        loc, scale = params["loc"], params["scale"]
        inv_scale = 1.0 / scale
        z = (value - loc) * inv_scale
        z2 = z * z
        lp = -LOG_PI - np.log(scale) - np.log1p(z2)
        r = 1.0 / (1.0 + z2)
        d_loc = 2.0 * z * r * inv_scale
        return lp, {"value": -d_loc, "loc": d_loc, "scale": (z2 - 1.0) * r * inv_scale}

    def prior_kernel(self, shape, batched, value_in_support, **params):
        loc, inv_scale = constant(params["loc"]), constant(1.0 / np.asarray(params["scale"]))
        c = constant(-LOG_PI + np.log(inv_scale))
        log1p = log_fns(shape, batched)[1]

        def elementwise(value):
            z = (value - loc) * inv_scale
            return c - log1p(z * z), -2.0 * z * inv_scale / (1.0 + z * z)
        return summed(elementwise, shape)

    def sample(self, rng, size, shape=None, **params):
        loc, scale = params["loc"], params["scale"]
        return loc + scale * rng.standard_cauchy(size=draw_shape(size, shape, loc, scale))


@dataclass(frozen=True)
class StudentTFamily(_RealLine):
    """StudentT{df, loc, scale} (location-scale Student's t)."""

    def check_params(self, params):
        require_positive(params, "df", "scale")
        require_finite(params, "loc")

    def logp_and_grads(self, value, **params):
        df, loc, scale = params["df"], params["loc"], params["scale"]
        inv_scale = 1.0 / scale
        z = (value - loc) * inv_scale
        z2 = z * z
        half_dfp1 = 0.5 * (df + 1.0)
        log1p_term = np.log1p(z2 / df)
        lp = (gammaln(half_dfp1) - gammaln(0.5 * df) - 0.5 * np.log(df * np.pi) - np.log(scale)
              - half_dfp1 * log1p_term)
        r = (df + 1.0) / (df + z2)  # (df+1)/(df+z^2)
        d_loc = r * z * inv_scale
        d_scale = (r * z2 - 1.0) * inv_scale
        d_df = 0.5 * (digamma(half_dfp1) - digamma(0.5 * df) - 1.0 / df - log1p_term + r * z2 / df)
        return lp, {"value": -d_loc, "loc": d_loc, "scale": d_scale, "df": d_df}

    def observed_kernel(self, value, varying, batched, **params):
        return studentt_observed_kernel(value, varying, batched, params)

    def prior_kernel(self, shape, batched, value_in_support, **params):
        df, loc, scale = (constant(params[k]) for k in ("df", "loc", "scale"))
        inv_scale, inv_df, half_dfp1 = 1.0 / scale, 1.0 / df, 0.5 * (df + 1.0)
        c = constant(gammaln(half_dfp1) - gammaln(0.5 * df) - 0.5 * np.log(df * np.pi) - np.log(scale))
        log1p = log_fns(shape, batched)[1]

        def elementwise(value):
            z = (value - loc) * inv_scale
            z2 = z * z
            return c - half_dfp1 * log1p(z2 * inv_df), -(df + 1.0) * z * inv_scale / (df + z2)
        return summed(elementwise, shape)

    def sample(self, rng, size, shape=None, **params):
        df, loc, scale = params["df"], params["loc"], params["scale"]
        return loc + scale * rng.standard_t(df, size=draw_shape(size, shape, df, loc, scale))


@dataclass(frozen=True)
class LaplaceFamily(_RealLine):
    """Laplace{mu, b}: ``-log(2b) - |x - mu|/b``. The derivative at ``x == mu`` is taken as 0."""

    def check_params(self, params):
        require_finite(params, "mu")
        require_positive(params, "b")

    def logp_and_grads(self, value, **params):
        mu, b = params["mu"], params["b"]
        inv_b = 1.0 / b
        diff = value - mu
        adiff = np.abs(diff)
        lp = -np.log(2.0 * b) - adiff * inv_b
        d_mu = np.sign(diff) * inv_b
        return lp, {"value": -d_mu, "mu": d_mu, "b": (adiff * inv_b - 1.0) * inv_b}

    def sample(self, rng, size, shape=None, **params):
        mu, b = params["mu"], params["b"]
        return rng.laplace(mu, b, size=draw_shape(size, shape, mu, b))


@dataclass(frozen=True)
class LogisticFamily(_RealLine):
    """Logistic{mu, s}: ``-z - log s - 2 log(1 + e^-z)``, written symmetric in ``|z|`` for stability."""

    def check_params(self, params):
        require_finite(params, "mu")
        require_positive(params, "s")

    def logp_and_grads(self, value, **params):
        mu, s = params["mu"], params["s"]
        inv_s = 1.0 / s
        z = (value - mu) * inv_s
        az = np.abs(z)
        lp = -az - np.log(s) - 2.0 * np.log1p(np.exp(-az))
        dz = 1.0 - 2.0 * sigmoid(z)  # d lp / d z = -tanh(z/2)
        return lp, {"value": dz * inv_s, "mu": -dz * inv_s, "s": -(1.0 + dz * z) * inv_s}

    def sample(self, rng, size, shape=None, **params):
        mu, s = params["mu"], params["s"]
        return rng.logistic(mu, s, size=draw_shape(size, shape, mu, s))


@dataclass(frozen=True)
class FlatFamily(_RealLine):
    """Flat{}: the improper uniform density on the real line (``lp = 0``). It has no draws."""

    def logp_and_grads(self, value, **params):
        value = as_float(value)
        return np.zeros(value.shape), {"value": np.zeros(value.shape)}

    def sample(self, rng, size, shape=None, **params):
        raise ValueError("Flat is improper: it has no prior draws (give the rv a proper prior for predictive checks)")


Normal = NormalFamily(name="Normal", params=("mu", "sigma"))
Cauchy = CauchyFamily(name="Cauchy", params=("loc", "scale"))
StudentT = StudentTFamily(name="StudentT", params=("df", "loc", "scale"))
Laplace = LaplaceFamily(name="Laplace", params=("mu", "b"))
Logistic = LogisticFamily(name="Logistic", params=("mu", "s"))
Flat = FlatFamily(name="Flat", params=())
