"""The body of a pool worker process: receive chain tasks, run them, send results back.

Started by the pool as ``python -m exmc.nuts.worker FD``, FD being its end of a Unix socket pair.
Protocol on that socket (all messages are tuples):

- parent → worker: ``("run", chain, model_key, model_bytes, seed, options, with_progress,
  with_draws)``; ``model_bytes`` is a cloudpickled model or IR (``None`` when the worker already
  holds ``model_key``, the payload's digest). A lockstep group (:mod:`exmc.nuts.layout`) sends a
  tuple of chain numbers as ``chain`` and a tuple of their seeds as ``seed``.
- worker → parent: ``("progress", ProgressEvent)``, ``("output", stream, text)`` (``stream`` 1:
  stdout, 2: stderr; ``text`` whole lines, or the unfinished rest at the end of a task) and, with
  ``with_draws``, ``("draws", DrawBatch)`` (at most every 0.2 s, see :mod:`exmc.nuts.stream`),
  then ``("done", chain, Trace)`` (one per chain of a group, in the group's order) or
  ``("error", chain, exception, formatted_traceback)`` (for a group, ``chain`` is the tuple).

Output comes home: while a task runs, ``sys.stdout`` and ``sys.stderr`` are :class:`TaskOutput`
streams that send what the chain prints (a ``print()`` in a Custom logp) to the parent as
``"output"`` messages, line by line, in the order written, before the task's ``"done"``; the
parent writes them in the thread that runs the pool (where pynode's group leader of a remote
call picks them up). Any thread of the worker may print (a Custom logp's own threads): every
message is sent whole under one lock (:class:`SerialConnection`), so frames never interleave. Between tasks, and for writes to file descriptors 1/2 that bypass
``sys.stdout`` (C extensions), the worker's own streams are used: the node's.

The worker ignores SIGINT: on Ctrl-C the parent alone decides, and terminates the workers. It exits
when the socket closes (the parent went away), so no worker outlives its parent's pool.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection

import cloudpickle

from exmc.nuts.progress import Throttle
from exmc.nuts.sampler import load_model, preload_model_modules, run_chain
from exmc.nuts.stream import draw_hook
from exmc.nuts.vectorized import run_vectorized

# At start-up, which the pool does ahead of time (``start_pool``, node preload), not on the first task.
preload_model_modules()


# The stream numbers of "output" messages (pynode's and the POSIX file descriptors').
STDOUT, STDERR = 1, 2


class SerialConnection:
    """The worker's end of the socket, safe to send on from any thread: ``Connection.send``
    writes a frame in several system calls, so two threads sending at once (a chain's thread
    printing while the main one reports progress) would interleave their bytes and the parent
    could not unpickle them. ``_lock`` guards each whole ``send``; only the main thread receives."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message) -> None:
        with self._lock:
            self._conn.send(message)

    def recv(self):
        return self._conn.recv()


class TaskOutput:
    """Stands in for ``sys.stdout`` / ``sys.stderr`` during a task: line-buffers and sends each
    write that completes lines as one ``("output", stream, text)`` message (``_pending``: the
    unfinished tail, sent by :meth:`flush`; guarded by ``_lock``, as any thread may write)."""

    def __init__(self, conn: Connection | SerialConnection, stream: int, wrapped) -> None:
        self._conn = conn
        self._stream = stream
        self._wrapped = wrapped
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            buffered = self._pending + text
            cut = buffered.rfind("\n") + 1
            self._pending = buffered[cut:]
            if cut:
                self._conn.send(("output", self._stream, buffered[:cut]))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                text, self._pending = self._pending, ""
                self._conn.send(("output", self._stream, text))

    def __getattr__(self, name: str):
        return getattr(self._wrapped, name)  # encoding, fileno, isatty: the worker's own stream's


@contextlib.contextmanager
def output_to_parent(conn: Connection | SerialConnection) -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` go to the parent for the block (flushed at its end)."""
    saved = sys.stdout, sys.stderr
    out, err = TaskOutput(conn, STDOUT, saved[0]), TaskOutput(conn, STDERR, saved[1])
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        out.flush()
        err.flush()


def worker_main(conn: Connection) -> None:
    """Serve chain tasks on ``conn`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = SerialConnection(conn)  # type: ignore[assignment] - sends from any thread
    cached_key, cached_model = None, None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        _, chain, key, model_bytes, seed, options, with_progress, with_draws = message
        try:
            with output_to_parent(conn):
                if key != cached_key:
                    cached_model = load_model(cloudpickle.loads(model_bytes))
                    cached_key = key
                emit = lambda batch: conn.send(("draws", batch))  # noqa: E731
                if isinstance(chain, tuple):
                    hooks = [draw_hook(emit, cached_model, c, options) for c in chain] if with_draws else None
                    forward = (lambda event: conn.send(("progress", event))) if with_progress else None
                    traces = run_vectorized(cached_model, seed, options, forward, chain_ids=chain, on_draws=hooks)
                else:
                    report = Throttle(lambda event: conn.send(("progress", event))) if with_progress else None
                    on_draw = draw_hook(emit, cached_model, chain, options) if with_draws else None
                    traces = [run_chain(cached_model, chain, seed, options, report, on_draw=on_draw)]
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the parent
            detail = traceback.format_exc()
            try:
                conn.send(("error", chain, exc, detail))
            except Exception:  # noqa: BLE001 - the exception itself may not pickle
                conn.send(("error", chain, RuntimeError(repr(exc)), detail))
            continue
        for trace in traces:
            conn.send(("done", trace.info["chain"], trace))


if __name__ == "__main__":
    worker_main(Connection(int(sys.argv[1])))
