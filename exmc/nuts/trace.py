"""Sampling results: one chain's :class:`Trace` and the :class:`Chains` of a run."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Iterator

import numpy as np

# Per-draw sampler statistics (Stan's lp__, accept_stat__, stepsize__, treedepth__, n_leapfrog__,
# divergent__, energy__) and their storage types.
STAT_DTYPES: dict[str, Any] = {
    "lp": np.float64,
    "accept_prob": np.float64,
    "step_size": np.float64,
    "tree_depth": np.int64,
    "n_steps": np.int64,
    "divergent": np.bool_,
    "energy": np.float64,
}


class Trace(Mapping):
    """One chain: a read-only mapping ``name -> (num_samples, *shape)`` array on the natural scale,
    for every free random variable and deterministic.

    Attributes:
        stats: per-draw sampler statistics (keys of ``STAT_DTYPES``), arrays of ``num_samples``.
        info: ``chain``, ``seed``, ``spawn_key``, final ``step_size``, ``inverse_metric``,
            ``warmup_seconds``, ``sampling_seconds``, ``num_warmup``, ``warmup_steps`` (leapfrog
            steps spent in warmup), ``warmup_divergences``, ``max_tree_depth``, ``deterministics``
            (names of the recorded deterministics); after a pool run also ``worker`` (the worker
            process id) and, after a run over several nodes, ``node`` (the node that ran it).
        unconstrained: the ``(num_samples, dim)`` draws on the sampler's unconstrained scale.
    """

    def __init__(self, draws: dict[str, np.ndarray], stats: dict[str, np.ndarray], info: dict[str, Any],
                 unconstrained: np.ndarray | None = None) -> None:
        self._draws = draws
        self.stats = stats
        self.info = info
        self.unconstrained = unconstrained

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._draws[name]
        except KeyError:
            raise KeyError(f"no variable {name!r} in trace (variables: {sorted(self._draws)})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._draws)

    def __len__(self) -> int:
        return len(self._draws)

    @property
    def num_samples(self) -> int:
        return int(self.stats["lp"].shape[0])

    @property
    def divergences(self) -> int:
        return int(np.sum(self.stats["divergent"]))

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{tuple(v.shape[1:]) or ''}" for k, v in self._draws.items())
        return (f"<Trace chain={self.info.get('chain')} draws={self.num_samples} "
                f"divergences={self.divergences} [{shapes}]>")


class Chains(list):
    """The traces of one run (a ``list`` of :class:`Trace`), with diagnostics.

    ``summary()`` returns an :class:`exmc.diagnostics.Summary`, ``warnings()`` a list of strings,
    ``to_arviz()`` an ArviZ ``DataTree`` (needs ``arviz-base``). ``notes``: what happened to the
    run itself (a node lost and the chains that moved), listed first by ``warnings()``.
    """

    def __init__(self, traces: Any = (), notes: Sequence[str] = ()) -> None:
        super().__init__(traces)
        self.notes = list(notes)

    def summary(self, hdi_prob: float = 0.94, var_names: Sequence[str] | None = None):
        from exmc.diagnostics import summary

        return summary(self, hdi_prob=hdi_prob, var_names=var_names)

    def warnings(self) -> list[str]:
        from exmc.diagnostics import warnings

        return list(getattr(self, "notes", ())) + warnings(self)

    def to_arviz(self):
        from exmc.arviz import to_arviz

        return to_arviz(self)

    def stacked(self, name: str) -> np.ndarray:
        """``(num_chains, num_samples, *shape)`` draws of ``name``."""
        return np.stack([trace[name] for trace in self])

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        n = self[0].num_samples if self else 0
        return f"<Chains {len(self)} × {n} draws, variables {list(self[0]) if self else []}>"

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()
