"""More observed-only discrete families: Categorical{p | logit_p}, Multinomial{n, p}, BetaBinomial{n, alpha, beta}.

As in :mod:`exmc.dist.discrete`: gradients for the continuous parameters only, the support checked
once on the observed values (:meth:`in_support`), not on every evaluation.

- Categorical: one outcome in ``0..K-1`` per entry; ``p`` (or ``logit_p``) carries the K categories
  on its last axis (not tied to the value's shape). ``lp = log p[x]`` (``logit_p[x] -
  logsumexp(logit_p)``); gradients ``onehot(x) / p`` (``onehot(x) - softmax(logit_p)``).
- Multinomial: counts on the last axis (an event of K) summing to ``n`` (constant integers);
  ``lp = log n! - sum log x_k! + sum x_k log p_k``, ``d/dp_k = x_k / p_k``.
- BetaBinomial: ``log C(n, k) + log B(k + a, n - k + b) - log B(a, b)`` with digamma gradients.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln, log_softmax, softmax, xlogy

from exmc._numeric import as_float
from exmc.dist.base import Distribution, draw_shape, require, require_positive, size_tuple

__all__ = ["Categorical", "Multinomial", "BetaBinomial"]

#: Tolerance on ``sum(p) == 1`` for constant probability vectors.
PROBABILITY_ATOL = 1e-6


def _is_count(value) -> np.ndarray:
    value = as_float(value)
    return np.isfinite(value) & (value >= 0) & (np.floor(value) == value)


def _require_probabilities(params, key: str = "p") -> None:
    require(params, key, lambda p: np.ndim(p) >= 1 and np.shape(p)[-1] >= 1, "a vector of probabilities")
    require(params, key, lambda p: np.all(p >= 0) & np.all(np.abs(np.sum(p, axis=-1) - 1.0) <= PROBABILITY_ATOL),
            "non-negative and summing to 1 on its last axis")


def _one_hot(value: np.ndarray, batch: tuple[int, ...], k: int) -> np.ndarray:
    index = np.broadcast_to(np.asarray(value, dtype=np.int64), batch)
    return (index[..., None] == np.arange(k)).astype(np.float64)


@dataclass(frozen=True)
class CategoricalFamily(Distribution):
    """Categorical{p | logit_p} on ``0..K-1`` (see the module docstring)."""

    def param_event_shape(self, key, event_shape):
        return None  # the K categories are not the value's shape

    def check_params(self, params):
        _require_probabilities(params)
        require(params, "logit_p", lambda v: np.ndim(v) >= 1 and np.all(np.isfinite(v)), "a finite vector")

    def in_support(self, value, **params):
        ok = _is_count(value)
        probs = params.get("p", params.get("logit_p"))
        if probs is not None:
            ok = ok & (as_float(value) < np.shape(probs)[-1])
        return ok

    def logp_and_grads(self, value, **params):
        key = "logit_p" if "logit_p" in params else "p"
        probs = as_float(params[key])
        k = probs.shape[-1]
        batch = np.broadcast_shapes(np.shape(value), probs.shape[:-1])
        hot = _one_hot(value, batch, k)
        probs = np.broadcast_to(probs, batch + (k,))
        if key == "logit_p":
            log_p = log_softmax(probs, axis=-1)
            return np.sum(hot * log_p, axis=-1), {key: hot - softmax(probs, axis=-1)}
        chosen = np.sum(hot * probs, axis=-1)
        return np.log(chosen), {key: hot / np.where(hot > 0, probs, 1.0)}

    def sample(self, rng, size, shape=None, **params):
        probs = softmax(as_float(params["logit_p"]), axis=-1) if "logit_p" in params else as_float(params["p"])
        batch = np.broadcast_shapes(tuple(shape or ()), probs.shape[:-1])
        u = rng.random(size_tuple(size) + batch)
        cumulative = np.cumsum(probs, axis=-1)
        cumulative = cumulative / cumulative[..., -1:]
        return np.minimum(np.sum(u[..., None] > cumulative, axis=-1), probs.shape[-1] - 1).astype(np.int64)


@dataclass(frozen=True)
class MultinomialFamily(Distribution):
    """Multinomial{n, p}: counts on the last axis (see the module docstring)."""

    def check_params(self, params):
        require(params, "n", _is_count, "a non-negative integer")
        _require_probabilities(params)

    def in_support(self, value, **params):
        value = as_float(value)
        ok = np.all(_is_count(value), axis=-1)
        if "n" in params:
            ok = ok & (np.sum(value, axis=-1) == params["n"])
        return np.broadcast_to(ok[..., None], value.shape).copy()

    def logp_and_grads(self, value, **params):
        n, p = as_float(params["n"]), as_float(params["p"])
        lp = gammaln(n + 1.0) - np.sum(gammaln(value + 1.0), axis=-1) + np.sum(xlogy(value, p), axis=-1)
        batch = lp.shape
        return lp, {"p": np.broadcast_to(value / np.where(value > 0, p, 1.0) * (value > 0),
                                         batch + np.shape(p)[-1:]).copy()}

    def sample(self, rng, size, shape=None, **params):
        n, p = np.asarray(params["n"]).astype(np.int64), as_float(params["p"])
        batch = np.broadcast_shapes(tuple(shape or p.shape[-1:])[:-1], p.shape[:-1], n.shape)
        lead = size_tuple(size)
        return rng.multinomial(np.broadcast_to(n, lead + batch), np.broadcast_to(p, lead + batch + p.shape[-1:]))


@dataclass(frozen=True)
class BetaBinomialFamily(Distribution):
    """BetaBinomial{n, alpha, beta} on ``0..n`` (see the module docstring)."""

    def check_params(self, params):
        require(params, "n", _is_count, "a non-negative integer")
        require_positive(params, "alpha", "beta")

    def in_support(self, value, **params):
        ok = _is_count(value)
        if "n" in params:
            ok = ok & (as_float(value) <= params["n"])
        return ok

    def logp_and_grads(self, value, **params):
        n, a, b = as_float(params["n"]), params["alpha"], params["beta"]
        rest = n - value
        lp = (gammaln(n + 1.0) - gammaln(value + 1.0) - gammaln(rest + 1.0)
              + betaln(value + a, rest + b) - betaln(a, b))
        common = digamma(a + b) - digamma(n + a + b)
        return lp, {"alpha": digamma(value + a) - digamma(a) + common,
                    "beta": digamma(rest + b) - digamma(b) + common}

    def sample(self, rng, size, shape=None, **params):
        n = np.asarray(params["n"]).astype(np.int64)
        a, b = as_float(params["alpha"]), as_float(params["beta"])
        target = draw_shape(size, shape, n, a, b)
        return rng.binomial(n, rng.beta(a, b, size=target), size=target)


Categorical = CategoricalFamily(name="Categorical", params=("p",), alternatives=(("p",), ("logit_p",)),
                                support="bounded_count", discrete=True, param_event_ndim={"p": 1, "logit_p": 1})
Multinomial = MultinomialFamily(name="Multinomial", params=("n", "p"), support="bounded_count", discrete=True,
                                event_ndim=1, param_event_ndim={"p": 1}, integer_params=("n",))
BetaBinomial = BetaBinomialFamily(name="BetaBinomial", params=("n", "alpha", "beta"), support="bounded_count",
                                  discrete=True, integer_params=("n",))
