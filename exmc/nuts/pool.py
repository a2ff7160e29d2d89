"""A warm pool of chain worker processes, with cancellation and worker-death reporting.

Why a hand-rolled pool rather than ``concurrent.futures`` or ``multiprocessing.Pool``: a cancelled
call must *terminate* the running chains (an executor only drops queued tasks), a dead worker must be
traced to the chain it was running, and progress events must flow back while results are pending.

Each worker is a fresh interpreter (``python -m exmc.nuts.worker FD``) started with
``subprocess`` (fork+exec, safe from the multi-threaded rpyc node, and, unlike multiprocessing's
spawn/forkserver, it never re-imports the caller's ``__main__``) and talks over one end of a Unix
socket pair wrapped in a ``multiprocessing.connection.Connection``. The calling thread multiplexes
the sockets with ``multiprocessing.connection.wait``: results, progress events and worker deaths
(end of file on the socket) all arrive in one loop, in the calling process, without extra threads.
Passing the socket by file descriptor is POSIX-only (Linux, macOS); elsewhere use
``parallel=False`` or ``"vectorized"``.

Cancellation: the waiting loop wakes every ``POLL_INTERVAL`` seconds, so a ``KeyboardInterrupt`` or
an asynchronous exception (``PyThreadState_SetAsyncExc``, as pynode raises on a cancelled call) is
delivered promptly; the optional ``should_stop()`` callable is polled at the same rate. Either way
every worker of the pool is terminated and reaped before the exception propagates, and the pool is
rebuilt lazily on the next call. exmc never imports pynode: a node passes ``pynode.cancelled`` as
``should_stop`` (or relies on the asynchronous exception).

Output: what a chain prints in its worker arrives as ``"output"`` messages (:mod:`exmc.nuts.worker`)
and is written to ``sys.stdout``/``sys.stderr`` in the calling thread, in order: in a pynode call
that captures output, it goes home to the caller with the call's own prints.
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Sequence

import cloudpickle
import numpy as np

from exmc.errors import ValidationError
from exmc.nuts.errors import ChainFailed
from exmc.nuts.layout import groups
from exmc.nuts.progress import ProgressEvent
from exmc.nuts.sampler import SamplerOptions, preload_model_modules
from exmc.nuts.trace import Trace

logger = logging.getLogger(__name__)

# How often the waiting thread wakes to check should_stop() and receive async exceptions (s).
POLL_INTERVAL = 0.1
# Grace period for a terminated worker to exit before it is killed (s).
TERMINATE_GRACE = 2.0
# Each worker runs one chain on one core: BLAS thread pools inside workers would oversubscribe the
# machine (measured: wall times swinging up to 10x for 4 chains on 2 cores). A value the user set
# in the environment wins.
SINGLE_THREADED_BLAS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker_environment() -> dict[str, str]:
    return {**SINGLE_THREADED_BLAS, **os.environ}


class _Worker:
    """One worker process and our end of its socket pair."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "exmc.nuts.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=_worker_environment(),
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.model_key: str | None = None
        self.chain: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        """The worker's exit status once it is gone (waits up to ``TERMINATE_GRACE`` seconds)."""
        try:
            return self.process.wait(TERMINATE_GRACE)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(TERMINATE_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.conn.close()


class WorkerPool:
    """A set of warm worker processes; one run at a time (concurrent callers queue on a lock)."""

    def __init__(self, size: int) -> None:
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.grow(size)

    @property
    def size(self) -> int:
        return len(self._workers)

    def pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    def grow(self, size: int) -> None:
        """Replace workers that died while idle (e.g. killed from outside) and start new ones
        until there are at least ``size``."""
        alive = []
        for worker in self._workers:
            if worker.process.poll() is None:
                alive.append(worker)
            else:
                logger.warning("idle chain worker %d had exited (code %s); replacing it",
                               worker.pid, worker.process.returncode)
                worker.stop()
        self._workers = alive
        while len(self._workers) < size:
            self._workers.append(_Worker())

    def shutdown(self) -> None:
        """Terminate and reap every worker (idempotent; the pool can grow again afterwards)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()

    def busy(self) -> int:
        """How many workers are running a chain now (read without the run lock: a snapshot)."""
        return sum(1 for worker in list(self._workers) if worker.chain is not None)

    def run(
        self,
        payload: Any,
        seeds: Sequence[np.random.SeedSequence],
        options: SamplerOptions,
        max_workers: int,
        progress: Callable[[ProgressEvent], None] | None,
        should_stop: Callable[[], bool] | None,
        chain_ids: Sequence[int] | None = None,
        on_result: Callable[[Trace], None] | None = None,
        draws: Callable[[Any], None] | None = None,
    ) -> list[Trace]:
        """Run one chain per seed on at most ``max_workers`` workers; results in chain order.

        ``chain_ids`` numbers the chains (default ``0..len(seeds)-1``): a run over several nodes
        gives each node its share of one run's chains under their run-wide numbers, so that
        progress, errors and ``Trace.info["chain"]`` agree with a single-node run.
        ``on_result(trace)`` is called in the calling thread as each chain finishes (before the
        others end). Each trace's ``info["worker"]`` is the pid of the worker that ran it.
        ``draws(batch)`` receives each chain's sampling draws as :class:`~exmc.nuts.stream.DrawBatch`
        es while it runs.

        ``payload`` (an IR or a compiled model) travels with cloudpickle, once per worker and
        model. Raises :class:`ChainFailed` naming the chain whose worker died, re-raises a chain's
        own exception (noting the chain and the remote traceback), and raises ``InterruptedError``
        when ``should_stop()`` becomes true; in every failure case all workers are terminated,
        except for a :class:`~exmc.errors.ValidationError` (the model itself is malformed: the
        workers are healthy, so the pool keeps them once each busy one has answered).
        """
        model_bytes = cloudpickle.dumps(payload)
        key = hashlib.sha1(model_bytes).hexdigest()
        ids = list(range(len(seeds))) if chain_ids is None else [int(c) for c in chain_ids]
        if len(ids) != len(seeds) or len(set(ids)) != len(ids):
            raise ValueError(f"chain_ids must number each seed once, got {chain_ids!r} for {len(seeds)} seeds")
        while not self._lock.acquire(timeout=POLL_INTERVAL):
            if should_stop is not None and should_stop():
                raise InterruptedError("sampling cancelled while waiting for the chain pool")
        try:
            return self._run_locked(model_bytes, key, dict(zip(ids, seeds)), options, max_workers, progress,
                                    should_stop, on_result, draws)
        finally:
            self._lock.release()

    def _run_locked(self, model_bytes, key, seeds, options, max_workers, progress, should_stop, on_result, draws):
        results: dict[int, Trace] = {}
        busy: dict[Connection, _Worker] = {}
        try:
            self.grow(max_workers)
            pending = _tasks(list(seeds), options)
            idle = list(self._workers[:max_workers])
            while len(results) < len(seeds):
                while pending and idle:
                    worker, chain = idle.pop(0), pending.pop(0)
                    send = None if worker.model_key == key else model_bytes
                    task_seeds = tuple(seeds[c] for c in chain) if isinstance(chain, tuple) else seeds[chain]
                    worker.conn.send(("run", chain, key, send, task_seeds, options, progress is not None,
                                      draws is not None))
                    worker.model_key, worker.chain = key, chain
                    busy[worker.conn] = worker
                for handle in wait(list(busy), timeout=POLL_INTERVAL):
                    worker = busy[handle]
                    if self._receive(worker, results, progress, on_result, draws):
                        del busy[handle]
                        worker.chain = None
                        idle.append(worker)
                if should_stop is not None and should_stop():
                    raise InterruptedError("sampling cancelled (should_stop returned true)")
        except ValidationError:
            if self._settle(busy, results):
                logger.info("chain run refused a malformed model; the pool keeps its workers")
            else:
                self.shutdown()
            raise
        except BaseException:
            logger.info("chain run aborted; terminating %d workers", len(self._workers))
            self.shutdown()
            raise
        return [results[i] for i in seeds]

    def _settle(self, busy: dict[Connection, _Worker], results: dict[int, Trace]) -> bool:
        """After a ValidationError: wait (briefly) for the other busy workers, which fail on the
        same model as soon as they load it; True when all answered and are idle again."""
        for _ in range(int(TERMINATE_GRACE / POLL_INTERVAL)):
            for handle in wait(list(busy), timeout=POLL_INTERVAL):
                worker = busy[handle]
                try:
                    finished = self._receive(worker, results, None, None)
                except ValidationError:
                    finished = True
                except BaseException:  # noqa: BLE001 - anything else: the caller shuts the pool down
                    return False
                if finished:
                    del busy[handle]
                    worker.chain = None
            if not [w for w in busy.values() if w.chain is not None]:
                return True
        return False

    @staticmethod
    def _receive(worker: _Worker, results: dict[int, Trace], progress, on_result=None, draws=None) -> bool:
        """Handle the messages waiting on a worker's socket; True when its chain finished.
        End of file means the worker died: :class:`ChainFailed` names its chain."""
        while worker.conn.poll():
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                code = worker.exit_code()
                task = worker.chain
                if isinstance(task, tuple):  # a lockstep group: name its first unfinished chain
                    first = next(c for c in task if c not in results)
                    raise ChainFailed(first, f"worker process {worker.pid} died (exit code {code}) running "
                                             f"chains {list(task)} in lockstep") from None
                raise ChainFailed(task, f"worker process {worker.pid} died (exit code {code})") from None
            kind = message[0]
            if kind == "progress":
                if progress is not None:
                    progress(message[1])
            elif kind == "draws":
                if draws is not None:
                    draws(message[1])
            elif kind == "output":
                _write_output(message[1], message[2])
            elif kind == "done":
                trace = message[2]
                trace.info["worker"] = worker.pid
                results[message[1]] = trace
                if on_result is not None:
                    on_result(trace)
                # A lockstep group's task ends with its last chain's "done".
                return not isinstance(worker.chain, tuple) or all(c in results for c in worker.chain)
            else:
                _, chain, exc, detail = message
                if isinstance(chain, tuple):  # a lockstep group: the chain that raised, if it says
                    chain = getattr(exc, "chain", None) if getattr(exc, "chain", None) in chain else chain[0]
                worker.chain = None  # the worker survived its chain's exception and is idle
                exc.exmc_chain = chain  # travels with the exception (a run over nodes names the chain)
                exc.add_note(f"in exmc chain {chain} (worker pid {worker.pid}):\n{detail}")
                raise exc
        return False


def _write_output(stream: int, text: str) -> None:
    """A chain's printed output (worker protocol: :mod:`exmc.nuts.worker`), written to this
    thread's ``sys.stdout`` (1) or ``sys.stderr`` (2): on a pynode node serving a remote call,
    pynode's output capture sends it to the caller; otherwise it shows here. Always flushed: the
    worker already line-buffers, so text without a newline is a chain's own ``flush()`` (or the
    end of its task), which must not wait here for the next line."""
    target = sys.stdout if stream == 1 else sys.stderr
    if target is None:
        return
    target.write(text)
    target.flush()


def _tasks(chains: list[int], options: SamplerOptions) -> list[int | tuple[int, ...]]:
    """The worker tasks of a run: a chain number each, or with a lockstep layout a tuple of the
    chains of each group (:mod:`exmc.nuts.layout`; a group of one runs as a single chain)."""
    if options.layout.group == 1:
        return chains
    return [group if len(group) > 1 else group[0] for group in groups(chains, options.layout.group)]


_pool: WorkerPool | None = None
_pool_guard = threading.Lock()


def default_workers(num_chains: int | None = None) -> int:
    """The core count, capped by ``num_chains`` when given."""
    cores = os.cpu_count() or 1
    return cores if num_chains is None else max(1, min(num_chains, cores))


def get_pool() -> WorkerPool:
    """The process-wide pool (one object for the process's life; its workers start on demand and
    are re-created after a shutdown or an aborted run)."""
    global _pool
    with _pool_guard:
        if _pool is None:
            _pool = WorkerPool(0)
        return _pool


def start_pool(max_workers: int | None = None) -> WorkerPool:
    """Start the warm pool's workers ahead of the first run (default: one per core)."""
    pool = get_pool()
    pool.grow(max_workers or default_workers())
    return pool


def shutdown_pool() -> None:
    """Terminate the pool's workers; the next run starts new ones."""
    if _pool is not None:
        _pool.shutdown()


def __pynode_preload__() -> None:
    """Hook for ``pynode start --preload exmc``: warm the chain pool when a node starts, and import
    what an IR arriving from another node needs to be unpickled (the families, the transforms) and
    compiled, so the first remote call does not pay for those imports (about a second on a busy
    2-core box)."""
    start_pool()
    preload_model_modules()


atexit.register(shutdown_pool)
