"""Live progress of chains sampled on another node.

The compute node forwards exmc's per-chain progress events to the caller's mailbox; the client
feeds them, as :class:`ChainProgress` records, to one of two displays:

- :class:`TerminalProgress`: one tqdm bar per chain (REPLs, scripts, the demo), on stderr.
- :class:`NotebookProgress`: one HTML table of per-chain bars that is updated in place through an
  IPython display handle. ``tqdm.notebook`` would need ipywidgets, which a bare Jupyter kernel
  does not have (and nbclient cannot render); a display handle works in every frontend, including
  headless execution, where the last update is what the saved notebook shows.

:func:`make_progress` picks one for the current environment.
"""
from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from tqdm import tqdm

# Redraws of the notebook display per second at most: smooth to the eye, and cheap for the
# kernel's iopub channel (exmc emits up to ~10 events per second per chain).
NOTEBOOK_REFRESH_SECONDS = 0.2

PHASES = ("warmup", "sampling")


@dataclass(frozen=True)
class ChainProgress:
    """Where one chain is: ``done`` iterations out of ``total`` (warmup included)."""

    chain: int
    done: int
    total: int
    phase: str
    divergences: int = 0
    step_size: float | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> ChainProgress:
        """Build from an exmc progress event (``exmc.nuts.progress.ProgressEvent`` as a mapping).

        exmc counts ``iteration`` across warmup and sampling, out of ``total``; ``chain`` is
        0-based. Raises ``KeyError`` naming a missing field and ``ValueError`` for an unknown phase.
        """
        phase = str(event["phase"])
        if phase not in PHASES:
            raise ValueError(f"progress event has unknown phase {phase!r}; expected one of {PHASES}")
        step_size = event.get("step_size")
        return cls(
            chain=int(event["chain"]),
            done=int(event["iteration"]),
            total=int(event["total"]),
            phase=phase,
            divergences=int(event.get("divergences", 0)),
            step_size=None if step_size is None else float(step_size),
        )

    def describe(self) -> str:
        """``sampling, 2 divergences, step 0.71`` — the bar's postfix."""
        parts = [self.phase, f"{self.divergences} divergence{'s' if self.divergences != 1 else ''}"]
        if self.step_size is not None:
            parts.append(f"step {self.step_size:.3g}")
        return ", ".join(parts)


class ProgressDisplay(Protocol):
    """What the session feeds: one ``update`` per event, ``close`` when the call ends."""

    def update(self, progress: ChainProgress) -> None: ...

    def close(self, *, completed: bool) -> None: ...


class TerminalProgress:
    """One tqdm bar per chain, stacked (``position``), written to ``file`` (stderr by default)."""

    def __init__(self, num_chains: int, total: int, *, file: TextIO | None = None) -> None:
        self._bars = [
            tqdm(total=total, desc=f"chain {index + 1}", position=index, leave=True,
                 file=file if file is not None else sys.stderr, unit="it", dynamic_ncols=True)
            for index in range(num_chains)
        ]

    def update(self, progress: ChainProgress) -> None:
        bar = self._bars[progress.chain]
        bar.set_postfix_str(progress.describe(), refresh=False)
        bar.update(progress.done - bar.n)

    def close(self, *, completed: bool) -> None:
        for bar in self._bars:
            if completed:
                bar.update(bar.total - bar.n)
            bar.close()


class ProgressView:
    """A snapshot of all chains that renders as HTML in Jupyter and as text elsewhere."""

    def __init__(self, chains: list[ChainProgress], status: str) -> None:
        self.chains = chains
        self.status = status

    def __repr__(self) -> str:
        lines = [f"remote sampling: {self.status}"]
        lines += [f"chain {c.chain + 1}: {c.done}/{c.total} {c.describe()}" for c in self.chains]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>chain {c.chain + 1}</td>"
            f"<td><progress value='{c.done}' max='{c.total}' style='width:16em'></progress></td>"
            f"<td>{c.done}/{c.total}</td><td>{html.escape(c.describe())}</td></tr>"
            for c in self.chains
        )
        return (f"<div class='livebook-progress'><b>remote sampling: {html.escape(self.status)}</b>"
                f"<table>{rows}</table></div>")


class NotebookProgress:
    """A per-chain table updated in place through an IPython display handle.

    ``display`` is ``IPython.display.display`` (injectable so the rendering can be tested without
    a kernel). Redraws are throttled to one per ``NOTEBOOK_REFRESH_SECONDS``; ``close`` always
    draws the final state.
    """

    def __init__(self, num_chains: int, total: int, *, display: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if display is None:
            from IPython.display import display
        self._chains = [ChainProgress(index, 0, total, "warmup") for index in range(num_chains)]
        self._clock = clock
        self._last_draw = clock()
        self._handle = display(ProgressView(list(self._chains), "running"), display_id=True)

    def update(self, progress: ChainProgress) -> None:
        self._chains[progress.chain] = progress
        now = self._clock()
        if now - self._last_draw >= NOTEBOOK_REFRESH_SECONDS:
            self._last_draw = now
            self._handle.update(ProgressView(list(self._chains), "running"))

    def close(self, *, completed: bool) -> None:
        if completed:
            self._chains = [ChainProgress(c.chain, c.total, c.total, "sampling", c.divergences,
                                          c.step_size) for c in self._chains]
        self._handle.update(ProgressView(list(self._chains), "done" if completed else "stopped"))


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel attached)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def make_progress(num_chains: int, total: int, *, enabled: bool) -> ProgressDisplay | None:
    """The display for this environment, or None when ``enabled`` is false."""
    if not enabled:
        return None
    if in_jupyter():
        return NotebookProgress(num_chains, total)
    return TerminalProgress(num_chains, total)
