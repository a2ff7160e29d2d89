"""Convergence diagnostics of :class:`exmc.nuts.Chains`: ``summary`` and ``warnings``.

R-hat (rank-normalized, split), bulk/tail ESS, MCSE of mean and sd, HDI and E-BFMI all come from
``arviz_stats.base.array_stats`` (numpy + scipy only), the reference implementations of Vehtari et
al. (2021); nothing here re-derives them. Columns follow ``arviz.summary``.
"""
from __future__ import annotations

import html
import itertools
from typing import Sequence

import numpy as np
from arviz_stats.base import array_stats

# Thresholds of Stan's / ArviZ's diagnostics guidance.
RHAT_THRESHOLD = 1.01        # Vehtari et al. (2021)
ESS_THRESHOLD = 400          # 100 per chain for 4 chains (Vehtari et al. 2021)
EBFMI_THRESHOLD = 0.3        # Betancourt (2016), as Stan's diagnose
TAIL_ESS_PROB = (0.05, 0.95)  # ArviZ's tail-ESS quantiles


def _element_names(name: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, idx))}]" for idx in itertools.product(*map(range, shape))]


def _flatten(chains: Sequence, var_names: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Rows ``name[i,j]`` and a ``(rows, chains, draws)`` array of every scalar element of the
    variables ``var_names`` (all of them when ``None``). Raises ``KeyError`` naming an unknown one."""
    available = list(chains[0])
    if var_names is None:
        var_names = available
    unknown = [v for v in var_names if v not in available]
    if unknown:
        raise KeyError(f"no variable {unknown[0]!r} in these chains (variables: {', '.join(available)})")
    names, blocks = [], []
    for var in var_names:
        stacked = np.stack([np.asarray(trace[var], dtype=float) for trace in chains])  # (C, N, *shape)
        shape = stacked.shape[2:]
        names += _element_names(var, shape)
        blocks.append(np.moveaxis(stacked.reshape(stacked.shape[:2] + (-1,)), -1, 0))
    return names, np.concatenate(blocks, axis=0)


class Summary:
    """Table of posterior summaries, one row per scalar element (``mu``, ``beta[0]``, ...).

    ``columns`` are ``mean, sd, hdi_3%, hdi_97%, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat``
    (the HDI labels follow ``hdi_prob``); ``summary["mu"]`` is a dict column -> value,
    ``summary.values`` the ``(rows, 9)`` array.
    """

    def __init__(self, rows: list[str], values: np.ndarray, hdi_prob: float) -> None:
        lo = (1 - hdi_prob) / 2 * 100
        self.rows = rows
        self.values = values
        self.columns = ["mean", "sd", f"hdi_{lo:g}%", f"hdi_{100 - lo:g}%",
                        "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]

    def __getitem__(self, row: str) -> dict[str, float]:
        try:
            i = self.rows.index(row)
        except ValueError:
            raise KeyError(f"no row {row!r} in summary (rows: {self.rows})") from None
        return dict(zip(self.columns, self.values[i].tolist()))

    def __len__(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """Every row as ``{row: {column: value}}`` (plain floats: JSON- and pickle-friendly)."""
        return {row: self[row] for row in self.rows}

    def _cells(self) -> list[list[str]]:
        out = []
        for row, vals in zip(self.rows, self.values):
            cells = [f"{v:.3f}" for v in vals[:6]] + [f"{vals[6]:.0f}", f"{vals[7]:.0f}", f"{vals[8]:.2f}"]
            out.append([row] + cells)
        return out

    def __str__(self) -> str:
        header = [""] + self.columns
        body = self._cells()
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in [header] + body]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in [""] + self.columns)
        rows = "".join(
            "<tr>" + f"<th>{html.escape(r[0])}</th>" + "".join(f"<td>{c}</td>" for c in r[1:]) + "</tr>"
            for r in self._cells()
        )
        return f'<table class="exmc-summary"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def summary(chains: Sequence, hdi_prob: float = 0.94, var_names: Sequence[str] | None = None) -> Summary:
    """Summarize every scalar element of the variables ``var_names`` (default: every free rv and
    deterministic) of ``chains`` (a list of traces).

    Raises ``ValueError`` when ``chains`` is empty or ``hdi_prob`` is outside (0, 1), and
    ``KeyError`` naming a variable the chains do not have. Diagnostics
    needing several draws come back NaN for very short chains (as ArviZ returns them).
    """
    if not chains:
        raise ValueError("summary needs at least one chain")
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must lie in (0, 1), got {hdi_prob}")
    rows, ary = _flatten(chains, var_names)  # (rows, C, N)
    pooled = ary.reshape(ary.shape[0], -1)
    hdi = array_stats.hdi(pooled, hdi_prob, axis=-1)
    values = np.column_stack([
        pooled.mean(axis=-1),
        pooled.std(axis=-1, ddof=1),
        hdi[:, 0],
        hdi[:, 1],
        array_stats.mcse(ary, method="mean"),
        array_stats.mcse(ary, method="sd"),
        array_stats.ess(ary, method="bulk"),
        array_stats.ess(ary, method="tail", prob=TAIL_ESS_PROB),
        array_stats.rhat(ary),
    ])
    return Summary(rows, values, hdi_prob)


def ebfmi(chains: Sequence) -> np.ndarray:
    """E-BFMI per chain from the ``energy`` statistic (Betancourt 2016)."""
    energy = np.stack([np.asarray(trace.stats["energy"], dtype=float) for trace in chains])
    return np.atleast_1d(array_stats.bfmi(energy))


def warnings(chains: Sequence) -> list[str]:
    """Human-readable problems: divergences, R-hat > 1.01, ESS < 400, tree-depth saturation,
    E-BFMI < 0.3. An empty list means none was found (or there is no chain to check: a job
    cancelled before any sampling draw, whose notes say so)."""
    if len(chains) == 0:
        return []
    found = []
    # Each chain by its own number (Trace.info["chain"], as progress says it): a partial result
    # may keep chains 0 and 2 only.
    numbers = [t.info.get("chain", i) for i, t in enumerate(chains)]
    divergent = [t.divergences for t in chains]
    total = sum(t.num_samples for t in chains)
    if sum(divergent):
        per_chain = ", ".join(f"chain {c}: {n}" for c, n in zip(numbers, divergent) if n)
        found.append(f"{sum(divergent)} of {total} draws were divergent ({per_chain}); "
                     "consider raising target_accept or reparameterizing")
    saturated = [int(np.sum(t.stats["tree_depth"] >= t.info["max_tree_depth"])) for t in chains]
    if sum(saturated):
        found.append(f"{sum(saturated)} of {total} draws hit the maximum tree depth "
                     f"{chains[0].info['max_tree_depth']}; sampling is inefficient")
    for c, value in zip(numbers, ebfmi(chains)):
        if value < EBFMI_THRESHOLD:
            found.append(f"chain {c}: E-BFMI {value:.2f} < {EBFMI_THRESHOLD}; posterior may be hard to explore")
    table = summary(chains)
    for row, vals in zip(table.rows, table.values):
        if len(chains) > 1 and vals[8] > RHAT_THRESHOLD:
            found.append(f"{row}: R-hat {vals[8]:.3f} > {RHAT_THRESHOLD}; chains have not mixed")
        ess = min(vals[6], vals[7])
        if ess < ESS_THRESHOLD:
            found.append(f"{row}: effective sample size {ess:.0f} < {ESS_THRESHOLD}")
    return found
