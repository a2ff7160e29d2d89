"""Draws as they are made: batches of a running chain's sampling draws (``draws=`` callbacks).

A :class:`DrawBatcher` sits where a chain runs (a pool worker, the calling process): the chain
hands it every sampling draw (``add``); it forwards a :class:`DrawBatch` at most every
``DRAW_INTERVAL`` seconds, and always the last one, each on the natural scale (the model's
``to_constrained``: free rvs and the kept deterministics) with the draws' sampler statistics.
Batches of one chain arrive in order and tile its draws: ``start`` of each is the previous
``start + len``. A batch with ``start == 0`` begins the chain anew (a chain rerun elsewhere
after a node was lost), so consumers reset that chain then (:class:`DrawLog` does).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

# At most one batch per chain this often (s): a live trace plot redraws no faster, and a batch
# of a fast model's draws costs one message instead of hundreds.
DRAW_INTERVAL = 0.2


class DrawBatch(NamedTuple):
    """Draws ``start`` … ``start + len - 1`` of ``chain``'s sampling phase.

    ``draws``: name -> ``(len, *shape)`` array on the natural scale; ``stats``: name -> ``(len,)``
    array of the sampler statistics (``exmc.nuts.trace.STAT_DTYPES``); ``of``: the chain's
    number of sampling draws when complete.
    """

    chain: int
    start: int
    draws: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    of: int

    def __len__(self) -> int:  # type: ignore[override]
        return int(len(next(iter(self.stats.values())))) if self.stats else 0


class DrawBatcher:
    """Collects one chain's draws and emits :class:`DrawBatch` es (see the module docstring).

    ``model``: the compiled model (for ``to_constrained``); ``dropped``: deterministics left out.
    """

    def __init__(self, emit: Callable[[DrawBatch], None], model: Any, chain: int, num_samples: int,
                 dropped: frozenset[str] = frozenset(), interval: float = DRAW_INTERVAL) -> None:
        self._emit = emit
        self._model = model
        self._chain = chain
        self._of = num_samples
        self._dropped = dropped
        self._interval = interval
        self._start = 0
        self._rows: list[np.ndarray] = []
        self._stats: list[Mapping[str, Any]] = []
        self._last = time.monotonic()

    def add(self, index: int, q: np.ndarray, stats: Mapping[str, Any]) -> None:
        """Draw ``index`` (0-based, in order) at unconstrained position ``q`` with its statistics."""
        self._rows.append(np.array(q, dtype=float))
        self._stats.append(dict(stats))
        now = time.monotonic()
        if index + 1 == self._of or now - self._last >= self._interval:
            self._last = now
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        from exmc.nuts.sampler import constrained_draws  # dropped deterministics are not computed

        positions = np.stack(self._rows)
        draws = {name: np.asarray(value) for name, value in constrained_draws(self._model, positions, self._dropped).items()
                 if name not in self._dropped}
        stats = {name: np.asarray([row[name] for row in self._stats]) for name in self._stats[0]}
        batch = DrawBatch(self._chain, self._start, draws, stats, self._of)
        self._start += len(self._rows)
        self._rows, self._stats = [], []
        self._emit(batch)


def draw_hook(emit: Callable[[DrawBatch], None], model: Any, chain: int, options: Any):
    """The ``on_draw`` hook of ``sampler.run_chain`` that streams ``chain``'s draws to ``emit``
    under the run's ``options`` (``SamplerOptions``: sample count, kept deterministics)."""
    from exmc.nuts.sampler import dropped_deterministics

    dropped = dropped_deterministics(model, options.keep_deterministics)
    return DrawBatcher(emit, model, chain, options.num_samples, dropped).add


class DrawLog:
    """Every chain's draws so far, assembled from batches (a consumer's side)."""

    def __init__(self) -> None:
        self.batches: dict[int, list[DrawBatch]] = {}
        self.generation: dict[int, int] = {}  # chain -> how many times it started (reruns count)

    def add(self, batch: DrawBatch) -> None:
        if batch.start == 0:
            self.batches[batch.chain] = []
            self.generation[batch.chain] = self.generation.get(batch.chain, 0) + 1
        self.batches.setdefault(batch.chain, []).append(batch)

    def since(self, cursor: Mapping[int, tuple[int, int]]) -> list[DrawBatch]:
        """One batch per chain with the draws a reader holding ``cursor`` (chain -> (generation,
        draws read)) has not seen; a chain restarted since comes again from ``start == 0``."""
        out = []
        for chain in sorted(self.batches):
            generation, seen = cursor.get(chain, (0, 0))
            if generation != self.generation[chain]:
                seen = 0
            count = self.count(chain)
            if count <= seen:
                continue
            draws, stats = self.arrays(chain)
            of = self.batches[chain][-1].of
            out.append(DrawBatch(chain, seen, {k: v[seen:] for k, v in draws.items()},
                                 {k: v[seen:] for k, v in stats.items()}, of))
        return out

    def count(self, chain: int) -> int:
        return sum(len(b) for b in self.batches.get(chain, ()))

    def arrays(self, chain: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(draws, stats)`` of ``chain`` so far, each name -> array concatenated over batches."""
        batches = self.batches.get(chain, [])
        if not batches:
            return {}, {}
        draws = {name: np.concatenate([b.draws[name] for b in batches]) for name in batches[0].draws}
        stats = {name: np.concatenate([b.stats[name] for b in batches]) for name in batches[0].stats}
        return draws, stats
