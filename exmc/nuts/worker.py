"""The body of a pool worker process: receive chain tasks, run them, send results back.

Started by the pool as ``python -m exmc.nuts.worker FD``, FD being its end of a Unix socket pair.
Protocol on that socket (all messages are tuples):

- parent → worker: ``("run", chain, model_key, model_bytes, seed, options, with_progress,
  with_draws)``; ``model_bytes`` is a cloudpickled model or IR (``None`` when the worker already
  holds ``model_key``, the payload's digest). A lockstep group (:mod:`exmc.nuts.layout`) sends a
  tuple of chain numbers as ``chain`` and a tuple of their seeds as ``seed``.
- worker → parent: ``("progress", ProgressEvent)`` and, with ``with_draws``, ``("draws",
  DrawBatch)`` (at most every 0.2 s, see :mod:`exmc.nuts.stream`), then ``("done", chain, Trace)``
  (one per chain of a group, in the group's order) or ``("error", chain, exception,
  formatted_traceback)`` (for a group, ``chain`` is the tuple).

The worker ignores SIGINT: on Ctrl-C the parent alone decides, and terminates the workers. It exits
when the socket closes (the parent went away), so no worker outlives its parent's pool.
"""
from __future__ import annotations

import signal
import sys
import traceback
from multiprocessing.connection import Connection

import cloudpickle

from exmc.nuts.progress import Throttle
from exmc.nuts.sampler import load_model, preload_model_modules, run_chain
from exmc.nuts.stream import draw_hook
from exmc.nuts.vectorized import run_vectorized

# At start-up, which the pool does ahead of time (``start_pool``, node preload), not on the first task.
preload_model_modules()


def worker_main(conn: Connection) -> None:
    """Serve chain tasks on ``conn`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cached_key, cached_model = None, None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        _, chain, key, model_bytes, seed, options, with_progress, with_draws = message
        try:
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
