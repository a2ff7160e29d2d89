"""Progress events of running chains and their per-chain throttle."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

# At most ~10 events per second per chain: enough for a live bar, cheap to ship between processes.
PROGRESS_INTERVAL = 0.1


@dataclass(frozen=True)
class ProgressEvent:
    """One chain's progress. ``iteration`` counts warmup and sampling iterations done (1-based);
    ``phase`` is ``"warmup"`` or ``"sampling"``; ``divergences`` counts the divergent transitions
    of the current phase so far (warmup ones are expected and not counted against sampling);
    ``done`` marks the chain's last event."""

    chain: int
    iteration: int
    total: int
    phase: str
    divergences: int
    step_size: float
    done: bool = False


class Throttle:
    """Forwards events to ``emit`` at most once per ``interval`` seconds, plus the final one and
    the last event of warmup (so a display learns warmup's final divergence count, which the
    sampling phase's events no longer carry)."""

    def __init__(self, emit: Callable[[ProgressEvent], None], interval: float = PROGRESS_INTERVAL) -> None:
        self._emit = emit
        self._interval = interval
        self._last = -float("inf")
        # The latest call not forwarded (its arguments), or None: sent first at a phase change.
        self._held: tuple | None = None

    def __call__(
        self, chain: int, iteration: int, total: int, phase: str, divergences: int, step_size: float
    ) -> None:
        now = time.monotonic()
        done = iteration == total
        if self._held is not None and self._held[3] != phase:
            self._emit(ProgressEvent(*self._held, done=False))
        if done or now - self._last >= self._interval:
            self._last = now
            self._held = None
            self._emit(ProgressEvent(chain, iteration, total, phase, divergences, step_size, done))
        else:
            self._held = (chain, iteration, total, phase, divergences, step_size)
