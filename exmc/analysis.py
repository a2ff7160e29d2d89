"""Compile-time analysis of an IR: dependency order, shapes, constants, and the numeric checks.

:func:`analyse` is the single entry point used by :mod:`exmc.model` and :mod:`exmc.predictive`. It
runs :func:`exmc.ir.check_structure`, then walks the nodes in dependency order and

- infers every node's shape (an rv takes its explicit ``shape``, else its observed value's shape,
  else the broadcast of its parameters' batch shapes) and checks that parameters and op arguments
  fit it, raising ``ValidationError`` naming the node and the parameter/argument that does not;
- folds constants: data nodes, observed rvs (their value is the data) and dets whose arguments are
  all constant get a value here, once;
- checks observed values against the family's support (with the parameters that are constant) and
  the index range of ``index`` ops (through the op's shape rule).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from exmc import ops
from exmc.errors import ValidationError
from exmc.ir import IR, NONCENTERED, RV, Data, Det, Node, Obs, check_structure, is_ref

logger = logging.getLogger(__name__)

__all__ = ["Analysis", "analyse", "apply_auto_noncentered", "check_constant_params"]


@dataclass(frozen=True)
class Analysis:
    """What the compilers need to know about a checked IR.

    Attributes:
        order: nodes in dependency order (obs nodes included).
        shapes: node name -> shape (an rv's value shape; an obs has its rv's shape).
        consts: node name -> value, for nodes whose value is fixed (data, observed rvs, constant dets).
        observations: rv name -> its Obs node.
        families: rv name -> ``(family, params)`` after :meth:`Distribution.resolve`.
        free: unobserved rvs in dependency order.
    """

    order: tuple[Node, ...]
    shapes: dict[str, tuple[int, ...]]
    consts: dict[str, Any]
    observations: dict[str, Obs]
    families: dict[str, tuple[Any, dict[str, Any]]]
    free: tuple[RV, ...]

    def value_of(self, arg: Any) -> Any:
        """The constant value of an argument (a constant itself, or a reference to a constant node);
        ``None`` when it varies."""
        if is_ref(arg):
            return self.consts.get(arg)
        return arg

    def shape_of(self, arg: Any) -> tuple[int, ...]:
        """Shape of an argument (reference or constant)."""
        return self.shapes[arg] if is_ref(arg) else tuple(np.shape(arg))

    def constant_params(self, rv_name: str) -> dict[str, Any]:
        """The parameters of rv ``rv_name`` whose value is fixed (constants and references to
        constant nodes), by name, with their values."""
        _, params = self.families[rv_name]
        values = {key: self.value_of(value) for key, value in params.items()}
        return {key: value for key, value in values.items() if value is not None}


def check_constant_params(name: str, family, constants: dict[str, Any]) -> None:
    """Check the constant parameters of rv ``name`` against their domains.

    Each parameter is checked alone first, so the error names it; then all together (joint
    conditions such as ``lower < upper``). NaN is rejected for every numeric parameter; infinities
    only where the family says so (TruncatedNormal's bounds may be infinite).
    Raises ``ValidationError`` naming the rv and the parameter.
    """
    numeric = {k: v for k, v in constants.items() if isinstance(v, np.ndarray)}
    for key, value in numeric.items():
        if value.dtype.kind == "f" and np.isnan(value).any():
            raise ValidationError("rv", name, f"param {key!r}", "contains NaN")
        try:
            family.check_params({key: value})
        except ValueError as exc:
            raise ValidationError("rv", name, f"param {key!r}", str(exc)) from None
        except (KeyError, TypeError):
            pass  # a joint check needing the other parameters: done below
    try:
        family.check_params(numeric)
    except ValueError as exc:
        raise ValidationError("rv", name, "params", str(exc)) from None
    except (KeyError, TypeError):
        logger.debug("rv %r: joint parameter check skipped (not all parameters constant)", name)


def apply_auto_noncentered(ir: IR) -> IR:
    """The IR with ``reparam="noncentered"`` on every unobserved Normal rv whose ``mu`` and
    ``sigma`` are both references (where eXMC applies it) and which has no transform override."""
    observed = ir.observations()
    nodes = []
    for node in ir.nodes:
        if (isinstance(node, RV) and node.reparam is None and node.transform is None
                and node.name not in observed and node.dist.name == "Normal"):
            params = dict(node.params)
            if is_ref(params.get("mu")) and is_ref(params.get("sigma")):
                logger.debug("rv %r: applying the noncentered parametrisation (ncp='auto')", node.name)
                node = replace(node, reparam=NONCENTERED)
        nodes.append(node)
    return ir.with_nodes(tuple(nodes))


def analyse(ir: IR) -> Analysis:
    """Check ``ir`` completely and describe it (see the module docstring).

    Raises ``ValidationError`` for everything :func:`exmc.ir.check_structure` rejects, plus: shapes
    that do not broadcast, an unknown op or option, a wrong number of op arguments, an index out of
    range, a constant parameter outside its domain, an observed value outside the support.
    """
    if not len(ir):
        raise ValidationError("model", None, "nodes", "the IR is empty: add random variables with Builder.rv "
                              "(and data with Builder.obs) before compiling or sampling")
    order = tuple(check_structure(ir))
    observations = ir.observations()
    shapes: dict[str, tuple[int, ...]] = {}
    consts: dict[str, Any] = {}
    families: dict[str, tuple[Any, dict[str, Any]]] = {}
    analysis = Analysis(order, shapes, consts, observations, families,
                        tuple(n for n in order if isinstance(n, RV) and n.name not in observations))
    for node in order:
        if isinstance(node, Data):
            shapes[node.name] = node.value.shape
            consts[node.name] = node.value
        elif isinstance(node, Det):
            _analyse_det(node, analysis)
        elif isinstance(node, RV):
            families[node.name] = node.family_and_params()
            _analyse_rv(node, analysis)
        elif isinstance(node, Obs):
            shapes[node.name] = shapes[node.rv]
            _check_support(node, analysis)
    _check_dims(ir, analysis)
    return analysis


def _check_dims(ir: IR, analysis: Analysis) -> None:
    """Every node's ``dims`` name each axis of its shape once, and a dimension has one length
    everywhere: the length of its coords when the IR declares them, else the first use."""
    coords = ir.coord_map()
    lengths = {name: (len(labels), "coords") for name, labels in coords.items()}
    for node in analysis.order:
        dims = getattr(node, "dims", None)
        if not dims:
            continue
        shape = analysis.shapes[node.name]
        if len(dims) != len(shape):
            raise ValidationError(node.kind, node.name, "dims",
                                  f"names {len(dims)} dimension(s) {tuple(dims)} for a value of shape {shape}")
        for axis, (dim, n) in enumerate(zip(dims, shape)):
            known = lengths.setdefault(dim, (n, f"{node.kind} {node.name!r}"))
            if known[0] != n:
                raise ValidationError(node.kind, node.name, "dims",
                                      f"dimension {dim!r} (axis {axis}) has length {n}, but {known[1]} gives it "
                                      f"length {known[0]}")


def _analyse_det(node: Det, analysis: Analysis) -> None:
    try:
        op = ops.get(node.op)
    except KeyError:
        raise ValidationError("det", node.name, "op",
                              f"unknown op {node.op!r}; known: {', '.join(sorted(ops.OPS))}") from None
    if op.arity is not None and len(node.args) != op.arity:
        raise ValidationError("det", node.name, "args",
                              f"op {node.op!r} takes {op.arity} argument(s), got {len(node.args)}")
    if op.arity is None and not node.args:
        raise ValidationError("det", node.name, "args", f"op {node.op!r} needs at least one argument")
    options = dict(op.options)
    for key, value in node.options:
        if key not in op.options:
            raise ValidationError("det", node.name, f"option {key!r}",
                                  f"op {node.op!r} has no such option (known: {sorted(op.options) or 'none'})")
        options[key] = value
    for position, arg in enumerate(node.args):
        if not is_ref(arg) and not isinstance(arg, np.ndarray):
            raise ValidationError("det", node.name, f"arg {position}",
                                  f"must be a node name or a number/array, got {type(arg).__name__}")
    shapes = [analysis.shape_of(a) for a in node.args]
    consts = [analysis.value_of(a) for a in node.args]
    try:
        shape = op.shape(shapes, consts, options)
    except ValueError as exc:
        raise ValidationError("det", node.name, "args", str(exc)) from None
    analysis.shapes[node.name] = tuple(shape)
    if all(c is not None for c in consts):
        kernel = op.kernel(shapes, [False] * len(shapes), [False] * len(shapes), options)
        with np.errstate(all="ignore"):
            value = np.asarray(kernel.forward(*consts))
        value.setflags(write=False)
        analysis.consts[node.name] = value


def _rv_shape(node: RV, family, params: dict[str, Any], analysis: Analysis) -> tuple[int, ...]:
    obs = analysis.observations.get(node.name)
    if obs is not None:
        if node.shape is not None and tuple(node.shape) != obs.value.shape:
            raise ValidationError("rv", node.name, "shape",
                                  f"declared shape {tuple(node.shape)} but obs {obs.name!r} has shape {obs.value.shape}")
        return obs.value.shape
    if node.shape is not None:
        return tuple(node.shape)
    event_ndims = family.param_event_ndim
    event = family.event_ndim
    batch_shapes, event_shape = [], None
    for key, value in params.items():
        if not (is_ref(value) or isinstance(value, np.ndarray)):
            continue
        shape = analysis.shape_of(value)
        k = event_ndims.get(key, 0)
        batch_shapes.append(shape[:len(shape) - k] if k else shape)
        if k and event_shape is None and len(shape) >= k and k == event:
            event_shape = shape[len(shape) - k:]
        elif k == 2 and event == 1 and event_shape is None and len(shape) >= 2:
            event_shape = shape[-1:]  # a covariance-like (d, d) parameter of a vector family
    try:
        batch = tuple(np.broadcast_shapes(*batch_shapes)) if batch_shapes else ()
    except ValueError:
        raise ValidationError("rv", node.name, "params",
                              "parameter shapes " + ", ".join(map(str, batch_shapes)) + " do not broadcast") from None
    if event:
        if event_shape is None:
            raise ValidationError("rv", node.name, "shape",
                                  f"{family.name} needs an explicit shape (it cannot be inferred from the parameters)")
        return batch + tuple(event_shape)
    return batch


def _analyse_rv(node: RV, analysis: Analysis) -> None:
    family, params = analysis.families[node.name]
    shape = _rv_shape(node, family, params, analysis)
    analysis.shapes[node.name] = shape
    event_ndims = family.param_event_ndim
    if len(shape) < family.event_ndim:
        source = _shape_source(node, analysis)
        raise ValidationError("rv", node.name, "shape",
                              f"{family.name} draws have {family.event_ndim} event dimension(s), but the rv's "
                              f"shape {shape} (from {source}) has {len(shape)}")
    batch = shape[:len(shape) - family.event_ndim]
    event = shape[len(shape) - family.event_ndim:]
    integer = set(family.integer_params)
    for key, value in params.items():
        if not (is_ref(value) or isinstance(value, np.ndarray)):
            continue
        pshape = analysis.shape_of(value)
        k = event_ndims.get(key, 0)
        pbatch = pshape[:len(pshape) - k] if k else pshape
        _check_param_event(node, family, key, value, pshape, k, event, analysis)
        try:
            fits = tuple(np.broadcast_shapes(pbatch, batch)) == tuple(batch)
        except ValueError:
            fits = False
        if not fits:
            raise ValidationError("rv", node.name, f"param {key!r}",
                                  f"shape {pshape} does not broadcast to the rv's shape {shape}")
        if key in integer and is_ref(value) and analysis.value_of(value) is None:
            raise ValidationError("rv", node.name, f"param {key!r}",
                                  f"{family.name}'s {key!r} must be constant integer data, not the random {value!r}")
    check_constant_params(node.name, family, analysis.constant_params(node.name))
    obs = analysis.observations.get(node.name)
    if obs is not None:
        analysis.consts[node.name] = obs.value


def _shape_source(node: RV, analysis: Analysis) -> str:
    """Where an rv's shape came from, for messages: its obs, its declared shape, its parameters."""
    obs = analysis.observations.get(node.name)
    if obs is not None:
        return f"the value of obs {obs.name!r}"
    if node.shape is not None:
        return "its declared shape"
    return "the shape inferred from its parameters"


def _check_param_event(node: RV, family, key: str, value: Any, pshape: tuple[int, ...], k: int,
                       event: tuple[int, ...], analysis: Analysis) -> None:
    """Parameter ``key`` of an event family must carry the event shape the rv's shape implies
    (Dirichlet ``alpha`` of length K for a K-simplex, MvNormal ``cov`` d x d for d-vectors)."""
    if not k:
        return
    if len(pshape) < k:
        if not pshape and k == family.event_ndim:
            return  # a scalar broadcasts over the event (MvNormal mu = 0)
        raise ValidationError("rv", node.name, f"param {key!r}",
                              f"needs {k} event dimension(s) for {family.name}, got shape {pshape}")
    expected = family.param_event_shape(key, tuple(event))
    if expected is None:
        return
    got = tuple(pshape[len(pshape) - k:])
    broadcast = k == family.event_ndim
    if len(got) != len(expected) or any(g != e and not (broadcast and g == 1) for g, e in zip(got, expected)):
        raise ValidationError("rv", node.name, f"param {key!r}",
                              f"event shape {got} does not fit the rv's shape {analysis.shapes[node.name]} (from "
                              f"{_shape_source(node, analysis)}): {family.name} needs {expected}")


def _check_support(obs: Obs, analysis: Analysis) -> None:
    family, _ = analysis.families[obs.rv]
    constant = analysis.constant_params(obs.rv)
    with np.errstate(all="ignore"):
        inside = np.broadcast_to(np.asarray(family.in_support(obs.value, **constant), dtype=bool), obs.value.shape)
    if not inside.all():
        where = tuple(int(i) for i in np.argwhere(~inside)[0])
        bad = obs.value[where] if where else obs.value
        raise ValidationError("obs", obs.name, "value",
                              f"{float(bad)!r} at index {where} is outside the support of {family.name} "
                              f"({family.support}) for rv {obs.rv!r}")
