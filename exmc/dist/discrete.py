"""Discrete families: observed-only likelihood terms (NUTS cannot sample a discrete rv).

Bernoulli{p | logit_p} · Binomial{n, p | logit_p} · Poisson{mu} · NegativeBinomial{mu, alpha}
(mean ``mu``, overdispersion ``alpha``: variance ``mu + mu^2/alpha``; scipy's ``nbinom(n=alpha,
p=alpha/(alpha+mu))``).

Gradients exist for the continuous parameters only (no ``"value"`` key; Binomial's integer ``n`` has
none). The log-density is evaluated only at observed values, which the model validates once with
:meth:`in_support`; ``logp_and_grads`` therefore does not re-check the support on every call (it would
cost the logistic-regression hot path a comparison and a select per observation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln, xlog1py, xlogy

from exmc._numeric import as_float, sigmoid, softplus
from exmc.dist.base import Distribution, draw_shape, require, require_finite, require_positive
from exmc.dist.observed_kernels import (binomial_observed_kernel, negative_binomial_observed_kernel,
                                        poisson_observed_kernel)

#: ``ndarray.sum`` without its Python-level wrapper.
_sum = np.add.reduce

__all__ = ["Bernoulli", "Binomial", "Poisson", "NegativeBinomial"]


def _is_count(value: np.ndarray) -> np.ndarray:
    """Finite non-negative integers (float arrays holding whole numbers count)."""
    value = as_float(value)
    return np.isfinite(value) & (value >= 0) & (np.floor(value) == value)


def _check_probability(params) -> None:
    require(params, "p", lambda v: (v >= 0) & (v <= 1), "a probability in [0, 1]")
    require_finite(params, "logit_p")


@dataclass(frozen=True)
class BernoulliFamily(Distribution):
    """Bernoulli{p | logit_p} on {0, 1}. With ``logit_p = eta``: ``lp = x eta - softplus(eta)``."""

    def check_params(self, params):
        _check_probability(params)

    def in_support(self, value, **params):
        return (value == 0) | (value == 1)

    def logp_and_grads(self, value, **params):
        if "logit_p" in params:
            eta = params["logit_p"]
            lp = value * eta - softplus(eta)
            return lp, {"logit_p": value - sigmoid(eta)}
        p = params["p"]
        one = value == 1
        lp = np.where(one, np.log(np.where(one, p, 1.0)), np.log1p(-np.where(one, 0.0, p)))
        return lp, {"p": np.where(one, 1.0 / p, -1.0 / (1.0 - p))}

    def observed_kernel(self, value, varying, batched, **params):
        """A vector of outcomes with one ``logit_p`` each (logistic regression): the whole term in
        a few array passes. With ``sp = softplus(eta)``, ``lp = y . eta - sum(sp)`` and the
        gradient ``y - sigmoid(eta) = y - exp(eta - sp)`` reuses ``sp`` instead of a second
        exponential-and-divide."""
        y = as_float(value)
        if params or y.ndim != 1 or tuple(varying) != (("logit_p", y.shape),):
            return None

        def kernel(eta):
            sp = np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta)))
            return np.dot(eta, y) - _sum(sp, -1), (y - np.exp(eta - sp),)
        return kernel

    def sample(self, rng, size, shape=None, **params):
        p = sigmoid(params["logit_p"]) if "logit_p" in params else as_float(params["p"])
        return (rng.random(draw_shape(size, shape, p)) < p).astype(np.int64)


@dataclass(frozen=True)
class BinomialFamily(Distribution):
    """Binomial{n, p | logit_p}: ``log C(n, k) + k log p + (n-k) log(1-p)``; no gradient for ``n``."""

    def check_params(self, params):
        require(params, "n", _is_count, "a non-negative integer")
        _check_probability(params)

    def in_support(self, value, **params):
        ok = _is_count(value)
        if "n" in params:
            ok = ok & (value <= params["n"])
        return ok

    def logp_and_grads(self, value, **params):
        n = params["n"]
        n_minus_k = n - value
        log_choose = gammaln(n + 1.0) - gammaln(value + 1.0) - gammaln(n_minus_k + 1.0)
        if "logit_p" in params:
            eta = params["logit_p"]
            lp = log_choose + value * eta - n * softplus(eta)
            return lp, {"logit_p": value - n * sigmoid(eta)}
        p = params["p"]
        lp = log_choose + xlogy(value, p) + xlog1py(n_minus_k, -p)
        return lp, {"p": value / p - n_minus_k / (1.0 - p)}

    def observed_kernel(self, value, varying, batched, **params):
        return binomial_observed_kernel(value, varying, batched, params)

    def sample(self, rng, size, shape=None, **params):
        n = np.asarray(params["n"]).astype(np.int64)
        p = sigmoid(params["logit_p"]) if "logit_p" in params else as_float(params["p"])
        return rng.binomial(n, p, size=draw_shape(size, shape, n, p))


@dataclass(frozen=True)
class PoissonFamily(Distribution):
    """Poisson{mu}: ``k log mu - mu - log k!``."""

    def check_params(self, params):
        require_positive(params, "mu")

    def in_support(self, value, **params):
        return _is_count(value)

    def logp_and_grads(self, value, **params):
        mu = params["mu"]
        lp = xlogy(value, mu) - mu - gammaln(value + 1.0)
        return lp, {"mu": value / mu - 1.0}

    def observed_kernel(self, value, varying, batched, **params):
        return poisson_observed_kernel(value, varying, batched, params)

    def sample(self, rng, size, shape=None, **params):
        mu = params["mu"]
        return rng.poisson(mu, size=draw_shape(size, shape, mu))


@dataclass(frozen=True)
class NegativeBinomialFamily(Distribution):
    """NegativeBinomial{mu, alpha}: ``lgamma(k+alpha) - lgamma(alpha) - log k! + alpha log(alpha/(alpha+mu))
    + k log(mu/(alpha+mu))``."""

    def check_params(self, params):
        require_positive(params, "mu", "alpha")

    def in_support(self, value, **params):
        return _is_count(value)

    def logp_and_grads(self, value, **params):
        mu, alpha = params["mu"], params["alpha"]
        log_total = np.log(alpha + mu)
        # log(alpha / (alpha + mu)) as -log1p(mu/alpha): exact for large alpha, where it is multiplied by alpha
        log_ratio = -np.log1p(mu / alpha)
        k_alpha = value + alpha
        lp = (gammaln(k_alpha) - gammaln(alpha) - gammaln(value + 1.0)
              + alpha * log_ratio + xlogy(value, mu) - value * log_total)
        inv_total = 1.0 / (alpha + mu)
        return lp, {
            "mu": value / mu - k_alpha * inv_total,
            "alpha": digamma(k_alpha) - digamma(alpha) + log_ratio + (mu - value) * inv_total,
        }

    def observed_kernel(self, value, varying, batched, **params):
        return negative_binomial_observed_kernel(value, varying, batched, params)

    def sample(self, rng, size, shape=None, **params):
        mu, alpha = as_float(params["mu"]), as_float(params["alpha"])
        shape = draw_shape(size, shape, mu, alpha)
        return rng.poisson(rng.gamma(alpha, mu / alpha, size=shape))


Bernoulli = BernoulliFamily(name="Bernoulli", params=("p",), alternatives=(("p",), ("logit_p",)),
                            support="binary", discrete=True)
Binomial = BinomialFamily(name="Binomial", params=("n", "p"), alternatives=(("n", "p"), ("n", "logit_p")),
                          support="bounded_count", discrete=True, integer_params=("n",))
Poisson = PoissonFamily(name="Poisson", params=("mu",), support="count", discrete=True)
NegativeBinomial = NegativeBinomialFamily(name="NegativeBinomial", params=("mu", "alpha"), support="count",
                                          discrete=True)
