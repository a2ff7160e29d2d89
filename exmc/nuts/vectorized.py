"""``parallel="vectorized"``: all chains in one process, one batched gradient call per step.

Every chain runs as its own generator (:func:`exmc.nuts.sampler.chain_steps`) with its own random
stream, exactly as in the pool; the driver collects the pending leapfrog position of every
unfinished chain, evaluates them with one ``model.logp_and_grad(Q)`` call on the stacked ``(C', dim)``
array, and sends each chain its row back. Chains whose trajectory (or whole run) ended simply drop
out of the batch (the mask), so chains never wait for each other's tree depth.

This pays when chains outnumber cores and the model's batched evaluation is cheaper per chain than
C separate calls (numpy's per-call overhead dominates small models). Batched floating-point results
can differ from single evaluations in the last bits, so draws match the pool's in distribution,
not bit for bit.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from exmc.nuts.integrator import LogDensityError, guarded_logp_and_grad
from exmc.nuts.progress import ProgressEvent, Throttle
from exmc.nuts.sampler import SamplerOptions, chain_steps, single_threaded_blas
from exmc.nuts.trace import Trace

logger = logging.getLogger(__name__)


def batched_logp_and_grad(model, positions: np.ndarray) -> tuple[list[float], np.ndarray]:
    """Guarded batched evaluation: ``(C, dim)`` → (C log-densities, ``(C, dim)`` gradients).

    When the batched call raises, each row is evaluated alone so that only the failing chains see
    ``-inf`` (a divergence); NaN or +inf log-densities become ``-inf``. A row whose evaluation
    raises a non-domain error raises :class:`_RowFailed` (the driver hands it to that chain).
    """
    try:
        lps, grads = model.logp_and_grad(positions)
    except Exception as exc:  # noqa: BLE001 - isolate the failing rows
        logger.debug("batched log-density raised %r; evaluating rows one by one", exc)
        rows = []
        for row, q in enumerate(positions):
            try:
                rows.append(guarded_logp_and_grad(model.logp_and_grad, q))
            except LogDensityError as error:
                raise _RowFailed(row, error) from None
        return [lp for lp, _ in rows], np.stack([g for _, g in rows])
    lps = np.asarray(lps, dtype=float)
    bad = ~(lps < np.inf)  # NaN or +inf
    if bad.any():
        lps = np.where(bad, -np.inf, lps)
    return lps.tolist(), grads


class _RowFailed(Exception):
    """Row ``row`` of a batched evaluation raised ``error`` (a :class:`LogDensityError`)."""

    def __init__(self, row: int, error: LogDensityError) -> None:
        super().__init__(row, error)
        self.row = row
        self.error = error


def run_vectorized(
    model,
    seeds: Sequence[np.random.SeedSequence],
    options: SamplerOptions,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chain_ids: Sequence[int] | None = None,
    on_draws: Sequence[Callable | None] | None = None,
) -> list[Trace]:
    """Run one chain per seed in lockstep in the calling process; returns the traces in order.

    ``chain_ids`` numbers the chains (default ``0..len(seeds)-1``: a lockstep group of a larger
    run keeps its run-wide numbers, see :mod:`exmc.nuts.layout`); ``on_draws[i]`` is chain ``i``'s
    ``on_draw`` hook (see :func:`exmc.nuts.sampler.chain_steps`). Every trace's ``info`` records
    ``lockstep_chains``, the chain numbers of the group.

    BLAS runs single-threaded for the group's duration, as in pool workers and
    :func:`exmc.nuts.sampler.run_chain` (:func:`~exmc.nuts.sampler.single_threaded_blas`): a group
    run here gives the draws of the same group run in a worker.

    Raises what a chain raises (e.g. ``InitializationError``), ``InterruptedError`` when
    ``should_stop()`` turns true.
    """
    ids = list(range(len(seeds))) if chain_ids is None else [int(c) for c in chain_ids]
    hooks = list(on_draws) if on_draws is not None else [None] * len(seeds)
    chains = [
        chain_steps(model, c, seed, options, Throttle(progress) if progress else None, should_stop, hook)
        for c, seed, hook in zip(ids, seeds, hooks)
    ]
    results: list[Trace | None] = [None] * len(chains)
    requests: dict[int, np.ndarray] = {}
    with np.errstate(all="ignore"), single_threaded_blas():
        for c, steps in enumerate(chains):
            try:
                requests[c] = next(steps)
            except StopIteration as stop:
                results[c] = stop.value
        while requests:
            active = list(requests)
            # np.array stacks equal-length rows like np.stack at a fraction of its Python overhead.
            try:
                lps, grads = batched_logp_and_grad(model, np.array([requests[c] for c in active]))
            except _RowFailed as failed:
                chains[active[failed.row]].throw(failed.error)  # raises the chain's ModelError
                raise  # unreachable: the chain re-raises what it is thrown
            for row, c in enumerate(active):
                try:
                    requests[c] = chains[c].send((lps[row], grads[row]))
                except StopIteration as stop:
                    results[c] = stop.value
                    del requests[c]
    for trace in results:
        trace.info["lockstep_chains"] = ids
    return results  # type: ignore[return-value]
