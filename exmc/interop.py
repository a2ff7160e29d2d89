"""exmc for callers that speak terms, not Python objects: an Elixir or Erlang node.

``sample_chains(ir_terms, num_chains[, options])`` takes the model as data (:mod:`exmc.terms`)
and options as a keyword list or a map, and returns a list of chains, each a map from a
variable's name (a string, i.e. an Elixir binary) to its draws: lists of floats nested by the
variable's shape, or with ``arrays: :binary`` the map ``%{"dtype" => "f64", "shape" => [...],
"data" => <<little-endian doubles>>}`` that ``Nx.from_binary(data, :f64) |> Nx.reshape(shape)``
takes. Options: ``num_samples``, ``num_warmup``, ``seed``, ``target_accept``,
``max_tree_depth``, ``dense_mass``, ``init_values`` (a map), ``arrays`` (``:lists`` or
``:binary``). A bad model raises :class:`~exmc.errors.ValidationError`, an unknown option
``ValueError`` naming it.

:data:`ERLANG_EXPORTS` says which Erlang names run these functions; a node that speaks Erlang's
protocol (pynode, ``--preload exmc``) registers them. exmc itself knows nothing of nodes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from exmc.terms import from_terms

__all__ = ["sample_chains", "ERLANG_EXPORTS"]

#: ``(Erlang module, function) -> "python.module:function"``: Elixir's ``Exmc.NUTS.Sampler``.
ERLANG_EXPORTS = {("Elixir.Exmc.NUTS.Sampler", "sample_chains"): "exmc.interop:sample_chains"}

_OPTIONS = {"num_samples", "num_warmup", "seed", "target_accept", "max_tree_depth", "dense_mass", "init_values", "arrays"}


def sample_chains(ir_terms: Sequence[Mapping[Any, Any]], num_chains: int, options: Any = ()) -> list[dict[str, Any]]:
    """Sample ``num_chains`` chains of the model ``ir_terms``; see the module docstring."""
    from exmc.nuts import Sampler

    opts = _options(options)
    arrays = opts.pop("arrays", "lists")
    if arrays not in ("lists", "binary"):
        raise ValueError(f"option arrays must be :lists or :binary, got {arrays!r}")
    if "init_values" in opts:
        opts["init_values"] = {_name(k): v for k, v in dict(opts["init_values"]).items()}
    ir = from_terms(ir_terms)
    chains = Sampler.sample_chains(ir, int(num_chains), **opts)
    return [{name: _draws(trace[name], arrays) for name in trace} for trace in chains]


def _options(options: Any) -> dict[str, Any]:
    """A keyword list (``[(atom, value), ...]``) or a map, as a dict with str keys."""
    if isinstance(options, Mapping):
        pairs = list(options.items())
    elif isinstance(options, (list, tuple)) and all(isinstance(p, tuple) and len(p) == 2 for p in options):
        pairs = list(options)
    else:
        raise ValueError(f"options must be a keyword list or a map, got {options!r:.80}")
    result = {_name(key): value for key, value in pairs}
    unknown = sorted(set(result) - _OPTIONS)
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} of sample_chains (known: {', '.join(sorted(_OPTIONS))})")
    if isinstance(result.get("arrays"), bytes):
        result["arrays"] = result["arrays"].decode()
    return result


def _name(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


def _draws(values: np.ndarray, arrays: str) -> Any:
    values = np.asarray(values, dtype=np.float64)
    if arrays == "lists":
        return values.tolist()
    return {"dtype": "f64", "shape": list(values.shape), "data": values.astype("<f8").tobytes()}
