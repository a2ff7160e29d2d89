"""Continuous families on bounded sets (default transform: logit/interval).

Beta{alpha, beta} and Uniform01{} on (0, 1) · Uniform{lower, upper} · TruncatedNormal{mu, sigma,
lower=-inf, upper=inf}. The interval transforms need *constant* bounds: ``default_transform`` raises
``ValueError`` naming the bound when it is not among the constant parameters it receives (the
model passes constants only, with optional defaults filled in).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, log_ndtr

from exmc import transforms
from exmc._numeric import HALF_LOG_2PI, as_float, nan_to_minus_inf
from exmc.dist.base import Distribution, draw_shape, require, require_finite, require_positive
from exmc.dist.kernels import constant, log_fns, summed

__all__ = ["Beta", "Uniform", "Uniform01", "TruncatedNormal"]

#: Below this, ``log(-expm1(d))`` is less accurate than ``log1p(-exp(d))`` (Maechler 2012, "Accurately
#: computing log(1 - exp(-|a|))", the cut-off is -log 2).
_LOG1MEXP_CUTOFF = -np.log(2.0)


def _log1mexp(d: np.ndarray) -> np.ndarray:
    """``log(1 - exp(d))`` for ``d < 0``, accurate near 0 and in the tail."""
    return np.where(d > _LOG1MEXP_CUTOFF, np.log(-np.expm1(d)), np.log1p(-np.exp(d)))


def _log_normal_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``log(Phi(b) - Phi(a))`` for ``a < b``; both tails handled by reflecting when ``a > 0``."""
    flip = a > 0
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    log_hi = log_ndtr(hi)
    return log_hi + _log1mexp(log_ndtr(lo) - log_hi)


def _bound_transform(family: str, params) -> transforms.Transform:
    """Interval / LowerBound / UpperBound / Identity from constant ``lower`` and ``upper``."""
    missing = [name for name in ("lower", "upper") if name not in params]
    if missing:
        raise ValueError(f"{family}: param {missing[0]!r} must be a constant to build the default transform "
                         "(give transform= explicitly for sampled bounds)")
    lower, upper = as_float(params["lower"]), as_float(params["upper"])
    low_finite, up_finite = np.isfinite(lower), np.isfinite(upper)
    if np.all(low_finite) and np.all(up_finite):
        return transforms.Interval(lower=lower, upper=upper)
    if np.all(low_finite) and not np.any(up_finite):
        return transforms.LowerBound(lower=lower)
    if np.all(up_finite) and not np.any(low_finite):
        return transforms.UpperBound(upper=upper)
    if not np.any(low_finite) and not np.any(up_finite):
        return transforms.identity
    raise ValueError(f"{family}: bounds mix finite and infinite entries elementwise; give transform= explicitly")


def _require_ordered_bounds(params) -> None:
    """Raise ``ValueError`` naming ``upper`` when both bounds are constants and ``upper <= lower``."""
    if "lower" in params and "upper" in params:
        lower = as_float(params["lower"])
        require(params, "upper", lambda u: u > lower, "> lower")


class _BetweenBounds(Distribution):
    """Support check and default transform shared by families on ``[lower, upper]`` given as params.

    ``in_support`` checks only the bounds it receives (a non-constant bound is omitted);
    ``default_transform`` raises ``ValueError`` naming a bound that is not constant.
    """

    def in_support(self, value, **params):
        ok = np.isfinite(value)
        if "lower" in params:
            ok = ok & (value >= params["lower"])
        if "upper" in params:
            ok = ok & (value <= params["upper"])
        return ok

    def default_transform(self, **params):
        return _bound_transform(self.name, params)


@dataclass(frozen=True)
class BetaFamily(Distribution):
    """Beta{alpha, beta}: ``(alpha-1) log x + (beta-1) log(1-x) - log B(alpha, beta)`` on (0, 1).

    Outside [0, 1] the logs are nan (numpy warns) and ``lp`` is ``-inf``; at 0 or 1 ``lp`` is what
    the formula gives (``-inf``, or ``+inf`` when the density is unbounded there)."""

    def check_params(self, params):
        require_positive(params, "alpha", "beta")

    def in_support(self, value, **params):
        return (value > 0) & (value < 1)

    def logp_and_grads(self, value, **params):
        alpha, beta = params["alpha"], params["beta"]
        log_x = np.log(value)
        log_1mx = np.log1p(-value)
        am1 = alpha - 1.0
        bm1 = beta - 1.0
        lp = nan_to_minus_inf(am1 * log_x + bm1 * log_1mx - betaln(alpha, beta))
        psi_ab = digamma(alpha + beta)
        return lp, {
            "value": am1 / value - bm1 / (1.0 - value),
            "alpha": log_x - digamma(alpha) + psi_ab,
            "beta": log_1mx - digamma(beta) + psi_ab,
        }

    def prior_kernel(self, shape, batched, value_in_support, **params):
        alpha, beta = constant(params["alpha"]), constant(params["beta"])
        am1, bm1 = alpha - 1.0, beta - 1.0
        c = constant(-betaln(alpha, beta))
        log, log1p = log_fns(shape, batched)

        def elementwise(value):
            lp = nan_to_minus_inf(c + am1 * log(value) + bm1 * log1p(-value))
            return lp, am1 / value - bm1 / (1.0 - value)
        return summed(elementwise, shape)

    def sample(self, rng, size, shape=None, **params):
        alpha, beta = params["alpha"], params["beta"]
        return rng.beta(alpha, beta, size=draw_shape(size, shape, alpha, beta))


@dataclass(frozen=True)
class UniformFamily(_BetweenBounds):
    """Uniform{lower, upper}: ``-log(upper - lower)`` on ``[lower, upper]``."""

    def check_params(self, params):
        require_finite(params, "lower", "upper")
        _require_ordered_bounds(params)

    def logp_and_grads(self, value, **params):
        lower, upper = params["lower"], params["upper"]
        inv_width = 1.0 / (upper - lower)
        inside = (value >= lower) & (value <= upper)
        lp = np.where(inside, np.log(inv_width), -np.inf)
        d_lower = np.zeros(lp.shape) + inv_width
        return lp, {"value": np.zeros(lp.shape), "lower": d_lower, "upper": -d_lower}

    def sample(self, rng, size, shape=None, **params):
        lower, upper = params["lower"], params["upper"]
        return rng.uniform(lower, upper, size=draw_shape(size, shape, lower, upper))


@dataclass(frozen=True)
class Uniform01Family(Distribution):
    """Uniform01{}: the uniform density on ``[0, 1]``."""

    def in_support(self, value, **params):
        return (value >= 0) & (value <= 1)

    def logp_and_grads(self, value, **params):
        value = as_float(value)
        lp = np.where((value >= 0) & (value <= 1), 0.0, -np.inf)
        return lp, {"value": np.zeros(value.shape)}

    def sample(self, rng, size, shape=None, **params):
        return rng.uniform(0.0, 1.0, size=draw_shape(size, shape))


@dataclass(frozen=True)
class TruncatedNormalFamily(_BetweenBounds):
    """TruncatedNormal{mu, sigma, lower=-inf, upper=inf}: the normal density divided by its mass
    ``Phi(b) - Phi(a)`` on ``[lower, upper]`` (``a, b`` the standardised bounds).

    With ``r_a = phi(a)/Z`` and ``r_b = phi(b)/Z`` the mass term contributes ``-(r_a - r_b)/sigma`` to
    ``d/dmu``, ``-(a r_a - b r_b)/sigma`` to ``d/dsigma``, ``r_a/sigma`` to ``d/dlower`` and
    ``-r_b/sigma`` to ``d/dupper``. Infinite bounds contribute nothing.
    """

    def check_params(self, params):
        require_finite(params, "mu")
        require_positive(params, "sigma")
        for name in ("lower", "upper"):
            require(params, name, lambda v: ~np.isnan(v), "a number (+-inf allowed), not nan")
        _require_ordered_bounds(params)

    def logp_and_grads(self, value, **params):
        mu, sigma = params["mu"], params["sigma"]
        lower = params.get("lower", -np.inf)
        upper = params.get("upper", np.inf)
        inv_sigma = 1.0 / sigma
        z = (value - mu) * inv_sigma
        a = (lower - mu) * inv_sigma
        b = (upper - mu) * inv_sigma
        log_mass = _log_normal_mass(a, b)
        z2 = z * z
        inside = (value >= lower) & (value <= upper)
        lp = np.where(inside, -0.5 * z2 - np.log(sigma) - HALF_LOG_2PI - log_mass, -np.inf)
        r_a = np.exp(-0.5 * a * a - HALF_LOG_2PI - log_mass)
        r_b = np.exp(-0.5 * b * b - HALF_LOG_2PI - log_mass)
        a_r_a = np.where(np.isfinite(a), a, 0.0) * r_a
        b_r_b = np.where(np.isfinite(b), b, 0.0) * r_b
        zeros = np.zeros(lp.shape)
        grads = {
            "value": -z * inv_sigma + zeros,
            "mu": (z - r_a + r_b) * inv_sigma + zeros,
            "sigma": (z2 - 1.0 - a_r_a + b_r_b) * inv_sigma + zeros,
        }
        if "lower" in params:
            grads["lower"] = r_a * inv_sigma + zeros
        if "upper" in params:
            grads["upper"] = -r_b * inv_sigma + zeros
        return lp, grads

    def sample(self, rng, size, shape=None, **params):
        from scipy.stats import truncnorm

        mu, sigma = as_float(params["mu"]), as_float(params["sigma"])
        lower = as_float(params.get("lower", -np.inf))
        upper = as_float(params.get("upper", np.inf))
        shape = draw_shape(size, shape, mu, sigma, lower, upper)
        return truncnorm.rvs((lower - mu) / sigma, (upper - mu) / sigma, loc=mu, scale=sigma,
                             size=shape, random_state=rng)


Beta = BetaFamily(name="Beta", params=("alpha", "beta"), support="unit")
Uniform = UniformFamily(name="Uniform", params=("lower", "upper"), support="interval")
Uniform01 = Uniform01Family(name="Uniform01", params=(), support="unit")
TruncatedNormal = TruncatedNormalFamily(name="TruncatedNormal", params=("mu", "sigma"),
                                        optional={"lower": -np.inf, "upper": np.inf}, support="interval")
