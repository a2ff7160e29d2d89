"""How a run's chains are laid out on processes: alone, or in lockstep groups with batched gradients.

A *layout* is one number, the lockstep group size ``g``:

- ``g = 1`` (``"single"``): every chain runs alone (:func:`exmc.nuts.sampler.run_chain`), one
  unbatched gradient per leapfrog step — Stan's path, and the only one on a cluster (``nodes=``).
- ``g >= 2`` (``"lockstep"``): chains ``c`` with the same ``c // g`` run together in one process
  (:func:`exmc.nuts.vectorized.run_vectorized`), one batched ``(g, dim)`` gradient per step. On a
  model whose gradient streams a large design (``X @ beta``), the batch reads the design once for
  the group: a matrix-matrix product instead of ``g`` matrix-vector ones.

Groups are fixed by chain number, not by where chains run, so the pool (any ``max_workers``) and
the sequential mode give the same draws for a layout; different layouts differ in the last bits of
the batched products, hence in their draws (not in distribution). The layout is part of what makes a
run reproducible and is recorded in every ``Trace.info`` (``layout``, ``lockstep_chains``,
``layout_reason``).

The automatic rule (``layout="auto"``, the default) is decided from the model and the run's shape
alone, never from a timing, so that a seed keeps giving the same draws on a machine:
when the model holds at least :data:`MIN_DATA_ELEMENTS` data elements and there are at least two
chains per core, ``g`` is the number of chains per core (at most :data:`MAX_LOCKSTEP_GROUP`), so
that every core runs one group: 4 chains on 2 cores are two pairs; else ``g = 1``. Measured (CPU
per leapfrog step of two chains, lockstep pair ÷ two single chains, 2 × (300 + 300) iterations,
load 4-5): Poisson GLM
(N = 20,000, K = 10; 220,000 data elements) 0.65, Bernoulli GLM 0.79, logistic (N = 500, K = 20;
10,500) 0.96, seed 1.18, radon (90-d, 919 rows) 1.22, eight schools 1.47: below ~10^4 elements the
numpy calls of a batched step cost more than the data they share.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, NamedTuple, Sequence

import numpy as np

__all__ = ["Layout", "SINGLE_LAYOUT", "choose_layout", "data_elements", "groups", "MIN_DATA_ELEMENTS",
           "MAX_LOCKSTEP_GROUP"]

#: A model with at least this many data elements (design matrices, observations, constant
#: parameters, summed) gets lockstep groups under ``layout="auto"`` (module notes: the GLMs, at
#: 2.2e5, gain 21-35 %; logistic, at 1.05e4, breaks even).
MIN_DATA_ELEMENTS = 50_000
#: The largest lockstep group ``"auto"`` makes: one group per core, the more chains in it the less
#: each costs (measured per chain and gradient on the Poisson GLM: single 132 µs, 2 chains 83 µs,
#: 4 chains 64 µs; Bernoulli 226, 176, 120), with diminishing returns past a few chains, while a
#: chain whose partners finished first runs alone at the end.
MAX_LOCKSTEP_GROUP = 8
#: ``"auto"`` groups chains only when each core would run at least this many of them anyway.
MIN_CHAINS_PER_CORE = 2


class Layout(NamedTuple):
    """A resolved layout: ``group`` chains per lockstep group (1: single chains) and why."""

    group: int
    reason: str

    @property
    def kind(self) -> str:
        """``"single"`` or ``"lockstep"`` (what ``Trace.info["layout"]`` says)."""
        return "single" if self.group == 1 else "lockstep"


#: Every chain alone: the default of :class:`exmc.nuts.sampler.SamplerOptions`.
SINGLE_LAYOUT = Layout(1, "single chains")


def data_elements(model: Any) -> int:
    """Elements of every numpy array held by the model's IR nodes (``0`` without an IR)."""
    from exmc.ir import IR

    ir = model if isinstance(model, IR) else getattr(model, "ir", None)
    if not isinstance(ir, IR):
        return 0
    total = 0
    for node in ir.nodes:
        for field in dataclasses.fields(node):
            total += _array_elements(getattr(node, field.name))
    return total


def _array_elements(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.size)
    if isinstance(value, (tuple, list)):
        return sum(_array_elements(item) for item in value)
    return 0


def choose_layout(model: Any, num_chains: int, layout: str | int = "auto", cores: int | None = None) -> Layout:
    """Resolve ``layout`` (``"auto"``, ``"single"`` or a group size ``>= 1``) for ``num_chains``
    chains of ``model`` (an IR or a compiled model) on ``cores`` cores (default: this machine's).

    Raises ``ValueError`` naming a layout that is none of these.
    """
    if layout == "single":
        return Layout(1, "layout='single'")
    if layout == "auto":
        cores = cores or os.cpu_count() or 1
        elements = data_elements(model)
        if elements < MIN_DATA_ELEMENTS:
            return Layout(1, f"auto: {elements} data elements < {MIN_DATA_ELEMENTS}")
        if num_chains < MIN_CHAINS_PER_CORE * cores:
            return Layout(1, f"auto: {num_chains} chains < {MIN_CHAINS_PER_CORE} per core on {cores} cores")
        group = min(num_chains // cores, MAX_LOCKSTEP_GROUP)
        return Layout(group, f"auto: {elements} data elements >= {MIN_DATA_ELEMENTS}, "
                             f"{num_chains} chains on {cores} cores")
    if isinstance(layout, (int, np.integer)) and not isinstance(layout, bool) and layout >= 1:
        return Layout(int(layout), f"layout={int(layout)}")
    raise ValueError(f"layout must be 'auto', 'single' or a positive group size, got {layout!r}")


def groups(chain_ids: Sequence[int], group: int) -> list[tuple[int, ...]]:
    """``chain_ids`` split into lockstep groups by ``chain // group`` (each group in chain order;
    groups in the order of their first chain). A run's share of chains (a node's, a rerun's) keeps
    the groups of the whole run: chains whose partners run elsewhere form smaller groups."""
    out: dict[int, list[int]] = {}
    for chain in chain_ids:
        out.setdefault(int(chain) // group, []).append(int(chain))
    return [tuple(members) for members in out.values()]
