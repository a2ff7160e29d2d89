"""One chain from start to finish: initialization, Stan's adaptive warmup, sampling.

``chain_steps`` is the whole chain as a generator of log-density requests, which
``vectorized.run_vectorized`` batches across chains; ``run_chain`` (caller's process or pool
worker) runs the same chain with transitions that evaluate the log-density themselves
(``direct=True``, the same draws bit for bit). Both take only picklable arguments.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterator, Mapping

import numpy as np

from exmc.nuts.adaptation import WelfordCovariance, WelfordVariance, WindowSchedule
from exmc.nuts.errors import ModelError, SamplerError
from exmc.nuts.init import initial_point
from exmc.nuts.layout import SINGLE_LAYOUT, Layout
from exmc.nuts.interface import CompiledModel, WithDeterministics
from exmc.nuts.metric import DenseMetric, DiagonalMetric, LowRankMetric, unit_metric
from exmc.nuts.metric_choice import AutoMetricEstimator
from exmc.nuts.stepsize import (
    DEFAULT_INITIAL_STEP_SIZE,
    DEFAULT_TARGET_ACCEPT,
    DualAveraging,
    find_initial_step_size,
)
from exmc.nuts.trace import STAT_DTYPES, Trace
from exmc.nuts.integrator import LogDensityError, drive, guarded_logp_and_grad
from exmc.nuts.tree import DEFAULT_MAX_TREE_DEPTH, transition_function, transition_kernel, transition_steps_function

logger = logging.getLogger(__name__)

#: The metrics a chain can sample with (each has ``inverse``, ``sample_momentum``, ``velocity``).
Metric = DiagonalMetric | DenseMetric | LowRankMetric


@dataclass(frozen=True)
class SamplerOptions:
    """Options shared by every chain of a run (validated on construction)."""

    num_samples: int = 1000
    num_warmup: int = 1000
    target_accept: float = DEFAULT_TARGET_ACCEPT
    max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH
    # "auto": Stan's diagonal metric, corrected by a low rank when warmup shows strong correlations
    # (exmc.nuts.metric_choice); False: always Stan's diagonal; True: always Stan's dense metric.
    dense_mass: bool | str = "auto"
    init_values: Mapping[str, Any] | None = None
    # Deterministics kept in the draws: all (True), none (False) or those named.
    keep_deterministics: bool | tuple[str, ...] = True
    # Pointwise log-likelihood of the observed rvs at every draw, computed with the chain.
    log_likelihood: bool = False
    # warmup="shared": the step size, metric and starting points every chain samples with, adapted
    # by one warmup chain (exmc.nuts.shared_warmup.Tuning); None: each chain adapts its own.
    tuning: Any = None
    # Chains alone or in lockstep groups (exmc.nuts.layout; resolved by the caller, recorded in info).
    layout: Layout = SINGLE_LAYOUT

    def __post_init__(self) -> None:
        keep = self.keep_deterministics
        if not isinstance(keep, bool):
            if isinstance(keep, str) or not all(isinstance(name, str) for name in keep):
                raise ValueError(f"keep_deterministics must be True, False or a list of names, got {keep!r}")
            object.__setattr__(self, "keep_deterministics", tuple(keep))
        if self.dense_mass not in (True, False, "auto"):
            raise ValueError(f"dense_mass must be True, False or 'auto', got {self.dense_mass!r}")
        if int(self.num_samples) != self.num_samples or self.num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {self.num_samples!r}")
        if int(self.num_warmup) != self.num_warmup or self.num_warmup < 0:
            raise ValueError(f"num_warmup must be a non-negative integer, got {self.num_warmup!r}")
        if self.tuning is not None and self.num_warmup:
            raise ValueError(f"a chain given a shared tuning samples only: num_warmup must be 0, got {self.num_warmup}")
        if not 0.0 < self.target_accept < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {self.target_accept!r}")
        if int(self.max_tree_depth) != self.max_tree_depth or self.max_tree_depth < 1:
            raise ValueError(f"max_tree_depth must be a positive integer, got {self.max_tree_depth!r}")
        if not isinstance(self.layout, Layout) or self.layout.group < 1:
            raise ValueError(f"layout must be a resolved exmc.nuts.layout.Layout, got {self.layout!r}")


class _Warmup:
    """Stan's adapter state: dual averaging plus windowed (co)variance estimation; with
    ``dense_mass="auto"`` the estimator also chooses the metric's kind (``metric_choice``)."""

    def __init__(self, model, options: SamplerOptions) -> None:
        self.schedule = WindowSchedule(options.num_warmup)
        self.mode = options.dense_mass
        if self.mode == "auto":
            self.estimator = AutoMetricEstimator(model.dim)
        else:
            self.estimator = (WelfordCovariance if self.mode else WelfordVariance)(model.dim)
        # Stan sets mu = log(10 * stepsize) from the *user's* initial step size before the heuristic
        # runs (services/sample/hmc_nuts_*_adapt.hpp), and from the heuristic's result after each
        # metric update (adapt_*_nuts.hpp).
        self.dual = DualAveraging(math.log(10.0 * DEFAULT_INITIAL_STEP_SIZE), options.target_accept)

    def adapt(self, accept_prob: float, q: np.ndarray, grad: np.ndarray, n_steps: int,
              metric: Metric) -> tuple[float, Metric | None]:
        """Learn from one warmup transition (its draw ``q``, the log-density's gradient there and
        its leapfrog steps; ``metric`` is the one in use); returns the next step size and, at a
        window end or an early switch of the automatic choice, the new metric (else ``None``)."""
        step_size = self.dual.update(accept_prob)
        iteration = self.schedule.counter
        collect, update = self.schedule.step()
        auto = self.mode == "auto"
        if auto:
            self.estimator.add_recent(q, grad)
        if collect:
            if auto:
                self.estimator.add(q, grad)
            else:
                self.estimator.add(q)
        if not update:
            if auto and (early := self.estimator.probe(iteration, n_steps)) is not None:
                return step_size, early
            return step_size, None
        inverse = self.estimator.regularized()
        if not np.all(np.isfinite(inverse)):
            raise SamplerError("numerical overflow in metric adaptation: the posterior may be improper")
        if auto:
            new: Metric = self.estimator.metric(inverse, metric, iteration)
        else:
            new = DenseMetric(inverse) if self.mode else DiagonalMetric(inverse)
        self.estimator.restart()
        return step_size, new

    def metric_info(self, metric: Metric) -> dict[str, Any]:
        """``Trace.info`` entries saying which metric the chain sampled with and why."""
        kind = "lowrank" if isinstance(metric, LowRankMetric) else "dense" if isinstance(metric, DenseMetric) else "diag"
        info: dict[str, Any] = {"metric": kind, "dense_mass": self.mode}
        if kind == "lowrank":
            info["metric_rank"] = metric.rank
        if self.mode == "auto":
            info["metric_windows"] = [choice._asdict() for choice in self.estimator.decisions]
        return info


#: What unpickling and compiling an IR needs: the families, and the compiler with its ops and
#: scipy.special. Pool workers and the node preload hook import them at start-up rather than on the
#: first task: on a busy 2-core box that is 0.5-2 s of the first call's wall time.
_MODEL_MODULES = ("exmc.dist", "exmc.model")


def preload_model_modules() -> None:
    """Import what :func:`load_model` needs for an IR (cheap once imported; import errors propagate),
    and start loading the compiled tree kernel in a background thread (:func:`_warm_tree_kernel`)."""
    global _tree_warmup
    for name in _MODEL_MODULES:
        importlib.import_module(name)
    if _tree_warmup is None:
        _tree_warmup = threading.Thread(target=_warm_tree_kernel, name="exmc-tree-warmup", daemon=True)
        _tree_warmup.start()


#: The thread of :func:`_warm_tree_kernel`, started once per process by preload_model_modules.
_tree_warmup: threading.Thread | None = None


def _warm_tree_kernel() -> None:
    """Import and load the compiled tree kernel when it is the one selected (:func:`exmc.nuts.tree.
    transition_kernel`): ~0.7 s of CPU per process (numba's import and its on-disk cache; ~20 s
    the first time on a checkout, when it compiles), paid when a pool worker or a node starts rather
    than by the first chain. In the background, so that start-up stays as short as before: a worker
    whose parent dies while it loads still sees its socket close and exits at once, and a chain that
    starts meanwhile waits for the import (Python's import lock) and numba's compiler lock. Failures
    are logged and left to the first chain, which raises them where they can be reported."""
    try:
        if transition_kernel() == "numba":
            from exmc.nuts import tree_numba

            tree_numba.warm_up()
    except Exception:  # noqa: BLE001 - the chain itself reports what is wrong
        logger.debug("tree kernel warm-up failed", exc_info=True)


def load_model(payload):
    """Turn a shipped payload into a compiled model: models pass through, IRs are compiled."""
    if isinstance(payload, CompiledModel):
        return payload
    import exmc

    return exmc.compile(payload)


def dropped_deterministics(model, keep: bool | tuple[str, ...]) -> frozenset[str]:
    """Names of ``model``'s deterministics to leave out of the draws under ``keep`` (see
    :class:`SamplerOptions`). Raises ValueError naming a kept name that is not a deterministic
    of the model."""
    dets = [name for name, _ in model.det_names] if isinstance(model, WithDeterministics) else []
    if keep is True:
        return frozenset()
    if keep is False:
        return frozenset(dets)
    unknown = [name for name in keep if name not in dets]
    if unknown:
        raise ValueError(f"keep_deterministics names {unknown}, which the model does not define as deterministics "
                         f"(it has {dets})")
    return frozenset(dets).difference(keep)


def constrained_draws(model, positions: np.ndarray, dropped: frozenset[str]) -> Mapping[str, np.ndarray]:
    """``model.to_constrained(positions)``, computing only the deterministics that are kept when
    some are dropped and the model can skip them (:class:`WithDeterministics`): a GLM's linear
    predictor, its exponential and their copies for 1000 draws of 20,000 rows cost 3-10 s and
    ~1 GB per chain (measured on the bench's Poisson GLM), only to be thrown away."""
    if dropped and isinstance(model, WithDeterministics):
        return model.to_constrained(positions, dets=[name for name, _ in model.det_names if name not in dropped])
    return model.to_constrained(positions)


#: The variables through which a user chooses BLAS's threads; pool workers start with all three at
#: 1 unless the user set them (``exmc.nuts.pool.SINGLE_THREADED_BLAS``).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """One BLAS thread in this process while the context lasts (``threadpoolctl``), unless the user
    chose the thread count through :data:`BLAS_THREAD_VARIABLES` (then nothing changes).

    Why: a chain's draws depend on how BLAS splits its sums, and pool workers run single-threaded
    BLAS, so a chain run in the caller's process with OpenBLAS's default threads gave other draws
    than the same chain in the pool (bench SV, d = 102: its low-rank metric's 102 x 102 products).
    And on a busy 2-core box those threads cost more than they save: one 102 x 102 ``eigh`` took
    0.2 s of CPU with 2 threads against 0.8 ms with one (measured 2026-12-03), 1 s of the SV
    chain's 4 s. The limit is process-wide (BLAS calls of other threads meanwhile run with it);
    chains of several threads at once share one limit, lifted when the last of them ends."""
    global _blas_users, _blas_limit
    if any(name in os.environ for name in BLAS_THREAD_VARIABLES):
        yield
        return
    with _blas_lock:
        if _blas_users == 0:
            from threadpoolctl import threadpool_limits

            _blas_limit = threadpool_limits(1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None


#: Guards the two fields below: ``_blas_users`` counts the chains inside :func:`single_threaded_blas`
#: (>= 0); ``_blas_limit`` is the active ``threadpool_limits`` while that count is positive, else None.
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit: Any = None


def run_chain(
    model: CompiledModel,
    chain: int,
    seed: np.random.SeedSequence,
    options: SamplerOptions,
    report: Callable[[int, int, int, str, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_draw: Callable[[int, np.ndarray, Mapping[str, Any]], None] | None = None,
) -> Trace:
    """Sample one chain, evaluating the log-density directly (see :func:`chain_steps`).

    Floating-point warnings of the model (overflow far out in a divergent trajectory) are silenced:
    their consequences, non-finite energies, are handled as divergences. BLAS runs single-threaded
    for the chain's duration, as in pool workers (:func:`single_threaded_blas`)."""
    with np.errstate(all="ignore"), single_threaded_blas():
        return drive(chain_steps(model, chain, seed, options, report, should_stop, on_draw, direct=True),
                     model.logp_and_grad)


def chain_steps(
    model: CompiledModel,
    chain: int,
    seed: np.random.SeedSequence,
    options: SamplerOptions,
    report: Callable[[int, int, int, str, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_draw: Callable[[int, np.ndarray, Mapping[str, Any]], None] | None = None,
    *,
    direct: bool = False,
) -> Generator[np.ndarray, tuple[float, np.ndarray], Trace]:
    """Sample one chain of ``model`` (an ``exmc.compile``d model) and return its :class:`Trace`.

    ``seed`` is this chain's own ``SeedSequence`` (spawned from the run's seed), so the draws do
    not depend on which process runs the chain. ``report(chain, iteration, total, phase,
    divergences, step_size)`` is called after every iteration (callers throttle it).
    ``should_stop()`` is polled once per iteration; when true the chain raises ``InterruptedError``.
    ``on_draw(i, q, stats)`` receives each sampling draw as it is made (unconstrained position and
    its statistics; :class:`exmc.nuts.stream.DrawBatcher` batches them for streaming).

    A generator: every leapfrog position of every trajectory is yielded and its guarded
    ``(lp, grad)`` is expected back (``integrator.drive`` answers at once; the vectorized driver
    batches the requests of all chains). Initialization and the step-size heuristic, a handful of
    evaluations, call ``model.logp_and_grad`` directly. Drivers set ``np.errstate``. With
    ``direct=True`` the transitions call it too (:func:`exmc.nuts.tree.transition_function`: the
    same draws bit for bit, without the generators' cost per leapfrog step), and the generator
    yields nothing: the sequential driver, :func:`run_chain`.

    Raises :class:`~exmc.nuts.errors.InitializationError` when no finite initial point exists,
    :class:`~exmc.nuts.errors.SamplerError` when adaptation overflows, and
    :class:`~exmc.nuts.errors.ModelError` (chain, iteration, phase) when the log-density raises an
    exception that is not a domain error; domain errors inside trajectories are divergences.
    """
    where = _Where()
    try:
        return (yield from _chain_body(model, chain, seed, options, report, should_stop, on_draw, where, direct))
    except LogDensityError as exc:
        raise ModelError(chain, where.iteration, where.phase, str(exc)) from exc.cause


class _Where:
    """Where a chain is, for :class:`ModelError`: ``phase`` is ``"initialization"`` until the first
    warmup iteration starts, then ``"warmup"`` or ``"sampling"``; ``iteration`` the 1-based
    iteration in progress (0 during initialization). Written only by the chain's own ``tick``."""

    def __init__(self) -> None:
        self.phase = "initialization"
        self.iteration = 0


def _chain_body(model, chain, seed, options, report, should_stop, on_draw, where: _Where, direct: bool):
    """The body of :func:`chain_steps` (which turns a :class:`LogDensityError` into a ModelError)."""
    dropped = dropped_deterministics(model, options.keep_deterministics)
    kernel = transition_kernel()
    nuts_transition_steps = transition_steps_function(kernel)
    nuts_transition = transition_function(kernel) if direct else None
    rng = np.random.default_rng(seed)
    logp_and_grad = model.logp_and_grad
    total = options.num_warmup + options.num_samples
    if options.tuning is None:
        q, lp, grad = initial_point(model, rng, options.init_values, chain)
        metric = unit_metric(model.dim, options.dense_mass is True)
        step_size = find_initial_step_size(logp_and_grad, metric, q, lp, grad, DEFAULT_INITIAL_STEP_SIZE, rng)
    else:  # warmup="shared": adapted by the warmup chain, start at its draw (exmc.nuts.shared_warmup)
        options.tuning.check(model.dim)
        q, metric, step_size = options.tuning.start(chain), options.tuning.metric(), options.tuning.step_size
        lp, grad = guarded_logp_and_grad(logp_and_grad, q)
    warmup = _Warmup(model, options)
    divergences = 0
    warmup_steps = 0

    def tick(iteration: int, phase: str) -> None:
        where.iteration = iteration + 1
        where.phase = "warmup" if iteration < options.num_warmup else "sampling"
        if should_stop is not None and should_stop():
            raise InterruptedError(f"chain {chain} stopped at iteration {iteration}")
        if report is not None:
            report(chain, iteration, total, phase, divergences, step_size)

    where.phase, where.iteration = ("warmup" if options.num_warmup else "sampling"), 1
    start = time.perf_counter()
    for i in range(options.num_warmup):
        if direct:
            t = nuts_transition(logp_and_grad, metric, q, lp, grad, step_size, rng, options.max_tree_depth)
        else:
            t = yield from nuts_transition_steps(metric, q, lp, grad, step_size, rng, options.max_tree_depth)
        q, lp, grad = t.q, t.lp, t.grad
        divergences += t.divergent
        warmup_steps += t.n_steps
        step_size, new_metric = warmup.adapt(t.accept_prob, q, grad, t.n_steps, metric)
        if new_metric is not None:
            metric = new_metric
            step_size = find_initial_step_size(logp_and_grad, metric, q, lp, grad, step_size, rng)
            warmup.dual.mu = math.log(10.0 * step_size)
            warmup.dual.restart()
        tick(i + 1, "warmup")
    if options.num_warmup:
        step_size = warmup.dual.final()
    warmup_seconds = time.perf_counter() - start
    warmup_divergences = divergences

    start = time.perf_counter()
    n = options.num_samples
    positions = np.empty((n, model.dim))
    stats = {name: np.empty(n, dtype=dtype) for name, dtype in STAT_DTYPES.items()}
    divergences = 0
    for i in range(n):
        if direct:
            t = nuts_transition(logp_and_grad, metric, q, lp, grad, step_size, rng, options.max_tree_depth)
        else:
            t = yield from nuts_transition_steps(metric, q, lp, grad, step_size, rng, options.max_tree_depth)
        q, lp, grad = t.q, t.lp, t.grad
        positions[i] = q
        stats["lp"][i] = lp
        stats["accept_prob"][i] = t.accept_prob
        stats["step_size"][i] = step_size
        stats["tree_depth"][i] = t.tree_depth
        stats["n_steps"][i] = t.n_steps
        stats["divergent"][i] = t.divergent
        stats["energy"][i] = t.energy
        divergences += t.divergent
        if on_draw is not None:
            on_draw(i, q, {name: column[i] for name, column in stats.items()})
        tick(options.num_warmup + i + 1, "sampling")
    sampling_seconds = time.perf_counter() - start

    draws = {name: np.asarray(value) for name, value in constrained_draws(model, positions, dropped).items()
             if name not in dropped}
    info = {
        "chain": chain,
        "seed": seed.entropy,
        "spawn_key": seed.spawn_key,
        "step_size": step_size,
        "inverse_metric": metric.inverse,
        "warmup_seconds": warmup_seconds,
        "sampling_seconds": sampling_seconds,
        "num_warmup": options.num_warmup,
        "warmup_steps": warmup_steps,
        "warmup_divergences": warmup_divergences,
        "max_tree_depth": options.max_tree_depth,
        # Which implementation ran the transitions (exmc.nuts.tree.TREE_ENV): "numba" or "numpy".
        "tree_kernel": kernel,
        "grad_kernel": getattr(model, "grad_kernel", None),  # exmc.accel: "numba"/"numpy" (None: not exmc's)
        "layout": options.layout.kind,
        "layout_reason": options.layout.reason,
        # Which recorded variables are deterministics (the rest are free rvs): displays plot the
        # free ones by default.
        "deterministics": [name for name, _ in model.det_names if name not in dropped]
        if isinstance(model, WithDeterministics) else [],
        **warmup.metric_info(metric),
    }
    if options.layout.group > 1:  # run_vectorized names the whole group; a group of one runs alone
        info["lockstep_chains"] = [chain]
    log_likelihood = None
    if options.log_likelihood:
        from exmc.loglik import pointwise_log_likelihood

        log_likelihood = pointwise_log_likelihood(model, positions)
    return Trace(draws, stats, info, unconstrained=positions, log_likelihood=log_likelihood)
