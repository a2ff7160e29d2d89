"""A model as plain data: immutable, picklable node records and the checks on their wiring.

An :class:`IR` is an ordered tuple of nodes. Four kinds exist:

- :class:`RV` — a random variable ``name ~ dist(params)``; free (sampled) unless an :class:`Obs`
  binds data to it.
- :class:`Obs` — binds an observed array to an rv, making it a likelihood term.
- :class:`Det` — a deterministic value computed by an op of :mod:`exmc.ops` from its arguments.
- :class:`Data` — a named constant array (design matrix, group indices).

A parameter or argument is a *reference* when it is a ``str`` (the name of another rv, det or data
node), a *constant* (a read-only numpy array) otherwise, or an *opaque* object (callables of
``Custom``, component lists of ``Mixture``) passed through to the family untouched.

Nodes are frozen dataclasses; arrays inside them are made read-only, so an IR can be shared between
builder steps, threads and (through cloudpickle) processes. :func:`check_structure` verifies the
wiring (references, cycles, observations, discrete rvs, reparametrisations) and returns the nodes in
dependency order; the numeric checks (shapes, domains, supports) live in :mod:`exmc.shapes`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Union

import numpy as np

from exmc.errors import ValidationError

__all__ = [
    "RV", "Obs", "Det", "Data", "IR", "Node", "is_ref", "as_constant", "check_structure", "NONCENTERED",
]

#: The only reparametrisation eXMC knows: ``x = mu + sigma * z`` with ``z ~ Normal(0, 1)``.
NONCENTERED = "noncentered"


def is_ref(value: Any) -> bool:
    """True when a parameter/argument value names another node."""
    return isinstance(value, str)


def as_constant(value: Any, *, floating: bool = False) -> Any:
    """A numeric value as a read-only numpy array: float64, or int64/bool for integer/boolean input
    unless ``floating``. Non-numeric objects (callables, component lists) are returned unchanged
    (opaque values for families such as ``Custom`` and ``Mixture``)."""
    if callable(value):
        return value
    try:
        array = np.array(value)
    except (TypeError, ValueError):
        return value
    kind = array.dtype.kind
    if kind not in "biuf":
        return value
    if floating or kind == "f":
        array = array.astype(np.float64)
    elif kind in "iu":
        array = array.astype(np.int64)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class RV:
    """``name ~ dist(**params)``.

    Attributes:
        name: node name.
        dist: the family (an ``exmc.dist.base.Distribution``).
        params: ``(param_name, value)`` pairs, in the order given.
        shape: explicit shape, or ``None`` to take the broadcast shape of the parameters (or of the
            observed value when observed).
        transform: an ``exmc.transforms.Transform`` overriding the family default, or ``None``.
        reparam: ``None`` or ``"noncentered"``.
        resolved: ``(family, flat_params)`` from ``dist.resolve(params)`` (the Builder fills it in;
            structured families such as ``Mixture`` and ``Custom`` flatten their parameters there, and
            only the flat parameters' strings are references).
        dims: names of the value's axes (``("school",)``) for ArviZ export, or ``None``; their
            lengths must match the shape and the IR's coords (checked in analysis).
    """

    name: str
    dist: Any
    params: tuple[tuple[str, Any], ...]
    shape: tuple[int, ...] | None = None
    transform: Any = None
    reparam: str | None = None
    resolved: tuple[Any, tuple[tuple[str, Any], ...]] | None = None
    dims: tuple[str, ...] | None = None
    kind = "rv"

    def family_and_params(self) -> tuple[Any, dict[str, Any]]:
        """The concrete family and its flat parameters; a ``ValueError`` from ``resolve`` is raised
        as a ``ValidationError`` on this rv's params."""
        if self.resolved is not None:
            return self.resolved[0], dict(self.resolved[1])
        try:
            return self.dist.resolve(dict(self.params))
        except ValueError as exc:
            raise ValidationError("rv", self.name, "params", str(exc)) from None

    def param(self, name: str) -> Any:
        """The value of parameter ``name`` (``KeyError`` when absent)."""
        for key, value in self.params:
            if key == name:
                return value
        raise KeyError(name)

    def inputs(self) -> Iterator[tuple[str, str]]:
        """``(field, referenced_name)`` for each reference among the (flat) parameters."""
        _, params = self.family_and_params()
        for key, value in params.items():
            if is_ref(value):
                yield f"param {key!r}", value


@dataclass(frozen=True, eq=False)
class Obs:
    """Observed data for rv ``rv``; ``censored=(lower, upper)`` marks values at or beyond a bound as
    censored there (``-inf``/``+inf`` for one-sided censoring)."""

    name: str
    rv: str
    value: np.ndarray
    censored: tuple[np.ndarray, np.ndarray] | None = None
    kind = "obs"

    def inputs(self) -> Iterator[tuple[str, str]]:
        yield "rv", self.rv


@dataclass(frozen=True, eq=False)
class Det:
    """``name = op(*args, **options)`` with ``op`` one of :data:`exmc.ops.OPS`."""

    name: str
    op: str
    args: tuple[Any, ...]
    options: tuple[tuple[str, Any], ...] = ()
    dims: tuple[str, ...] | None = None  # axis names for export (see RV.dims)
    kind = "det"

    def inputs(self) -> Iterator[tuple[str, str]]:
        for position, value in enumerate(self.args):
            if is_ref(value):
                yield f"arg {position}", value


@dataclass(frozen=True, eq=False)
class Data:
    """A named constant array."""

    name: str
    value: np.ndarray
    dims: tuple[str, ...] | None = None  # axis names for export (see RV.dims)
    kind = "data"

    def inputs(self) -> Iterator[tuple[str, str]]:
        return iter(())


Node = Union[RV, Obs, Det, Data]


@dataclass(frozen=True, eq=False)
class IR:
    """A model: nodes in the order they were added. Immutable; :meth:`add` returns a new IR.

    ``coords`` names the labels of dimensions used in the nodes' ``dims`` (``(("school",
    ("A", "B", ...)),)``), for ArviZ export; set with ``Builder.coords``.
    """

    nodes: tuple[Node, ...] = field(default=())
    coords: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, name: object) -> bool:
        return any(node.name == name for node in self.nodes)

    def get(self, name: str) -> Node | None:
        """The node called ``name``, or ``None``."""
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    def add(self, node: Node) -> "IR":
        """A new IR with ``node`` appended (no checks: :mod:`exmc.builder` does them)."""
        return IR(self.nodes + (node,), self.coords)

    def with_nodes(self, nodes: tuple[Node, ...]) -> "IR":
        """A new IR with these nodes and this IR's coords."""
        return IR(tuple(nodes), self.coords)

    def coord_map(self) -> dict[str, tuple[Any, ...]]:
        """dimension name -> its coordinate labels."""
        return dict(self.coords)

    def dims_map(self) -> dict[str, tuple[str, ...]]:
        """node name -> its dims, for the nodes that declare them (an obs takes its rv's)."""
        return {node.name: node.dims for node in self.nodes if getattr(node, "dims", None)}

    def observations(self) -> dict[str, Obs]:
        """rv name -> its observation."""
        return {node.rv: node for node in self.nodes if isinstance(node, Obs)}

    def to_terms(self) -> list[dict[str, Any]]:
        """This model as plain maps and lists (:mod:`exmc.terms`): what an Elixir node sends."""
        from exmc.terms import to_terms

        return to_terms(self)

    @staticmethod
    def from_terms(terms: Any) -> "IR":
        """The model described by plain terms (:mod:`exmc.terms`); raises ValidationError."""
        from exmc.terms import from_terms

        return from_terms(terms)


def check_structure(ir: IR) -> list[Node]:
    """Check the wiring of ``ir`` and return its nodes in dependency order (stable: among nodes
    whose inputs are ready, the order of addition is kept, so compilation is deterministic).

    Raises ``ValidationError`` for: duplicate names, a reference to an unknown node, an obs whose
    rv is unknown or not an rv, an rv observed twice, a reference *to* an obs node, a dependency
    cycle, an unobserved discrete rv (NUTS cannot sample it), a misplaced reparametrisation.
    """
    by_name: dict[str, Node] = {}
    for node in ir.nodes:
        if node.name in by_name:
            raise ValidationError(node.kind, node.name, "name",
                                  f"duplicate name (already used by a {by_name[node.name].kind} node)")
        by_name[node.name] = node

    observed: dict[str, str] = {}
    for node in ir.nodes:
        for where, target in node.inputs():
            if target not in by_name:
                what = "rv" if isinstance(node, Obs) else "node"
                raise ValidationError(node.kind, node.name, where, f"refers to unknown {what} {target!r}")
            referenced = by_name[target]
            if isinstance(node, Obs):
                if not isinstance(referenced, RV):
                    raise ValidationError(node.kind, node.name, where,
                                          f"{target!r} is a {referenced.kind} node, not an rv")
                if target in observed:
                    raise ValidationError(node.kind, node.name, where,
                                          f"rv {target!r} is already observed by obs {observed[target]!r}")
                observed[target] = node.name
            elif isinstance(referenced, Obs):
                raise ValidationError(node.kind, node.name, where,
                                      f"{target!r} is an obs node; refer to its rv {referenced.rv!r} instead")

    for node in ir.nodes:
        if isinstance(node, RV):
            if node.dist.discrete and node.name not in observed:
                raise ValidationError("rv", node.name, "dist",
                                      f"{node.dist.name} is discrete and the rv is not observed: NUTS cannot "
                                      "sample discrete parameters (observe it or marginalise it out)")
            if node.reparam is not None:
                _check_reparam(node, observed)

    return _dependency_order(ir, by_name)


def _check_reparam(node: RV, observed: dict[str, str]) -> None:
    if node.reparam != NONCENTERED:
        raise ValidationError("rv", node.name, "reparam",
                              f"unknown reparametrisation {node.reparam!r} (only {NONCENTERED!r})")
    if node.dist.name != "Normal":
        raise ValidationError("rv", node.name, "reparam",
                              f"{NONCENTERED!r} applies to Normal rvs only, not {node.dist.name}")
    if node.name in observed:
        raise ValidationError("rv", node.name, "reparam", f"an observed rv cannot be {NONCENTERED}")
    if node.transform is not None:
        raise ValidationError("rv", node.name, "transform",
                              f"a {NONCENTERED} rv is sampled as z ~ Normal(0, 1): it takes no transform")


def _dependency_order(ir: IR, by_name: dict[str, Node]) -> list[Node]:
    """Kahn's algorithm keeping insertion order among ready nodes; on a cycle, name one."""
    pending = {node.name: {target for _, target in node.inputs()} for node in ir.nodes}
    order: list[Node] = []
    done: set[str] = set()
    progress = True
    while pending and progress:
        progress = False
        for node in ir.nodes:
            deps = pending.get(node.name)
            if deps is not None and deps <= done:
                order.append(node)
                done.add(node.name)
                del pending[node.name]
                progress = True
    if pending:
        cycle = _find_cycle(pending)
        start = by_name[cycle[0]]
        field = next(where for where, target in start.inputs() if target == cycle[1])
        raise ValidationError(start.kind, start.name, field,
                              "dependency cycle " + " -> ".join(repr(n) for n in cycle))
    return order


def _find_cycle(pending: dict[str, set[str]]) -> list[str]:
    """A cycle among the unresolved nodes, as a list of names with the first repeated last."""
    name = next(iter(pending))
    path: list[str] = []
    while name not in path:
        path.append(name)
        name = next(target for target in sorted(pending[name]) if target in pending)
    return path[path.index(name):] + [name]
