"""A model IR as plain terms — lists, maps, strings and numbers — and back.

This is the IR's form for callers that cannot build Python objects: an Elixir or Erlang node
(through pynode's term mapping, see docs/erlang.md), JSON, a config file. One map per IR node,
with the fields of the Python IR node and its kind as the key holding its name::

    [%{rv: "mu", dist: "Normal", params: %{mu: 0.0, sigma: 10.0}},
     %{rv: "sigma", dist: "HalfNormal", params: %{sigma: 2.0}},
     %{rv: "y", dist: "Normal", params: %{mu: "mu", sigma: "sigma"}},
     %{obs: "y_obs", rv: "y", value: [2.1, 1.9, ...]},
     %{det: "mu2", op: "mul", args: ["mu", 2.0]},
     %{data: "x", value: [[1.0, 2.0], ...]}]

Optional fields: ``shape`` and ``reparam`` (``"noncentered"``) of an rv, ``censored``
(``[lower, upper]``) of an obs, ``options`` (a map) of a det. Keys may be strings, atoms or
binaries (``bytes``, decoded as UTF-8), and so may names. Families whose parameters are not data
(``Custom``, ``Mixture``) and non-default transforms have no term form.

:func:`from_terms` builds the IR through :class:`exmc.builder.Builder`, so a bad model raises the
same :class:`~exmc.errors.ValidationError`, with the same text, as when built in Python; a term
that is not a model at all raises ValidationError naming the node's position.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from exmc.errors import ValidationError
from exmc.ir import IR, RV, Data, Det, Obs

__all__ = ["to_terms", "from_terms"]

KINDS = ("rv", "obs", "det", "data")
_FIELDS = {
    "rv": {"rv", "dist", "params", "shape", "reparam"},
    "obs": {"obs", "rv", "value", "censored"},
    "det": {"det", "op", "args", "options"},
    "data": {"data", "value"},
}


def to_terms(ir: IR) -> list[dict[str, Any]]:
    """``ir`` as a list of plain maps (strings, numbers, nested lists). Raises ValidationError
    for a node with no term form (a ``Custom`` or ``Mixture`` rv, an explicit transform)."""
    terms: list[dict[str, Any]] = []
    for node in ir:
        if isinstance(node, RV):
            if node.transform is not None:
                raise ValidationError("rv", node.name, "transform", "an explicit transform has no term form")
            params = {key: _plain(node.name, "rv", f"param {key!r}", value) for key, value in node.params}
            term: dict[str, Any] = {"rv": node.name, "dist": node.dist.name, "params": params}
            if node.shape is not None:
                term["shape"] = list(node.shape)
            if node.reparam is not None:
                term["reparam"] = node.reparam
        elif isinstance(node, Obs):
            term = {"obs": node.name, "rv": node.rv, "value": node.value.tolist()}
            if node.censored is not None:
                term["censored"] = [np.asarray(bound).tolist() for bound in node.censored]
        elif isinstance(node, Det):
            term = {"det": node.name, "op": node.op, "args": [_plain(node.name, "det", "args", a) for a in node.args]}
            if node.options:
                term["options"] = {key: _plain(node.name, "det", f"option {key!r}", v) for key, v in node.options}
        elif isinstance(node, Data):
            term = {"data": node.name, "value": node.value.tolist()}
        else:  # pragma: no cover - the IR has four kinds
            raise ValidationError("ir", None, "nodes", f"unknown node {node!r}")
        terms.append(term)
    return terms


def _plain(name: str, kind: str, where: str, value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value):
        return list(value)
    raise ValidationError(kind, name, where, f"{type(value).__name__} value has no term form")


def from_terms(terms: Sequence[Mapping[Any, Any]]) -> IR:
    """The IR described by ``terms`` (see the module docstring). Raises ValidationError."""
    from exmc.builder import Builder

    if isinstance(terms, (str, bytes)) or not isinstance(terms, Sequence):
        raise ValidationError("ir", None, "terms", f"must be a list of node maps, got {type(terms).__name__}")
    ir = Builder.new_ir()
    for position, raw in enumerate(terms):
        where = f"node #{position + 1}"
        if not isinstance(raw, Mapping):
            raise ValidationError("ir", None, where, f"must be a map, got {type(raw).__name__}")
        term = {_text(key, where, "key"): value for key, value in raw.items()}
        kinds = [kind for kind in KINDS if kind in term and not (kind == "rv" and "obs" in term)]
        if len(kinds) != 1:
            raise ValidationError("ir", None, where, f"needs exactly one of the keys rv, obs, det, data; got {sorted(term)}")
        kind = kinds[0]
        name = _text(term[kind], where, kind)
        unknown = sorted(set(term) - _FIELDS[kind])
        if unknown:
            raise ValidationError(kind, name, f"key {unknown[0]!r}", f"unknown key of a {kind} node (it takes {sorted(_FIELDS[kind])})")
        if kind == "rv":
            params = term.get("params", {})
            if not isinstance(params, Mapping):
                raise ValidationError("rv", name, "params", f"must be a map, got {type(params).__name__}")
            shape = term.get("shape")
            reparam = term.get("reparam")
            ir = Builder.rv(
                ir,
                name,
                _text(term.get("dist"), name, "dist"),
                {_text(k, name, "param"): _value(v) for k, v in params.items()},
                shape=tuple(shape) if isinstance(shape, list) else shape,
                reparam=None if reparam is None else _text(reparam, name, "reparam"),
            )
        elif kind == "obs":
            censored = term.get("censored")
            if censored is not None:
                if not isinstance(censored, (list, tuple)) or len(censored) != 2:
                    raise ValidationError("obs", name, "censored", "must be [lower, upper]")
                censored = (_value(censored[0]), _value(censored[1]))
            ir = Builder.obs(ir, name, _text(term.get("rv"), name, "rv"), _value(term.get("value")), censored=censored)
        elif kind == "det":
            args = term.get("args", [])
            if not isinstance(args, list):
                raise ValidationError("det", name, "args", f"must be a list, got {type(args).__name__}")
            options = term.get("options", {})
            if not isinstance(options, Mapping):
                raise ValidationError("det", name, "options", f"must be a map, got {type(options).__name__}")
            ir = Builder.det(
                ir, name, _text(term.get("op"), name, "op"), [_value(a) for a in args],
                **{_text(k, name, "option"): _value(v) for k, v in options.items()},
            )
        else:
            ir = Builder.data(ir, name, _value(term.get("value")))
    return ir


def _text(value: Any, where: str, what: str) -> str:
    """A name or key: a str (an Erlang atom is one) or UTF-8 bytes (an Erlang binary)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("ir", where, what, f"{value[:40]!r} is not UTF-8") from None
    if isinstance(value, str):
        return str(value)
    raise ValidationError("ir", where, what, f"must be a string, got {type(value).__name__} {value!r:.40}")


def _value(value: Any) -> Any:
    """A parameter or argument: binaries are node names (str), lists stay lists (Builder makes
    arrays of them), everything else as given."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_value(v) for v in value] if any(isinstance(v, (bytes, list)) for v in value) else value
    return value
