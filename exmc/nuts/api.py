"""The public entry points: ``Sampler.sample`` (one chain) and ``Sampler.sample_chains``."""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from exmc.nuts import pool as pool_module
from exmc.nuts.layout import Layout, choose_layout, groups
from exmc.nuts.progress import ProgressEvent, Throttle
from exmc.nuts.sampler import SamplerOptions, load_model, run_chain
from exmc.nuts.stepsize import DEFAULT_TARGET_ACCEPT
from exmc.nuts.stream import draw_hook
from exmc.nuts.trace import Chains, Trace
from exmc.nuts.tree import DEFAULT_MAX_TREE_DEPTH

logger = logging.getLogger(__name__)


def validate_payload(model) -> None:
    """Run the IR's whole-model checks now (compiled models pass through): the ValidationError
    reaches the caller before any worker or node sees the model."""
    from exmc.ir import IR

    if isinstance(model, IR):
        from exmc.analysis import analyse

        analyse(model)


def _chain_seeds(seed: int | np.random.SeedSequence, num_chains: int) -> list[np.random.SeedSequence]:
    """Per-chain streams: ``SeedSequence(seed).spawn(num_chains)``, independent of where chains run."""
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return root.spawn(num_chains)


def _source_ir(model):
    """The IR a model payload comes from (an IR itself, or a compiled model's), else ``None``."""
    from exmc.ir import IR

    if isinstance(model, IR):
        return model
    ir = getattr(model, "ir", None)
    return ir if isinstance(ir, IR) else None


def _check_log_likelihood(model, ir) -> None:
    if ir is None:
        raise ValueError("log_likelihood=True needs a model built as an exmc IR (or compiled from one), "
                         f"not a {type(model).__name__}")
    if not any(node.kind == "obs" for node in ir.nodes):
        raise ValueError("log_likelihood=True: the model observes no rv (there is no likelihood)")


def _tuning(warmup):
    """``None`` for ``warmup="own"``, the Tuning itself for one; ValueError for anything else."""
    from exmc.nuts.shared_warmup import WARMUP_CHOICES, Tuning

    if isinstance(warmup, Tuning):
        return warmup
    if isinstance(warmup, str) and warmup == "own":
        return None
    raise ValueError(f"warmup must be one of {WARMUP_CHOICES} or an exmc.nuts.shared_warmup.Tuning, got {warmup!r}")


class Sampler:
    """Stan's adaptive NUTS for an exmc IR or compiled model. The metric is chosen automatically
    by default (``dense_mass="auto"``: Stan's diagonal one, with a low-rank correction when warmup
    shows strong correlations, see :mod:`exmc.nuts.metric_choice`); ``dense_mass=False`` always
    uses Stan's diagonal metric and ``True`` Stan's dense one.

    ``model`` arguments accept an IR (compiled with ``exmc.compile``) or an object that already has
    the compiled-model interface (``dim``, ``free_names``, ``logp_and_grad``, ``to_constrained``,
    ``to_unconstrained``, and ``det_names`` when ``to_constrained`` also returns deterministics:
    the Protocols of :mod:`exmc.nuts.interface`).
    """

    @staticmethod
    def sample(
        model,
        init_values: Mapping[str, Any] | None = None,
        num_samples: int = 1000,
        num_warmup: int = 1000,
        seed: int = 0,
        target_accept: float = DEFAULT_TARGET_ACCEPT,
        max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH,
        dense_mass: bool | str = "auto",
        progress: Callable[[ProgressEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        log_likelihood: bool = False,
    ) -> Trace:
        """One chain in the calling process: ``sample_chains`` with one chain and ``parallel=False``,
        so its draws equal chain 0 of ``sample_chains`` with the same seed. Raises ``ValueError`` on bad options, ``InitializationError``, ``SamplerError``,
        ``InterruptedError`` when ``should_stop()`` turns true."""
        chains = Sampler.sample_chains(
            model, 1, init_values, num_samples, num_warmup, seed, target_accept, max_tree_depth, dense_mass,
            parallel=False, progress=progress, should_stop=should_stop, log_likelihood=log_likelihood,
        )
        return chains[0]

    @staticmethod
    def sample_chains(
        model,
        num_chains: int,
        init_values: Mapping[str, Any] | None = None,
        num_samples: int = 1000,
        num_warmup: int = 1000,
        seed: int = 0,
        target_accept: float = DEFAULT_TARGET_ACCEPT,
        max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH,
        dense_mass: bool | str = "auto",
        parallel: bool | str = True,
        max_workers: int | None = None,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        keep_deterministics: bool | Sequence[str] = True,
        nodes: Sequence[str] | str | None = None,
        backend: Any = None,
        on_result: Callable[[Trace], None] | None = None,
        draws: Callable[[Any], None] | None = None,
        log_likelihood: bool = False,
        warmup: Any = "own",
        layout: str | int = "auto",
    ) -> Chains:
        """Run ``num_chains`` chains and return them as :class:`Chains`.

        ``parallel``: ``True`` runs chains in the warm process pool (at most ``max_workers`` at a
        time, default ``min(num_chains, cores)``); ``False`` runs them one after another in the
        calling process; ``"vectorized"`` runs them together in the calling process with one
        batched gradient call per leapfrog step. The pool and the sequential mode give identical
        draws for a seed whatever ``max_workers`` is; the vectorized mode uses the same per-chain
        random streams, but batched floating-point evaluation may differ in the last bits, so its
        draws agree in distribution (bit for bit when the model's batched and single evaluations
        agree exactly).

        ``keep_deterministics``: which deterministic nodes the draws carry next to the free rvs:
        all of them (``True``), none (``False``: a regression's linear predictor over thousands of
        rows is most of a run's memory and transfer), or those named (a ``ValueError`` names any
        that is not a deterministic of the model, before sampling starts).

        ``log_likelihood``: also compute every observation's log-likelihood at every draw, where
        the chain runs (``Trace.log_likelihood``; exported as ArviZ's ``log_likelihood`` group for
        ``az.loo`` / ``az.compare``). Needs a model built as an IR with at least one observation
        (``ValueError`` otherwise, before sampling).

        ``progress(event)`` receives :class:`ProgressEvent`s in the calling process (≤ ~10/s per
        chain). ``should_stop()`` is polled ~10 times a second; when it returns true the run stops
        with ``InterruptedError``. An asynchronous exception or ``KeyboardInterrupt`` in the calling
        thread also stops it; in both cases pool workers are terminated (the pool restarts lazily).

        Concurrent calls from several threads share the pool one run at a time. An exception
        raised by ``progress`` aborts the run like any other.

        ``nodes``: run the chains on other nodes' warm pools instead (names of pynode nodes
        running exmc, or ``"all"``: every connected node that has exmc loaded); this process must
        be a pynode node. Draws are identical to a local run with the same seed; each
        ``Trace.info`` records its ``node`` and ``worker``; a node lost mid-run has its unfinished
        chains rerun on the others. See :mod:`exmc.nuts.multinode` for the scheduling, failover
        and failure classes; ``backend`` replaces the pynode transport (an
        :class:`exmc.nuts.multinode.ClusterBackend`).

        ``layout``: chains alone (``"single"``) or in lockstep groups of that many chains with
        one batched gradient per step (an int; chains ``c`` with the same ``c // layout`` share a
        process), see :mod:`exmc.nuts.layout`. ``"auto"`` makes one group per core when the
        model holds a large design and every core has at least two chains; else single chains. Draws
        are identical between the pool and the sequential mode for a layout; two layouts differ
        in the last bits of the batched products, hence in their draws. ``Trace.info`` records
        ``layout`` and ``layout_reason``. ``parallel="vectorized"`` is one group of all chains;
        ``nodes=`` runs single chains unless ``layout`` asks otherwise.

        ``draws(batch)`` receives the sampling draws of every chain as they are made, as
        :class:`exmc.nuts.stream.DrawBatch` es (at most every 0.2 s per chain; not with
        ``parallel="vectorized"``, which raises ``ValueError``).

        ``warmup``: ``"own"`` (Stan's scheme: every chain adapts its own step size and metric) or
        ``"shared"`` (eXMC's: one warmup chain adapts, then every chain only samples with its
        step size and metric, from its own draw of that chain; with ``nodes``, on the nodes): see
        :mod:`exmc.nuts.shared_warmup` for what it costs in checking power, and
        ``docs/sampler.md`` for when it pays. A :class:`~exmc.nuts.shared_warmup.Tuning` reuses
        one (``num_warmup`` is then ignored).

        ``on_result(trace)`` is called in the calling thread as each chain finishes (a detached job
        keeps the finished chains of a run that is then cancelled).

        An IR is validated here, in the calling process, before any chain is dispatched: a
        malformed model raises :class:`exmc.ValidationError` at once and never costs the pool its
        workers.

        Raises ``ValueError`` on bad options, :class:`~exmc.nuts.errors.ChainFailed` naming the
        chain whose worker died, and a chain's own exception (e.g. ``InitializationError``).
        """
        if int(num_chains) != num_chains or num_chains < 1:
            raise ValueError(f"num_chains must be a positive integer, got {num_chains!r}")
        ir = _source_ir(model)
        if log_likelihood:
            _check_log_likelihood(model, ir)
        if parallel == "vectorized" and not (isinstance(warmup, str) and warmup == "own"):
            raise ValueError(f"warmup={warmup!r} is not supported with parallel='vectorized' (its lockstep chains "
                             "adapt together); use parallel=True")
        if isinstance(warmup, str) and warmup == "shared":
            from exmc.nuts.shared_warmup import sample_shared

            def run(chains: int, **phase: Any) -> Chains:
                return Sampler.sample_chains(
                    model, chains, init_values, target_accept=target_accept, max_tree_depth=max_tree_depth,
                    dense_mass=dense_mass, parallel=parallel, max_workers=max_workers,
                    keep_deterministics=keep_deterministics, nodes=nodes, backend=backend,
                    log_likelihood=log_likelihood, layout=layout, **phase)

            SamplerOptions(num_samples, num_warmup, target_accept, max_tree_depth, dense_mass)  # early errors
            return sample_shared(run, num_chains, num_samples, num_warmup, seed, progress, should_stop,
                                 on_result=on_result, draws=draws)
        tuning = _tuning(warmup)
        if parallel == "vectorized":
            resolved = Layout(int(num_chains), "parallel='vectorized'")
        elif tuning is not None:  # the sampling phase of a shared warmup: single chains take its tuning
            resolved = choose_layout(model, int(num_chains), "single")
        else:
            resolved = choose_layout(model, int(num_chains), "single" if nodes is not None and layout == "auto"
                                     else layout)
        options = SamplerOptions(num_samples, 0 if tuning is not None else num_warmup, target_accept, max_tree_depth,
                                 dense_mass, init_values, keep_deterministics, log_likelihood=bool(log_likelihood),
                                 tuning=tuning, layout=resolved)
        validate_payload(model)
        if nodes is not None:
            from exmc.nuts.multinode import sample_on_nodes

            chains = sample_on_nodes(model, num_chains, seed, options, nodes, progress=progress,
                                     should_stop=should_stop, backend=backend, on_result=on_result, draws=draws)
            return Chains(chains, notes=chains.notes, ir=ir)
        seeds = _chain_seeds(seed, num_chains)
        logger.debug("sampling %d chains (parallel=%r, seed=%r): %s", num_chains, parallel, seed, options)
        if parallel == "vectorized":
            from exmc.nuts.vectorized import run_vectorized

            if draws is not None:
                raise ValueError("draws= (streaming) is not supported with parallel='vectorized'")
            traces = run_vectorized(load_model(model), seeds, options, progress, should_stop)
            for trace in traces if on_result is not None else ():
                on_result(trace)
        elif parallel is True:
            workers = max_workers or pool_module.default_workers(num_chains)
            if workers < 1:
                raise ValueError(f"max_workers must be positive, got {max_workers!r}")
            traces = pool_module.get_pool().run(model, seeds, options, workers, progress, should_stop,
                                                on_result=on_result, draws=draws)
        elif parallel is False:
            model = load_model(model)
            traces = []
            for group in groups(range(num_chains), resolved.group):
                if len(group) > 1:  # a lockstep group, as a pool worker runs it
                    from exmc.nuts.vectorized import run_vectorized

                    hooks = None if draws is None else [draw_hook(draws, model, c, options) for c in group]
                    done = run_vectorized(model, [seeds[c] for c in group], options, progress, should_stop,
                                          chain_ids=group, on_draws=hooks)
                else:
                    (chain,) = group
                    report = Throttle(progress) if progress is not None else None
                    on_draw = None if draws is None else draw_hook(draws, model, chain, options)
                    done = [run_chain(model, chain, seeds[chain], options, report, should_stop, on_draw)]
                for trace in done:
                    traces.append(trace)
                    if on_result is not None:
                        on_result(trace)
        else:
            raise ValueError(f"parallel must be True, False or 'vectorized', got {parallel!r}")
        return Chains(traces, ir=ir)

    @staticmethod
    def start_pool(max_workers: int | None = None) -> None:
        """Start the warm worker pool now (e.g. when a node preloads exmc) instead of on first use."""
        pool_module.start_pool(max_workers)

    @staticmethod
    def shutdown_pool() -> None:
        """Terminate the pool's workers (the next parallel run starts a new pool)."""
        pool_module.shutdown_pool()
