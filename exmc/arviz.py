"""Export :class:`exmc.nuts.Chains` to ArviZ, whichever generation is installed; netCDF files.

ArviZ exists in two generations that do not accept each other's objects: legacy ArviZ (0.2x) works
on ``arviz.InferenceData``, ArviZ 1.x (``arviz-base``, ``arviz-stats``, ``arviz-plots``) on xarray's
``DataTree``. :func:`to_inference_data` builds the same groups for both and returns the object the
installed ArviZ takes: ``InferenceData`` when ``arviz`` < 1 is installed, else a ``DataTree``
(``arviz-base``). ``backend="legacy"`` / ``"datatree"`` forces one.

Groups (ArviZ's names): ``posterior`` (every free rv and kept deterministic), ``sample_stats``
(``lp``, ``acceptance_rate``, ``step_size``, ``tree_depth``, ``n_steps``, ``diverging``,
``energy``), ``log_likelihood`` (when sampled with ``log_likelihood=True``), ``observed_data``
(each observed rv's data, under the rv's name), ``constant_data`` (the IR's data nodes),
``prior`` / ``prior_predictive`` (from :meth:`exmc.Predictive.prior_samples`: free rvs and dets in
the first, observed rvs in the second), ``posterior_predictive`` (from
:meth:`exmc.Predictive.posterior_predictive`). ``dims`` and ``coords`` come from the IR
(``Builder.rv(..., dims=...)``, ``Builder.coords``).

Files: :func:`save` writes the groups to netCDF (HDF5, with ``h5netcdf``) together with each
chain's run information; :func:`load` reads such a file back into a :class:`Chains` (with either
ArviZ generation, or none: it needs only xarray), so a saved run can be exported, summarised or
compared again.
"""
from __future__ import annotations

import json
import warnings
from typing import Any, Mapping

import numpy as np

__all__ = ["to_inference_data", "to_arviz", "save", "load", "installed_backend", "STAT_NAMES"]

#: exmc's per-draw statistics under ArviZ's sample_stats names.
STAT_NAMES = {
    "lp": "lp",
    "accept_prob": "acceptance_rate",
    "step_size": "step_size",
    "tree_depth": "tree_depth",
    "n_steps": "n_steps",
    "divergent": "diverging",
    "energy": "energy",
}
#: The groups with a (chain, draw) leading shape besides posterior and sample_stats.
SAMPLED_GROUPS = ("log_likelihood", "prior", "prior_predictive", "posterior_predictive")
#: The groups without sample dimensions.
DATA_GROUPS = ("observed_data", "constant_data")
#: Attribute of the sample_stats group holding each chain's ``Trace.info`` (JSON) in saved files.
INFO_ATTR = "exmc_chain_info"
BACKENDS = ("auto", "legacy", "datatree")


def _legacy_arviz():
    """``arviz`` when it is the legacy generation (< 1), else ``None``."""
    try:
        with warnings.catch_warnings():
            # Legacy ArviZ announces its refactor with a FutureWarning on every import.
            warnings.simplefilter("ignore", FutureWarning)
            import arviz
    except ImportError:
        return None
    major = int(str(getattr(arviz, "__version__", "1")).split(".")[0])
    return arviz if major < 1 else None


def installed_backend() -> str:
    """``"legacy"`` when ArviZ 0.x is installed, ``"datatree"`` when arviz-base (ArviZ 1.x) is;
    ``ImportError`` naming what to install when neither is."""
    if _legacy_arviz() is not None:
        return "legacy"
    try:
        import arviz_base  # noqa: F401
    except ImportError:
        raise ImportError("exporting to ArviZ needs arviz (pip install arviz) or arviz-base "
                          "(pip install 'pynode-exmc[arviz]')") from None
    return "datatree"


def _with_chain_axis(draws: Mapping[str, Any], lead: tuple[int, ...] | None) -> dict[str, np.ndarray]:
    """Predictive draws as ``(chain, draw, ...)``: ``(n, ...)`` arrays get a chain axis of 1;
    arrays already carrying ``lead = (chains, draws)`` are kept."""
    out = {}
    for name, value in draws.items():
        array = np.asarray(value)
        if lead is not None and array.shape[:2] == lead:
            out[name] = array
        else:
            out[name] = array[None, ...]
    return out


def groups_of(chains, prior: Any = None, posterior_predictive: Any = None, log_likelihood: bool | None = None,
              seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """The ArviZ groups of ``chains`` as plain dicts of numpy arrays (see the module docstring
    for ``prior``, ``posterior_predictive`` and ``log_likelihood``)."""
    from exmc.predictive import Predictive

    if not len(chains):
        raise ValueError("no chains to export")
    groups: dict[str, dict[str, np.ndarray]] = {
        "posterior": {name: chains.stacked(name) for name in chains[0]},
        "sample_stats": {az: np.stack([t.stats[name] for t in chains]) for name, az in STAT_NAMES.items()},
    }
    have_ll = all(getattr(t, "log_likelihood", None) is not None for t in chains)
    if log_likelihood and not have_ll:
        raise ValueError("these chains carry no log-likelihood: sample with log_likelihood=True")
    if have_ll and log_likelihood is not False:
        groups["log_likelihood"] = {name: np.stack([t.log_likelihood[name] for t in chains])
                                    for name in chains[0].log_likelihood}
    for name, group in chains.groups.items():
        groups.setdefault(name, {}).update(group)
    ir = chains.ir
    lead = (len(chains), chains[0].num_samples)
    if prior is not None and prior is not False:
        if ir is None and not isinstance(prior, Mapping):
            raise ValueError("prior=<number of draws> needs the chains' IR; pass Predictive.prior_samples' dict")
        draws = Predictive.prior_samples(ir, int(prior), seed=seed) if not isinstance(prior, Mapping) else prior
        observed = set(groups.get("observed_data", {})) | ({n.rv for n in ir.nodes if n.kind == "obs"} if ir else set())
        groups["prior"] = _with_chain_axis({k: v for k, v in draws.items() if k not in observed}, None)
        predictive = {k: v for k, v in draws.items() if k in observed}
        if predictive:
            groups["prior_predictive"] = _with_chain_axis(predictive, None)
    if posterior_predictive is not None and posterior_predictive is not False:
        if isinstance(posterior_predictive, Mapping):
            draws = posterior_predictive
        elif ir is None:
            raise ValueError("posterior_predictive=True needs the chains' IR; pass Predictive.posterior_predictive's dict")
        else:
            draws = Predictive.posterior_predictive(ir, groups["posterior"], seed=seed)
        groups["posterior_predictive"] = _with_chain_axis(draws, lead)
    return {name: group for name, group in groups.items() if group}


def to_inference_data(chains, prior: Any = None, posterior_predictive: Any = None,
                      log_likelihood: bool | None = None, seed: int = 0, backend: str = "auto"):
    """``chains`` as the object the installed ArviZ accepts (see the module docstring).

    ``prior``: a number of prior draws to take with :class:`exmc.Predictive` (needs the IR the
    chains were sampled from), or the dict ``Predictive.prior_samples`` returned.
    ``posterior_predictive``: ``True`` to draw it from the posterior, or the dict
    ``Predictive.posterior_predictive`` returned. ``log_likelihood``: ``None`` exports it when the
    chains carry it, ``False`` leaves it out, ``True`` requires it. ``seed`` seeds predictive draws.

    Raises ``ImportError`` naming the package when no ArviZ is installed, ``ValueError`` for a
    group that cannot be made (no IR, no log-likelihood) or an unknown ``backend``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    groups = groups_of(chains, prior, posterior_predictive, log_likelihood, seed)
    dims = {name: list(d) for name, d in chains.dims.items()}
    coords = {name: list(labels) for name, labels in chains.coords.items()}
    info = json.dumps([_jsonable(t.info) for t in chains])
    if backend == "auto":
        backend = installed_backend()
    if backend == "legacy":
        az = _legacy_arviz()
        if az is None:
            raise ImportError("backend='legacy' needs ArviZ 0.x: pip install 'arviz<1'")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "More chains than draws" for small prior groups
            idata = az.from_dict(**groups, coords=coords, dims=dims)
        idata.sample_stats.attrs[INFO_ATTR] = info
        return idata
    try:
        from arviz_base import from_dict
    except ImportError:
        raise ImportError("backend='datatree' needs arviz-base: pip install 'pynode-exmc[arviz]'") from None
    tree = from_dict(groups, coords=coords, dims=dims)
    tree["sample_stats"].attrs[INFO_ATTR] = info
    return tree


def to_arviz(chains, **kwargs):
    """The same as :func:`to_inference_data` (the earlier name)."""
    return to_inference_data(chains, **kwargs)


def save(chains, path, **kwargs) -> None:
    """Write ``chains`` (every group :func:`to_inference_data` makes with ``kwargs``) to the
    netCDF file ``path``. Raises ``ImportError`` when no ArviZ is installed, ``OSError`` when the
    file cannot be written."""
    data = to_inference_data(chains, **kwargs)
    data.to_netcdf(str(path), engine="h5netcdf")


def load(path):
    """Read a file written by :func:`save` (or any ArviZ netCDF file with a posterior) into a
    :class:`~exmc.nuts.Chains` whose traces hold the posterior draws and sampler statistics, whose
    ``log_likelihood`` travels on each trace and whose other groups, dims and coords are kept for
    the next export. Needs xarray (installed with either ArviZ generation). Raises ``OSError`` for
    an unreadable file and ``ValueError`` when it has no posterior group."""
    try:
        import xarray as xr
    except ImportError:
        raise ImportError("exmc.load needs xarray (pip install arviz or 'pynode-exmc[arviz]')") from None
    from exmc.nuts.trace import STAT_DTYPES, Chains, Trace

    tree = xr.open_datatree(str(path), engine="h5netcdf")
    try:
        names = [child.lstrip("/") for child in tree.children]
        if "posterior" not in names:
            raise ValueError(f"{path}: no posterior group (groups: {names})")
        datasets = {name: tree[name].to_dataset().load() for name in names}
    finally:
        tree.close()
    posterior = datasets.pop("posterior")
    stats = datasets.pop("sample_stats", None)
    ll = datasets.pop("log_likelihood", None)
    n_chains = posterior.sizes["chain"]
    infos = json.loads(stats.attrs.get(INFO_ATTR, "null")) if stats is not None else None
    dims: dict[str, tuple[str, ...]] = {}
    coords: dict[str, tuple[Any, ...]] = {}
    sample_dims = ("chain", "draw")

    def remember(dataset) -> None:
        for var, array in dataset.data_vars.items():
            own = tuple(d for d in array.dims if d not in sample_dims)
            if own and not all(d.startswith(f"{var}_dim_") for d in own):
                dims[var] = own
            for d in own:
                if d in dataset.coords and not d.startswith(f"{var}_dim_"):
                    coords[d] = tuple(dataset.coords[d].values.tolist())

    for dataset in [posterior, *(d for d in (ll,) if d is not None), *datasets.values()]:
        remember(dataset)
    inverse = {az: name for name, az in STAT_NAMES.items()}
    traces = []
    for c in range(n_chains):
        draws = {var: np.asarray(posterior[var].values[c]) for var in posterior.data_vars}
        trace_stats = {}
        if stats is not None:
            for az_name in stats.data_vars:
                name = inverse.get(az_name, az_name)
                dtype = STAT_DTYPES.get(name)
                trace_stats[name] = np.asarray(stats[az_name].values[c], dtype=dtype)
        info = dict(infos[c]) if infos else {"chain": c}
        if "inverse_metric" in info:
            info["inverse_metric"] = np.asarray(info["inverse_metric"])
        trace = Trace(draws, trace_stats, info)
        if ll is not None:
            trace.log_likelihood = {var: np.asarray(ll[var].values[c]) for var in ll.data_vars}
        traces.append(trace)
    groups = {name: {var: np.asarray(ds[var].values) for var in ds.data_vars} for name, ds in datasets.items()}
    return Chains(traces, groups=groups, dims=dims, coords=coords)


def _jsonable(info: Mapping[str, Any]) -> dict[str, Any]:
    """A trace's info with numpy values as JSON-able Python values."""
    out = {}
    for key, value in info.items():
        if isinstance(value, np.ndarray):
            out[key] = value.tolist()
        elif isinstance(value, np.generic):
            out[key] = value.item()
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out
