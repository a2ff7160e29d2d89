"""Initial points: Stan's random inits on the unconstrained scale, or user values."""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from exmc.nuts.errors import InitializationError
from exmc.nuts.integrator import guarded_logp_and_grad

logger = logging.getLogger(__name__)

# Stan's default init radius: uniform(-2, 2) on the unconstrained scale (CmdStan ``init=2``).
INIT_RADIUS = 2.0
# Stan's ``MAX_INIT_TRIES`` in services/util/initialize.hpp.
MAX_INIT_TRIES = 100


def initial_point(
    model, rng: np.random.Generator, init_values: Mapping[str, Any] | None = None, chain: int = 0
) -> tuple[np.ndarray, float, np.ndarray]:
    """Return ``(theta, lp, grad)`` at a point where the log-density and its gradient are finite.

    Draws ``uniform(-2, 2)`` for every unconstrained coordinate, up to 100 times. ``init_values``
    (constrained scale, any subset of the free variables) override the random values of the
    variables they name; when they cover every variable a single attempt is made.

    Raises ``ValueError`` naming an ``init_values`` key that is not a free variable, and
    :class:`InitializationError` (naming the chain) when no attempt succeeds.
    """
    free = [name for name, _ in model.free_names]
    overrides = dict(init_values or {})
    unknown = sorted(set(overrides) - set(free))
    if unknown:
        raise ValueError(f"init_values names {unknown} that are not free variables of the model (free: {free})")
    tries = 1 if overrides and set(overrides) == set(free) else MAX_INIT_TRIES
    for attempt in range(tries):
        theta = rng.uniform(-INIT_RADIUS, INIT_RADIUS, size=model.dim)
        if overrides:
            values = model.to_constrained(theta)
            merged = {name: (overrides[name] if name in overrides else values[name]) for name in free}
            theta = np.asarray(model.to_unconstrained(merged), dtype=float)
        lp, grad = guarded_logp_and_grad(model.logp_and_grad, theta)
        if np.isfinite(lp) and np.all(np.isfinite(grad)):
            if attempt:
                logger.debug("chain %d: initial point found after %d attempts", chain, attempt + 1)
            return theta, lp, np.asarray(grad, dtype=float)
    where = "at init_values" if tries == 1 else f"in {tries} uniform(-2, 2) attempts"
    raise InitializationError(
        f"chain {chain}: no initial point with finite log-density and gradient {where}"
    )
