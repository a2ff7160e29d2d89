"""Detached sampling runs: jobs that belong to the node that runs them, not to their caller.

A caller reaches these functions with ``erpc.call(node, "exmc.nuts.jobs:start", ...)``
(``livebook_client``'s ``session.start`` does): the sampling runs in a pynode process of *this*
node, so it goes on when the notebook that started it exits or its kernel restarts. Anyone may
later list the jobs, follow one's progress, fetch its result, or cancel it, by name. The process
calling them must be a pynode node (pynode's ``NodeNotStarted`` otherwise); this module imports
pynode only when one of them runs (exmc itself never needs pynode).

Processes and names (Erlang's way, on this node):

- **a job is a process** (``pynode.spawn``) registered as ``JOB_PREFIX + name``
  (``"exmc.job:radon-v2"``) while it runs. It samples in its own thread with
  ``Sampler.sample_chains``, traps exits, and between sampling steps (the sampler's
  ``should_stop``, polled about every 0.05-0.1 s) answers the requests in its mailbox (its state,
  its draws). An exit signal (``pynode.exit(pid, reason)``, any reason but ``"kill"``) cancels
  it: it keeps its draws so far as a partial result. When the sampling ends, the job hands its
  outcome to the keeper and ends (its name goes with it);
- **the keeper** is a process registered as ``KEEPER`` (``"exmc.jobs"``), started on first use.
  It starts every job (so that one thread hands out names), monitors each, and keeps the
  finished ones' results under the limits below. A job process that ends without handing over
  (``exit(pid, "kill")``, a crash) is seen by its monitor: the job becomes ``"failed"`` with
  the exit reason. A keeper that is itself killed loses the finished results it held; the next
  one (started on the next use) adopts the jobs still running, by their registered names, and
  a job hands its outcome to whichever keeper is registered when it ends (which takes it even
  when it never adopted the job: one that ended as that keeper started, before it could ask).

Requests (wire format, local messages): a caller monitors the process it asks and sends
``(CALL, ref, reply_to, request)``; the answer is ``(ref, ("ok", value))`` or
``(ref, ("error", exception))``, and a ``DOWN`` of that monitor means the process ended before
answering (the caller then asks the keeper, which holds the job by then) — Erlang's
``gen_server:call``. Requests of a job: ``("state",)``, ``("draws", cursor)``. Of the keeper:
``("start", name, payload, num_chains, options, meta)``, ``("list",)``, ``("state", name)``,
``("draws", name, cursor)``, ``("result", name, keep)``, ``("forget", name)``,
``("limits", count, nbytes)``; and the job's cast ``(FINISHED, name, outcome)`` (``outcome``:
its final :class:`Job`). ``meta`` of a start is a dict: ``total`` (iterations per chain,
warmup included), ``nodes`` (the list of nodes, or None), ``max_tree_depth`` (for the
statistics of partial traces) and ``leader`` (the pid the job's output goes to, or None). A new job's
start: the keeper spawns it, the job traps exits and sends ``(READY, its_pid)`` to the keeper,
which only then registers its name (so every exit signal sent by name finds it trapping: a
cancel, not a kill) and sends it ``GO``.

A job's ``status`` is one of:

- ``"running"`` — its process samples; ``progress`` holds each chain's latest event;
- ``"done"`` — the keeper holds its ``Chains`` until fetched or evicted;
- ``"failed"`` — ``error`` holds the exception (raised again by :func:`result`);
- ``"cancelled"`` — stopped by :func:`cancel`; its result is a partial ``Chains``: every chain
  with sampling draws (running ones up to their last streamed batch, at most 0.2 s behind),
  cut to a common length, chains still in warmup left out; its ``notes`` say so;
- ``"fetched"`` / ``"evicted"`` — the result left the node (fetched by a caller, or dropped by
  the limits below, with a log line); the job's description stays.

Limits: at most ``MAX_STORED`` finished results and ``MAX_STORED_BYTES`` of their arrays are kept;
beyond either, the oldest finished result is evicted first. ``set_limits`` changes them.

A job's prints go to this node's output (a detached run has no caller to send them to), unless
it was started with ``follow_output`` (an attached run someone watches): then to the caller.
Every function here returns plain data (dicts, ``Chains``) so that it travels to a caller on
another node as it is.
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

KEEPER = "exmc.jobs"
JOB_PREFIX = "exmc.job:"
CALL = "exmc.jobs.call"
FINISHED = "exmc.jobs.finished"
GO = "exmc.jobs.go"
READY = "exmc.jobs.ready"

# How long a request waits for its answer (s). A job answers between sampling steps (every
# 0.05-0.1 s); this covers a loaded box and stays below livebook_client's 10 s call deadline.
ANSWER_TIMEOUT = 8.0
# How often a sampling job looks at its mailbox at most (s): bounds the latency of its answers
# and of a cancel, and keeps a fast sequential chain's per-iteration cost to a clock read.
SERVE_INTERVAL = 0.05
# How long cancel() waits for the job to stop (s): chains stop within ~0.1 s; a run over nodes
# waits for its shares' cancellation.
CANCEL_WAIT = 30.0


class JobGone(Exception):
    """The process asked ended before it answered (internal: the caller asks the keeper)."""


# --- the caller's side: requests to a job or to the keeper -------------------------------------

def _call(pid: Any, request: tuple, timeout: float = ANSWER_TIMEOUT) -> Any:
    import pynode

    ref = pynode.monitor(pid)
    try:
        pynode.send(pid, (CALL, ref, pynode.self_pid(), request))
        try:
            reply = pynode.receive(timeout, match=lambda m: isinstance(m, tuple) and (
                (len(m) == 2 and m[0] == ref) or (len(m) == 4 and m[0] == "DOWN" and m[1] == ref)))
        except TimeoutError:
            raise TimeoutError(f"{pid!r} did not answer {request[0]!r} within {timeout} s") from None
    finally:
        pynode.demonitor(ref, flush=True)
    if reply[0] == "DOWN":
        raise JobGone(f"{pid!r} ended ({reply[3]!r}) before answering")
    kind, value = reply[1]
    if kind == "error":
        raise value
    return value


_start_lock = threading.Lock()


def _keeper() -> Any:
    """The keeper's pid, spawning it on first use (from a thread of its own, so that it and the
    jobs it starts have no group leader: their output stays on this node)."""
    import pynode
    from pynode import Node

    pid = pynode.whereis(KEEPER)
    if pid is not None:
        return pid
    with _start_lock:
        pid = pynode.whereis(KEEPER)
        if pid is None:
            box: list[Any] = []

            def spawn() -> None:
                try:
                    started = pynode.spawn(Node.self(), _keeper_main)
                    pynode.register(KEEPER, started)
                    box.append(started)
                except BaseException as error:  # noqa: BLE001 - raised again in the caller
                    box.append(error)

            thread = threading.Thread(target=spawn, name="exmc jobs keeper start")
            thread.start()
            thread.join()
            if isinstance(box[0], BaseException):
                raise box[0]
            pid = box[0]
        return pid


def _ask_keeper(request: tuple) -> Any:
    try:
        return _call(_keeper(), request)
    except JobGone:  # the keeper itself ended (a bug): a new one knows no job
        return _call(_keeper(), request)


def _ask_job(name: str, request: tuple) -> Any:
    """Ask the running job ``name``; once it has ended (or for an unknown name), the keeper."""
    import pynode

    pid = pynode.whereis(JOB_PREFIX + name) if isinstance(name, str) and name else None
    if pid is not None:
        try:
            return _call(pid, request)
        except JobGone:
            pass
    return _ask_keeper((request[0], name) + request[1:])


# --- the public functions ----------------------------------------------------------------------

def set_limits(count: int | None = None, nbytes: int | None = None) -> dict[str, int]:
    """Change the eviction limits (finished results kept, bytes of their arrays); returns them.
    Raises ValueError for a negative limit."""
    for key, value in (("count", count), ("bytes", nbytes)):
        if value is not None and (int(value) != value or value < 0):
            raise ValueError(f"limit {key} must be a non-negative integer, got {value!r}")
    return _ask_keeper(("limits", count, nbytes))


def start(name: str, payload: Any, num_chains: int, options: Mapping[str, Any],
          follow_output: bool = False) -> dict[str, Any]:
    """Start ``Sampler.sample_chains(payload, num_chains, **options)`` as job ``name``, a process
    of this node registered as ``JOB_PREFIX + name``; returns its description at once.

    ``follow_output``: the job's prints (a Custom logp's, its chain workers') go to the group
    leader of the call that started it (``pynode.group_leader()``: the caller's console, for
    an *attached* run that someone watches, as ``session.sample(stream=True)``); should that
    caller go, they are written on this node. Without it they are written on this node.

    ``options`` may hold ``nodes`` (chains over several nodes, coordinated from here) and
    ``warmup``. With ``parallel="vectorized"`` no draws stream (:func:`draws` stays empty and a
    cancelled job keeps no chain): the vectorized driver streams none. Raises ValueError when
    ``name`` is not a non-empty string or is taken (naming the job holding it),
    ``exmc.ValidationError`` for a malformed IR and ValueError for bad options (an unknown one,
    one the job sets itself, a bad value) — all before anything starts.
    """
    from exmc.nuts.api import validate_payload
    from exmc.nuts.sampler import SamplerOptions
    from exmc.nuts.tree import DEFAULT_MAX_TREE_DEPTH

    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"a job name must be a non-empty string without surrounding spaces, got {name!r}")
    try:  # as sample_chains checks it (which the job would do only once started)
        whole = int(num_chains) == num_chains and num_chains >= 1
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise ValueError(f"num_chains must be a positive integer, got {num_chains!r}")
    options = dict(options)
    _check_options(options)
    validate_payload(payload)
    # Early ValueError for every sampler option (dense_mass, target_accept, ...), not in the job.
    SamplerOptions(**{field.name: options[field.name] for field in dataclasses.fields(SamplerOptions)
                      if field.name in options})
    nodes = options.get("nodes")
    meta = {
        "total": int(options.get("num_samples", 1000)) + int(options.get("num_warmup", 1000)),
        "nodes": None if nodes is None else [nodes] if isinstance(nodes, str) else list(nodes),
        "max_tree_depth": int(options.get("max_tree_depth", DEFAULT_MAX_TREE_DEPTH)),
        "leader": _caller_leader() if follow_output else None,  # a pid of the caller's node, or None
    }
    return _ask_keeper(("start", name, payload, int(num_chains), options, meta))


# The sample_chains arguments a job passes itself (its callbacks).
_JOB_SETS = ("progress", "should_stop", "on_result", "draws")


def _check_options(options: Mapping[str, Any]) -> None:
    """ValueError, naming it, for an option ``sample_chains`` would refuse only in the job."""
    import inspect

    from exmc.nuts.api import Sampler, _tuning

    for key in _JOB_SETS:
        if key in options:
            raise ValueError(f"a detached job sets {key!r} itself; do not pass it")
    known = [p for p in inspect.signature(Sampler.sample_chains).parameters if p not in ("model", "num_chains")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown sampler option(s) {unknown} (known: {[k for k in known if k not in _JOB_SETS]})")
    warmup = options.get("warmup", "own")
    if not (isinstance(warmup, str) and warmup == "shared"):
        _tuning(warmup)
    parallel = options.get("parallel", True)
    if not (parallel is True or parallel is False or (isinstance(parallel, str) and parallel == "vectorized")):
        raise ValueError(f"parallel must be True, False or 'vectorized', got {parallel!r}")


def _caller_leader() -> Any:
    import pynode

    return pynode.group_leader()


def jobs() -> list[dict[str, Any]]:
    """Every job's description (running and finished), in start order."""
    rows = []
    for name, described in _ask_keeper(("list",)):
        if described["status"] == "running":
            try:
                described = _ask_job(name, ("state",))
                described.pop("progress", None)
            except (TimeoutError, KeyError):
                pass  # busy or just forgotten: its last known description
        rows.append(described)
    return rows


def state(name: str) -> dict[str, Any]:
    """Job ``name``'s description plus ``progress``: each chain's latest event (a dict). Raises
    KeyError naming the known jobs."""
    return _ask_job(name, ("state",))


def result(name: str, timeout: float | None = None, keep: bool = False) -> Any:
    """Wait up to ``timeout`` seconds (None: until it ends) for job ``name`` and return its
    ``Chains`` (partial ones for a cancelled job); the result then leaves this node unless
    ``keep``. Raises the job's own exception for a failed job, ``TimeoutError`` when it is still
    running, ``LookupError`` when its result was already fetched or evicted, ``KeyError`` for an
    unknown name."""
    import pynode

    pid = pynode.whereis(JOB_PREFIX + name) if isinstance(name, str) and name else None
    if pid is not None:
        ref = pynode.monitor(pid)
        try:
            pynode.receive(timeout, match=lambda m: isinstance(m, tuple) and len(m) == 4 and m[0] == "DOWN"
                           and m[1] == ref)
        except TimeoutError:
            pynode.demonitor(ref, flush=True)
            raise TimeoutError(f"job {name!r} still running after {timeout} s") from None
    return _ask_keeper(("result", name, bool(keep)))


def draws(name: str, cursor: Mapping[int, tuple[int, int]] | None = None) -> dict[str, Any]:
    """The sampling draws of job ``name`` that a reader holding ``cursor`` has not seen:
    ``{"status", "batches": [DrawBatch, ...], "cursor"}`` (pass the returned cursor next time;
    see :meth:`exmc.nuts.stream.DrawLog.since`). Empty once the result has left this node."""
    return _ask_job(name, ("draws", dict(cursor or {})))


def cancel(name: str) -> dict[str, Any]:
    """Stop job ``name`` with an exit signal (its chains stop within ~0.1 s; what they had drawn
    is kept as a partial result); returns its description once it has stopped. A finished job
    is left as it is. Raises KeyError for an unknown name."""
    import pynode

    pid = pynode.whereis(JOB_PREFIX + name) if isinstance(name, str) and name else None
    if pid is not None:
        ref = pynode.monitor(pid)
        pynode.exit(pid, "cancel")
        try:
            pynode.receive(CANCEL_WAIT, match=lambda m: isinstance(m, tuple) and len(m) == 4 and m[0] == "DOWN"
                           and m[1] == ref)
        except TimeoutError:
            pynode.demonitor(ref, flush=True)
            logger.warning("job %r did not stop within %s s of its cancel", name, CANCEL_WAIT)
    described = _ask_keeper(("state", name))
    described.pop("progress", None)
    return described


def forget(name: str) -> None:
    """Drop job ``name`` (cancelling it first if it runs) and free its name."""
    cancel(name)
    _ask_keeper(("forget", name))


# --- a job's process ---------------------------------------------------------------------------

class Job:
    """A job's state, owned by its process's thread (no lock: nothing else touches it); the
    keeper keeps the final copy and alone changes it after the hand-over. ``status``: see the
    module docstring; ``progress``: chain -> its latest event as a dict; ``placed``: chain ->
    the node it runs on (runs over nodes); ``notes``: lost nodes, said as the run says them;
    ``result``: the ``Chains`` while ``status`` is ``"done"``/``"cancelled"`` and the result is
    on this node, else None; ``error``: the exception of a ``"failed"`` job, else None;
    ``log``: the streamed draws, None once the result left the node (fetched, evicted) or the
    process died; ``stop``: an exit signal asked it to stop (the sampler's ``should_stop``);
    ``_served``: when :meth:`serve` last read the mailbox (``time.monotonic``)."""

    def __init__(self, name: str, num_chains: int, meta: Mapping[str, Any]) -> None:
        from exmc.nuts.stream import DrawLog

        self.name = name
        self.num_chains = num_chains
        self.total = int(meta["total"])
        self.nodes = meta["nodes"]
        self.max_tree_depth = int(meta["max_tree_depth"])  # the run's, for the statistics of partial traces
        self.started = time.time()
        self.finished: float | None = None
        self.status = "running"
        self.progress: dict[int, dict[str, Any]] = {}
        self.placed: dict[int, str] = {}
        self.notes: list[str] = []
        self.result: Any = None
        self.error: BaseException | None = None
        self.log: Any = DrawLog()  # the streamed draws until the result leaves the node
        self.stop = False
        self._served = 0.0

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

    def state(self) -> dict[str, Any]:
        return dict(self.describe(), progress=[dict(p) for _, p in sorted(self.progress.items())])

    def draws_since(self, cursor: Mapping[int, tuple[int, int]]) -> dict[str, Any]:
        if self.log is None:
            return {"status": self.status, "batches": [], "cursor": dict(cursor)}
        batches = self.log.since(dict(cursor))
        new_cursor = {chain: (self.log.generation[chain], self.log.count(chain)) for chain in self.log.batches}
        return {"status": self.status, "batches": batches, "cursor": new_cursor}

    def record(self, event: Any) -> None:
        """The sampler's progress callback."""
        from exmc.nuts.multinode import ChainPlaced, NodeLost

        if isinstance(event, ChainPlaced):
            self.placed[event.chain] = event.node
            self.progress.pop(event.chain, None)  # a moved chain starts again
        elif isinstance(event, NodeLost):
            self.notes.append(event.describe())
        else:
            self.progress[event.chain] = {"chain": event.chain, "iteration": event.iteration, "total": event.total,
                                          "phase": event.phase, "divergences": event.divergences,
                                          "step_size": event.step_size}

    def serve(self) -> bool:
        """The sampler's ``should_stop``: answer the requests waiting in the mailbox (at most
        every SERVE_INTERVAL s); True once an exit signal asked the job to stop."""
        import pynode

        now = time.monotonic()
        if now - self._served < SERVE_INTERVAL:
            return self.stop
        self._served = now
        while True:
            try:
                message = pynode.receive(0, match=_for_a_job)
            except TimeoutError:
                return self.stop
            if message[0] == "EXIT":
                logger.info("job %r asked to stop by %r (%r)", self.name, message[1], message[2])
                self.stop = True
                continue
            _, ref, reply_to, request = message
            try:
                if request[0] == "state":
                    answer: tuple = ("ok", self.state())
                elif request[0] == "draws":
                    answer = ("ok", self.draws_since(request[1]))
                else:
                    answer = ("error", ValueError(f"job {self.name!r}: unknown request {request[0]!r}"))
            except Exception as error:  # noqa: BLE001 - the caller gets it
                answer = ("error", error)
            pynode.send(reply_to, (ref, answer))


def _for_a_job(message: Any) -> bool:
    return isinstance(message, tuple) and (
        (len(message) == 4 and message[0] == CALL) or (len(message) == 3 and message[0] == "EXIT"))


def _job_main(name: str, payload: Any, num_chains: int, options: dict[str, Any], meta: Mapping[str, Any],
              keeper: Any = None) -> None:
    """The body of a job's process (spawned by ``keeper``, told READY once it traps exits, which
    registers it, then says GO)."""
    import pynode

    from exmc.nuts.api import Sampler

    pynode.trap_exit(True)
    if keeper is not None:
        pynode.send(keeper, (READY, pynode.self_pid()))
    if meta.get("leader") is not None:
        pynode.set_group_leader(meta["leader"])  # its prints go to the caller that watches it
    pynode.receive(ANSWER_TIMEOUT, match=lambda m: isinstance(m, str) and m == GO)
    job = Job(name, num_chains, meta)
    finished: list[Any] = []
    try:
        streams = options.get("parallel") != "vectorized"  # which streams no draws (start's docstring)
        chains = Sampler.sample_chains(payload, num_chains, progress=job.record, should_stop=job.serve,
                                       on_result=finished.append, draws=job.log.add if streams else None,
                                       **options)
    except InterruptedError:
        job.status, job.result = "cancelled", _partial(finished, job)
    except Exception as error:  # noqa: BLE001 - kept for the caller, raised by result()
        job.status, job.error = "failed", error
    else:
        job.status, job.result = "done", chains
    job.finished = time.time()
    logger.info("job %r %s", name, job.status)
    pynode.send(_keeper(), (FINISHED, name, job))  # the keeper of now: a restarted one adopted this job


def _partial(finished: list[Any], job: Job) -> Any:
    """The Chains of a cancelled job: every chain with at least one sampling draw (finished
    chains whole, running ones up to their last streamed batch, warmup-only ones left out), all
    cut to the shortest one's length so that diagnostics and ArviZ see equal chains."""
    from exmc.nuts.trace import Chains, Trace

    whole = {trace.info["chain"]: trace for trace in finished}
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


# --- the keeper's process ----------------------------------------------------------------------

class JobDied(RuntimeError):
    """A job's process ended without handing over its outcome (killed, or a crash)."""


class _Keeper:
    """The keeper's state, owned by its process's thread. ``jobs``: name -> the job's record in
    start order (a running job's initial :class:`Job` until its process hands over the final
    one); ``pids``/``refs``: a running job's process and monitor; ``forgotten``: the names of
    jobs forgotten while their process still ran (their late hand-over is dropped; a new start
    of the name clears it); ``limits``: the eviction limits."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.pids: dict[str, Any] = {}
        self.refs: dict[Any, str] = {}
        self.forgotten: set[str] = set()
        self.limits = {"count": MAX_STORED, "bytes": MAX_STORED_BYTES}

    def adopt(self) -> None:
        """A keeper started while jobs run (the previous one was killed): monitor the running
        job processes (their registered names tell them) and take them over."""
        import pynode

        for registered in pynode.registered():
            pid = pynode.whereis(registered) if registered.startswith(JOB_PREFIX) else None
            if pid is None:
                continue
            name = registered[len(JOB_PREFIX):]
            ref = pynode.monitor(pid)
            try:
                state = _call(pid, ("state",))
            except (JobGone, TimeoutError) as error:
                logger.warning("exmc jobs keeper: running job %r not adopted: %s", name, error)
                pynode.demonitor(ref, flush=True)
                continue
            chains = max(1, int(state["chains"]))
            job = Job(name, chains, {"total": state["iterations_total"] // chains, "nodes": state["nodes"],
                                     "max_tree_depth": 0})
            job.started = state["started"]
            self.jobs[name], self.pids[name], self.refs[ref] = job, pid, name
            logger.info("exmc jobs keeper: adopted running job %r (%r)", name, pid)

    def handle(self, message: Any) -> None:
        import pynode

        if isinstance(message, tuple) and len(message) == 3 and message[0] == FINISHED:
            self.finished(message[1], message[2])
        elif isinstance(message, tuple) and len(message) == 4 and message[0] == "DOWN":
            self.down(message[1], message[3])
        elif isinstance(message, tuple) and len(message) == 4 and message[0] == CALL:
            _, ref, reply_to, request = message
            try:
                answer: tuple = ("ok", getattr(self, "on_" + request[0])(*request[1:]))
            except Exception as error:  # noqa: BLE001 - the caller gets it
                answer = ("error", error)
            pynode.send(reply_to, (ref, answer))
        else:
            logger.warning("exmc jobs keeper: unexpected message %r dropped", message)

    def finished(self, name: str, job: Job) -> None:
        if name not in self.jobs:
            if name in self.forgotten:
                self.forgotten.discard(name)
                return  # forgotten meanwhile
            # A job this keeper never adopted: it ended while the keeper started (its hand-over
            # is what started it), or did not answer the adoption in time. Its result is kept.
            logger.info("exmc jobs keeper: took the outcome of job %r, which it had not adopted", name)
            self.jobs[name] = job
            self.evict()
            return
        if self.pids.get(name) is None:
            return  # already ended (its DOWN came first)
        self.jobs[name] = job
        self.pids.pop(name)
        self.evict()

    def down(self, ref: Any, reason: Any) -> None:
        name = self.refs.pop(ref, None)
        if name is None or name not in self.pids:
            return  # handed over (or forgotten) before it ended: a normal end
        self.pids.pop(name)
        job = self.jobs[name]
        job.status, job.finished = "failed", time.time()
        job.error = JobDied(f"the process of job {name!r} ended ({reason!r}) without handing over its result")
        job.log = None
        logger.warning("job %r: its process ended (%r) without a result", name, reason)

    def settle(self, name: str) -> None:
        """A running job whose name is already gone ends now: take its hand-over or DOWN first."""
        import pynode

        if name in self.pids and pynode.whereis(JOB_PREFIX + name) is None:
            ref = next((r for r, n in self.refs.items() if n == name), None)
            try:
                message = pynode.receive(ANSWER_TIMEOUT, match=lambda m: isinstance(m, tuple) and (
                    (len(m) == 3 and m[0] == FINISHED and m[1] == name)
                    or (len(m) == 4 and m[0] == "DOWN" and m[1] == ref)))
            except TimeoutError:
                return
            self.handle(message)

    def get(self, name: str) -> Job:
        job = self.jobs.get(name)
        if job is None:
            raise KeyError(f"no job named {name!r} here (jobs: {list(self.jobs)})")
        self.settle(name)
        return self.jobs[name]

    def on_start(self, name: str, payload: Any, num_chains: int, options: dict[str, Any],
                 meta: Mapping[str, Any]) -> dict[str, Any]:
        import pynode
        from pynode import Node

        holder = self.jobs.get(name)
        if holder is not None:
            raise ValueError(f"job name {name!r} is taken by a job {holder.status} since "
                             f"{time.strftime('%H:%M:%S', time.localtime(holder.started))}; choose another "
                             "or forget() it first")
        self.forgotten.discard(name)
        pid, ref = pynode.spawn_monitor(Node.self(), _job_main, name, payload, num_chains, options, meta,
                                        pynode.self_pid())
        try:  # its name only once it traps exits (module docstring: a new job's start)
            ready = pynode.receive(ANSWER_TIMEOUT, match=lambda m: isinstance(m, tuple) and (
                (len(m) == 2 and m[0] == READY and m[1] == pid) or (len(m) == 4 and m[0] == "DOWN" and m[1] == ref)))
        except TimeoutError:
            pynode.exit(pid, "kill")
            pynode.demonitor(ref, flush=True)
            raise TimeoutError(f"job {name!r}: its process did not start within {ANSWER_TIMEOUT} s") from None
        if ready[0] == "DOWN":
            raise RuntimeError(f"job {name!r}: its process ended ({ready[3]!r}) before it started")
        try:
            pynode.register(JOB_PREFIX + name, pid)
        except ValueError:
            pynode.exit(pid, "kill")
            raise
        job = Job(name, num_chains, meta)
        self.jobs[name], self.pids[name], self.refs[ref] = job, pid, name
        pynode.send(pid, GO)
        return job.describe()

    def on_list(self) -> list[tuple[str, dict[str, Any]]]:
        return [(name, job.describe()) for name, job in self.jobs.items()]

    def on_state(self, name: str) -> dict[str, Any]:
        return self.get(name).state()

    def on_draws(self, name: str, cursor: Mapping[int, tuple[int, int]]) -> dict[str, Any]:
        return self.get(name).draws_since(cursor)

    def on_result(self, name: str, keep: bool) -> Any:
        job = self.get(name)
        if job.status == "running":
            raise TimeoutError(f"job {name!r} is still running")
        if job.status == "failed":
            raise job.error  # type: ignore[misc]
        if job.result is None:
            raise LookupError(f"the result of job {name!r} is gone ({job.status})")
        value = job.result
        if not keep:
            job.result, job.log, job.status = None, None, "fetched"
        return value

    def on_forget(self, name: str) -> None:
        import pynode

        pid = self.pids.pop(name, None)
        if pid is not None:  # cancel() did not stop it: it goes now
            pynode.exit(pid, "kill")
            self.forgotten.add(name)
        self.jobs.pop(name, None)

    def on_limits(self, count: int | None, nbytes: int | None) -> dict[str, int]:
        for key, value in (("count", count), ("bytes", nbytes)):
            if value is not None:
                self.limits[key] = int(value)
        self.evict()
        return dict(self.limits)

    def evict(self) -> None:
        stored = [job for job in self.jobs.values() if job.status in _FINISHED_WITH_RESULT and job.result is not None]
        stored.sort(key=lambda job: job.finished or 0)
        total = sum(job.nbytes() for job in stored)
        while stored and (len(stored) > self.limits["count"] or total > self.limits["bytes"]):
            oldest = stored.pop(0)
            total -= oldest.nbytes()
            logger.warning("evicting the result of job %r (finished %s, %.1f MiB): over the limit of %d results / "
                           "%.0f MiB", oldest.name, time.strftime("%H:%M:%S", time.localtime(oldest.finished)),
                           oldest.nbytes() / 2**20, self.limits["count"], self.limits["bytes"] / 2**20)
            oldest.result, oldest.log, oldest.status = None, None, "evicted"


def _keeper_main() -> None:
    """The body of the keeper's process: handle its mailbox until the node stops."""
    import pynode

    keeper = _Keeper()
    keeper.adopt()
    while True:
        keeper.handle(pynode.receive())
