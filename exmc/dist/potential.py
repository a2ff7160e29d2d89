"""Potential{term}: adds ``sum(term)`` to the model's log-density (``Builder.potential``).

A carrier family, like Stan's ``target +=`` or PyMC's ``pm.Potential``: the rv is observed with a
dummy value, its log-density is ``term`` whatever the value, and the gradient is 1 with respect to
each entry of ``term``. It is not a likelihood: it is left out of ``log_likelihood``,
``observed_data`` and predictive draws (``is_potential``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exmc.dist.base import Distribution

__all__ = ["Potential"]


@dataclass(frozen=True)
class PotentialFamily(Distribution):
    """See the module docstring."""

    is_potential: bool = True
    is_carrier: bool = True  # observed with a dummy value; no draws (see exmc.predictive)

    def in_support(self, value, **params):
        return np.ones(np.shape(value), dtype=bool)

    def logp_and_grads(self, value, **params):
        term = np.asarray(params["term"], dtype=np.float64)
        lp = term + np.zeros(np.shape(value))
        return lp, {"term": np.ones(lp.shape)}

    def sample(self, rng, size, shape=None, **params):
        raise ValueError("a Potential has no draws")


Potential = PotentialFamily(name="Potential", params=("term",), support="custom", discrete=True)
