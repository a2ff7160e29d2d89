"""Port of posteriordb's ``nes`` program (National Election Study, Gelman & Hill ch. 4): party
identification on ideology, race, age group, education, gender and income; flat priors."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc.models._regression import normal_regression, vector

#: ``age_discrete`` levels that get an indicator (level 1, under 30, is the baseline).
AGE_LEVELS = (2, 3, 4)


def nes(data: Mapping[str, Any]):
    """``partyid7 ~ normal(beta[1] + beta[2] * real_ideo + beta[3] * race_adj + beta[4..6] * age
    indicators + beta[7] * educ1 + beta[8] * gender + beta[9] * income, sigma)``."""
    age = np.asarray(data["age_discrete"])
    ages = [(age == level).astype(float) for level in AGE_LEVELS]
    terms = [vector(data, "real_ideo"), vector(data, "race_adj"), *ages,
             vector(data, "educ1"), vector(data, "gender"), vector(data, "income")]
    return normal_regression("partyid7", vector(data, "partyid7"), terms)
