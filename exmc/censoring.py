"""Censored observations: log-CDF and log-survival terms with their parameter gradients.

An obs with ``censored=(lower, upper)`` contributes ``log F(lower)`` for entries ``<= lower``,
``log S(upper) = log(1 - F(upper))`` for entries ``>= upper`` and the density elsewhere. The
distribution contract has no CDF, so the families that support censoring are listed here with
closed-form derivatives (``scipy.special.log_ndtr`` keeps the normal tails accurate). A family
may also provide ``logcdf_and_grads(c, **params)`` / ``logsf_and_grads(c, **params)`` returning
``(value, {param: gradient})``; those take precedence over this table.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.special import log_ndtr

from exmc._numeric import HALF_LOG_2PI, log_sigmoid, sigmoid
from exmc.errors import ValidationError
from exmc.ir import Obs

__all__ = ["censored_family", "SUPPORTED"]

def _normal_tails(z, dz_dparams: dict[str, Any]) -> tuple[tuple, tuple]:
    """log F and log S of a standard normal at ``z``, with the chain rule through ``z``."""
    log_phi = -0.5 * z * z - HALF_LOG_2PI
    log_f, log_s = log_ndtr(z), log_ndtr(-z)
    d_f, d_s = np.exp(log_phi - log_f), -np.exp(log_phi - log_s)
    return ((log_f, {k: d_f * d for k, d in dz_dparams.items()}),
            (log_s, {k: d_s * d for k, d in dz_dparams.items()}))


def _normal(c, mu, sigma, log_scale: bool = False):
    x = np.log(c) if log_scale else c
    z = (x - mu) / sigma
    return _normal_tails(z, {"mu": -1.0 / sigma, "sigma": -z / sigma})


def _exponential(c, lam):
    t = lam * c
    return ((np.log(-np.expm1(-t)), {"lambda": c / np.expm1(t)}),
            (-t, {"lambda": -c + 0.0 * lam}))


def _weibull(c, k, lam):
    ratio = c / lam
    t = ratio ** k
    dt = {"k": t * np.log(ratio), "lambda": -k * t / lam}
    inv = 1.0 / np.expm1(t)
    return ((np.log(-np.expm1(-t)), {p: inv * d for p, d in dt.items()}),
            (-t, {p: -d for p, d in dt.items()}))


def _logistic(c, mu, s):
    z = (c - mu) / s
    dz = {"mu": -1.0 / s, "s": -z / s}
    up, down = sigmoid(-z), -sigmoid(z)
    return ((log_sigmoid(z), {p: up * d for p, d in dz.items()}),
            (log_sigmoid(-z), {p: down * d for p, d in dz.items()}))


def _cauchy(c, loc, scale):
    z = (c - loc) / scale
    dz = {"loc": -1.0 / scale, "scale": -z / scale}
    density = 1.0 / (np.pi * (1.0 + z * z))
    f = 0.5 + np.arctan(z) / np.pi
    s = 0.5 - np.arctan(z) / np.pi
    return ((np.log(f), {p: density / f * d for p, d in dz.items()}),
            (np.log(s), {p: -density / s * d for p, d in dz.items()}))


#: family name -> function(c, **params) -> ((log F, grads), (log S, grads)).
SUPPORTED: dict[str, Callable] = {
    "Normal": lambda c, mu, sigma: _normal(c, mu, sigma),
    "Lognormal": lambda c, mu, sigma: _normal(c, mu, sigma, log_scale=True),
    "Exponential": lambda c, **p: _exponential(c, p["lambda"]),
    "Weibull": lambda c, **p: _weibull(c, p["k"], p["lambda"]),
    "Logistic": _logistic,
    "Cauchy": _cauchy,
}


def _tails(rv_name: str, obs: Obs, family, has_left: bool, has_right: bool) -> Callable[..., tuple]:
    """``function(c, **params) -> ((log F, grads) or None, (log S, grads) or None)``: both tails at
    one bound array, the family's own CDF/survival (only the sides in use) before this table."""
    own_cdf, own_sf = getattr(family, "logcdf_and_grads", None), getattr(family, "logsf_and_grads", None)
    if own_cdf is not None and own_sf is not None:
        return lambda c, **p: (own_cdf(c, **p) if has_left else None, own_sf(c, **p) if has_right else None)
    table = SUPPORTED.get(family.name)
    if table is None:
        raise ValidationError("obs", obs.name, "censored",
                              f"censoring is not supported for rv {rv_name!r} of family {family.name} "
                              f"(supported: {', '.join(sorted(SUPPORTED))})")
    return table


def censored_family(rv_name: str, obs: Obs, family) -> Callable[..., tuple[np.ndarray, dict[str, np.ndarray]]]:
    """A ``logp_and_grads(value, **params)`` for ``obs``'s censored data under ``family``.

    The censoring masks and bound array are fixed here (the observed value is constant), so the
    returned function does one density evaluation plus one CDF/survival evaluation per call (the
    bounds are disjoint: ``lower < upper``). Raises ``ValidationError`` naming the obs when the
    family has no CDF support here.
    """
    lower, upper = obs.censored
    value = obs.value
    left = np.broadcast_to(value <= lower, value.shape)
    right = np.broadcast_to(value >= upper, value.shape)
    has_left, has_right = bool(left.any()), bool(right.any())
    tails = _tails(rv_name, obs, family, has_left, has_right)
    if not has_left and not has_right:
        return family.logp_and_grads
    # The bound where censored, the observed value elsewhere (keeps the unused entries finite).
    bound = np.where(left, lower, np.where(right, upper, value))
    density = family.logp_and_grads

    def logp_and_grads(observed: np.ndarray, **params: np.ndarray):
        lp, grads = density(observed, **params)
        for active, mask, tail in zip((has_left, has_right), (left, right), tails(bound, **params)):
            if not active:
                continue
            tail_lp, tail_grads = tail
            lp = np.where(mask, tail_lp, lp)
            grads = {key: g if key == "value" else np.where(mask, tail_grads[key], g) for key, g in grads.items()}
        return lp, grads
    return logp_and_grads
