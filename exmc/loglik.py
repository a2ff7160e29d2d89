"""Pointwise log-likelihood of the observed rvs at posterior draws (ArviZ's ``log_likelihood``).

:func:`pointwise_log_likelihood` evaluates, for each draw, every observed rv's elementwise
log-density at its data (censored entries through their log-CDF/log-survival terms), with the
parameters computed from the draw: one entry per observation, for ``az.loo`` / ``az.waic``. An
event family (MvNormal, Dirichlet...) gives one entry per event, i.e. the batch shape.

The sampler calls it where the chain ran (``sample_chains(..., log_likelihood=True)``), so the
values travel back with the draws instead of the IR's data being re-evaluated by the caller.
Keys are the observed rvs' names (the names ArviZ's ``observed_data`` uses too).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from exmc.analysis import Analysis, analyse
from exmc.censoring import censored_family
from exmc.ir import is_ref

__all__ = ["pointwise_log_likelihood", "likelihood_terms", "CHUNK_DRAWS"]

#: Draws evaluated per batched call: bounds the temporary arrays to CHUNK_DRAWS x observations.
CHUNK_DRAWS = 256


def likelihood_terms(analysis: Analysis) -> list[str]:
    """Names of the observed rvs that are likelihood terms (a ``Potential``'s carrier is not)."""
    return [name for name in analysis.observations
            if not getattr(analysis.families[name][0], "is_potential", False)]


def pointwise_log_likelihood(model, positions: np.ndarray) -> dict[str, np.ndarray]:
    """``{observed rv: (n, *batch_shape)}`` log-likelihoods at the ``(n, dim)`` unconstrained draws
    ``positions`` of an ``exmc.compile``d model.

    Raises ``ValueError`` when ``model`` was not compiled from an IR, and naming the rv when a
    family's log-density does not have one entry per observation.
    """
    ir = getattr(model, "ir", None)
    if ir is None:
        raise ValueError("log_likelihood=True needs a model compiled from an exmc IR "
                         f"(got {type(model).__name__})")
    analysis = getattr(model, "_analysis", None) or analyse(ir)
    names = likelihood_terms(analysis)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, model.dim)
    n = positions.shape[0]
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, n, CHUNK_DRAWS):
        block = positions[start:start + CHUNK_DRAWS]
        values = model.to_constrained(block) if model.dim else {}
        with np.errstate(all="ignore"):
            for name in names:
                chunks[name].append(_term(analysis, name, values, block.shape[0]))
    return {name: np.concatenate(parts, axis=0) for name, parts in chunks.items()}


def _term(analysis: Analysis, name: str, values: dict[str, np.ndarray], n: int) -> np.ndarray:
    family, params = analysis.families[name]
    obs = analysis.observations[name]
    shape = analysis.shapes[name]
    batch = tuple(shape[:len(shape) - family.event_ndim])
    event_ndims = family.param_event_ndim
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if is_ref(value) and value in values:
            x = np.asarray(values[value])
            core = x.ndim - 1
            pad = len(batch) + event_ndims.get(key, 0) - core
            kwargs[key] = x.reshape(x.shape[:1] + (1,) * pad + x.shape[1:]) if pad > 0 else x
        else:
            kwargs[key] = analysis.value_of(value)
    logp_and_grads = family.logp_and_grads
    if obs.censored is not None:
        logp_and_grads = censored_family(name, obs, family)
    lp, _ = logp_and_grads(obs.value, **kwargs)
    lp = np.asarray(lp, dtype=np.float64)
    try:
        return np.array(np.broadcast_to(lp, (n,) + batch))
    except ValueError:
        raise ValueError(f"rv {name!r}: {family.name}'s log-density has shape {lp.shape}, expected one entry "
                         f"per observation {(n,) + batch}") from None
