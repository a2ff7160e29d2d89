"""Ports of posteriordb's ``earnings`` programs (Gelman & Hill ch. 4): regressions of (log)
earnings on height and sex, all with improper flat priors on ``beta`` and ``sigma``."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc.models._regression import normal_regression, vector


def earn_height(data: Mapping[str, Any]):
    """``earn ~ normal(beta[1] + beta[2] * height, sigma)``."""
    return normal_regression("earn", vector(data, "earn"), [vector(data, "height")])


def log10earn_height(data: Mapping[str, Any]):
    """``log10(earn) ~ normal(beta[1] + beta[2] * height, sigma)``."""
    return normal_regression("log10_earn", np.log10(vector(data, "earn")), [vector(data, "height")])


def logearn_height(data: Mapping[str, Any]):
    """``log(earn) ~ normal(beta[1] + beta[2] * height, sigma)``."""
    return normal_regression("log_earn", np.log(vector(data, "earn")), [vector(data, "height")])


def logearn_height_male(data: Mapping[str, Any]):
    """``log(earn) ~ normal(beta[1] + beta[2] * height + beta[3] * male, sigma)``."""
    return normal_regression(
        "log_earn", np.log(vector(data, "earn")), [vector(data, "height"), vector(data, "male")])


def logearn_interaction(data: Mapping[str, Any]):
    """``log(earn) ~ normal(beta[1] + beta[2] * height + beta[3] * male + beta[4] * height .* male, sigma)``."""
    height, male = vector(data, "height"), vector(data, "male")
    return normal_regression("log_earn", np.log(vector(data, "earn")), [height, male, height * male])


def logearn_interaction_z(data: Mapping[str, Any]):
    """As :func:`logearn_interaction` with height standardised by its mean and sample sd (Stan's ``sd``)."""
    height, male = vector(data, "height"), vector(data, "male")
    z_height = (height - height.mean()) / height.std(ddof=1)
    return normal_regression("log_earn", np.log(vector(data, "earn")), [z_height, male, z_height * male])


def logearn_logheight_male(data: Mapping[str, Any]):
    """``log(earn) ~ normal(beta[1] + beta[2] * log(height) + beta[3] * male, sigma)``."""
    return normal_regression(
        "log_earn", np.log(vector(data, "earn")), [np.log(vector(data, "height")), vector(data, "male")])
