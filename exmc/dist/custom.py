"""User-defined densities from numpy callables: ``Custom{logp, grad, support}``.

Users write::

    Builder.rv(ir, "x", Dist.Custom, {
        "logp": lambda value, scale: -np.abs(value / scale) ** 1.5,   # elementwise, unnormalised ok
        "grad": lambda value, scale: {"value": ..., "scale": ...},     # or just d lp / d value
        "support": "real",                                              # "real", "positive", "unit"
        "scale": "s",                                                   # numeric params: any others
    })

:meth:`CustomFamily.resolve` returns a specialised family whose ``params`` are the numeric ones (all
keys but ``logp``, ``grad``, ``support`` and the optional ``sample``). The callables travel with the IR
(cloudpickle carries lambdas and closures by value).

Contract for the callables (arrays may carry leading batch axes, e.g. a chain axis):

- ``logp(value, **params)`` returns the elementwise log-density, or its sum over *trailing* axes only
  (``.sum(axis=-1)``); a full ``.sum()`` would add up chains in a batched evaluation.
- ``grad(value, **params)`` returns ``d sum(lp) / d value`` (an array broadcasting to the value's
  shape), or a dict with ``"value"`` and any parameter keys; parameters without a gradient must not
  refer to free rvs (their gradient is simply absent). ``"grad": "fd"`` takes central finite
  differences of ``logp`` instead (slow and approximate: for quick trials). A density written with
  exmc ops needs no Custom at all: build it with dets and add it with ``Builder.potential`` (its
  gradient then comes from the program, exactly).
- optional ``sample(rng, size, **params)`` draws for predictive checks; ``size`` is the requested
  leading shape followed by the rv's declared shape.
Errors raised by the callables propagate unchanged; a gradient of the wrong shape raises ``ValueError``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from exmc._numeric import as_float
from exmc.dist.base import Distribution, size_tuple

__all__ = ["Custom", "CustomFamily", "CUSTOM_SUPPORTS"]

#: Supports a Custom family may declare (each has a parameter-free default transform).
CUSTOM_SUPPORTS = ("real", "positive", "unit")
_RESERVED = ("logp", "grad", "support", "sample")


@dataclass(frozen=True)
class CustomFamily(Distribution):
    """``Dist.Custom`` (unresolved) and its specialisations carrying the user's callables."""

    logp_fn: Callable[..., Any] | None = None
    grad_fn: Callable[..., Any] | None = None
    sample_fn: Callable[..., Any] | None = None

    def resolve(self, params: Mapping[str, Any]) -> tuple["CustomFamily", dict[str, Any]]:
        """Split the callables from the numeric params. Raises ``ValueError`` naming the field when
        ``logp``/``grad`` are missing or not callable, or ``support`` is not one of
        :data:`CUSTOM_SUPPORTS`."""
        if self.logp_fn is not None:
            return self, dict(params)
        for key in ("logp", "grad"):
            if key not in params:
                raise ValueError(f"param {key!r} is missing (Custom takes logp, grad, support and numeric params)")
            if key == "grad" and params[key] == FINITE_DIFFERENCES:
                continue
            if not callable(params[key]):
                raise ValueError(f"param {key!r} must be a callable, got {type(params[key]).__name__}")
        sample_fn = params.get("sample")
        if sample_fn is not None and not callable(sample_fn):
            raise ValueError(f"param 'sample' must be a callable, got {type(sample_fn).__name__}")
        support = params.get("support", "real")
        if support not in CUSTOM_SUPPORTS:
            raise ValueError(f"param 'support' must be one of {CUSTOM_SUPPORTS}, got {support!r}")
        numeric = {k: v for k, v in params.items() if k not in _RESERVED}
        grad_fn = params["grad"]
        if grad_fn == FINITE_DIFFERENCES:
            grad_fn = _FiniteDifferences(params["logp"], tuple(numeric))
        family = CustomFamily(name=self.name, params=tuple(numeric), support=support,
                              logp_fn=params["logp"], grad_fn=grad_fn, sample_fn=sample_fn)
        return family, numeric

    def _require_resolved(self) -> None:
        if self.logp_fn is None:
            raise ValueError("Dist.Custom must be resolved first: Custom.resolve({'logp': f, 'grad': g, ...})")

    def in_support(self, value, **params):
        value = as_float(value)
        if self.support == "positive":
            return np.isfinite(value) & (value > 0)
        if self.support == "unit":
            return (value > 0) & (value < 1)
        return np.isfinite(value)

    def logp(self, value, **params):
        """The user's ``logp`` alone (no gradient call)."""
        self._require_resolved()
        return as_float(self.logp_fn(value, **params))

    def logp_and_grads(self, value, **params):
        self._require_resolved()
        lp = as_float(self.logp_fn(value, **params))
        raw = self.grad_fn(value, **params)
        grads = {k: as_float(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {"value": as_float(raw)}
        if "value" not in grads:
            raise ValueError("Custom grad returned a dict without the 'value' key")
        unknown = sorted(set(grads) - {"value", *self.params})
        if unknown:
            raise ValueError(f"Custom grad returned a gradient for unknown param {unknown[0]!r}")
        try:
            np.broadcast_shapes(grads["value"].shape, np.shape(value))
        except ValueError:
            raise ValueError(f"Custom grad returned shape {grads['value'].shape} for a value of shape "
                             f"{np.shape(value)}") from None
        return lp, grads

    def sample(self, rng, size, shape=None, **params):
        self._require_resolved()
        if self.sample_fn is None:
            raise ValueError("Custom has no draws: give it a 'sample' callable (rng, size, **params) for predictive checks")
        return np.asarray(self.sample_fn(rng, size_tuple(size) + tuple(shape or ()), **params))


#: ``"grad": "fd"``: gradients by central finite differences of the user's ``logp``.
FINITE_DIFFERENCES = "fd"
#: Relative step of those differences: about the cube root of the float64 epsilon, which balances
#: truncation (O(h^2)) against rounding (O(eps/h)); gradients come out accurate to ~1e-10 relative
#: on smooth densities, an approximation all the same.
FD_RELATIVE_STEP = 6e-6


class _FiniteDifferences:
    """``grad="fd"``: d sum(lp) / d input for the value and every floating-point numeric parameter,
    one pair of ``logp`` calls per entry (2 x (value size + parameter sizes) calls per gradient:
    slow, meant for quick trials; write the density with exmc ops and ``Builder.potential``, or
    give ``grad``, for real work). Perturbing one entry changes only its own chain's log-density,
    so the differences of the total are exact per chain in batched calls too."""

    def __init__(self, logp, params: tuple[str, ...]) -> None:
        self.logp = logp
        self.params = params

    def __call__(self, value, **params):
        inputs = {"value": value, **params}
        grads = {}
        for key, x in inputs.items():
            x = np.asarray(x)
            if x.dtype.kind != "f":
                continue  # integer data: no gradient
            grads[key] = self._partials(key, np.array(x, dtype=np.float64), inputs)
        return grads

    def _partials(self, key, x, inputs):
        grad = np.zeros(x.shape)
        for index in np.ndindex(x.shape):
            h = FD_RELATIVE_STEP * max(1.0, abs(float(x[index])))
            up, down = x.copy(), x.copy()
            up[index] += h
            down[index] -= h
            total_up = np.sum(self._call(inputs, key, up))
            total_down = np.sum(self._call(inputs, key, down))
            grad[index] = (total_up - total_down) / (2.0 * h)
        return grad

    def _call(self, inputs, key, x):
        """``logp(value, **params)`` with input ``key`` replaced by ``x`` (the value positionally,
        as the Custom contract calls it)."""
        changed = {**inputs, key: x}
        value = changed.pop("value")
        return self.logp(value, **changed)

    def __reduce__(self):
        return (_FiniteDifferences, (self.logp, self.params))


Custom = CustomFamily(name="Custom", params=("logp", "grad", "support"), optional={"sample": None})
