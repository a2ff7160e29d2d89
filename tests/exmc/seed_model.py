"""The seed's model (issue 3), shared by the tests that build it: ``mu ~ Normal(0, 10)``,
``sigma ~ HalfNormal(2)``, ``y ~ Normal(mu, sigma)`` observed as ``SEED_Y``."""
from __future__ import annotations

import numpy as np

from exmc import Builder, Dist
from exmc.ir import IR

#: The seed's ten observations (issue 3; also ``bench.bench_models.SEED_Y``).
SEED_Y = np.array([2.1, 2.5, 1.8, 2.3, 2.7, 1.9, 2.4, 2.2, 2.6, 2.0])


def seed_ir(sigma_ref: str = "sigma") -> IR:
    """The seed's IR; ``sigma_ref`` replaces the reference in ``y``'s ``sigma`` (validation tests
    pass a misspelt name)."""
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 10.0})
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": 2.0})
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": sigma_ref})
    return Builder.obs(ir, "y_obs", "y", SEED_Y)
