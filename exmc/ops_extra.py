"""More ops for :data:`exmc.ops.OPS`: selections, reductions in log space, and linear algebra.

Registered into the op table by :mod:`exmc.ops` (the same :class:`~exmc.ops.Op` protocol: a shape
rule, and a kernel with forward and exact VJP specialised at compile time).

Elementwise: ``where(cond, a, b)`` (no gradient to ``cond``), ``maximum``/``minimum`` (the gradient
goes to the selected argument; ties to the first), ``abs``, ``log_sigmoid``.

Structural (they handle the chain axis themselves):

- ``logsumexp(x, axis=None)``: ``log(sum(exp(x)))`` over ``axis`` (an int, a tuple, or every axis);
  the VJP is ``g * softmax``.
- ``cholesky(A)``: lower Cholesky factor of a symmetric positive-definite ``(n, n)`` matrix. Like
  numpy it reads only the lower triangle, so the gradient lands there: with ``S = L^-T Phi(L^T Lbar)
  L^-1`` (``Phi``: lower triangle, halved diagonal; Murray 2016, "Differentiation of the Cholesky
  decomposition") and ``Sym = (S + S^T)/2``, ``Abar = tril(2 Sym)`` with ``Sym``'s own diagonal.
  A matrix that is not positive definite raises ``LinAlgError``: a rejected point for the sampler.
- ``solve_triangular(L, b, lower=True)``: ``x = L^-1 b`` for a triangular ``(n, n)`` ``L`` and a
  vector ``(n,)`` or matrix ``(n, k)`` ``b``; ``bbar = L^-T xbar``, ``Lbar = -bbar x^T`` on ``L``'s
  triangle (the other is never read).
- ``matvec`` forms are :data:`exmc.ops.OPS` ``"matmul"`` (a batched ``L @ z`` included);
  ``transpose(A)`` swaps the last two axes; ``outer(a, b)`` is ``a[:, None] * b[None, :]``.
- ``family_logp(value, *params, family=F, keys=(...))``: a scalar family's elementwise
  log-density as a node (used for rvs whose bounds are other nodes, see ``Builder.rv``).
"""
from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.special import expit, logsumexp as _logsumexp

from exmc._numeric import log_sigmoid as _log_sigmoid
from exmc.ops import Kernel, Op, _binary, _broadcast_rule, _normalise_axis, _sum_rule, _unary

__all__ = ["EXTRA_OPS"]


# --- elementwise ---------------------------------------------------------------------------------

def _where_kernel(shapes, batched, needs, options) -> Kernel:
    def forward(cond, a, b):
        return np.where(np.asarray(cond) != 0, a, b)

    def vjp(g, out, cond, a, b):
        mask = np.asarray(cond) != 0
        return (np.zeros(()) if needs[0] else None,
                np.where(mask, g, 0.0) if needs[1] else None,
                np.where(mask, 0.0, g) if needs[2] else None)
    return Kernel(forward, vjp)


def _log_sigmoid_vjp(g, out, x):
    return g * expit(-np.asarray(x))


# --- logsumexp -----------------------------------------------------------------------------------

def _logsumexp_kernel(shapes, batched, needs, options) -> Kernel:
    (shape,) = shapes
    lead = 1 if batched[0] else 0
    core = tuple(range(len(shape))) if options["axis"] is None else _normalise_axis(options["axis"], len(shape),
                                                                                 "logsumexp")
    axes = tuple(a + lead for a in core)

    def forward(x):
        return _logsumexp(x, axis=axes) if axes else np.asarray(x, dtype=np.float64)

    def vjp(g, out, x):
        if not axes:
            return (np.asarray(g),)
        return (np.expand_dims(g, axes) * np.exp(x - np.expand_dims(out, axes)),)
    return Kernel(forward, vjp)


def _logsumexp_rule(shapes, consts, options):
    (shape,) = shapes
    if options["axis"] is not None and not shape:
        raise ValueError("logsumexp over an axis needs an argument with at least one dimension")
    return _sum_rule(shapes, consts, options)


# --- linear algebra ------------------------------------------------------------------------------

def _square_rule(shapes, consts, options):
    (shape,) = shapes
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"needs a square matrix (n, n), got shape {shape}")
    return tuple(shape)


def _tril_halved(x):
    """``Phi``: the lower triangle with the diagonal halved (last two axes)."""
    out = np.tril(x)
    diagonal = np.einsum("...ii->...i", out)
    diagonal *= 0.5  # einsum's diagonal is a writable view of ``out``
    return out


def _cholesky_kernel(shapes, batched, needs, options) -> Kernel:
    def forward(a):
        return np.linalg.cholesky(a)

    def vjp(g, out, a):
        lower = out
        inverse = np.linalg.inv(lower)
        p = _tril_halved(np.swapaxes(lower, -1, -2) @ g)
        s = np.swapaxes(inverse, -1, -2) @ p @ inverse
        sym = 0.5 * (s + np.swapaxes(s, -1, -2))
        grad = np.tril(2.0 * sym)
        diagonal = np.einsum("...ii->...i", grad)
        diagonal *= 0.5
        return (grad,)
    return Kernel(forward, vjp)


def _solve_rule(shapes, consts, options):
    l_shape, b_shape = shapes
    if len(l_shape) != 2 or l_shape[0] != l_shape[1]:
        raise ValueError(f"argument 0 must be a square (n, n) triangular matrix, got shape {l_shape}")
    if not 1 <= len(b_shape) <= 2 or b_shape[0] != l_shape[0]:
        raise ValueError(f"argument 1 must be a vector (n,) or matrix (n, k) with n = {l_shape[0]}, got {b_shape}")
    return tuple(b_shape)


def _solve_kernel(shapes, batched, needs, options) -> Kernel:
    (l_shape, b_shape), lower = shapes, bool(options["lower"])
    vector = len(b_shape) == 1
    triangle = np.tril if lower else np.triu
    if not any(batched):
        def solve(m, rhs, low):
            return linalg.solve_triangular(m, rhs, lower=low, check_finite=False)
    else:
        def solve(m, rhs, low):
            # np.linalg.solve broadcasts over the chain axis (scipy's triangular solver does not).
            column = rhs[..., None] if vector else rhs
            x = np.linalg.solve(m, np.broadcast_to(column, np.broadcast_shapes(
                np.shape(m)[:-2], np.shape(column)[:-2]) + np.shape(column)[-2:]))
            return x[..., 0] if vector else x

    def forward(m, b):
        return solve(m, b, lower)

    def vjp(g, out, m, b):
        g_b = solve(np.swapaxes(m, -1, -2), g, not lower)
        g_m = None
        if needs[0]:
            if vector:
                g_m = -g_b[..., :, None] * out[..., None, :]
            else:
                g_m = -(g_b @ np.swapaxes(out, -1, -2))
            g_m = triangle(g_m)
        return g_m, g_b if needs[1] else None
    return Kernel(forward, vjp)


def _transpose_rule(shapes, consts, options):
    (shape,) = shapes
    if len(shape) < 2:
        raise ValueError(f"transpose needs at least 2 dimensions, got shape {shape}")
    return tuple(shape[:-2]) + (shape[-1], shape[-2])


def _transpose_kernel(shapes, batched, needs, options) -> Kernel:
    def forward(x):
        return np.swapaxes(x, -1, -2)

    def vjp(g, out, x):
        return (np.swapaxes(g, -1, -2),)
    return Kernel(forward, vjp)


def _outer_rule(shapes, consts, options):
    a, b = shapes
    if len(a) != 1 or len(b) != 1:
        raise ValueError(f"outer takes two vectors, got shapes {a} and {b}")
    return (a[0], b[0])


def _outer_kernel(shapes, batched, needs, options) -> Kernel:
    (na,), (nb,) = shapes
    a_batched, b_batched = batched

    def forward(a, b):
        return np.asarray(a)[..., :, None] * np.asarray(b)[..., None, :]

    def vjp(g, out, a, b):
        ga = gb = None
        if needs[0]:
            ga = np.sum(g * np.asarray(b)[..., None, :], axis=-1)
            if not a_batched and ga.ndim > 1:
                ga = ga.sum(axis=0)
        if needs[1]:
            gb = np.sum(g * np.asarray(a)[..., :, None], axis=-2)
            if not b_batched and gb.ndim > 1:
                gb = gb.sum(axis=0)
        return ga, gb
    return Kernel(forward, vjp)


# --- a scalar family's log-density as an op ------------------------------------------------------

def _family_logp_rule(shapes, consts, options):
    family, keys = options["family"], tuple(options["keys"])
    if family is None or not hasattr(family, "logp_and_grads"):
        raise ValueError("family_logp needs family=<a distribution family>")
    if len(keys) != len(shapes) - 1:
        raise ValueError(f"family_logp takes the value and {len(keys)} parameter(s) {keys}, got {len(shapes)} "
                         "argument(s)")
    if family.event_ndim or any(family.param_event_ndim.get(k, 0) for k in keys):
        raise ValueError(f"family_logp supports scalar families only, not {family.name}")
    return _broadcast_rule(shapes, consts, options)


def _family_logp_kernel(shapes, batched, needs, options) -> Kernel:
    """Elementwise ``family.logp(value, **params)``; the VJP is ``g`` times the family's own
    gradients (exact)."""
    family, keys = options["family"], tuple(options["keys"])
    names = ("value",) + keys

    def forward(value, *params):
        return family.logp_and_grads(value, **dict(zip(keys, params)))[0]

    def vjp(g, out, value, *params):
        _, grads = family.logp_and_grads(value, **dict(zip(keys, params)))
        result = []
        for name, need in zip(names, needs):
            if not need:
                result.append(None)
            elif name in grads:
                result.append(g * grads[name])
            else:
                raise ValueError(f"{family.name} has no gradient for {name!r}: it must be constant here")
        return tuple(result)
    return Kernel(forward, vjp)


def _extra_ops() -> dict[str, Op]:
    ops = [
        Op("where", 3, True, {}, _broadcast_rule, _where_kernel),
        _binary("maximum", np.maximum, lambda g, o, a, b: g * (a >= b), lambda g, o, a, b: g * (a < b)),
        _binary("minimum", np.minimum, lambda g, o, a, b: g * (a <= b), lambda g, o, a, b: g * (a > b)),
        _unary("abs", np.abs, lambda g, o, x: g * np.sign(x)),
        _unary("log_sigmoid", _log_sigmoid, _log_sigmoid_vjp),
        Op("logsumexp", 1, False, {"axis": None}, _logsumexp_rule, _logsumexp_kernel),
        Op("cholesky", 1, False, {}, _square_rule, _cholesky_kernel),
        Op("solve_triangular", 2, False, {"lower": True}, _solve_rule, _solve_kernel),
        Op("transpose", 1, False, {}, _transpose_rule, _transpose_kernel),
        Op("outer", 2, False, {}, _outer_rule, _outer_kernel),
        Op("family_logp", None, True, {"family": None, "keys": ()}, _family_logp_rule, _family_logp_kernel),
    ]
    return {op.name: op for op in ops}


#: The ops of this module by name (merged into :data:`exmc.ops.OPS`).
EXTRA_OPS: dict[str, Op] = _extra_ops()
