"""The sampling runs in progress in this process, for status views (``session.status()``).

A run registers itself for its duration with :func:`running`; :func:`snapshot` lists them. The
table is process-wide and guarded by one lock; entries are plain dicts so that they travel to a
caller on another node as they are. Nothing here affects sampling.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_counter = itertools.count(1)
# run id -> {"label", "chains", "started" (epoch s), "done"}; guarded by _lock.
_running: dict[int, dict[str, Any]] = {}


@contextlib.contextmanager
def running(label: str, chains: list[int]) -> Iterator[dict[str, Any]]:
    """Register a run of ``chains`` (run-wide chain numbers) described by ``label`` while the
    ``with`` block runs; yields its entry, whose ``"done"`` list the run may extend."""
    entry = {"label": label, "chains": list(chains), "started": time.time(), "done": []}
    with _lock:
        run_id = next(_counter)
        _running[run_id] = entry
    try:
        yield entry
    finally:
        with _lock:
            del _running[run_id]


def snapshot() -> list[dict[str, Any]]:
    """The runs in progress, oldest first (copies: the caller may keep them)."""
    with _lock:
        return [dict(entry, chains=list(entry["chains"]), done=list(entry["done"])) for entry in _running.values()]
