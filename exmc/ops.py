"""The deterministic op set, each with an exact vector-Jacobian product (VJP).

An :class:`Op` knows three things:

- ``shape(shapes, consts, options)``: the output shape from the argument shapes (no chain axis),
  raising ``ValueError`` with a readable reason when they do not fit; ``consts`` holds the values of
  constant arguments (``None`` for varying ones) so ``index`` can check its range at compile time.
- ``kernel(shapes, batched, needs, options)``: a :class:`Kernel` specialised once, at compile
  time, for those shapes: ``forward(*args) -> out`` and ``vjp(g, out, *args) -> grads`` (one entry
  per argument, ``None`` where ``needs`` is false). ``batched[i]`` says argument ``i`` carries a
  leading chain axis; constants never do.
- ``elementwise``: elementwise ops ignore ``batched``: the model aligns ranks before calling them
  (a chain-batched scalar ``(C,)`` combined with a vector becomes ``(C, 1)``), and their VJPs return
  arrays that merely *broadcast* against each argument; the model sums them back to the argument's
  shape. Structural ops (``sum``, ``cumsum``, ``index``, ``concat``, ``stack``, ``matmul``) handle
  the chain axis themselves and return gradients of exactly the argument's shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy.special import expit

from exmc._numeric import softplus

__all__ = ["Op", "Kernel", "OPS", "get"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Kernel:
    """An op specialised to fixed argument shapes: ``forward(*args)`` and ``vjp(g, out, *args)``."""

    forward: Callable[..., np.ndarray]
    vjp: Callable[..., tuple]


@dataclass(frozen=True)
class Op:
    """A deterministic op (see the module docstring for the protocol)."""

    name: str
    arity: int | None  # None: one or more arguments (concat, stack)
    elementwise: bool
    options: Mapping[str, Any]  # allowed options and their defaults
    shape_rule: Callable[[Sequence[Shape], Sequence[Any], Mapping[str, Any]], Shape]
    make_kernel: Callable[[Sequence[Shape], Sequence[bool], Sequence[bool], Mapping[str, Any]], Kernel]

    def shape(self, shapes: Sequence[Shape], consts: Sequence[Any], options: Mapping[str, Any]) -> Shape:
        """Output shape; ``ValueError`` naming the problem when arguments do not fit."""
        return self.shape_rule(shapes, consts, options)

    def kernel(self, shapes: Sequence[Shape], batched: Sequence[bool], needs: Sequence[bool],
               options: Mapping[str, Any]) -> Kernel:
        """The forward function and VJP for these argument shapes (see the module docstring)."""
        return self.make_kernel(shapes, batched, needs, options)


# --- elementwise ops -----------------------------------------------------------------------------

def _broadcast_rule(shapes, consts, options) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError("argument shapes " + ", ".join(str(s) for s in shapes) + " do not broadcast") from None


def _unary(name: str, forward: Callable, vjp: Callable) -> Op:
    """``vjp(g, out, x)`` returns the gradient of x."""
    def make(shapes, batched, needs, options) -> Kernel:
        return Kernel(forward, lambda g, out, x: (vjp(g, out, x),))
    return Op(name, 1, True, {}, _broadcast_rule, make)


def _binary(name: str, forward: Callable, grad_a: Callable, grad_b: Callable) -> Op:
    def make(shapes, batched, needs, options) -> Kernel:
        need_a, need_b = needs
        if need_a and need_b:
            def vjp(g, out, a, b):
                return grad_a(g, out, a, b), grad_b(g, out, a, b)
        elif need_a:
            def vjp(g, out, a, b):
                return grad_a(g, out, a, b), None
        else:
            def vjp(g, out, a, b):
                return None, grad_b(g, out, a, b)
        return Kernel(forward, vjp)
    return Op(name, 2, True, {}, _broadcast_rule, make)


def _affine_kernel(shapes, batched, needs, options) -> Kernel:
    need_a, need_b, need_x = needs

    def forward(a, b, x):
        return a + b * x

    def vjp(g, out, a, b, x):
        return (g if need_a else None, g * x if need_b else None, g * b if need_x else None)
    return Kernel(forward, vjp)


# --- reductions and scans ------------------------------------------------------------------------

def _normalise_axis(axis, ndim: int, name: str) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a {ndim}-d argument of {name}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis!r}")
    return tuple(sorted(out))


def _sum_rule(shapes, consts, options) -> Shape:
    (shape,) = shapes
    axis = options["axis"]
    if axis is None:
        return ()
    axes = _normalise_axis(axis, len(shape), "sum")
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _sum_kernel(shapes, batched, needs, options) -> Kernel:
    (shape,) = shapes
    lead = 1 if batched[0] else 0
    core = tuple(range(len(shape))) if options["axis"] is None else _normalise_axis(options["axis"], len(shape), "sum")
    axes = tuple(a + lead for a in core)

    def forward(x):
        return np.sum(x, axis=axes)

    def vjp(g, out, x):
        return (np.broadcast_to(np.expand_dims(g, axes), np.shape(x)),)
    return Kernel(forward, vjp)


def _same_shape_rule(shapes, consts, options) -> Shape:
    (shape,) = shapes
    if len(shape) == 0:
        raise ValueError("needs an argument with at least one dimension")
    _normalise_axis(options["axis"], len(shape), "cumsum")
    return tuple(shape)


def _cumsum_kernel(shapes, batched, needs, options) -> Kernel:
    (shape,) = shapes
    (axis,) = _normalise_axis(options["axis"], len(shape), "cumsum")
    axis += 1 if batched[0] else 0

    def forward(x):
        return np.cumsum(x, axis=axis)

    def vjp(g, out, x):
        # d(cumsum)^T g is the reversed cumulative sum of g.
        return (np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis),)
    return Kernel(forward, vjp)


# --- gather --------------------------------------------------------------------------------------

def _index_rule(shapes, consts, options) -> Shape:
    x_shape, idx_shape = shapes
    idx = consts[1]
    if idx is None:
        raise ValueError("the index (argument 1) must be constant integer data, not a random quantity")
    if idx.dtype.kind not in "iu":
        raise ValueError(f"the index (argument 1) must hold integers, not {idx.dtype}")
    if len(x_shape) == 0:
        raise ValueError("cannot index a scalar (argument 0)")
    n = x_shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise ValueError(f"index out of range: {bad} for argument 0 with {n} entries along axis 0 "
                         f"(valid 0..{n - 1})")
    return tuple(idx_shape) + tuple(x_shape[1:])


def _index_kernel(shapes, batched, needs, options) -> Kernel:
    x_shape, _ = shapes
    n = x_shape[0]
    lead = 1 if batched[0] else 0
    flat_cache: dict[int, np.ndarray] = {}

    def forward(x, idx):
        return np.take(x, idx, axis=lead)

    if len(x_shape) == 1 and not lead:
        def vjp(g, out, x, idx):
            return np.bincount(idx.ravel(), weights=np.ravel(g), minlength=n), None
    elif len(x_shape) == 1:
        def vjp(g, out, x, idx):
            chains = g.shape[0]
            flat = flat_cache.get(chains)
            if flat is None:
                # Chain c's entries land in bins c*n .. c*n+n-1: one bincount for all chains.
                flat = (idx.reshape(1, -1) + n * np.arange(chains).reshape(-1, 1)).ravel()
                flat_cache[chains] = flat
            return np.bincount(flat, weights=g.ravel(), minlength=chains * n).reshape(chains, n), None
    else:
        def vjp(g, out, x, idx):
            gx = np.zeros(np.shape(x))
            np.add.at(gx, (slice(None),) * lead + (idx,), g)
            return gx, None
    return Kernel(forward, vjp)


# --- joining -------------------------------------------------------------------------------------

def _concat_rule(shapes, consts, options) -> Shape:
    first = shapes[0]
    if len(first) == 0:
        raise ValueError("cannot concatenate scalars (use stack)")
    (axis,) = _normalise_axis(options["axis"], len(first), "concat")
    for position, shape in enumerate(shapes[1:], start=1):
        if len(shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis):
            raise ValueError(f"argument {position} has shape {shape}, incompatible with {first} "
                             f"for concatenation along axis {axis}")
    return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1:]


def _stack_rule(shapes, consts, options) -> Shape:
    first = shapes[0]
    for position, shape in enumerate(shapes[1:], start=1):
        if tuple(shape) != tuple(first):
            raise ValueError(f"argument {position} has shape {shape}, stack needs all equal to {first}")
    (axis,) = _normalise_axis(options["axis"], len(first) + 1, "stack")
    return first[:axis] + (len(shapes),) + first[axis:]


def _joiner(shapes, batched, stacking: bool, axis: int):
    """Forward for concat/stack: constants are broadcast along the chain axis when any argument is
    batched (the chain count is read from the first batched argument)."""
    join = np.stack if stacking else np.concatenate
    if not any(batched):
        return lambda *args: join(args, axis=axis)
    lead_arg = batched.index(True)
    tails = [tuple(s) for s in shapes]

    def forward(*args):
        chains = args[lead_arg].shape[0]
        return join([a if b else np.broadcast_to(a, (chains,) + t) for a, b, t in zip(args, batched, tails)],
                    axis=axis + 1)
    return forward


def _concat_kernel(shapes, batched, needs, options) -> Kernel:
    (axis,) = _normalise_axis(options["axis"], len(shapes[0]), "concat")
    lead = 1 if any(batched) else 0
    bounds = np.cumsum([0] + [s[axis] for s in shapes])
    pieces = [(slice(None),) * (axis + lead) + (slice(int(a), int(b)),) for a, b in zip(bounds[:-1], bounds[1:])]

    def vjp(g, out, *args):
        return tuple(g[p] if need else None for p, need in zip(pieces, needs))
    return Kernel(_joiner(shapes, batched, False, axis), vjp)


def _stack_kernel(shapes, batched, needs, options) -> Kernel:
    (axis,) = _normalise_axis(options["axis"], len(shapes[0]) + 1, "stack")
    lead = 1 if any(batched) else 0
    pieces = [(slice(None),) * (axis + lead) + (i,) for i in range(len(shapes))]

    def vjp(g, out, *args):
        return tuple(g[p] if need else None for p, need in zip(pieces, needs))
    return Kernel(_joiner(shapes, batched, True, axis), vjp)


# --- matmul --------------------------------------------------------------------------------------

def _matmul_rule(shapes, consts, options) -> Shape:
    a, b = shapes
    if not 1 <= len(a) <= 2 or not 1 <= len(b) <= 2:
        raise ValueError(f"matmul takes vectors and matrices, got shapes {a} and {b}")
    if a[-1] != b[0]:
        raise ValueError(f"inner dimensions differ: {a} @ {b}")
    return a[:-1] + b[1:]


def _matmul_kernel(shapes, batched, needs, options) -> Kernel:
    (a_shape, b_shape), (a_batched, b_batched), (need_a, need_b) = shapes, batched, needs
    if not a_batched and not b_batched:
        return _matmul_plain(len(a_shape), len(b_shape), needs)
    if not a_batched and len(a_shape) == 2 and len(b_shape) == 1:
        # The regression case X @ beta with beta (C, K): one GEMM beta @ X.T for all chains.
        def forward(a, b):
            return b @ a.T

        def vjp(g, out, a, b):
            return None, g @ a
        return Kernel(forward, vjp)
    # General case: promote vectors to matrices so np.matmul broadcasts over the chain axis.
    a_vec, b_vec = len(a_shape) == 1, len(b_shape) == 1

    def promote(a, b):
        if a_vec:
            a = np.expand_dims(a, -2)
        if b_vec:
            b = np.expand_dims(b, -1)
        return a, b

    def demote(x):
        if b_vec:
            x = x[..., 0]
        if a_vec:
            x = x[..., 0] if b_vec else x[..., 0, :]
        return x

    def forward(a, b):
        a2, b2 = promote(a, b)
        return demote(a2 @ b2)

    def vjp(g, out, a, b):
        a2, b2 = promote(a, b)
        g2 = g
        if a_vec and b_vec:
            g2 = g[..., None, None]
        elif b_vec:
            g2 = g[..., :, None]
        elif a_vec:
            g2 = g[..., None, :]
        ga = gb = None
        if need_a:
            ga = g2 @ np.swapaxes(b2, -1, -2)
            ga = ga[..., 0, :] if a_vec else ga
        if need_b:
            gb = np.swapaxes(a2, -1, -2) @ g2
            gb = gb[..., 0] if b_vec else gb
        return ga, gb
    return Kernel(forward, vjp)


def _matmul_plain(a_ndim: int, b_ndim: int, needs) -> Kernel:
    """Neither argument carries a chain axis: numpy's own vector/matrix rules.

    With ``out = a @ b`` and upstream gradient ``g`` (shape of ``out``):
    ``grad_a = g b^T`` and ``grad_b = a^T g``, where a vector operand is read as a row (``a``) or a
    column (``b``) and the outer products below are those matrix products written for vectors.
    """
    def grad_a(g, a, b):
        if a_ndim == 1 and b_ndim == 1:
            return g * b  # out is the scalar a.b
        if b_ndim == 1:
            return np.outer(g, b)  # (N,K) @ (K,) -> (N,)
        if a_ndim == 1:
            return b @ g  # (K,) @ (K,M) -> (M,)
        return g @ b.T

    def grad_b(g, a, b):
        if a_ndim == 1 and b_ndim == 1:
            return g * a
        if b_ndim == 1:
            return g @ a  # (N,K) @ (K,) -> (N,): a^T g
        if a_ndim == 1:
            return np.outer(a, g)
        return a.T @ g

    def vjp(g, out, a, b):
        return (grad_a(g, a, b) if needs[0] else None, grad_b(g, a, b) if needs[1] else None)
    return Kernel(np.matmul, vjp)


# --- the table -----------------------------------------------------------------------------------

def _ops() -> dict[str, Op]:
    ops = [
        _binary("add", np.add, lambda g, o, a, b: g, lambda g, o, a, b: g),
        _binary("sub", np.subtract, lambda g, o, a, b: g, lambda g, o, a, b: -g),
        _binary("mul", np.multiply, lambda g, o, a, b: g * b, lambda g, o, a, b: g * a),
        _binary("div", np.divide, lambda g, o, a, b: g / b, lambda g, o, a, b: -g * o / b),
        _binary("pow", np.power, lambda g, o, a, b: g * b * np.power(a, b - 1.0),
                lambda g, o, a, b: g * o * np.log(a)),
        _unary("neg", np.negative, lambda g, o, x: -g),
        _unary("exp", np.exp, lambda g, o, x: g * o),
        _unary("log", np.log, lambda g, o, x: g / x),
        _unary("log1p", np.log1p, lambda g, o, x: g / (1.0 + x)),
        _unary("expm1", np.expm1, lambda g, o, x: g * (o + 1.0)),
        _unary("sqrt", np.sqrt, lambda g, o, x: 0.5 * g / o),
        _unary("square", np.square, lambda g, o, x: 2.0 * g * x),
        _unary("sigmoid", expit, lambda g, o, x: g * o * (1.0 - o)),
        _unary("softplus", softplus, lambda g, o, x: g * expit(x)),
        _unary("tanh", np.tanh, lambda g, o, x: g * (1.0 - o * o)),
        Op("affine", 3, True, {}, _broadcast_rule, _affine_kernel),
        Op("sum", 1, False, {"axis": None}, _sum_rule, _sum_kernel),
        Op("cumsum", 1, False, {"axis": 0}, _same_shape_rule, _cumsum_kernel),
        Op("index", 2, False, {}, _index_rule, _index_kernel),
        Op("concat", None, False, {"axis": 0}, _concat_rule, _concat_kernel),
        Op("stack", None, False, {"axis": 0}, _stack_rule, _stack_kernel),
        Op("matmul", 2, False, {}, _matmul_rule, _matmul_kernel),
    ]
    return {op.name: op for op in ops}


#: Every op by name.
OPS: dict[str, Op] = _ops()


def get(name: str) -> Op:
    """The op called ``name`` (``KeyError`` when there is none)."""
    return OPS[name]


# More ops live in their own module (selections, log-space reductions, linear algebra).
from exmc.ops_extra import EXTRA_OPS  # noqa: E402 - needs the helpers above
from exmc.ops_ode import ODE  # noqa: E402
from exmc.ops_scan import LINEAR_RECURRENCE, SCAN  # noqa: E402

OPS.update(EXTRA_OPS)
OPS[SCAN.name] = SCAN
OPS[LINEAR_RECURRENCE.name] = LINEAR_RECURRENCE
OPS[ODE.name] = ODE
