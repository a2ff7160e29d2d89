"""``warmup="shared"``: warm up once, then every chain only samples (eXMC's scheme).

Stan warms up every chain on its own: each finds a step size and a metric, which costs about as
much as the sampling itself (a chain's early trees are its deepest). When chains outnumber
workers, a run over nodes spends most of its first rounds warming up. The shared scheme:

1. **One warmup chain** runs Stan's whole adaptation (``num_warmup`` iterations) and then
   ``STARTS_SPACING × num_chains`` sampling iterations with the adapted step size and metric.
   Its seed is ``SeedSequence(seed).spawn(num_chains + 1)[num_chains]``, distinct from every
   chain's; it runs where any chain would (the pool, or one node of a run over nodes, with the
   same failover: a lost node's warmup is rerun elsewhere with the same seed, so the same
   tuning comes out).
2. **Every chain** then starts at its own draw of that sampling phase (chain ``c`` at draw
   ``c × STARTS_SPACING``: a point of the stationary distribution, so no burn-in is needed) and
   samples ``num_samples`` iterations with the warmup chain's final step size and metric, its
   own seed, and no warmup (``Trace.info["num_warmup"] == 0``). A low-rank metric travels as
   its matrix and is sampled with as a dense one (the same kinetic energy).

The result is deterministic for a seed, whatever runs where. What it costs in checking power:
every chain shares one adaptation and starts near one chain's path, so R-hat can no longer
reveal a failed adaptation or a second mode that the warmup chain never visited. Use it when
chains outnumber workers several times over and the posterior is known to be unimodal; the
measured gain is in ``docs/sampler.md``.

``Trace.info`` of each chain: ``warmup`` (``"shared"``), ``step_size`` and ``inverse_metric``
(the shared ones), ``metric`` (the warmup chain's kind), ``shared_warmup`` (where the warmup ran:
``node``, ``worker``, its ``num_warmup``, ``warmup_seconds``, ``step_size``).

Progress: while the warmup chain runs, every chain's display shows its warmup iteration
(phase ``"warmup"``, iterations ``1..num_warmup`` of ``num_warmup + num_samples``); then each
chain's sampling iterations count on from ``num_warmup``. ``ChainPlaced`` of the warmup chain
is not reported; a node lost during it is reported as ``NodeLost`` with ``moved = {-1: node}``
(``-1``: the warmup chain).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from exmc.nuts.metric import DenseMetric, DiagonalMetric
from exmc.nuts.progress import ProgressEvent

# Sampling iterations of the warmup chain between two chains' starting points: consecutive NUTS
# draws are correlated; two apart is enough for distinct starts, and costs 2 iterations a chain.
STARTS_SPACING = 2

#: The chain number that stands for the warmup chain in ``NodeLost.moved``.
WARMUP_CHAIN = -1

WARMUP_CHOICES = ("own", "shared")


class Tuning(NamedTuple):
    """What the warmup chain hands to every chain.

    ``step_size``; ``kind``: ``"diag"``, ``"dense"`` or ``"lowrank"`` (sampled as dense);
    ``inverse``: the inverse metric (1-D for ``"diag"``, else a matrix); ``starts``: ``(k, dim)``
    unconstrained starting points, chain ``c`` starts at ``starts[c % k]``; ``source``: where
    and how the warmup ran (copied into each chain's ``Trace.info["shared_warmup"]``).
    """

    step_size: float
    kind: str
    inverse: np.ndarray
    starts: np.ndarray
    source: dict[str, Any]

    def metric(self) -> DiagonalMetric | DenseMetric:
        return DiagonalMetric(self.inverse) if self.kind == "diag" else DenseMetric(self.inverse)

    def start(self, chain: int) -> np.ndarray:
        return np.array(self.starts[chain % len(self.starts)], dtype=float)

    def check(self, dim: int) -> None:
        """Raise ValueError naming what does not fit a model of ``dim`` unconstrained dimensions."""
        if not (np.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"shared warmup: step size must be finite and positive, got {self.step_size!r}")
        shape = (dim,) if self.kind == "diag" else (dim, dim)
        if self.kind not in ("diag", "dense", "lowrank") or np.shape(self.inverse) != shape:
            raise ValueError(f"shared warmup: a {self.kind!r} inverse metric of shape {np.shape(self.inverse)} "
                             f"does not fit a model of dimension {dim}")
        if np.ndim(self.starts) != 2 or np.shape(self.starts)[1] != dim or len(self.starts) == 0:
            raise ValueError(f"shared warmup: starting points of shape {np.shape(self.starts)} do not fit "
                             f"dimension {dim}")

    @classmethod
    def from_trace(cls, trace: Any, spacing: int = STARTS_SPACING) -> Tuning:
        """The tuning a finished warmup chain's :class:`~exmc.nuts.trace.Trace` carries."""
        info = trace.info
        source = {key: info.get(key) for key in ("node", "worker", "num_warmup", "warmup_seconds", "step_size",
                                                 "metric")}
        return cls(float(info["step_size"]), str(info["metric"]), np.asarray(info["inverse_metric"]),
                   np.asarray(trace.unconstrained)[::spacing], source)


def warmup_seed(seed: int | np.random.SeedSequence, num_chains: int) -> np.random.SeedSequence:
    """The warmup chain's seed, as a root whose only child is the stream it samples with
    (``sample_chains`` spawns one child per chain from the seed it gets)."""
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.SeedSequence(root.entropy, spawn_key=tuple(root.spawn_key) + (num_chains,),
                                  pool_size=root.pool_size)


class _Relay:
    """Turns the two phases' progress into one run's (see the module docstring)."""

    def __init__(self, progress: Callable[[Any], None] | None, num_chains: int, num_warmup: int,
                 num_samples: int) -> None:
        self.progress = progress
        self.num_chains = num_chains
        self.num_warmup = num_warmup
        self.total = num_warmup + num_samples
        self.renamed: dict[str, str] = {}  # a lost node's note about "chain 0" -> about the warmup

    def warming(self, event: Any) -> None:
        from exmc.nuts.multinode import ChainPlaced, NodeLost

        if isinstance(event, NodeLost):
            event, original = event._replace(moved={WARMUP_CHAIN: n for n in event.moved.values()}), event
            self.renamed[original.describe()] = event.describe()
        elif isinstance(event, ChainPlaced) or event.iteration > self.num_warmup:
            return  # the warmup chain's placement, and its few sampling draws (the starts)
        if self.progress is None:
            return
        if isinstance(event, NodeLost):
            self.progress(event)
            return
        for chain in range(self.num_chains):
            self.progress(dataclasses.replace(event, chain=chain, total=self.total, done=False))

    def sampling(self, event: Any) -> None:
        if self.progress is None:
            return
        if isinstance(event, ProgressEvent):
            event = dataclasses.replace(event, iteration=event.iteration + self.num_warmup, total=self.total)
        self.progress(event)


def sample_shared(run: Callable[..., Any], num_chains: int, num_samples: int, num_warmup: int,
                  seed: int | np.random.SeedSequence, progress: Callable[[Any], None] | None,
                  should_stop: Callable[[], bool] | None, **callbacks: Any) -> Any:
    """Run both phases with ``run`` (``Sampler.sample_chains`` with the model and the run's
    other options bound) and return the chains' ``Chains``. ``callbacks`` (``on_result``,
    ``draws``) are the second phase's. Raises as ``sample_chains`` does, in either phase."""
    relay = _Relay(progress, num_chains, num_warmup, num_samples)
    warm = run(1, num_samples=STARTS_SPACING * num_chains, num_warmup=num_warmup,
               seed=warmup_seed(seed, num_chains), progress=relay.warming, should_stop=should_stop, warmup="own")
    tuning = Tuning.from_trace(warm[0])
    chains = run(num_chains, num_samples=num_samples, num_warmup=0, seed=seed,
                 progress=None if progress is None else relay.sampling, should_stop=should_stop, warmup=tuning,
                 **callbacks)
    for trace in chains:
        trace.info.update(warmup="shared", metric=tuning.kind, shared_warmup=dict(tuning.source))
    chains.notes[:0] = [f"shared warmup: {relay.renamed.get(note, note)}" for note in warm.notes]
    return chains
