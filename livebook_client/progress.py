"""Live progress of chains sampled on another node (or several).

The compute node forwards exmc's per-chain progress events to the caller's mailbox; the client
feeds them, as :class:`ChainProgress` records, to one of two displays:

- :class:`TerminalProgress`: one tqdm bar per chain (REPLs, scripts, the demo), on stderr.
- :class:`NotebookProgress`: one HTML table of per-chain bars that is updated in place through an
  IPython display handle. ``tqdm.notebook`` would need ipywidgets, which a bare Jupyter kernel
  does not have (and nbclient cannot render); a display handle works in every frontend, including
  headless execution, where the last update is what the saved notebook shows.

:func:`make_progress` picks one for the current environment.

What a row says: chains are numbered from 0 (as in ``Trace.info["chain"]``, ``Chains.warnings()``
and ArviZ). A chain waiting for a worker is ``queued`` (not "0/N warmup"); a running chain shows
its phase and the divergences *of that phase*: warmup divergences are expected while the step
size adapts, so once sampling starts they are shown apart, as ``(3 in warmup)``, and the sampling
count starts from 0. With several nodes a row also names the node running the chain, and
:meth:`ProgressDisplay.note` lines say which node was lost and which chains moved.
"""
from __future__ import annotations

import dataclasses
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

#: Phases of a chain: exmc's two, and "queued" for a chain no worker has taken yet.
PHASES = ("queued", "warmup", "sampling")


@dataclass(frozen=True)
class ChainProgress:
    """Where one chain is: ``done`` iterations out of ``total`` (warmup included).

    ``divergences`` counts the divergent transitions of the current ``phase``;
    ``warmup_divergences`` (sampling phase only; None when unknown) those of the finished warmup;
    ``node`` the node running the chain (None for a single-node run).
    """

    chain: int
    done: int
    total: int
    phase: str
    divergences: int = 0
    step_size: float | None = None
    warmup_divergences: int | None = None
    node: str | None = None

    @classmethod
    def queued(cls, chain: int, total: int, node: str | None = None) -> ChainProgress:
        """A chain that no worker has started yet."""
        return cls(chain, 0, total, "queued", node=node)

    @classmethod
    def from_event(cls, event: Mapping[str, Any], node: str | None = None) -> ChainProgress:
        """Build from an exmc progress event (``exmc.nuts.progress.ProgressEvent`` as a mapping).

        exmc counts ``iteration`` across warmup and sampling, out of ``total``; ``chain`` is
        0-based. Raises ``KeyError`` naming a missing field and ``ValueError`` for an unknown phase.
        """
        phase = str(event["phase"])
        if phase not in PHASES[1:]:
            raise ValueError(f"progress event has unknown phase {phase!r}; expected one of {PHASES[1:]}")
        step_size = event.get("step_size")
        return cls(
            chain=int(event["chain"]),
            done=int(event["iteration"]),
            total=int(event["total"]),
            phase=phase,
            divergences=int(event.get("divergences", 0)),
            step_size=None if step_size is None else float(step_size),
            node=node,
        )

    def after(self, previous: ChainProgress | None) -> ChainProgress:
        """This record completed from the chain's ``previous`` one: a sampling record learns the
        warmup's divergences (exmc's events count the current phase only), and a record without
        a node keeps the node already known."""
        if previous is None:
            return self
        changes: dict[str, Any] = {}
        if self.node is None and previous.node is not None:
            changes["node"] = previous.node
        if self.phase == "sampling" and self.warmup_divergences is None:
            if previous.phase == "warmup":
                changes["warmup_divergences"] = previous.divergences
            elif previous.phase == "sampling":
                changes["warmup_divergences"] = previous.warmup_divergences
        return dataclasses.replace(self, **changes) if changes else self

    def describe(self) -> str:
        """``sampling, 2 divergences (5 in warmup), step 0.71`` — the bar's postfix."""
        if self.phase == "queued":
            return "queued" if self.node is None else f"queued on {self.node}"
        count = f"{self.divergences} divergence{'s' if self.divergences != 1 else ''}"
        if self.phase == "sampling" and self.warmup_divergences is not None:
            count += f" ({self.warmup_divergences} in warmup)"
        parts = [self.phase, count]
        if self.step_size is not None:
            parts.append(f"step {self.step_size:.3g}")
        if self.node is not None:
            parts.append(f"on {self.node}")
        return ", ".join(parts)


class ProgressDisplay(Protocol):
    """What the session feeds: one ``update`` per event, ``note`` for a run-level message (a
    node lost, chains moved), ``close`` when the call ends. ``note`` is optional: the session
    logs the message instead when a display has none."""

    def update(self, progress: ChainProgress) -> None: ...

    def close(self, *, completed: bool) -> None: ...


class TerminalProgress:
    """One tqdm bar per chain, stacked (``position``), written to ``file`` (stderr by default)."""

    def __init__(self, num_chains: int, total: int, *, file: TextIO | None = None) -> None:
        self._file = file if file is not None else sys.stderr
        self._bars = [
            tqdm(total=total, desc=f"chain {index}", position=index, leave=True,
                 file=self._file, unit="it", dynamic_ncols=True)
            for index in range(num_chains)
        ]
        self._chains: list[ChainProgress | None] = [None] * num_chains
        for bar in self._bars:
            bar.set_postfix_str("queued", refresh=False)

    def update(self, progress: ChainProgress) -> None:
        progress = progress.after(self._chains[progress.chain])
        self._chains[progress.chain] = progress
        bar = self._bars[progress.chain]
        bar.set_postfix_str(progress.describe(), refresh=False)
        if progress.done < bar.n:  # a chain restarted elsewhere
            bar.reset(total=progress.total)
        bar.update(progress.done - bar.n)

    def note(self, message: str) -> None:
        tqdm.write(message, file=self._file)

    def close(self, *, completed: bool) -> None:
        for bar in self._bars:
            if completed:
                bar.update(bar.total - bar.n)
            bar.close()


class ProgressView:
    """A snapshot of all chains that renders as HTML in Jupyter and as text elsewhere."""

    def __init__(self, chains: list[ChainProgress], status: str, notes: list[str] | None = None) -> None:
        self.chains = chains
        self.status = status
        self.notes = list(notes or [])

    def __repr__(self) -> str:
        lines = [f"remote sampling: {self.status}"]
        lines += [f"chain {c.chain}: {c.done}/{c.total} {c.describe()}" for c in self.chains]
        lines += self.notes
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>chain {c.chain}</td>"
            f"<td><progress value='{c.done}' max='{c.total}' style='width:16em'></progress></td>"
            f"<td>{c.done}/{c.total}</td><td>{html.escape(c.describe())}</td></tr>"
            for c in self.chains
        )
        notes = "".join(f"<div class='livebook-note'>{html.escape(n)}</div>" for n in self.notes)
        return (f"<div class='livebook-progress'><b>remote sampling: {html.escape(self.status)}</b>"
                f"<table>{rows}</table>{notes}</div>")


class NotebookProgress:
    """A per-chain table updated in place through an IPython display handle.

    ``display`` is ``IPython.display.display`` (injectable so the rendering can be tested without
    a kernel). Redraws are throttled to one per ``NOTEBOOK_REFRESH_SECONDS``; notes and ``close``
    always draw.
    """

    def __init__(self, num_chains: int, total: int, *, display: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if display is None:
            from IPython.display import display
        self._chains = [ChainProgress.queued(index, total) for index in range(num_chains)]
        self._notes: list[str] = []
        self._clock = clock
        self._last_draw = clock()
        self._handle = display(ProgressView(list(self._chains), "running"), display_id=True)

    def update(self, progress: ChainProgress) -> None:
        self._chains[progress.chain] = progress.after(self._chains[progress.chain])
        now = self._clock()
        if now - self._last_draw >= NOTEBOOK_REFRESH_SECONDS:
            self._draw("running")

    def note(self, message: str) -> None:
        self._notes.append(message)
        self._draw("running")

    def _draw(self, status: str) -> None:
        self._last_draw = self._clock()
        self._handle.update(ProgressView(list(self._chains), status, self._notes))

    def close(self, *, completed: bool) -> None:
        if completed:
            self._chains = [dataclasses.replace(c, done=c.total) for c in self._chains]
        self._draw("done" if completed else "stopped")


# Redraws of a live trace at most this often (s): a matplotlib render costs tens of ms.
LIVE_TRACE_REFRESH_SECONDS = 1.0


class LiveTrace:
    """A running trace plot of one variable (its first scalar element), fed with
    ``exmc.nuts.stream.DrawBatch`` es and redrawn in place through a display handle at most every
    ``LIVE_TRACE_REFRESH_SECONDS`` (and once more by ``close``). Outside Jupyter it draws
    nothing unless a ``display`` is given. ``display`` and ``clock`` are injectable for tests;
    the picture is a PNG (``IPython.display.Image``), so it shows in every frontend.
    """

    def __init__(self, name: str, *, display: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.values: dict[int, list[Any]] = {}
        self.of = 0  # sampling draws per chain when complete: the x axis's extent
        self._clock = clock
        self._last_draw = -float("inf")
        self._dirty = False
        if display is None and in_jupyter():
            from IPython.display import display
        self._display = display
        self._handle = None

    def add(self, batch: Any) -> None:
        if self.name not in batch.draws:
            raise KeyError(f"live trace: variable {self.name!r} is not in the draws "
                           f"(they carry {sorted(batch.draws)})")
        column = list(batch.draws[self.name].reshape(len(batch), -1)[:, 0])
        self.of = max(self.of, int(batch.of))
        if batch.start == 0:
            self.values[batch.chain] = column
        else:
            self.values.setdefault(batch.chain, []).extend(column)
        self._dirty = True
        if self._clock() - self._last_draw >= LIVE_TRACE_REFRESH_SECONDS:
            self.draw()

    def render(self) -> bytes:
        """The current picture as PNG bytes."""
        import io

        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 2.4), layout="constrained")
        ax = figure.subplots()
        for chain in sorted(self.values):
            ax.plot(self.values[chain], color=f"C{chain % 10}", linewidth=0.7, label=f"chain {chain}")
        ax.set_title(f"{self.name}: draws so far")
        if self.of:
            ax.set_xlim(0, self.of)
        ax.set_xlabel("draw")
        if self.values:
            ax.legend(fontsize="small", loc="upper right")
        out = io.BytesIO()
        figure.savefig(out, format="png")
        return out.getvalue()

    def draw(self) -> None:
        self._last_draw = self._clock()
        self._dirty = False
        if self._display is None:
            return
        from IPython.display import Image

        picture = Image(data=self.render(), format="png")
        if self._handle is None:
            self._handle = self._display(picture, display_id=True)
        else:
            self._handle.update(picture)

    def close(self) -> None:
        if self._dirty:
            self.draw()


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
