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
  refer to free rvs (their gradient is simply absent).
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
            if not callable(params[key]):
                raise ValueError(f"param {key!r} must be a callable, got {type(params[key]).__name__}")
        sample_fn = params.get("sample")
        if sample_fn is not None and not callable(sample_fn):
            raise ValueError(f"param 'sample' must be a callable, got {type(sample_fn).__name__}")
        support = params.get("support", "real")
        if support not in CUSTOM_SUPPORTS:
            raise ValueError(f"param 'support' must be one of {CUSTOM_SUPPORTS}, got {support!r}")
        numeric = {k: v for k, v in params.items() if k not in _RESERVED}
        family = CustomFamily(name=self.name, params=tuple(numeric), support=support,
                              logp_fn=params["logp"], grad_fn=params["grad"], sample_fn=sample_fn)
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


Custom = CustomFamily(name="Custom", params=("logp", "grad", "support"), optional={"sample": None})
