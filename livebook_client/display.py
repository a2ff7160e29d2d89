"""Per-chain numbers and plots of sampled chains, headless-safe.

Chains are exmc's ``Chains``: a list of ``Trace``, each a mapping name → array of shape
``(num_samples, *shape)``. The plots build ``matplotlib.figure.Figure`` objects directly (no
pyplot state, no GUI backend), so they work in scripts and on servers; with ``path`` they are
saved through the Agg renderer. In Jupyter with ``%matplotlib inline`` a returned figure displays
itself.

Failure modes: a name absent from the traces raises ``KeyError`` naming it and the names that
exist; empty chains raise ``ValueError``.
"""
from __future__ import annotations

import logging
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


def stacked(chains: Draws, name: str) -> np.ndarray:
    """Draws of ``name`` from every chain as one array ``(num_chains, num_samples, *shape)``."""
    names = variable_names(chains)
    if name not in names:
        raise KeyError(f"variable {name!r} is not in the traces; they record {names}")
    return np.stack([np.asarray(trace[name]) for trace in chains])


def elements(chains: Draws, var_names: Sequence[str] | None = None) -> list[Element]:
    """Scalar elements of the chosen variables (all by default), ``name[i,j]`` for arrays."""
    chosen: list[Element] = []
    for name in var_names if var_names is not None else variable_names(chains):
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


def _density(samples: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE of ``samples`` on ``grid``; a constant sample gives a zero curve."""
    from scipy.stats import gaussian_kde

    if np.ptp(samples) == 0:
        return np.zeros_like(grid)
    return gaussian_kde(samples)(grid)


def _grid(samples: np.ndarray) -> np.ndarray:
    low, high = float(np.min(samples)), float(np.max(samples))
    pad = 0.05 * (high - low) if high > low else 0.5
    return np.linspace(low - pad, high + pad, KDE_POINTS)


def _save(figure: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        figure.savefig(path)  # a bare Figure renders with Agg (or the format's own backend)
        logger.info("saved figure to %s", path)
    return figure


def plot_trace(chains: Draws, var_names: Sequence[str] | None = None, *,
               path: str | Path | None = None) -> Figure:
    """ArviZ-style trace plot: per element, each chain's density (left) and draws (right).

    Returns the ``matplotlib.figure.Figure``; saves it to ``path`` when given (format from the
    suffix, e.g. ``.png``, ``.svg``).
    """
    from matplotlib.figure import Figure

    chosen = elements(chains, var_names)
    figure = Figure(figsize=(10, 2.2 * len(chosen)), layout="constrained")
    axes = figure.subplots(len(chosen), 2, squeeze=False)
    for row, element in zip(axes, chosen):
        grid = _grid(element.draws)
        for index, draws in enumerate(element.draws):
            colour = f"C{index % 10}"
            row[0].plot(grid, _density(draws, grid), color=colour, label=f"chain {index + 1}")
            row[1].plot(draws, color=colour, linewidth=0.5, alpha=0.8)
        row[0].set_title(element.label)
        row[0].set_yticks([])
        row[1].set_title(element.label)
        row[1].set_xlabel("draw")
    axes[0][0].legend(fontsize="small")
    return _save(figure, path)


def plot_posterior(chains: Draws, var_names: Sequence[str] | None = None, *,
                   path: str | Path | None = None) -> Figure:
    """Posterior density per chain (thin) and pooled (thick), with the pooled mean and 94 % HDI.

    Returns the ``matplotlib.figure.Figure``; saves it to ``path`` when given.
    """
    from matplotlib.figure import Figure

    chosen = elements(chains, var_names)
    figure = Figure(figsize=(4.5 * len(chosen), 3.2), layout="constrained")
    axes = figure.subplots(1, len(chosen), squeeze=False)[0]
    for ax, element in zip(axes, chosen):
        pooled = element.draws.ravel()
        grid = _grid(pooled)
        for index, draws in enumerate(element.draws):
            ax.plot(grid, _density(draws, grid), color=f"C{index % 10}", linewidth=0.8,
                    alpha=0.7, label=f"chain {index + 1}")
        ax.plot(grid, _density(pooled, grid), color="black", linewidth=2, label="pooled")
        low, high = hdi(pooled)
        ax.axvline(float(pooled.mean()), color="black", linestyle="--", linewidth=1)
        ax.hlines(0, low, high, color="black", linewidth=4)
        ax.set_title(f"{element.label}: mean {pooled.mean():.3g}, "
                     f"{HDI_PROB:.0%} HDI [{low:.3g}, {high:.3g}]", fontsize="medium")
        ax.set_yticks([])
    axes[0].legend(fontsize="small")
    return _save(figure, path)
