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


def check_init_values(model, init_values: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """``init_values`` as float arrays, each checked against its free rv: known name, numeric,
    finite, and of the rv's shape (a scalar is broadcast to it). Raises ``ValueError`` naming the
    variable and what is wrong."""
    shapes = dict(model.free_names)
    if init_values is None:
        return {}
    if not isinstance(init_values, Mapping):
        raise ValueError(f"init_values must be a mapping of free variable names to values, got "
                         f"{type(init_values).__name__}")
    unknown = sorted(set(init_values) - set(shapes))
    if unknown:
        raise ValueError(f"init_values names {unknown} that are not free variables of the model (free: {list(shapes)})")
    checked = {}
    for name, value in init_values.items():
        shape = tuple(shapes[name])
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"init_values[{name!r}] must be numeric, got {value!r}") from None
        if array.shape != shape:
            if array.ndim:
                raise ValueError(f"init_values[{name!r}] has shape {array.shape}, but free rv {name!r} has shape "
                                 f"{shape}")
            array = np.full(shape, float(array))
        if not np.all(np.isfinite(array)):
            raise ValueError(f"init_values[{name!r}] contains NaN or infinity")
        checked[name] = array
    return checked


def initial_point(
    model, rng: np.random.Generator, init_values: Mapping[str, Any] | None = None, chain: int = 0
) -> tuple[np.ndarray, float, np.ndarray]:
    """Return ``(theta, lp, grad)`` at a point where the log-density and its gradient are finite.

    Draws ``uniform(-2, 2)`` for every unconstrained coordinate, up to 100 times. ``init_values``
    (constrained scale, any subset of the free variables) override the random values of the
    variables they name; when they cover every variable a single attempt is made.

    Raises ``ValueError`` naming an ``init_values`` key that is not a free variable or whose value
    has the wrong shape (:func:`check_init_values`), ``ValidationError`` for a model with no free
    variable, and :class:`InitializationError` (naming the chain) when no attempt succeeds.
    """
    if model.dim == 0:
        from exmc.errors import ValidationError

        raise ValidationError("model", None, "free rvs", "has no free random variable to sample (every rv is "
                              "observed); draw from it with exmc.Predictive instead")
    free = [name for name, _ in model.free_names]
    overrides = check_init_values(model, init_values)
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
