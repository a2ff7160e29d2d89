"""The normal linear regression most posteriordb ports share.

Stan writes these models as ``y ~ normal(beta[1] + beta[2] * x2 + ... + beta[K] * xK, sigma)``;
here the terms become one design matrix whose first column is ones, so the linear predictor is a
single ``matmul`` node and ``beta`` keeps Stan's order (``beta[1]`` is the intercept, our
``beta[0]``). Parameters without a ``~`` statement in the Stan program get Stan's implicit improper
prior: ``Flat`` on the real line, ``HalfFlat`` for ``<lower=0>``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from exmc import Builder, Dist

#: A prior as (distribution family, parameters); ``None`` means Stan's implicit flat prior.
Prior = tuple[Any, Mapping[str, Any]] | None


def vector(data: Mapping[str, Any], key: str) -> np.ndarray:
    """``data[key]`` as a float vector; raises ``KeyError`` naming the missing data field."""
    try:
        return np.asarray(data[key], dtype=float)
    except KeyError:
        raise KeyError(f"posteriordb data lacks field {key!r}") from None


def normal_regression(
    outcome: str,
    y: np.ndarray,
    terms: Sequence[np.ndarray],
    *,
    beta_prior: Prior = None,
    sigma_prior: Prior = None,
):
    """IR of ``outcome ~ normal(beta[1] + sum_k beta[k+1] * terms[k], sigma)``.

    Args:
        outcome: the name of the observed rv (the Stan variable on the left of ``~``); the
            observation node is ``outcome + "_obs"``.
        y: the observed outcome, shape ``(N,)``.
        terms: the predictors multiplying ``beta[2]``, ``beta[3]``, ... each of shape ``(N,)``.
        beta_prior: prior of every coefficient (``None``: improper flat).
        sigma_prior: prior of ``sigma`` on ``(0, inf)`` (``None``: improper flat on the half-line).

    Nodes: data ``X`` (N, K), rvs ``beta`` (K,) and ``sigma``, det ``mu`` = ``X @ beta``.
    Raises ``ValueError`` naming the offending term when its length differs from ``y``'s.
    """
    y = np.asarray(y, dtype=float)
    for k, term in enumerate(terms):
        if np.shape(term) != y.shape:
            raise ValueError(f"regression of {outcome!r}: term {k + 2} has shape {np.shape(term)}, outcome has {y.shape}")
    X = np.column_stack([np.ones_like(y), *terms])
    beta_dist, beta_params = beta_prior if beta_prior is not None else (Dist.Flat, {})
    sigma_dist, sigma_params = sigma_prior if sigma_prior is not None else (Dist.HalfFlat, {})
    ir = Builder.new_ir()
    ir = Builder.data(ir, "X", X)
    ir = Builder.rv(ir, "beta", beta_dist, dict(beta_params), shape=(X.shape[1],))
    ir = Builder.rv(ir, "sigma", sigma_dist, dict(sigma_params))
    ir = Builder.det(ir, "mu", "matmul", ["X", "beta"])
    ir = Builder.rv(ir, outcome, Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, outcome + "_obs", outcome, y)
