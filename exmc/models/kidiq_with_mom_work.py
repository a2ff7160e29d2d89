"""Ports of posteriordb's ``kidiq_with_mom_work`` programs (Gelman & Hill ch. 4): centred,
reference-centred and standardised interactions, and the mother's work history as a factor.
All have improper flat priors on ``beta`` and ``sigma``."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc.models._regression import normal_regression, vector

#: Reference points of ``kidscore_interaction_c2.stan``: ``mom_hs - 0.5``, ``mom_iq - 100``.
C2_MOM_HS_CENTRE = 0.5
C2_MOM_IQ_CENTRE = 100.0


def _interaction(data: Mapping[str, Any], hs: np.ndarray, iq: np.ndarray):
    return normal_regression("kid_score", vector(data, "kid_score"), [hs, iq, hs * iq])


def kidscore_interaction_c(data: Mapping[str, Any]):
    """Interaction model with both predictors centred at their sample means."""
    hs, iq = vector(data, "mom_hs"), vector(data, "mom_iq")
    return _interaction(data, hs - hs.mean(), iq - iq.mean())


def kidscore_interaction_c2(data: Mapping[str, Any]):
    """Interaction model with predictors centred at reference points (0.5 and 100)."""
    hs, iq = vector(data, "mom_hs"), vector(data, "mom_iq")
    return _interaction(data, hs - C2_MOM_HS_CENTRE, iq - C2_MOM_IQ_CENTRE)


def kidscore_interaction_z(data: Mapping[str, Any]):
    """Interaction model with predictors centred and divided by two sample sds (Gelman 2008)."""
    hs, iq = vector(data, "mom_hs"), vector(data, "mom_iq")
    return _interaction(data, (hs - hs.mean()) / (2 * hs.std(ddof=1)), (iq - iq.mean()) / (2 * iq.std(ddof=1)))


def kidscore_mom_work(data: Mapping[str, Any]):
    """``kid_score ~ normal(beta[1] + beta[2] * work2 + beta[3] * work3 + beta[4] * work4, sigma)``
    with ``workK = (mom_work == K)`` indicators."""
    mom_work = np.asarray(data["mom_work"])
    indicators = [(mom_work == level).astype(float) for level in (2, 3, 4)]
    return normal_regression("kid_score", vector(data, "kid_score"), indicators)
