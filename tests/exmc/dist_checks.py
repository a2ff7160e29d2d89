"""Shared checks for distribution tests: finite differences, gradient shapes, batching.

Finite differences are central with a relative step; at the tolerances used (1e-6 relative) the
truncation error (O(h^2)) and the rounding error (O(eps/h)) are both far below the threshold.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from exmc.dist.base import Distribution, sum_to_shape

#: Relative step of the central differences (error ~ h^2 * f''' / 6 + eps * |f| / h, both << 1e-6).
FD_STEP = 1e-6
#: Relative tolerance for analytic vs numerical gradients (the issue's "~1e-6 relative").
GRAD_RTOL = 1e-6


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """Central-difference gradient of the scalar function ``f`` at ``x`` (any shape)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        h = FD_STEP * max(1.0, abs(x[index]))
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        grad[index] = (f(up) - f(down)) / (2.0 * h)
    return grad


def assert_close_grad(analytic: np.ndarray, numeric: np.ndarray, what: str) -> None:
    """Relative agreement, measured against the gradient's overall magnitude (entries near 0 included)."""
    scale = max(1.0, float(np.max(np.abs(numeric))))
    np.testing.assert_allclose(analytic, numeric, rtol=GRAD_RTOL, atol=GRAD_RTOL * scale, err_msg=what)


def check_gradients(family: Distribution, value: np.ndarray, params: Mapping[str, np.ndarray],
                    wrt: tuple[str, ...] | None = None) -> None:
    """Every gradient the family returns has the documented shape and matches finite differences
    of ``lp.sum()`` with respect to that input."""
    inputs = {"value": np.asarray(value, dtype=np.float64), **{k: np.asarray(v, dtype=np.float64) for k, v in params.items()}}
    lp, grads = family.logp_and_grads(inputs["value"], **{k: inputs[k] for k in params})
    assert np.all(np.isfinite(lp)), f"{family.name}: non-finite lp at test point"
    names = wrt if wrt is not None else tuple(grads)
    assert names, f"{family.name}: no gradients returned"
    event_ndims = {"value": family.event_ndim, **family.param_event_ndim}
    for name in names:
        grad = grads[name]
        event_shape = inputs[name].shape[inputs[name].ndim - event_ndims.get(name, 0):] if event_ndims.get(name, 0) else ()
        assert grad.shape == lp.shape + event_shape, (
            f"{family.name}: grad[{name!r}] shape {grad.shape} != lp shape {lp.shape} + event {event_shape}")

        def total(x, name=name):
            changed = dict(inputs)
            changed[name] = x
            return float(np.sum(family.logp(changed["value"], **{k: changed[k] for k in params})))

        numeric = numerical_gradient(total, inputs[name])
        assert_close_grad(sum_to_shape(grad, inputs[name].shape), numeric, f"{family.name} d/d{name}")


def check_batched(family: Distribution, value: np.ndarray, params: Mapping[str, np.ndarray], chains: int) -> None:
    """Evaluating inputs stacked along a leading chain axis equals evaluating each chain alone.

    ``value`` and every param carry the leading chain axis already (length ``chains``).
    """
    lp, grads = family.logp_and_grads(value, **params)
    for c in range(chains):
        lp_c, grads_c = family.logp_and_grads(value[c], **{k: v[c] for k, v in params.items()})
        np.testing.assert_allclose(lp[c], lp_c, rtol=1e-13, atol=1e-13)
        for name, g in grads_c.items():
            np.testing.assert_allclose(grads[name][c], g, rtol=1e-13, atol=1e-13, err_msg=name)


def stack_chains(values: list[np.ndarray], params: list[Mapping[str, np.ndarray]], event_ndims: Mapping[str, int] | None = None):
    """Stack per-chain inputs along a new leading axis, aligning batch ranks as the model does:
    each input's batch part is left-padded with 1-axes to the common batch rank, then the chain
    axis goes in front. ``event_ndims`` gives the trailing event dims per input name (default 0)."""
    event_ndims = dict(event_ndims or {})
    names = ["value", *params[0]]
    per_chain = [{"value": np.asarray(v), **{k: np.asarray(x) for k, x in p.items()}} for v, p in zip(values, params)]
    batch_rank = max(per_chain[0][n].ndim - event_ndims.get(n, 0) for n in names)
    stacked = {}
    for n in names:
        arrays = []
        for inputs in per_chain:
            a = inputs[n]
            pad = batch_rank - (a.ndim - event_ndims.get(n, 0))
            arrays.append(a.reshape((1,) * pad + a.shape))
        stacked[n] = np.stack(arrays)
    value = stacked.pop("value")
    return value, stacked
