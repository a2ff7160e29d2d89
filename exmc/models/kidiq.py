"""Ports of posteriordb's ``kidiq`` programs (Gelman & Hill ch. 3): child test score on the
mother's high-school completion and IQ. ``beta`` is flat; ``sigma ~ cauchy(0, 2.5)`` on
``<lower=0>``, i.e. a half-Cauchy (the truncation only adds a constant)."""
from __future__ import annotations

from typing import Any, Mapping

from exmc import Dist
from exmc.models._regression import normal_regression, vector

#: Stan: ``sigma ~ cauchy(0, 2.5)`` with ``real<lower=0> sigma``.
SIGMA_PRIOR = (Dist.HalfCauchy, {"scale": 2.5})


def kidscore_momhs(data: Mapping[str, Any]):
    """``kid_score ~ normal(beta[1] + beta[2] * mom_hs, sigma)``."""
    return normal_regression("kid_score", vector(data, "kid_score"), [vector(data, "mom_hs")],
                             sigma_prior=SIGMA_PRIOR)


def kidscore_momiq(data: Mapping[str, Any]):
    """``kid_score ~ normal(beta[1] + beta[2] * mom_iq, sigma)``."""
    return normal_regression("kid_score", vector(data, "kid_score"), [vector(data, "mom_iq")],
                             sigma_prior=SIGMA_PRIOR)


def kidscore_momhsiq(data: Mapping[str, Any]):
    """``kid_score ~ normal(beta[1] + beta[2] * mom_hs + beta[3] * mom_iq, sigma)``."""
    return normal_regression("kid_score", vector(data, "kid_score"),
                             [vector(data, "mom_hs"), vector(data, "mom_iq")], sigma_prior=SIGMA_PRIOR)


def kidscore_interaction(data: Mapping[str, Any]):
    """``kid_score ~ normal(beta[1] + beta[2] * mom_hs + beta[3] * mom_iq + beta[4] * mom_hs .* mom_iq, sigma)``."""
    mom_hs, mom_iq = vector(data, "mom_hs"), vector(data, "mom_iq")
    return normal_regression("kid_score", vector(data, "kid_score"), [mom_hs, mom_iq, mom_hs * mom_iq],
                             sigma_prior=SIGMA_PRIOR)
