"""Which compiled variant of a model's program serves a given ``theta``: one small holder.

Three variants (see :mod:`exmc.program`): *single* for ``(dim,)``, built with the model; *batched*
for ``(C, dim)``, built at the first batched call; *float rows* for small batches of a model whose
free rvs are all scalars, built and checked at the first small batch.

State (owned by one :class:`exmc.model.Model`; the sampler uses a model from one thread):

- ``single``: always a :class:`Program`.
- ``batched``: ``None`` until the first ``(C, dim)`` call that float rows do not serve, then a
  :class:`Program` for good.
- ``rows_eligible``: ``True`` while float rows may still serve small batches (the model's free rvs
  are all scalars and no probe has shown the program needs numpy); once ``False`` it stays so.
- ``rows``: ``None`` until compiled, then a float-rows :class:`Program` (only while eligible).
"""
from __future__ import annotations

import numpy as np

from exmc.analysis import Analysis
from exmc.program import FreeRV, Program, build_program

__all__ = ["Variants", "ROWWISE_MAX_CHAINS"]

#: Up to this many chains, a batched call on a model whose free rvs are all scalars, and whose
#: program computes on floats alone, runs the unbatched program once per chain on Python floats
#: (:meth:`exmc.program.Program.run_rows`) instead of the batched program's numpy calls on ``(C,)``
#: arrays. Measured on a 2-core box (us per call, float rows vs batched program, best of 9 rounds):
#: the seed model 4 chains 10.1 vs 16.2, 6 chains 14.8 vs 17.6, 8 chains 21.7 vs 20.5, 10 chains
#: 24.3 vs 23.3; eight scalar priors and six Normal likelihoods (tests/exmc/test_float_rows.py's
#: float zoo) 4 chains 48 vs 118, 6 chains 78 vs 132, 8 chains 94 vs 128, 10 chains 135 vs 133.
#: Both costs grow with the model's number of operations, so the crossover (7-10 chains here)
#: moves little; 6 keeps a clear gain on both.
ROWWISE_MAX_CHAINS = 6


class Variants:
    """The programs of one model and the choice between them (module notes)."""

    def __init__(self, analysis: Analysis, free: list[FreeRV], dim: int) -> None:
        self._analysis = analysis
        self._free = free
        self.dim = dim
        self.single: Program = build_program(analysis, free, batched=False)
        self.batched: Program | None = None
        self.rows_eligible = dim > 0 and all(f.ushape == () for f in free)
        self.rows: Program | None = None

    def program(self, theta: np.ndarray) -> Program:
        """The single or batched program for ``theta``; raises ``ValueError`` for a wrong shape."""
        if theta.ndim == 1:
            program = self.single
        elif theta.ndim == 2:
            program = self.batched
            if program is None:
                program = self.batched = build_program(self._analysis, self._free, batched=True)
        else:
            raise ValueError(f"theta must have shape (dim,) or (chains, dim), got {theta.shape}")
        if theta.shape[-1] != self.dim:
            raise ValueError(f"theta has {theta.shape[-1]} coordinates, the model has dim={self.dim}")
        return program

    def rows_for(self, theta: np.ndarray) -> Program | None:
        """The float-rows program when it serves this ``(C, dim)`` batch, else ``None``."""
        if not (self.rows_eligible and theta.ndim == 2 and theta.shape[1] == self.dim
                and 0 < theta.shape[0] <= ROWWISE_MAX_CHAINS):
            return None
        return self.rows or self._compile_rows()

    def _compile_rows(self) -> Program | None:
        """The float-rows program, or ``None`` (and no further tries) when it would call numpy."""
        rows = build_program(self._analysis, self._free, batched=False, float_rows=True)
        if not rows.computes_on_floats(self.dim):
            self.rows_eligible = False
            return None
        self.rows = rows
        return rows
