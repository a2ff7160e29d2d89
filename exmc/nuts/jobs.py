"""Detached sampling runs: jobs that belong to the process that runs them, not to their caller.

A compute node runs ``start(name, ir, num_chains, options)`` (a caller reaches it with
``erpc.call(node, "exmc.nuts.jobs:start", ...)``; ``livebook_client``'s ``session.start`` does):
the sampling runs in a thread of *this* process, so it goes on when the notebook that started it
exits or its kernel restarts. Anyone may later list the jobs, follow one's progress, fetch its
result, or cancel it, by name.

State (one process-wide table ``_jobs``, name -> :class:`Job`, in start order, guarded by
``_lock``). A job's ``status`` is one of:

- ``"running"`` — its thread samples; ``progress`` holds each chain's latest event;
- ``"done"`` — ``result`` holds the ``Chains`` until fetched or evicted;
- ``"failed"`` — ``error`` holds the exception (raised again by :func:`result`);
- ``"cancelled"`` — stopped by :func:`cancel`; ``result`` holds a partial ``Chains``: every chain
  with sampling draws (running ones up to their last streamed batch, at most 0.2 s behind),
  cut to a common length, chains still in warmup left out; its ``notes`` say so;
- ``"fetched"`` / ``"evicted"`` — the result left the table (fetched by a caller, or dropped by
  the limits below, with a log line); the job's description stays.

Limits: at most ``MAX_STORED`` finished results and ``MAX_STORED_BYTES`` of their arrays are kept;
beyond either, the oldest finished result is evicted first. ``set_limits`` changes them.

Every function here returns plain data (dicts, ``Chains``) so that it travels to a caller on
another node as it is; exmc knows nothing of pynode: the thread's ``nodes=`` runs (chains over
several nodes) use pynode only through :mod:`exmc.nuts.multinode`.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Finished results kept at most (count and bytes of their arrays); the oldest goes first.
MAX_STORED = 20
MAX_STORED_BYTES = 1 << 30  # 1 GiB: a few large runs on a compute box with tens of GiB

STATUSES = ("running", "done", "failed", "cancelled", "fetched", "evicted")
_FINISHED_WITH_RESULT = ("done", "cancelled")
# A job's draws stream into ``Job.log`` as they are made (``draws()`` reads them): what lets a
# cancelled job keep its chains' completed iterations, and a notebook plot a running trace.

_lock = threading.Lock()
_jobs: dict[str, Job] = {}
_limits = {"count": MAX_STORED, "bytes": MAX_STORED_BYTES}


class Job:
    """One detached run; fields are written under ``_lock`` (``status``: see the module docstring)."""

    def __init__(self, name: str, num_chains: int, total: int, nodes: list[str] | None) -> None:
        self.name = name
        self.num_chains = num_chains
        self.total = total
        self.nodes = nodes
        self.started = time.time()
        self.finished: float | None = None
        self.status = "running"
        self.progress: dict[int, dict[str, Any]] = {}
        self.placed: dict[int, str] = {}
        self.notes: list[str] = []
        self.result: Any = None
        self.error: BaseException | None = None
        self.max_tree_depth = 0  # the run's, for the statistics of partial traces
        self.log: Any = None  # the streamed draws (exmc.nuts.stream.DrawLog) until the result leaves
        self.stop = threading.Event()
        self.ended = threading.Event()
        self.thread: threading.Thread | None = None

    def nbytes(self) -> int:
        if self.result is None:
            return 0
        return sum(np.asarray(v).nbytes for trace in self.result for v in trace.values())

    def describe(self) -> dict[str, Any]:
        done = sum(int(p.get("iteration", 0)) for p in self.progress.values())
        return {
            "name": self.name, "status": self.status, "started": self.started, "finished": self.finished,
            "chains": self.num_chains, "iterations_done": done, "iterations_total": self.num_chains * self.total,
            "nodes": self.nodes, "placed": dict(self.placed), "notes": list(self.notes),
            "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}",
        }


def set_limits(count: int | None = None, nbytes: int | None = None) -> dict[str, int]:
    """Change the eviction limits (finished results kept, bytes of their arrays); returns them.
    Raises ValueError for a negative limit."""
    with _lock:
        for key, value in (("count", count), ("bytes", nbytes)):
            if value is not None:
                if int(value) != value or value < 0:
                    raise ValueError(f"limit {key} must be a non-negative integer, got {value!r}")
                _limits[key] = int(value)
        _evict_locked()
        return dict(_limits)


def start(name: str, payload: Any, num_chains: int, options: Mapping[str, Any]) -> dict[str, Any]:
    """Start ``Sampler.sample_chains(payload, num_chains, **options)`` in a thread of this process
    as job ``name``; returns its description at once.

    ``options`` may hold ``nodes`` (chains over several nodes, coordinated from here). Raises
    ValueError when ``name`` is not a non-empty string or is taken (naming the job holding it),
    ``exmc.ValidationError`` for a malformed IR and ValueError for bad options — all before
    anything starts.
    """
    from exmc.nuts.api import Sampler, validate_payload
    from exmc.nuts.multinode import ChainPlaced, NodeLost
    from exmc.nuts.sampler import SamplerOptions
    from exmc.nuts.stream import DrawLog
    from exmc.nuts.tree import DEFAULT_MAX_TREE_DEPTH

    if not isinstance(name, str) or not name:
        raise ValueError(f"a job name must be a non-empty string, got {name!r}")
    options = dict(options)
    for key in ("progress", "should_stop"):
        if key in options:
            raise ValueError(f"a detached job sets {key!r} itself; do not pass it")
    validate_payload(payload)
    # Early ValueError for every sampler option (dense_mass, target_accept, ...), not in the thread.
    SamplerOptions(**{field.name: options[field.name] for field in dataclasses.fields(SamplerOptions)
                      if field.name in options})
    total = int(options.get("num_samples", 1000)) + int(options.get("num_warmup", 1000))
    nodes = options.get("nodes")
    job = Job(name, int(num_chains), total, None if nodes is None else list(nodes) if not isinstance(nodes, str) else [nodes])
    job.log = DrawLog()
    job.max_tree_depth = int(options.get("max_tree_depth", DEFAULT_MAX_TREE_DEPTH))

    def streamed(batch: Any) -> None:
        with _lock:
            job.log.add(batch)

    def record(event: Any) -> None:
        with _lock:
            if isinstance(event, ChainPlaced):
                job.placed[event.chain] = event.node
                job.progress.pop(event.chain, None)  # a moved chain starts again
            elif isinstance(event, NodeLost):
                job.notes.append(event.describe())
            else:
                job.progress[event.chain] = {"chain": event.chain, "iteration": event.iteration,
                                             "total": event.total, "phase": event.phase,
                                             "divergences": event.divergences, "step_size": event.step_size}

    finished: list[Any] = []

    def run() -> None:
        try:
            chains = Sampler.sample_chains(payload, num_chains, progress=record, should_stop=job.stop.is_set,
                                           on_result=finished.append, draws=streamed, **options)
        except InterruptedError:
            _finish(job, "cancelled", result=_partial(finished, job))
        except BaseException as error:  # noqa: BLE001 - kept for the caller, raised by result()
            _finish(job, "failed", error=error)
        else:
            _finish(job, "done", result=chains)

    with _lock:
        holder = _jobs.get(name)
        if holder is not None:
            raise ValueError(f"job name {name!r} is taken by a job {holder.status} since "
                             f"{time.strftime('%H:%M:%S', time.localtime(holder.started))}; choose another "
                             "or forget() it first")
        _jobs[name] = job
        job.thread = threading.Thread(target=run, name=f"exmc job {name}", daemon=True)
        job.thread.start()
        return job.describe()


def _partial(finished: list[Any], job: Job) -> Any:
    """The Chains of a cancelled job: every chain with at least one sampling draw (finished
    chains whole, running ones up to their last streamed batch, warmup-only ones left out), all
    cut to the shortest one's length so that diagnostics and ArviZ see equal chains."""
    from exmc.nuts.trace import Chains, Trace

    whole = {trace.info["chain"]: trace for trace in finished}
    with _lock:
        partial = {}
        for chain in range(job.num_chains):
            if chain in whole or job.log.count(chain) == 0:
                continue
            draws, stats = job.log.arrays(chain)
            info = {"chain": chain, "partial": True, "node": job.placed.get(chain), "deterministics": [],
                    "max_tree_depth": job.max_tree_depth}
            partial[chain] = Trace(draws, stats, info)
    kept = sorted({**partial, **whole}.items())
    if not kept:
        return Chains([], notes=job.notes + [f"partial: job {job.name!r} was cancelled before any sampling draw"])
    length = min(trace.num_samples for _, trace in kept)
    traces = []
    for chain, trace in kept:
        if trace.num_samples > length:
            trace = Trace({k: v[:length] for k, v in trace.items()}, {k: v[:length] for k, v in trace.stats.items()},
                          dict(trace.info, partial=True), None)
        traces.append(trace)
    note = (f"partial: job {job.name!r} was cancelled; chains {[c for c, _ in kept]} of {job.num_chains} "
            f"({sorted(whole)} had finished), each cut to {length} draws, the shortest one's; chains still in "
            "warmup were dropped")
    return Chains(traces, notes=job.notes + [note])


def _finish(job: Job, status: str, result: Any = None, error: BaseException | None = None) -> None:
    with _lock:
        job.status = status
        job.result = result
        job.error = error
        job.finished = time.time()
        _evict_locked()
    job.ended.set()
    logger.info("job %r %s", job.name, status)


def _evict_locked() -> None:
    stored = [job for job in _jobs.values() if job.status in _FINISHED_WITH_RESULT and job.result is not None]
    stored.sort(key=lambda job: job.finished or 0)
    total = sum(job.nbytes() for job in stored)
    while stored and (len(stored) > _limits["count"] or total > _limits["bytes"]):
        oldest = stored.pop(0)
        total -= oldest.nbytes()
        logger.warning("evicting the result of job %r (finished %s, %.1f MiB): over the limit of %d results / "
                       "%.0f MiB", oldest.name, time.strftime("%H:%M:%S", time.localtime(oldest.finished)),
                       oldest.nbytes() / 2**20, _limits["count"], _limits["bytes"] / 2**20)
        oldest.result = None
        oldest.log = None
        oldest.status = "evicted"


def _get(name: str) -> Job:
    try:
        return _jobs[name]
    except KeyError:
        raise KeyError(f"no job named {name!r} here (jobs: {list(_jobs)})") from None


def jobs() -> list[dict[str, Any]]:
    """Every job's description (running and finished), in start order."""
    with _lock:
        return [job.describe() for job in _jobs.values()]


def state(name: str) -> dict[str, Any]:
    """Job ``name``'s description plus ``progress``: each chain's latest event (a dict). Raises
    KeyError naming the known jobs."""
    with _lock:
        job = _get(name)
        return dict(job.describe(), progress=[dict(p) for _, p in sorted(job.progress.items())])


def result(name: str, timeout: float | None = None, keep: bool = False) -> Any:
    """Wait up to ``timeout`` seconds (None: until it ends) for job ``name`` and return its
    ``Chains`` (partial ones for a cancelled job); the result then leaves this process unless
    ``keep``. Raises the job's own exception for a failed job, ``TimeoutError`` when it is still
    running, ``LookupError`` when its result was already fetched or evicted, ``KeyError`` for an
    unknown name."""
    with _lock:
        job = _get(name)
    if not job.ended.wait(timeout):
        raise TimeoutError(f"job {name!r} still running after {timeout} s")
    with _lock:
        if job.status == "failed":
            raise job.error  # type: ignore[misc]
        if job.result is None:
            raise LookupError(f"the result of job {name!r} is gone ({job.status})")
        value = job.result
        if not keep:
            job.result = None
            job.log = None
            job.status = "fetched"
        return value


def draws(name: str, cursor: Mapping[int, tuple[int, int]] | None = None) -> dict[str, Any]:
    """The sampling draws of job ``name`` that a reader holding ``cursor`` has not seen:
    ``{"status", "batches": [DrawBatch, ...], "cursor"}`` (pass the returned cursor next time;
    see :meth:`exmc.nuts.stream.DrawLog.since`). Empty once the result has left this process."""
    with _lock:
        job = _get(name)
        if job.log is None:
            return {"status": job.status, "batches": [], "cursor": dict(cursor or {})}
        batches = job.log.since(dict(cursor or {}))
        new_cursor = {chain: (job.log.generation[chain], job.log.count(chain)) for chain in job.log.batches}
        return {"status": job.status, "batches": batches, "cursor": new_cursor}


def cancel(name: str) -> dict[str, Any]:
    """Ask job ``name`` to stop (its chains stop within ~0.1 s; the chains that had finished are
    kept as a partial result); returns its description. A finished job is left as it is."""
    with _lock:
        job = _get(name)
    job.stop.set()
    job.ended.wait(30)
    with _lock:
        return job.describe()


def forget(name: str) -> None:
    """Drop job ``name`` (cancelling it first if it runs) and free its name."""
    cancel(name)
    with _lock:
        _jobs.pop(name, None)
