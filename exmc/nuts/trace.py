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
            steps spent in warmup), ``warmup_divergences``, ``max_tree_depth``, ``tree_kernel``
            (``"numba"`` or ``"numpy"``: which implementation ran the transitions), ``grad_kernel``
            (``"numba"`` when a term of the model ran a compiled gradient kernel, else ``"numpy"``;
            :mod:`exmc.accel`), ``deterministics``
            (names of the recorded deterministics); after a pool run also ``worker`` (the worker
            process id) and, after a run over several nodes, ``node`` (the node that ran it).
        unconstrained: the ``(num_samples, dim)`` draws on the sampler's unconstrained scale.
        log_likelihood: ``None``, or (sampled with ``log_likelihood=True``) observed rv name ->
            ``(num_samples, *batch_shape)`` pointwise log-likelihoods (:mod:`exmc.loglik`).
    """

    def __init__(self, draws: dict[str, np.ndarray], stats: dict[str, np.ndarray], info: dict[str, Any],
                 unconstrained: np.ndarray | None = None,
                 log_likelihood: dict[str, np.ndarray] | None = None) -> None:
        self._draws = draws
        self.stats = stats
        self.info = info
        self.unconstrained = unconstrained
        self.log_likelihood = log_likelihood

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
    """The traces of one run (a ``list`` of :class:`Trace`), with diagnostics and export.

    ``summary()`` returns an :class:`exmc.diagnostics.Summary`, ``warnings()`` a list of strings,
    ``to_inference_data()`` (alias ``to_arviz()``) the object the installed ArviZ accepts
    (:mod:`exmc.arviz`), ``save(path)`` a netCDF file that ``exmc.load(path)`` reads back.

    Attributes (set by ``sample_chains`` from the model's IR, or by ``exmc.load``):
        ir: the IR the chains were sampled from, or ``None`` (a compiled custom model, a loaded
            file, a pickled copy); predictive groups are drawn through it.
        groups: further ArviZ groups, group name -> variable -> array (``observed_data`` and
            ``constant_data`` from the IR; whatever a loaded file held besides posterior,
            sample_stats and log_likelihood).
        dims: variable -> names of its axes (without ``chain``, ``draw``).
        coords: dimension -> its labels.
        notes: what happened to the run itself (a node lost and the chains that moved), listed
            first by ``warnings()``.
    """

    def __init__(self, traces=(), ir=None, groups: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                 dims: Mapping[str, Sequence[str]] | None = None,
                 coords: Mapping[str, Sequence[Any]] | None = None, notes: Sequence[str] = ()) -> None:
        super().__init__(traces)
        self.notes = list(notes)
        self.ir = ir
        self.groups: dict[str, dict[str, np.ndarray]] = {k: dict(v) for k, v in (groups or {}).items()}
        self.dims: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (dims or {}).items()}
        self.coords: dict[str, tuple[Any, ...]] = {k: tuple(v) for k, v in (coords or {}).items()}
        if ir is not None:
            self._describe(ir)

    def __reduce_ex__(self, protocol):
        # A pickled Chains (a remote call's result) leaves the IR behind: it may hold callables and
        # would carry the model's data a second time. observed_data/constant_data, dims and coords
        # travel; predictive groups then need their draws passed in (see to_inference_data).
        state = {**self.__dict__, "ir": None}
        return (Chains, (list(self),), state)

    def _describe(self, ir) -> None:
        """observed_data, constant_data, dims and coords from the IR."""
        rv_dims = ir.dims_map()
        observed, constant = {}, {}
        for node in ir.nodes:
            if node.kind == "obs":
                rv = ir.get(node.rv)
                if getattr(rv.dist, "is_carrier", False):
                    continue  # a Potential's or HMM's carrier: a dummy value, no data
                observed[node.rv] = np.asarray(node.value)
            elif node.kind == "data":
                constant[node.name] = np.asarray(node.value)
        if observed:
            self.groups.setdefault("observed_data", {}).update(observed)
        if constant:
            self.groups.setdefault("constant_data", {}).update(constant)
        self.dims.update(rv_dims)
        self.coords.update(ir.coord_map())

    def to_inference_data(self, prior: Any = None, posterior_predictive: Any = None,
                          log_likelihood: bool | None = None, seed: int = 0, backend: str = "auto"):
        """ArviZ's object for these chains: ``arviz.InferenceData`` with ArviZ 0.x installed, an
        xarray ``DataTree`` with ArviZ 1.x / arviz-base (see :func:`exmc.arviz.to_inference_data`
        for the groups and arguments)."""
        from exmc.arviz import to_inference_data

        return to_inference_data(self, prior=prior, posterior_predictive=posterior_predictive,
                                 log_likelihood=log_likelihood, seed=seed, backend=backend)

    def to_arviz(self, **kwargs):
        """The same as :meth:`to_inference_data`."""
        return self.to_inference_data(**kwargs)

    def save(self, path, **kwargs) -> None:
        """Write every group (``kwargs`` as for :meth:`to_inference_data`) to the netCDF file
        ``path``; ``exmc.load(path)`` reads it back."""
        from exmc.arviz import save

        save(self, path, **kwargs)

    def summary(self, hdi_prob: float = 0.94, var_names: Sequence[str] | None = None):
        from exmc.diagnostics import summary

        return summary(self, hdi_prob=hdi_prob, var_names=var_names)

    def warnings(self) -> list[str]:
        from exmc.diagnostics import warnings

        return list(getattr(self, "notes", ())) + warnings(self)

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
