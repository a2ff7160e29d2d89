"""What the sampler needs from a model: the compiled-model interface as ``typing.Protocol``s.

The sampler never imports :mod:`exmc.model`: it depends on these seams (GUIDE: "the sampler sees
the model only through its interface"). ``exmc.compile``'s :class:`exmc.model.Model` satisfies
them, and so does any hand-written object with the same members (the test suite's Gaussians,
bench's call-counting wrapper).
"""
from __future__ import annotations

from typing import Any, Collection, Mapping, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class CompiledModel(Protocol):
    """A log-density on an unconstrained flat vector, and the conversions of its draws.

    ``dim``: length of theta. ``free_names``: ``(name, shape)`` of each free variable, in theta's
    order. ``logp_and_grad(theta)``: ``(lp, grad)`` for ``theta`` of shape ``(dim,)`` (a float and
    a ``(dim,)`` array), and for ``(C, dim)`` (``(C,)`` and ``(C, dim)``) when the vectorized mode
    is used; it may raise or return a non-finite ``lp`` (a divergence). ``to_constrained(theta)``:
    name -> value on the natural scale for ``(n, dim)`` draws (a leading axis of ``n``).
    ``to_unconstrained(values)``: the inverse, for ``init_values``.
    """

    dim: int
    free_names: list[tuple[str, tuple[int, ...]]]

    def logp_and_grad(self, theta: np.ndarray) -> tuple[Any, np.ndarray]: ...

    def to_constrained(self, theta: np.ndarray) -> Mapping[str, np.ndarray]: ...

    def to_unconstrained(self, values: Mapping[str, Any]) -> np.ndarray: ...


@runtime_checkable
class WithDeterministics(Protocol):
    """A :class:`CompiledModel` whose ``to_constrained`` also returns deterministics, named here
    (``(name, shape)``), so ``keep_deterministics`` can select them; ``to_constrained(theta,
    dets=names)`` computes and returns only the deterministics named (and every free rv)."""

    det_names: list[tuple[str, tuple[int, ...]]]

    def to_constrained(self, theta: np.ndarray, dets: Collection[str] | None = None) -> Mapping[str, np.ndarray]: ...
