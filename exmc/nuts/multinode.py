"""Chains over several nodes: placement, progress, failover. ``sample_chains(..., nodes=[...])``.

The calling process is the coordinator. It asks each node how many chain workers it has, gives
each node a share of the chains in proportion (one *share* per node, run in that node's warm
pool under the chains' run-wide numbers and seeds), and collects the traces as each chain
finishes. Per-chain seeds are ``SeedSequence(seed).spawn(num_chains)[chain]`` whatever runs
where, so the draws are identical to a single-node run with the same seed.

This module knows nothing of pynode (exmc runs in a plain process): it talks to the cluster
through a :class:`ClusterBackend`, whose pynode implementation (:mod:`exmc.nuts.pynode_backend`)
is imported only when a run over nodes starts without a backend of its own.

Failure classes of a run over nodes:

- a node that is lost mid-run (its process died, the connection dropped, or it was declared
  down): its unfinished chains are rerun from scratch, with the same seeds, on the remaining
  nodes (so the result equals an undisturbed run); finished chains are kept. The progress
  callback receives a :class:`NodeLost` event naming the node and where each chain moved, and
  ``Chains.warnings()`` says so;
  a node that freezes (SIGSTOP: its socket stays open) is lost once pynode's ticks declare it
  down (between ``ticktime`` and 1.25 × ``ticktime`` later); until then its chains wait;
- every node lost: the backend's ``NoConnection`` (pynode's), its message naming each lost node
  and the partial state (which chains finished where, which did not);
- a chain that raises (a bug in a Custom logp, no finite initial point, a worker process that
  died on its node): the run stops at once, every share is cancelled, and that exception is
  raised with a note naming its chain and node (no rerun: the same seed would fail again);
- ``should_stop()`` true: ``InterruptedError``; a ``KeyboardInterrupt`` or any other exception
  in the coordinator also cancels every share (each node terminates its chains' workers).

With ``draws=``, each chain's sampling draws stream back as :class:`exmc.nuts.stream.DrawBatch`
es, from the node currently running it (a moved chain starts again at ``start == 0``).

What the progress callback receives: exmc's :class:`~exmc.nuts.progress.ProgressEvent` of each
chain (from the node currently running it; events of a lost node's chains are dropped once it is
lost), :class:`ChainPlaced` when a chain is given to a node (at the start and when it moves),
and :class:`NodeLost`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from exmc.nuts.progress import ProgressEvent
from exmc.nuts.sampler import SamplerOptions
from exmc.nuts.trace import Chains, Trace

logger = logging.getLogger(__name__)

# How long the coordinator blocks for cluster events between checks of should_stop (s): bounds
# progress latency and cancellation delay, as the pool's POLL_INTERVAL does.
POLL_SECONDS = 0.05


# --- events a backend reports (its runs are opaque handles) ------------------------------------

class ShareProgress(NamedTuple):
    """A progress event of one chain of a share."""

    run: Any
    event: ProgressEvent


class ShareChainDone(NamedTuple):
    """One chain of a share finished; ``trace`` is its result."""

    run: Any
    trace: Trace


class ShareDraws(NamedTuple):
    """A batch of one chain's sampling draws (:class:`exmc.nuts.stream.DrawBatch`)."""

    run: Any
    batch: Any


class ShareEnded(NamedTuple):
    """The share returned normally: every chain in ``chains`` finished (their traces were
    reported before this event)."""

    run: Any
    chains: list[int]


class ShareFailed(NamedTuple):
    """The share ended with ``error``. ``lost`` is True when the node is gone (connection lost,
    node down): its chains are rerun elsewhere; False for a chain's own exception."""

    run: Any
    error: BaseException
    lost: bool


class NodeDown(NamedTuple):
    """The backend learnt that ``node`` is gone (e.g. a node monitor fired)."""

    node: str
    reason: str


# --- events the progress callback receives besides ProgressEvent -------------------------------

class ChainPlaced(NamedTuple):
    """``chain`` was given to ``node`` (it waits for a worker there until its first progress)."""

    chain: int
    node: str


class NodeLost(NamedTuple):
    """``node`` was lost (``reason``); ``moved`` maps each of its unfinished chains to the node
    that reruns it."""

    node: str
    reason: str
    moved: Mapping[int, str]

    def describe(self) -> str:
        if not self.moved:
            return f"node {self.node} was lost ({self.reason}); none of its chains was unfinished"
        moves = ", ".join(f"chain {chain} → {node}" if chain >= 0 else f"the shared warmup → {node}"
                          for chain, node in sorted(self.moved.items()))
        return (f"node {self.node} was lost ({self.reason}); its unfinished chains were rerun from "
                f"scratch with the same seeds: {moves}")


class ClusterBackend(Protocol):
    """The transport a run over nodes uses (pynode's: :mod:`exmc.nuts.pynode_backend`).

    Every method is called from the coordinating thread only.
    """

    def resolve(self, nodes: Sequence[str] | str) -> list[str]:
        """The node names to use: ``nodes`` itself, or for ``"all"`` every connected node that
        has exmc loaded. Raises ValueError for anything else."""
        ...

    def workers(self, nodes: Sequence[str]) -> dict[str, int | BaseException]:
        """Each node's chain worker count, or the exception that asking it raised."""
        ...

    def start(self, node: str, payload: Any, chains: list[int], seeds: list[np.random.SeedSequence],
              options: SamplerOptions, max_workers: int, stream: bool = False) -> Any:
        """Start a share of chains on ``node``; returns its handle (with ``stream``, the share
        also reports ``ShareDraws``). Never raises for an unreachable node: a
        ``ShareFailed(lost=True)`` is reported instead."""
        ...

    def poll(self, timeout: float) -> list[Any]:
        """Events (the NamedTuples above) that arrived, waiting at most ``timeout`` s for one."""
        ...

    def cancel(self, run: Any) -> None:
        """Abandon a share: its node stops its chains. Idempotent, never raises."""
        ...

    def no_connection(self, message: str) -> BaseException:
        """The exception for "every node is gone" (pynode's ``NoConnection``)."""
        ...

    def close(self) -> None:
        """End of the run: drop monitors (other messages were never taken from the mailbox)."""
        ...


class _Share(NamedTuple):
    node: str
    chains: list[int]


def place(chains: Sequence[int], capacity: Mapping[str, int], load: Mapping[str, int]) -> dict[int, str]:
    """Give each chain to the node with the lowest (load + 1) / capacity, in chain order (ties:
    the node listed first), counting the chains placed so far. Pure; ``capacity`` > 0."""
    load = dict(load)
    order = list(capacity)
    placed = {}
    for chain in chains:
        node = min(order, key=lambda n: ((load.get(n, 0) + 1) / capacity[n], order.index(n)))
        placed[chain] = node
        load[node] = load.get(node, 0) + 1
    return placed


class Coordinator:
    """One run over nodes (see the module docstring). State, all guarded by being touched only
    from the coordinating thread:

    - ``capacity``: node -> worker count, for nodes still usable (a lost node is removed);
    - ``shares``: backend handle -> ``_Share`` for the shares still running;
    - ``owner``: chain -> node running it now (the chain's events are accepted only from there);
    - ``results``: chain -> Trace of every finished chain;
    - ``lost``: node -> reason, for every node lost so far; ``notes``: lines for ``warnings()``.
    """

    def __init__(self, backend: ClusterBackend, payload: Any, seeds: list[np.random.SeedSequence],
                 options: SamplerOptions, progress: Callable[[Any], None] | None,
                 should_stop: Callable[[], bool] | None,
                 on_result: Callable[[Trace], None] | None = None,
                 draws: Callable[[Any], None] | None = None) -> None:
        self.backend = backend
        self.payload = payload
        self.seeds = seeds
        self.options = options
        self.progress = progress
        self.should_stop = should_stop
        self.on_result = on_result
        self.draws = draws
        self.capacity: dict[str, int] = {}
        self.shares: dict[Any, _Share] = {}
        self.owner: dict[int, str] = {}
        self.results: dict[int, Trace] = {}
        self.lost: dict[str, str] = {}
        self.notes: list[str] = []

    def run(self, nodes: list[str]) -> Chains:
        try:
            self._query(nodes)
            self._dispatch(list(range(len(self.seeds))))
            while len(self.results) < len(self.seeds):
                if self.should_stop is not None and self.should_stop():
                    raise InterruptedError("sampling cancelled (should_stop returned true)")
                for event in self.backend.poll(POLL_SECONDS):
                    self._handle(event)
        finally:
            for run in list(self.shares):
                self.backend.cancel(run)
            self.backend.close()
        return Chains([self.results[chain] for chain in range(len(self.seeds))], notes=self.notes)

    def _emit(self, event: Any) -> None:
        if self.progress is not None:
            self.progress(event)

    def _query(self, nodes: list[str]) -> None:
        for node, answer in self.backend.workers(nodes).items():
            if isinstance(answer, BaseException):
                self.lost[node] = f"{type(answer).__name__}: {answer}"
                logger.warning("node %s cannot sample (%s); not using it", node, self.lost[node])
            elif answer >= 1:
                self.capacity[node] = int(answer)
            else:
                self.lost[node] = f"it has no chain workers ({answer})"
        if not self.capacity:
            raise self.backend.no_connection(f"no node can sample: {self._describe_lost()}")
        if self.lost:
            self.notes.append(f"nodes not used (unreachable or without exmc at the start): {self._describe_lost()}")

    def _describe_lost(self) -> str:
        return "; ".join(f"{node}: {reason}" for node, reason in self.lost.items())

    def _load(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for chain, node in self.owner.items():
            if chain not in self.results:
                load[node] = load.get(node, 0) + 1
        return load

    def _dispatch(self, chains: list[int]) -> dict[int, str]:
        placed = place(chains, self.capacity, self._load())
        by_node: dict[str, list[int]] = {}
        for chain, node in placed.items():
            by_node.setdefault(node, []).append(chain)
            self.owner[chain] = node
            self._emit(ChainPlaced(chain, node))
        for node, share in by_node.items():
            run = self.backend.start(node, self.payload, share, [self.seeds[c] for c in share], self.options,
                                     min(self.capacity[node], len(share)), stream=self.draws is not None)
            self.shares[run] = _Share(node, share)
            logger.info("chains %s placed on %s (%d workers)", share, node, self.capacity[node])
        return placed

    def _handle(self, event: Any) -> None:
        if isinstance(event, NodeDown):
            self._node_lost(event.node, event.reason)
            return
        share = self.shares.get(event.run)
        if share is None:  # a share already cancelled (its node lost): late events are dropped
            return
        if isinstance(event, ShareProgress):
            if self.owner.get(event.event.chain) == share.node and event.event.chain not in self.results:
                self._emit(event.event)
        elif isinstance(event, ShareDraws):
            if self.draws is not None and self.owner.get(event.batch.chain) == share.node:
                self.draws(event.batch)
        elif isinstance(event, ShareChainDone):
            chain = int(event.trace.info["chain"])
            if chain in share.chains and chain not in self.results:
                event.trace.info["node"] = share.node
                self.results[chain] = event.trace
                if self.on_result is not None:
                    self.on_result(event.trace)
        elif isinstance(event, ShareEnded):
            del self.shares[event.run]
            missing = [c for c in share.chains if c not in self.results]
            if missing:
                raise RuntimeError(f"node {share.node} reported chains {share.chains} finished but the "
                                   f"traces of {missing} never arrived")
        elif isinstance(event, ShareFailed):
            if event.lost:
                self._node_lost(share.node, f"{type(event.error).__name__}: {event.error}")
                return
            del self.shares[event.run]
            chain = getattr(event.error, "exmc_chain", getattr(event.error, "chain", None))
            where = f"chain {chain}" if chain is not None else f"one of chains {share.chains}"
            event.error.add_note(f"{where} failed on node {share.node}; the run over nodes was stopped")
            raise event.error
        else:
            raise TypeError(f"unknown cluster event {event!r}")

    def _node_lost(self, node: str, reason: str) -> None:
        if node in self.lost:
            return
        self.lost[node] = reason
        self.capacity.pop(node, None)
        unfinished: list[int] = []
        for run, share in list(self.shares.items()):
            if share.node == node:
                del self.shares[run]
                self.backend.cancel(run)
                unfinished += [c for c in share.chains if c not in self.results]
        unfinished.sort()
        logger.warning("node %s lost (%s); unfinished chains %s", node, reason, unfinished)
        if not unfinished:
            return
        if not self.capacity:
            done = {}
            for chain, trace in sorted(self.results.items()):
                done.setdefault(trace.info.get("node"), []).append(chain)
            finished = "; ".join(f"chains {chains} on {where}" for where, chains in done.items()) or "none"
            left = [c for c in range(len(self.seeds)) if c not in self.results]
            raise self.backend.no_connection(
                f"every node of the run was lost ({self._describe_lost()}); finished: {finished}; "
                f"unfinished: chains {left} (their draws are lost)")
        moved = self._dispatch(unfinished)
        lost_event = NodeLost(node, reason, moved)
        self.notes.append(lost_event.describe())
        self._emit(lost_event)


def sample_on_nodes(payload: Any, num_chains: int, seed: int | np.random.SeedSequence, options: SamplerOptions,
                    nodes: Sequence[str] | str, *, progress: Callable[[Any], None] | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    backend: ClusterBackend | None = None,
                    on_result: Callable[[Trace], None] | None = None,
                    draws: Callable[[Any], None] | None = None) -> Chains:
    """Run ``num_chains`` chains of ``payload`` (an IR or compiled model) on ``nodes`` and return
    them in chain order (see the module docstring for scheduling and failure classes). Raises
    ValueError for an empty node list."""
    from exmc.nuts.api import _chain_seeds

    if backend is None:
        from exmc.nuts.pynode_backend import PynodeBackend  # only now: exmc itself needs no pynode

        backend = PynodeBackend()
    resolved = backend.resolve(nodes)
    if not resolved:
        backend.close()
        raise ValueError(f"no nodes to sample on (nodes={nodes!r})")
    coordinator = Coordinator(backend, payload, _chain_seeds(seed, num_chains), options, progress, should_stop,
                              on_result, draws)
    return coordinator.run(resolved)
