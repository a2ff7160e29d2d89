"""Continuous families on the positive half-line (default transform: log).

HalfNormal{sigma} · HalfCauchy{scale} · Lognormal{mu, sigma} · Exponential{lambda} ·
Gamma{alpha, beta} (beta is a rate) · InverseGamma{alpha, beta} (beta is a scale) ·
Weibull{k, lambda} · HalfFlat{} (improper). Values below 0 get ``lp = -inf`` (densities written with
``log(value)`` also emit numpy's "invalid value" warning there: with the default log transform such
values never occur, so the warning points at a transform that does not fit the support).
``lambda`` is a Python keyword: pass it through a dict (``**{"lambda": 2.0}``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln

from exmc._numeric import HALF_LOG_2PI, as_float, minus_inf_below_zero, nan_to_minus_inf
from exmc.dist.base import Distribution, draw_shape, require_finite, require_positive
from exmc.dist.continuous import Normal
from exmc.dist.kernels import constant, log_fns, summed
from exmc.dist.observed_kernels import gamma_observed_kernel

__all__ = ["HalfNormal", "HalfCauchy", "Lognormal", "Exponential", "Gamma", "InverseGamma", "Weibull", "HalfFlat"]

#: log(sqrt(2/pi)): the half-normal's normalising constant (twice the normal's mass on x >= 0).
_HALF_LOG_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)
#: log(2/pi): the half-Cauchy's normalising constant.
_LOG_2_OVER_PI = math.log(2.0 / math.pi)


class _PositiveClosed(Distribution):
    """Support ``[0, inf)``: densities that are finite at 0."""

    def in_support(self, value, **params):
        return np.isfinite(value) & (value >= 0)


class _PositiveOpen(Distribution):
    """Support ``(0, inf)``: the log of the value enters the density."""

    def in_support(self, value, **params):
        return np.isfinite(value) & (value > 0)


@dataclass(frozen=True)
class HalfNormalFamily(_PositiveClosed):
    """HalfNormal{sigma}: ``log(2/pi)/2 - log sigma - (x/sigma)^2/2`` for ``x >= 0``."""

    def check_params(self, params):
        require_positive(params, "sigma")

    def logp_and_grads(self, value, **params):
        sigma = params["sigma"]
        inv_sigma = 1.0 / sigma
        z = value * inv_sigma
        z2 = z * z
        lp = minus_inf_below_zero(_HALF_LOG_2_OVER_PI - 0.5 * z2 - np.log(sigma), value)
        return lp, {"value": -z * inv_sigma, "sigma": (z2 - 1.0) * inv_sigma}

    def prior_kernel(self, shape, batched, value_in_support, **params):
        sigma = constant(params["sigma"])
        inv_var = 1.0 / (sigma * sigma)
        c = constant(_HALF_LOG_2_OVER_PI - np.log(sigma))

        if value_in_support:  # exp(u) >= 0
            def elementwise(value):
                g = -inv_var * value
                return c + 0.5 * g * value, g
        else:
            def elementwise(value):
                g = -inv_var * value
                return minus_inf_below_zero(c + 0.5 * g * value, value), g
        return summed(elementwise, shape)

    def sample(self, rng, size, shape=None, **params):
        sigma = params["sigma"]
        return np.abs(rng.normal(0.0, sigma, size=draw_shape(size, shape, sigma)))


@dataclass(frozen=True)
class HalfCauchyFamily(_PositiveClosed):
    """HalfCauchy{scale}: ``log(2/pi) - log scale - log1p((x/scale)^2)`` for ``x >= 0``."""

    def check_params(self, params):
        require_positive(params, "scale")

    def logp_and_grads(self, value, **params):
        scale = params["scale"]
        inv_scale = 1.0 / scale
        z = value * inv_scale
        z2 = z * z
        lp = minus_inf_below_zero(_LOG_2_OVER_PI - np.log(scale) - np.log1p(z2), value)
        r = inv_scale / (1.0 + z2)
        return lp, {"value": -2.0 * z * r, "scale": (z2 - 1.0) * r}

    def prior_kernel(self, shape, batched, value_in_support, **params):
        inv_scale = constant(1.0 / np.asarray(params["scale"]))
        c = constant(_LOG_2_OVER_PI + np.log(inv_scale))
        log1p = log_fns(shape, batched)[1]

        def elementwise(value):
            z = value * inv_scale
            z2 = z * z
            lp = c - log1p(z2)
            return lp if value_in_support else minus_inf_below_zero(lp, value), -2.0 * z * inv_scale / (1.0 + z2)
        return summed(elementwise, shape)

    def sample(self, rng, size, shape=None, **params):
        scale = params["scale"]
        return np.abs(scale * rng.standard_cauchy(size=draw_shape(size, shape, scale)))


@dataclass(frozen=True)
class LognormalFamily(_PositiveOpen):
    """Lognormal{mu, sigma}: ``log X ~ Normal(mu, sigma)``; ``lp = normal(log x) - log x``."""

    def check_params(self, params):
        require_finite(params, "mu")
        require_positive(params, "sigma")

    def logp_and_grads(self, value, **params):
        """Normal's density of ``log x`` and its Jacobian ``-log x``."""
        log_x = np.log(value)
        lp, grads = Normal.logp_and_grads(log_x, mu=params["mu"], sigma=params["sigma"])
        grads["value"] = (grads["value"] - 1.0) / value
        return nan_to_minus_inf(lp - log_x), grads

    def prior_kernel(self, shape, batched, value_in_support, **params):
        mu, sigma = constant(params["mu"]), constant(params["sigma"])
        inv_var = 1.0 / (sigma * sigma)
        c = constant(-np.log(sigma) - HALF_LOG_2PI)
        log = log_fns(shape, batched)[0]

        def elementwise(value):
            log_x = log(value)
            d = log_x - mu
            return nan_to_minus_inf(c - 0.5 * inv_var * d * d - log_x), -(inv_var * d + 1.0) / value
        return summed(elementwise, shape)

    def sample(self, rng, size, shape=None, **params):
        mu, sigma = params["mu"], params["sigma"]
        return rng.lognormal(mu, sigma, size=draw_shape(size, shape, mu, sigma))


@dataclass(frozen=True)
class ExponentialFamily(_PositiveClosed):
    """Exponential{lambda} (a rate): ``log lambda - lambda x`` for ``x >= 0``."""

    def check_params(self, params):
        require_positive(params, "lambda")

    def logp_and_grads(self, value, **params):
        lam = params["lambda"]
        lp = minus_inf_below_zero(np.log(lam) - lam * value, value)
        return lp, {"value": np.zeros(lp.shape) - lam, "lambda": 1.0 / lam - value}

    def prior_kernel(self, shape, batched, value_in_support, **params):
        lam = constant(params["lambda"])
        log_lam = constant(np.log(lam))
        if not shape and not batched:
            def elementwise(value):
                lp = log_lam - lam * value
                return lp if value_in_support else minus_inf_below_zero(lp, value), -lam
        else:
            def elementwise(value):
                lp = log_lam - lam * value
                return lp if value_in_support else minus_inf_below_zero(lp, value), np.full(lp.shape, -lam)
        return summed(elementwise, shape)

    def sample(self, rng, size, shape=None, **params):
        lam = params["lambda"]
        return rng.exponential(1.0 / np.asarray(lam), size=draw_shape(size, shape, lam))


@dataclass(frozen=True)
class GammaFamily(_PositiveOpen):
    """Gamma{alpha, beta} with rate beta: ``alpha log beta - lgamma(alpha) + (alpha-1) log x - beta x``."""

    def check_params(self, params):
        require_positive(params, "alpha", "beta")

    def logp_and_grads(self, value, **params):
        alpha, beta = params["alpha"], params["beta"]
        log_x = np.log(value)
        log_beta = np.log(beta)
        lp = nan_to_minus_inf(alpha * log_beta - gammaln(alpha) + (alpha - 1.0) * log_x - beta * value)
        return lp, {
            "value": (alpha - 1.0) / value - beta,
            "alpha": log_beta - digamma(alpha) + log_x,
            "beta": alpha / beta - value,
        }

    def observed_kernel(self, value, varying, batched, **params):
        return gamma_observed_kernel(value, varying, batched, params)

    def prior_kernel(self, shape, batched, value_in_support, **params):
        alpha, beta = constant(params["alpha"]), constant(params["beta"])
        am1 = alpha - 1.0
        c = constant(alpha * np.log(beta) - gammaln(alpha))
        log = log_fns(shape, batched)[0]

        def elementwise(value):
            return nan_to_minus_inf(c + am1 * log(value) - beta * value), am1 / value - beta
        return summed(elementwise, shape)

    def sample(self, rng, size, shape=None, **params):
        alpha, beta = params["alpha"], params["beta"]
        return rng.gamma(alpha, 1.0 / np.asarray(beta), size=draw_shape(size, shape, alpha, beta))


@dataclass(frozen=True)
class InverseGammaFamily(_PositiveOpen):
    """InverseGamma{alpha, beta} with scale beta: ``1/X ~ Gamma(alpha, rate=beta)``."""

    def check_params(self, params):
        require_positive(params, "alpha", "beta")

    def logp_and_grads(self, value, **params):
        alpha, beta = params["alpha"], params["beta"]
        inv_x = 1.0 / value
        log_x = np.log(value)
        log_beta = np.log(beta)
        lp = nan_to_minus_inf(alpha * log_beta - gammaln(alpha) - (alpha + 1.0) * log_x - beta * inv_x)
        return lp, {
            "value": (beta * inv_x - (alpha + 1.0)) * inv_x,
            "alpha": log_beta - digamma(alpha) - log_x,
            "beta": alpha / beta - inv_x,
        }

    def sample(self, rng, size, shape=None, **params):
        alpha, beta = params["alpha"], params["beta"]
        return np.asarray(beta) / rng.gamma(alpha, 1.0, size=draw_shape(size, shape, alpha, beta))


@dataclass(frozen=True)
class WeibullFamily(_PositiveOpen):
    """Weibull{k, lambda} (shape k, scale lambda): ``log k - log lambda + (k-1) log t - t^k``, ``t = x/lambda``."""

    def check_params(self, params):
        require_positive(params, "k", "lambda")

    def logp_and_grads(self, value, **params):
        k, lam = params["k"], params["lambda"]
        inv_lam = 1.0 / lam
        log_t = np.log(value * inv_lam)
        t_k = np.exp(k * log_t)
        lp = nan_to_minus_inf(np.log(k * inv_lam) + (k - 1.0) * log_t - t_k)
        return lp, {
            "value": (k - 1.0 - k * t_k) / value,
            "k": 1.0 / k + log_t * (1.0 - t_k),
            "lambda": k * (t_k - 1.0) * inv_lam,
        }

    def sample(self, rng, size, shape=None, **params):
        k, lam = params["k"], params["lambda"]
        return np.asarray(lam) * rng.weibull(k, size=draw_shape(size, shape, k, lam))


@dataclass(frozen=True)
class HalfFlatFamily(_PositiveClosed):
    """HalfFlat{}: the improper uniform density on ``[0, inf)``. It has no draws."""

    def logp_and_grads(self, value, **params):
        value = as_float(value)
        return minus_inf_below_zero(np.zeros(value.shape), value), {"value": np.zeros(value.shape)}

    def sample(self, rng, size, shape=None, **params):
        raise ValueError("HalfFlat is improper: it has no prior draws (give the rv a proper prior for predictive checks)")


HalfNormal = HalfNormalFamily(name="HalfNormal", params=("sigma",), support="positive")
HalfCauchy = HalfCauchyFamily(name="HalfCauchy", params=("scale",), support="positive")
Lognormal = LognormalFamily(name="Lognormal", params=("mu", "sigma"), support="positive")
Exponential = ExponentialFamily(name="Exponential", params=("lambda",), support="positive")
Gamma = GammaFamily(name="Gamma", params=("alpha", "beta"), support="positive")
InverseGamma = InverseGammaFamily(name="InverseGamma", params=("alpha", "beta"), support="positive")
Weibull = WeibullFamily(name="Weibull", params=("k", "lambda"), support="positive")
HalfFlat = HalfFlatFamily(name="HalfFlat", params=(), support="positive")
