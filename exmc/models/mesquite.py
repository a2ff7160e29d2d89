"""Ports of posteriordb's ``mesquite`` programs (Gelman & Hill ch. 4): shrub weight on canopy
dimensions, raw and on the log scale. Improper flat priors on ``beta`` and ``sigma``."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc.models._regression import normal_regression, vector


def mesquite(data: Mapping[str, Any]):
    """``weight ~ normal(beta[1] + beta[2] * diam1 + ... + beta[7] * group, sigma)``."""
    terms = [vector(data, k) for k in ("diam1", "diam2", "canopy_height", "total_height", "density", "group")]
    return normal_regression("weight", vector(data, "weight"), terms)


def logmesquite(data: Mapping[str, Any]):
    """The same regression with every measurement (not ``group``) on the log scale."""
    terms = [np.log(vector(data, k)) for k in ("diam1", "diam2", "canopy_height", "total_height", "density")]
    return normal_regression("log_weight", np.log(vector(data, "weight")), [*terms, vector(data, "group")])


def _canopy(data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    d1, d2, height = vector(data, "diam1"), vector(data, "diam2"), vector(data, "canopy_height")
    return {
        "volume": np.log(d1 * d2 * height),
        "area": np.log(d1 * d2),
        "shape": np.log(d1 / d2),
    }


def logmesquite_logvolume(data: Mapping[str, Any]):
    """``log_weight ~ normal(beta[1] + beta[2] * log_canopy_volume, sigma)``."""
    return normal_regression("log_weight", np.log(vector(data, "weight")), [_canopy(data)["volume"]])


def logmesquite_logva(data: Mapping[str, Any]):
    """Log canopy volume and area plus ``group``."""
    c = _canopy(data)
    return normal_regression("log_weight", np.log(vector(data, "weight")),
                             [c["volume"], c["area"], vector(data, "group")])


def logmesquite_logvash(data: Mapping[str, Any]):
    """Log canopy volume, area, shape and total height plus ``group``."""
    c = _canopy(data)
    return normal_regression("log_weight", np.log(vector(data, "weight")),
                             [c["volume"], c["area"], c["shape"], np.log(vector(data, "total_height")),
                              vector(data, "group")])


def logmesquite_logvas(data: Mapping[str, Any]):
    """Log canopy volume, area, shape, total height and density plus ``group``."""
    c = _canopy(data)
    return normal_regression("log_weight", np.log(vector(data, "weight")),
                             [c["volume"], c["area"], c["shape"], np.log(vector(data, "total_height")),
                              np.log(vector(data, "density")), vector(data, "group")])
