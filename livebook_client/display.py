"""Per-chain numbers and plots of sampled chains, headless-safe.

Chains are exmc's ``Chains``: a list of ``Trace``, each a mapping name → array of shape
``(num_samples, *shape)``. The plots build ``matplotlib.figure.Figure`` objects directly (no
pyplot state, no GUI backend), so they work in scripts and on servers; with ``path`` they are
saved through the Agg renderer. In Jupyter with ``%matplotlib inline`` a returned figure displays
itself.

Chain numbers: chains are numbered from 0 everywhere, in data and on screen — ``chains[0]`` is
``Trace.info["chain"] == 0``, ArviZ's ``chain`` coordinate 0, "chain 0" in ``Chains.warnings()``,
in the progress display and in these plots' legends. One numbering, so that a chain named in a
warning is the one with that label in a picture.

What the plots show by default: the free random variables (deterministics are left out when the
traces say which variables are deterministics, as exmc's do in ``Trace.info``); densities are
ArviZ's linear KDE with boundary correction, so a variable bounded at 0 (a scale) or in (0, 1)
has no density past the range of its draws; divergent draws (exmc's ``Trace.stats``) are marked
as ticks under the trace and density panels.

Failure modes: a name absent from the traces raises ``KeyError`` naming it and the names that
exist; empty chains raise ``ValueError``.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: What the helpers accept: exmc's ``Chains`` (a list of ``Trace`` mappings) or any sequence of
#: mappings name → array ``(num_samples, *shape)``.
Draws = Sequence[Mapping[str, Any]]

# Scalar elements drawn at most per figure: beyond this a figure is unreadable; the caller can
# choose the elements with ``var_names``.
MAX_PLOTTED_ELEMENTS = 16

# The credible interval shown on posterior plots: ArviZ's default (94 % HDI), the same interval
# as the summary table's hdi_3% / hdi_97% columns.
HDI_PROB = 0.94

# Points of the kernel density estimate per curve.
KDE_POINTS = 200

# Columns of the posterior grid (ArviZ's plot_posterior wraps at 3 or 4 as well); each panel is
# POSTERIOR_PANEL inches wide and high.
POSTERIOR_COLUMNS = 4
POSTERIOR_PANEL = (3.6, 2.6)

# Where divergent draws are marked: ticks just below each panel's data, in this colour.
DIVERGENCE_COLOUR = "black"


@dataclass(frozen=True)
class Element:
    """One scalar element of a variable: ``draws`` has shape (num_chains, num_samples)."""

    label: str
    draws: np.ndarray


def variable_names(chains: Draws) -> list[str]:
    """The variables recorded in the traces, in trace order."""
    if len(chains) == 0:
        raise ValueError("no chains to display")
    return list(chains[0].keys())


def free_variable_names(chains: Draws) -> list[str]:
    """The variables to plot by default: all but the deterministics the traces name in
    ``info["deterministics"]`` (exmc's traces do); every variable for plain mappings."""
    names = variable_names(chains)
    info = getattr(chains[0], "info", None)
    deterministics = set(info.get("deterministics", ())) if isinstance(info, Mapping) else set()
    free = [name for name in names if name not in deterministics]
    return free or names


def stacked(chains: Draws, name: str) -> np.ndarray:
    """Draws of ``name`` from every chain as one array ``(num_chains, num_samples, *shape)``."""
    names = variable_names(chains)
    if name not in names:
        raise KeyError(f"variable {name!r} is not in the traces; they record {names}")
    return np.stack([np.asarray(trace[name]) for trace in chains])


def elements(chains: Draws, var_names: Sequence[str] | None = None) -> list[Element]:
    """Scalar elements of the chosen variables (the free ones by default, see
    :func:`free_variable_names`), ``name[i,j]`` for arrays."""
    chosen: list[Element] = []
    for name in var_names if var_names is not None else free_variable_names(chains):
        draws = stacked(chains, name)
        flat = draws.reshape(draws.shape[0], draws.shape[1], -1)
        if draws.ndim == 2:
            chosen.append(Element(name, flat[:, :, 0]))
            continue
        for flat_index, index in enumerate(np.ndindex(*draws.shape[2:])):
            chosen.append(Element(f"{name}[{','.join(map(str, index))}]", flat[:, :, flat_index]))
    if len(chosen) > MAX_PLOTTED_ELEMENTS:
        logger.warning("plotting the first %d of %d scalar elements; pass var_names to choose",
                       MAX_PLOTTED_ELEMENTS, len(chosen))
    return chosen[:MAX_PLOTTED_ELEMENTS]


def divergent(chains: Draws) -> np.ndarray | None:
    """``(num_chains, num_samples)`` booleans marking divergent draws, from each trace's
    ``stats["divergent"]``; None when the traces carry no sampler statistics."""
    flags = []
    for trace in chains:
        stats = getattr(trace, "stats", None)
        if not isinstance(stats, Mapping) or "divergent" not in stats:
            return None
        flags.append(np.asarray(stats["divergent"], dtype=bool))
    return np.stack(flags)


def chain_means(chains: Draws, name: str) -> list[float]:
    """Posterior mean of a scalar variable in each chain, in chain order."""
    draws = stacked(chains, name)
    return [float(m) for m in draws.reshape(draws.shape[0], -1).mean(axis=1)]


def pooled_mean_sd(chains: Draws, name: str) -> tuple[float, float]:
    """Mean and standard deviation of a scalar variable over all chains' draws together."""
    draws = stacked(chains, name).ravel()
    return float(draws.mean()), float(draws.std(ddof=1))


def hdi(samples: np.ndarray, prob: float = HDI_PROB) -> tuple[float, float]:
    """Narrowest interval holding ``prob`` of the samples (the highest-density interval), by
    ``arviz_stats``, the implementation behind :func:`exmc.diagnostics.summary`'s HDI columns."""
    from arviz_stats.base import array_stats  # seconds to import: only when a posterior is plotted

    low, high = array_stats.hdi(np.asarray(samples, dtype=float).ravel(), prob)
    return float(low), float(high)


def density(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(grid, pdf)``: ArviZ's linear KDE (``arviz_stats``) with boundary correction, on a grid
    spanning exactly the samples' range, so a density never spills past a bound the draws
    respect (0 for a scale, 0 and 1 for a probability). A constant sample gives a zero curve at
    its value."""
    from arviz_stats.base import array_stats

    samples = np.asarray(samples, dtype=float).ravel()
    if np.ptp(samples) == 0:
        value = float(samples[0]) if samples.size else 0.0
        return np.array([value, value]), np.zeros(2)
    grid, pdf, _ = array_stats.kde(samples, grid_len=KDE_POINTS)
    return np.asarray(grid), np.asarray(pdf)


def _save(figure: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        figure.savefig(path)  # a bare Figure renders with Agg (or the format's own backend)
        logger.info("saved figure to %s", path)
    return figure


def _mark_divergences(ax: Any, positions: np.ndarray, *, level: float) -> None:
    """Short vertical ticks at ``positions`` (x coordinates) at height ``level``."""
    if positions.size:
        ax.plot(positions, np.full(positions.size, level), linestyle="none", marker="|",
                markersize=8, color=DIVERGENCE_COLOUR, alpha=0.6, label="divergent")


def plot_trace(chains: Draws, var_names: Sequence[str] | None = None, *,
               path: str | Path | None = None) -> Figure:
    """ArviZ-style trace plot: per element, each chain's density (left) and draws (right).

    ``var_names`` default: the free random variables. Divergent draws are ticks under both
    panels (at their value on the left, at their draw index on the right). Returns the
    ``matplotlib.figure.Figure``; saves it to ``path`` when given (format from the suffix, e.g.
    ``.png``, ``.svg``).
    """
    from matplotlib.figure import Figure

    chosen = elements(chains, var_names)
    flags = divergent(chains)
    figure = Figure(figsize=(10, 2.2 * len(chosen)), layout="constrained")
    axes = figure.subplots(len(chosen), 2, squeeze=False)
    for row, element in zip(axes, chosen):
        for index, draws in enumerate(element.draws):
            colour = f"C{index % 10}"
            grid, pdf = density(draws)
            row[0].plot(grid, pdf, color=colour, label=f"chain {index}")
            row[1].plot(draws, color=colour, linewidth=0.5, alpha=0.8)
        if flags is not None and flags.any():
            low = float(np.min(element.draws))
            _mark_divergences(row[0], element.draws[flags], level=0.0)
            _mark_divergences(row[1], np.nonzero(flags)[1].astype(float), level=low)
        row[0].set_title(element.label)
        row[0].set_yticks([])
        row[1].set_title(element.label)
        row[1].set_xlabel("draw")
    axes[0][0].legend(fontsize="small")
    return _save(figure, path)


def plot_posterior(chains: Draws, var_names: Sequence[str] | None = None, *,
                   path: str | Path | None = None, columns: int = POSTERIOR_COLUMNS) -> Figure:
    """Posterior density per chain (thin) and pooled (thick), with the pooled mean and 94 % HDI,
    one panel per scalar element in a grid of ``columns`` columns (free rvs by default).

    Returns the ``matplotlib.figure.Figure``; saves it to ``path`` when given. Raises
    ``ValueError`` for ``columns`` < 1.
    """
    from matplotlib.figure import Figure

    if int(columns) != columns or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    chosen = elements(chains, var_names)
    flags = divergent(chains)
    ncols = min(int(columns), len(chosen))
    nrows = math.ceil(len(chosen) / ncols)
    figure = Figure(figsize=(POSTERIOR_PANEL[0] * ncols, POSTERIOR_PANEL[1] * nrows), layout="constrained")
    grid_axes = figure.subplots(nrows, ncols, squeeze=False)
    axes = list(grid_axes.ravel())
    for ax in axes[len(chosen):]:
        ax.set_axis_off()
    for ax, element in zip(axes, chosen):
        pooled = element.draws.ravel()
        for index, draws in enumerate(element.draws):
            grid, pdf = density(draws)
            ax.plot(grid, pdf, color=f"C{index % 10}", linewidth=0.8, alpha=0.7, label=f"chain {index}")
        grid, pdf = density(pooled)
        ax.plot(grid, pdf, color="black", linewidth=2, label="pooled")
        low, high = hdi(pooled)
        ax.axvline(float(pooled.mean()), color="black", linestyle="--", linewidth=1)
        ax.hlines(0, low, high, color="black", linewidth=4)
        if flags is not None and flags.any():  # below the HDI bar, which sits at 0
            _mark_divergences(ax, element.draws[flags], level=-0.06 * float(np.max(pdf)))
        ax.set_title(f"{element.label}: mean {pooled.mean():.3g}\n"
                     f"{HDI_PROB:.0%} HDI [{low:.3g}, {high:.3g}]", fontsize="medium")
        ax.set_yticks([])
    axes[0].legend(fontsize="small")
    return _save(figure, path)
