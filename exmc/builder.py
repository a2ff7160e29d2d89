"""The seed's model-building API: ``Builder.new_ir/rv/obs/det/data``, each returning a new IR.

Every call checks what can be decided from the node alone and the nodes before it (names,
distribution, parameter names, constant parameter domains, NaN/inf in data, op names) and raises
``exmc.ValidationError`` naming the node and field. Checks that need the whole model (references,
cycles, shapes, supports, index ranges) run in :func:`exmc.compile` — so nodes may be added in any
order — and :meth:`Builder.validate` runs them on demand.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from exmc import ops
from exmc.analysis import analyse, check_constant_params
from exmc.errors import ValidationError
from exmc.ir import IR, NONCENTERED, RV, Data, Det, Obs, as_constant, is_ref

__all__ = ["Builder", "DEFAULT"]


class _Default:
    """Sentinel for "the family's default transform"."""

    def __repr__(self) -> str:
        return "<default>"

    def __reduce__(self):
        return "DEFAULT"


#: ``transform=DEFAULT`` (the default) picks the unconstraining transform from the family's support.
DEFAULT = _Default()


def _check_name(ir: IR, kind: str, name: Any) -> None:
    if not isinstance(ir, IR):
        raise TypeError(f"expected an IR (from Builder.new_ir()), got {type(ir).__name__}")
    if not isinstance(name, str) or not name:
        raise ValidationError(kind, repr(name), "name", "must be a non-empty string")
    existing = ir.get(name)
    if existing is not None:
        raise ValidationError(kind, name, "name", f"duplicate name (already used by a {existing.kind} node)")


def _family(name: str, dist: Any):
    from exmc.dist import FAMILIES
    from exmc.dist.base import Distribution

    if isinstance(dist, Distribution):
        return dist
    if isinstance(dist, str) and dist in FAMILIES:
        return FAMILIES[dist]
    raise ValidationError("rv", name, "dist",
                          f"unknown distribution {getattr(dist, 'name', dist)!r}; known: {', '.join(sorted(FAMILIES))}")


def _check_param_names(name: str, family, given: Sequence[str]) -> None:
    alternatives = tuple(family.alternatives) or (tuple(family.params),)
    optional = set(family.optional)
    known = set().union(*map(set, alternatives)) | optional
    for key in given:
        if key not in known:
            raise ValidationError("rv", name, f"param {key!r}",
                                  f"unknown parameter of {family.name} (it takes {_describe(alternatives, optional)})")
    required = set(given) - optional
    if any(required == set(alt) for alt in alternatives):
        return
    closest = min(alternatives, key=lambda alt: len(set(alt) ^ required))
    missing = [p for p in closest if p not in required]
    if missing:
        raise ValidationError("rv", name, f"param {missing[0]!r}",
                              f"missing parameter of {family.name} (it takes {_describe(alternatives, optional)})")
    extra = sorted(required - set(closest))
    raise ValidationError("rv", name, f"param {extra[0]!r}",
                          f"{family.name} takes exactly one of the parameter sets {_describe(alternatives, optional)}")


def _describe(alternatives, optional) -> str:
    sets = " | ".join("{" + ", ".join(alt) + "}" for alt in alternatives)
    return sets + (f" with optional {', '.join(sorted(optional))}" if optional else "")


def _find_string(value: Any, at: tuple[int, ...] = ()) -> tuple[tuple[int, ...], str] | None:
    """``(index, string)`` of the first string inside nested lists/tuples (or a string array),
    else ``None``: a node name where a number belongs."""
    if isinstance(value, (str, np.str_)):
        return at, str(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        index = tuple(int(i) for i in np.ndindex(value.shape).__next__()) if value.size else ()
        return at + index, str(value[index]) if value.size else ""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _find_string(item, at + (i,))
            if found is not None:
                return found
    return None


def _check_numeric(kind: str, name: str, field: str, value: Any) -> None:
    """A value that should be numeric (a list of numbers, not a node name) must hold no string:
    name the node, the field and where the string sits."""
    if is_ref(value):
        return
    found = _find_string(value)
    if found is not None:
        index, text = found
        raise ValidationError(kind, name, field,
                              f"holds the string {text!r} at index {index} among numbers; a node name can only "
                              "stand alone (combine nodes into a vector with Builder.det(..., 'stack', [...]))")


def _check_finite(kind: str, name: str, field: str, value: np.ndarray) -> None:
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0]) if value.ndim else ()
        raise ValidationError(kind, name, field, f"contains NaN or infinity (first at index {where})")


def _transform(name: str, transform: Any):
    from exmc import transforms

    if transform is DEFAULT or transform is None:
        return None
    if isinstance(transform, str):
        try:
            return transforms.by_name(transform)
        except ValueError as exc:
            raise ValidationError("rv", name, "transform", str(exc)) from None
    if isinstance(transform, transforms.Transform):
        return transform
    raise ValidationError("rv", name, "transform",
                          f"must be an exmc.transforms.Transform or a transform name, got {type(transform).__name__}")


def _dims(kind: str, name: str, dims: Any) -> tuple[str, ...] | None:
    if dims is None:
        return None
    if isinstance(dims, str):
        dims = (dims,)
    try:
        dims = tuple(dims)
    except TypeError:
        raise ValidationError(kind, name, "dims", f"must be a tuple of dimension names, got {dims!r}") from None
    if not all(isinstance(d, str) and d for d in dims):
        raise ValidationError(kind, name, "dims", f"must hold non-empty strings, got {dims!r}")
    if len(set(dims)) != len(dims):
        raise ValidationError(kind, name, "dims", f"repeats a dimension name: {dims!r}")
    if {"chain", "draw"} & set(dims):
        raise ValidationError(kind, name, "dims", "'chain' and 'draw' are the sampler's own dimensions")
    return dims


def _shape(name: str, shape: Any) -> tuple[int, ...] | None:
    if shape is None:
        return None
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise ValidationError("rv", name, "shape", f"must be an int or a tuple of ints, got {shape!r}") from None
    if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in dims):
        raise ValidationError("rv", name, "shape", f"must hold non-negative ints, got {shape!r}")
    return tuple(int(n) for n in dims)


class Builder:
    """Static methods building an :class:`exmc.ir.IR` step by step (see the module docstring)."""

    @staticmethod
    def new_ir() -> IR:
        """An empty model."""
        return IR()

    @staticmethod
    def rv(ir: IR, name: str, dist: Any, params: Mapping[str, Any] | None = None, shape: Any = None,
           transform: Any = DEFAULT, reparam: str | None = None, dims: Any = None,
           lower: Any = None, upper: Any = None) -> IR:
        """Add ``name ~ dist(**params)``.

        ``params`` values are numbers, arrays, names of other nodes, or the structured values some
        families take (``Mixture``'s components, ``Custom``'s callables). ``shape`` makes an
        array rv; ``transform`` overrides the family's unconstraining transform (a
        ``Transform`` or a name such as ``"log"``); ``reparam="noncentered"`` samples a Normal as
        ``mu + sigma * z``. ``dims`` names the value's axes (``("school",)``) for ArviZ export
        (labels come from :meth:`coords`). ``lower``/``upper`` bound the value as Stan's
        ``real<lower=a, upper=b>`` does (the density is not renormalised): numbers become the
        transform ``LowerBound``/``UpperBound``/``Interval``; a node name (``lower="alpha"``)
        makes the rv ``name`` a det ``lower + exp(u)`` (``upper - exp(u)``, ``lower + (upper -
        lower) sigmoid(u)``) of a free ``name + "__raw"`` with the family's density and the
        Jacobian added as a potential (scalar families; give ``shape`` for a non-scalar rv).
        Raises ``ValidationError`` for a duplicate name, an unknown
        distribution, unknown/missing parameters, a constant parameter outside its domain, a bad
        shape, transform or reparametrisation.
        """
        _check_name(ir, "rv", name)
        family = _family(name, dist)
        params = dict(params or {})
        if lower is not None or upper is not None:
            if is_ref(lower) or is_ref(upper):
                return Builder._node_bounded_rv(ir, name, family, params, shape, transform, reparam, dims, lower, upper)
            transform = Builder._constant_bounds(name, transform, lower, upper)
        for key in params:
            if not isinstance(key, str):
                raise ValidationError("rv", name, f"param {key!r}", "parameter names must be strings")
        try:
            resolved, flat = family.resolve(params)
        except ValueError as exc:
            raise ValidationError("rv", name, "params", str(exc)) from None
        _check_param_names(name, resolved, list(flat))
        for key, value in flat.items():
            _check_numeric("rv", name, f"param {key!r}", value)
        integer = set(resolved.integer_params)
        stored = {key: value if is_ref(value) else as_constant(value, floating=key not in integer)
                  for key, value in params.items()}
        constants = {key: value if is_ref(value) else as_constant(value, floating=key not in integer)
                     for key, value in flat.items()}
        check_constant_params(name, resolved, {k: v for k, v in constants.items() if not is_ref(v)})
        if reparam is not None and reparam != NONCENTERED:
            raise ValidationError("rv", name, "reparam", f"unknown reparametrisation {reparam!r} (only {NONCENTERED!r})")
        node = RV(name, family, tuple(stored.items()), _shape(name, shape), _transform(name, transform), reparam,
                  resolved=(resolved, tuple(constants.items())), dims=_dims("rv", name, dims))
        return ir.add(node)

    @staticmethod
    def obs(ir: IR, obs_name: str, rv_name: str, value: Any, censored: tuple[Any, Any] | None = None) -> IR:
        """Bind ``value`` to rv ``rv_name`` (a likelihood term).

        ``censored=(lower, upper)`` (numbers or arrays broadcasting against ``value``, ``-inf``/
        ``inf`` for one-sided censoring): entries ``<= lower`` count as "at most lower" (the
        family's CDF at ``lower``), entries ``>= upper`` as "at least upper" (its survival function).
        Raises ``ValidationError`` for a duplicate name, non-numeric or non-finite values, an rv
        already observed, malformed censoring bounds.
        """
        _check_name(ir, "obs", obs_name)
        if not isinstance(rv_name, str):
            raise ValidationError("obs", obs_name, "rv", f"must be the name of an rv, got {rv_name!r}")
        _check_numeric("obs", obs_name, "value", value)
        array = as_constant(value, floating=True)
        if not isinstance(array, np.ndarray):
            raise ValidationError("obs", obs_name, "value", f"must be numeric, got {type(value).__name__}")
        _check_finite("obs", obs_name, "value", array)
        for node in ir.nodes:
            if isinstance(node, Obs) and node.rv == rv_name:
                raise ValidationError("obs", obs_name, "rv", f"rv {rv_name!r} is already observed by obs {node.name!r}")
        bounds = None
        if censored is not None:
            bounds = Builder._censoring(obs_name, array, censored)
        return ir.add(Obs(obs_name, rv_name, array, bounds))

    @staticmethod
    def _censoring(obs_name: str, value: np.ndarray, censored: Any) -> tuple[np.ndarray, np.ndarray]:
        try:
            lower, upper = censored
        except (TypeError, ValueError):
            raise ValidationError("obs", obs_name, "censored", f"must be a pair (lower, upper), got {censored!r}") from None
        lower = as_constant(-np.inf if lower is None else lower, floating=True)
        upper = as_constant(np.inf if upper is None else upper, floating=True)
        for label, bound in (("lower", lower), ("upper", upper)):
            if not isinstance(bound, np.ndarray) or np.isnan(bound).any():
                raise ValidationError("obs", obs_name, "censored", f"{label} bound must be numeric, not NaN")
            try:
                np.broadcast_shapes(bound.shape, value.shape)
            except ValueError:
                raise ValidationError("obs", obs_name, "censored",
                                      f"{label} bound of shape {bound.shape} does not broadcast to the value's "
                                      f"shape {value.shape}") from None
        if np.any(lower >= upper):
            raise ValidationError("obs", obs_name, "censored", "lower bound must be below the upper bound")
        return lower, upper

    @staticmethod
    def data(ir: IR, name: str, array: Any, dims: Any = None) -> IR:
        """Name a constant array (design matrix, group indices). Integer data keeps an integer type;
        ``dims`` names its axes for export (``constant_data``).
        Raises ``ValidationError`` for a duplicate name, non-numeric data, NaN or infinity."""
        _check_name(ir, "data", name)
        _check_numeric("data", name, "value", array)
        value = as_constant(array)
        if not isinstance(value, np.ndarray):
            raise ValidationError("data", name, "value", f"must be numeric, got {type(array).__name__}")
        _check_finite("data", name, "value", value)
        return ir.add(Data(name, value, _dims("data", name, dims)))

    @staticmethod
    def det(ir: IR, name: str, op: str, args: Sequence[Any], dims: Any = None, **options: Any) -> IR:
        """Add ``name = op(*args, **options)`` for an op of :data:`exmc.ops.OPS` (``"add"``,
        ``"matmul"``, ``"index"``...). ``args`` are node names or constants; options are op
        settings such as ``axis`` for ``sum``/``cumsum``/``concat``/``stack``; ``dims`` names the
        result's axes for export. Raises
        ``ValidationError`` for a duplicate name, an unknown op, non-finite constant arguments."""
        _check_name(ir, "det", name)
        if op not in ops.OPS:
            raise ValidationError("det", name, "op", f"unknown op {op!r}; known: {', '.join(sorted(ops.OPS))}")
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise ValidationError("det", name, "args", f"must be a list of arguments, got {args!r}")
        if op == "scan" and "step" in options:
            from exmc.ops_scan import normalise_step

            try:
                options["step"] = normalise_step(options["step"])
            except ValueError as exc:
                raise ValidationError("det", name, "option 'step'", str(exc)) from None
        stored = []
        for position, arg in enumerate(args):
            _check_numeric("det", name, f"arg {position}", arg)
            value = arg if is_ref(arg) else as_constant(arg)
            if isinstance(value, np.ndarray):
                _check_finite("det", name, f"arg {position}", value)
            stored.append(value)
        return ir.add(Det(name, op, tuple(stored), tuple(sorted(options.items())), _dims("det", name, dims)))

    @staticmethod
    def _constant_bounds(name: str, transform: Any, lower: Any, upper: Any):
        from exmc import transforms

        if transform is not DEFAULT:
            raise ValidationError("rv", name, "transform", "give either bounds (lower/upper) or a transform")
        bounds = [as_constant(b, floating=True) if b is not None else None for b in (lower, upper)]
        for label, bound in zip(("lower", "upper"), bounds):
            if bound is not None and (not isinstance(bound, np.ndarray) or np.isnan(bound).any()):
                raise ValidationError("rv", name, label, f"must be a number, an array or a node name, got {bound!r}")
        try:
            if bounds[0] is not None and bounds[1] is not None:
                return transforms.Interval(bounds[0], bounds[1])
            return transforms.LowerBound(bounds[0]) if bounds[0] is not None else transforms.UpperBound(bounds[1])
        except ValueError as exc:
            raise ValidationError("rv", name, "lower/upper", str(exc)) from None

    @staticmethod
    def _node_bounded_rv(ir: IR, name, family, params, shape, transform, reparam, dims, lower, upper) -> IR:
        """``Builder.rv(..., lower=node | upper=node)``: see :meth:`rv`."""
        if transform is not DEFAULT or reparam is not None:
            raise ValidationError("rv", name, "lower/upper", "bounds that are nodes take no transform or reparam")
        if family.discrete or family.event_ndim:
            raise ValidationError("rv", name, "lower/upper",
                                  f"bounds that are nodes need a continuous scalar family, not {family.name}")
        try:
            resolved, flat = family.resolve(params)
        except ValueError as exc:
            raise ValidationError("rv", name, "params", str(exc)) from None
        _check_param_names(name, resolved, list(flat))
        for label, bound in (("lower", lower), ("upper", upper)):
            if bound is not None and not is_ref(bound):
                _check_numeric("rv", name, label, bound)
        raw, part = f"{name}__raw", f"{name}__"
        ir = Builder.rv(ir, raw, "Flat", {}, shape=shape)
        if lower is not None and upper is not None:
            ir = Builder.det(ir, part + "width", "sub", [upper, lower])
            ir = Builder.det(ir, part + "unit", "sigmoid", [raw])
            ir = Builder.det(ir, part + "offset", "mul", [part + "width", part + "unit"])
            ir = Builder.det(ir, name, "add", [lower, part + "offset"], dims=dims)
            ir = Builder.det(ir, part + "log_width", "log", [part + "width"])
            ir = Builder.det(ir, part + "log_unit", "log_sigmoid", [raw])
            ir = Builder.det(ir, part + "neg_raw", "neg", [raw])
            ir = Builder.det(ir, part + "log_rest", "log_sigmoid", [part + "neg_raw"])
            ir = Builder.det(ir, part + "log_j1", "add", [part + "log_width", part + "log_unit"])
            ir = Builder.det(ir, part + "log_jacobian", "add", [part + "log_j1", part + "log_rest"])
        else:
            ir = Builder.det(ir, part + "step", "exp", [raw])
            op, bound = ("add", lower) if lower is not None else ("sub", upper)
            ir = Builder.det(ir, name, op, [bound, part + "step"], dims=dims)
            ir = Builder.det(ir, part + "log_jacobian", "add", [raw, 0.0])
        keys = tuple(flat)
        ir = Builder.det(ir, part + "logp", "family_logp", [name, *flat.values()], family=resolved, keys=keys)
        ir = Builder.det(ir, part + "target", "add", [part + "logp", part + "log_jacobian"])
        return Builder.potential(ir, part + "density", part + "target")

    @staticmethod
    def potential(ir: IR, name: str, ref: str) -> IR:
        """Add ``sum(ref)`` (a node's value) to the model's log-density, as Stan's ``target +=``.

        Adds the det ``name = sum(ref)`` (reported with the draws) and its carrier: the rv
        ``name + "__potential"`` of family ``Potential``, observed with a dummy value by the obs
        ``name + "__potential_obs"``. A potential is not a likelihood term: ``log_likelihood`` and
        predictive draws leave it out. Raises ``ValidationError`` for a duplicate name or a
        ``ref`` that is not a node name."""
        _check_name(ir, "det", name)
        if not is_ref(ref):
            raise ValidationError("det", name, "ref", f"must be the name of a node, got {ref!r}")
        ir = Builder.det(ir, name, "sum", [ref])
        carrier = f"{name}__potential"
        ir = Builder.rv(ir, carrier, "Potential", {"term": name})
        return Builder.obs(ir, f"{carrier}_obs", carrier, 0.0)

    @staticmethod
    def hmm(ir: IR, name: str, init: Any, trans: Any, log_emission: Any) -> IR:
        """Add the marginal likelihood of a hidden Markov model (family ``HMM``, forward algorithm):
        ``init`` ``(K,)`` initial probabilities, ``trans`` ``(K, K)`` row-stochastic transitions and
        ``log_emission`` ``(T, K)`` per-observation log-likelihoods under each state (node names or
        constants). Adds the rv ``name`` and the obs ``name + "_obs"`` that observes it with a dummy
        value; ``log_likelihood`` reports one value per sequence under ``name``."""
        ir = Builder.rv(ir, name, "HMM", {"init": init, "trans": trans, "log_emission": log_emission})
        return Builder.obs(ir, f"{name}_obs", name, 0.0)

    @staticmethod
    def lkj_cholesky_cov(ir: IR, name: str, n: int, eta: Any, sd_dist: Any, sd_params: Mapping[str, Any]) -> IR:
        """PyMC's ``LKJCholeskyCov``: the Cholesky factor ``name = diag(sd) L`` of a covariance
        whose correlation has an ``LKJ(eta)`` prior and whose standard deviations have the prior
        ``sd_dist(**sd_params)``. Adds the rvs ``name + "_corr"`` (``LKJCholesky``, ``(n, n)``, sampled
        through the ``cholesky_corr`` transform) and ``name + "_sd"`` (``(n,)``), and the det
        ``name`` (``(n, n)``; use it as ``MvNormal``'s factor through ``matmul`` with its
        ``transpose``, or directly for non-centred draws ``name @ z``). Raises ``ValidationError``
        as :meth:`rv` and :meth:`det` do."""
        if not isinstance(n, (int, np.integer)) or n < 2:
            raise ValidationError("rv", f"{name}_corr", "shape", f"n must be an integer >= 2, got {n!r}")
        ir = Builder.rv(ir, f"{name}_corr", "LKJCholesky", {"eta": eta}, shape=(int(n), int(n)))
        ir = Builder.rv(ir, f"{name}_sd", sd_dist, sd_params, shape=(int(n),))
        ir = Builder.det(ir, f"{name}_sd_column", "stack", [f"{name}_sd"], axis=1)
        return Builder.det(ir, name, "mul", [f"{name}_sd_column", f"{name}_corr"])

    @staticmethod
    def coords(ir: IR, **coords: Any) -> IR:
        """The IR with coordinate labels for dimensions named in ``dims`` (``school=["A", ...]``);
        later calls add to or replace earlier labels. Raises ``ValidationError`` naming the
        dimension when its labels are not a 1-d sequence of distinct values (lengths are checked
        against the shapes in :func:`exmc.compile`)."""
        if not isinstance(ir, IR):
            raise TypeError(f"expected an IR (from Builder.new_ir()), got {type(ir).__name__}")
        merged = ir.coord_map()
        for dim, labels in coords.items():
            if dim in ("chain", "draw"):
                raise ValidationError("coords", dim, "labels", "'chain' and 'draw' are the sampler's own dimensions")
            if isinstance(labels, (str, bytes)) or np.ndim(labels) != 1:
                raise ValidationError("coords", dim, "labels", f"must be a 1-d sequence of labels, got {labels!r}")
            values = tuple(np.asarray(labels).tolist())
            if len(set(values)) != len(values):
                raise ValidationError("coords", dim, "labels", "repeats a label")
            merged[dim] = values
        return IR(ir.nodes, tuple(merged.items()))

    @staticmethod
    def validate(ir: IR) -> IR:
        """Run every whole-model check now (what :func:`exmc.compile` does first); returns ``ir``."""
        analyse(ir)
        return ir
