"""``scan``: a recursion over the leading axis, its step written with exmc ops.

``Builder.det(ir, "h", "scan", [init, *sequences, *params], step=STEP, n_seq=m)`` computes::

    carry_0 = init
    carry_t = step(carry_{t-1}, x0[t], ..., x{m-1}[t], p0, p1, ...)      t = 0 .. T-1
    h = stack(carry_0', ..., carry_{T-1}')                               shape (T, *init.shape)

``STEP`` is a sequence of ``(name, op, args)`` or ``(name, op, args, options)`` entries, each an op
of :data:`exmc.ops.OPS` applied to ``"carry"``, ``"x0"``..``"x{m-1}"`` (this step's slice of each
sequence), ``"p0"``.. (the parameters, the same at every step), names of earlier entries, or
numbers; the last entry is the new carry and must have the carry's shape. E.g. an ARMA(1,1)
residual recursion ``err_t = x_t - theta err_{t-1}``::

    step=[("lag", "mul", ["p0", "carry"]), ("err", "sub", ["x0", "lag"])], n_seq=1

Gradients by reverse accumulation through the steps (each entry's own VJP), so they are exact.
The forward pass is recomputed in the VJP rather than kept between the two calls (a compiled
model may be evaluated from several threads). A chain-batched call runs the single recursion once
per chain: correct, not fast.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from exmc.dist.base import sum_to_shape
from exmc.ops import Kernel, Op

__all__ = ["SCAN", "normalise_step"]


def normalise_step(step: Any) -> tuple:
    """The ``step`` option as a tuple of ``(name, op, args, options)`` tuples (immutable, so it can
    live in an IR); raises ``ValueError`` describing a malformed entry."""
    if isinstance(step, (str, bytes)) or not isinstance(step, Sequence) or not step:
        raise ValueError("scan needs step=[(name, op, [args]), ...] with at least one entry")
    entries = []
    for position, entry in enumerate(step):
        if not isinstance(entry, Sequence) or len(entry) not in (3, 4):
            raise ValueError(f"step entry {position} must be (name, op, args) or (name, op, args, options), "
                             f"got {entry!r}")
        name, op, args = entry[0], entry[1], entry[2]
        options = dict(entry[3]) if len(entry) == 4 else {}
        if not isinstance(name, str) or name in ("carry",) or not isinstance(op, str):
            raise ValueError(f"step entry {position}: name must be a new string and op an op name, got {entry!r}")
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise ValueError(f"step entry {position} ({name!r}): args must be a list")
        frozen = tuple(a if isinstance(a, str) else np.asarray(a, dtype=np.float64) for a in args)
        entries.append((name, op, frozen, tuple(sorted(options.items()))))
    return tuple(entries)


def _plan(shapes, options):
    """Shapes of every step entry and the compile-time kernels (single evaluation)."""
    from exmc import ops

    step = normalise_step(options["step"])
    n_seq = int(options["n_seq"])
    if len(shapes) < 1 + n_seq:
        raise ValueError(f"scan takes init, {n_seq} sequence(s) and parameters, got {len(shapes)} argument(s)")
    init, sequences, params = shapes[0], shapes[1:1 + n_seq], shapes[1 + n_seq:]
    if not sequences:
        raise ValueError("scan needs at least one sequence (n_seq >= 1): the recursion's length comes from it")
    lengths = {s[0] if s else None for s in sequences}
    if None in lengths or len(lengths) != 1:
        raise ValueError(f"the sequences must share their leading length, got shapes {list(sequences)}")
    env = {"carry": tuple(init), **{f"x{i}": tuple(s[1:]) for i, s in enumerate(sequences)},
           **{f"p{j}": tuple(p) for j, p in enumerate(params)}}
    kernels = []
    for name, op_name, args, entry_options in step:
        if name in env:
            raise ValueError(f"step entry {name!r} reuses a name")
        try:
            op = ops.get(op_name)
        except KeyError:
            raise ValueError(f"step entry {name!r}: unknown op {op_name!r}") from None
        if op.name == "scan":
            raise ValueError(f"step entry {name!r}: scan inside scan is not supported")
        arg_shapes = []
        for a in args:
            if isinstance(a, str):
                if a not in env:
                    raise ValueError(f"step entry {name!r} refers to unknown {a!r} (known: {sorted(env)})")
                arg_shapes.append(env[a])
            else:
                arg_shapes.append(tuple(np.shape(a)))
        merged = {**op.options, **dict(entry_options)}
        out = tuple(op.shape(arg_shapes, [None if isinstance(a, str) else a for a in args], merged))
        env[name] = out
        needs = [isinstance(a, str) for a in args]
        kernels.append((name, args, arg_shapes, op.kernel(arg_shapes, [False] * len(args), needs, merged)))
    last = step[-1][0]
    if env[last] != tuple(init):
        raise ValueError(f"the step's result {last!r} has shape {env[last]}, the carry (init) has {tuple(init)}")
    return sequences[0][0], n_seq, kernels, env


def _scan_rule(shapes, consts, options):
    length, _, _, _ = _plan(shapes, options)
    return (length,) + tuple(shapes[0])


def _scan_kernel(shapes, batched, needs, options) -> Kernel:
    length, n_seq, kernels, env_shapes = _plan(shapes, options)
    last = kernels[-1][0]

    def run(init, sequences, params, keep: bool):
        env: dict[str, Any] = {f"p{j}": p for j, p in enumerate(params)}
        carry = init
        outs, tapes = [], []
        for t in range(length):
            env["carry"] = carry
            for i, seq in enumerate(sequences):
                env[f"x{i}"] = seq[t]
            step_tape = []
            for name, args, _, kernel in kernels:
                values = [env[a] if isinstance(a, str) else a for a in args]
                env[name] = kernel.forward(*values)
                if keep:
                    step_tape.append((values, env[name]))
            carry = env[last]
            outs.append(carry)
            if keep:
                tapes.append(step_tape)
        return np.stack([np.asarray(o, dtype=np.float64) for o in outs]), tapes

    def single_forward(*args):
        return run(args[0], args[1:1 + n_seq], args[1 + n_seq:], False)[0]

    def single_vjp(g, out, *args):
        init, sequences, params = args[0], args[1:1 + n_seq], args[1 + n_seq:]
        _, tapes = run(init, sequences, params, True)
        g_seqs = [np.zeros(np.shape(s)) for s in sequences]
        g_params = [np.zeros(np.shape(p)) for p in params]
        g_carry = np.zeros(np.shape(init))
        for t in range(length - 1, -1, -1):
            grads: dict[str, Any] = {last: g_carry + g[t]}
            for (name, arg_names, arg_shapes, kernel), (values, result) in zip(reversed(kernels),
                                                                                reversed(tapes[t])):
                upstream = grads.pop(name, None)
                if upstream is None:
                    continue
                upstream = np.broadcast_to(upstream, np.shape(result))
                contributions = kernel.vjp(upstream, result, *values)
                for a, shape, contribution in zip(arg_names, arg_shapes, contributions):
                    if not isinstance(a, str) or contribution is None:
                        continue
                    contribution = sum_to_shape(contribution, shape)
                    grads[a] = contribution if a not in grads else grads[a] + contribution
            g_carry = grads.get("carry", np.zeros(np.shape(init)))
            for i in range(n_seq):
                if f"x{i}" in grads:
                    g_seqs[i][t] += grads[f"x{i}"]
            for j in range(len(params)):
                if f"p{j}" in grads:
                    g_params[j] = g_params[j] + grads[f"p{j}"]
        result = [g_carry, *g_seqs, *g_params]
        return tuple(r if need else None for r, need in zip(result, needs))

    return per_chain_kernel(single_forward, single_vjp, batched, needs)


def per_chain_kernel(single_forward, single_vjp, batched, needs) -> Kernel:
    """A kernel from single-evaluation ``forward``/``vjp``: unbatched as they are; chain-batched
    by running them once per chain (batched arguments sliced, constants shared; a constant's
    gradient, when needed, summed over chains)."""
    if not any(batched):
        return Kernel(single_forward, single_vjp)

    def rows(args):
        chains = next(np.shape(a)[0] for a, b in zip(args, batched) if b)
        return [[a[c] if b else a for a, b in zip(args, batched)] for c in range(chains)]

    def forward(*args):
        return np.stack([single_forward(*row) for row in rows(args)])

    def vjp(g, out, *args):
        parts = [single_vjp(g[c], out[c], *row) for c, row in enumerate(rows(args))]
        result = []
        for i, (need, b) in enumerate(zip(needs, batched)):
            if not need:
                result.append(None)
            else:
                stacked = np.stack([part[i] for part in parts])
                result.append(stacked if b else stacked.sum(axis=0))
        return tuple(result)
    return Kernel(forward, vjp)


#: The scan op (merged into :data:`exmc.ops.OPS`).
SCAN = Op("scan", None, False, {"step": None, "n_seq": 1}, _scan_rule, _scan_kernel)


# --- linear_recurrence: the fast special case ------------------------------------------------------

def _linear_rule(shapes, consts, options):
    init, x, a = shapes
    if not x:
        raise ValueError("argument 1 (x) must have a leading time axis")
    step = tuple(x[1:])
    if tuple(np.broadcast_shapes(tuple(init), step)) != step:
        raise ValueError(f"init of shape {tuple(init)} does not broadcast to a step of x, {step}")
    try:
        fits = tuple(np.broadcast_shapes(tuple(a), step)) == step
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"the coefficient of shape {tuple(a)} does not broadcast to a step of x, {step}")
    return tuple(x)


def _linear_kernel(shapes, batched, needs, options) -> Kernel:
    """``h_t = x_t + a h_{t-1}``, ``h_{-1} = init``; the adjoint is the same recursion run
    backwards: ``lam_t = g_t + a lam_{t+1}``, ``xbar = lam``, ``abar = sum_t lam_t h_{t-1}``,
    ``initbar = a lam_0``."""
    (init_shape, x_shape, a_shape), (init_b, x_b, a_b) = shapes, batched
    step = tuple(x_shape[1:])
    lead = 1 if any(batched) else 0

    def align(value, core, is_batched):
        """An argument as ``(C?,) + step``-broadcastable: pad after the chain axis."""
        value = np.asarray(value, dtype=np.float64)
        if is_batched:
            pad = len(step) - len(core)
            return value.reshape(value.shape[:1] + (1,) * pad + value.shape[1:]) if pad > 0 else value
        return value if not lead else value[None, ...]

    def forward_parts(init, x, a):
        h0, coef = align(init, init_shape, init_b), align(a, a_shape, a_b)
        xs = np.asarray(x, dtype=np.float64)
        if lead and not x_b:
            chains = next(np.shape(v)[0] for v, b in zip((init, x, a), batched) if b)
            xs = np.broadcast_to(xs, (chains,) + xs.shape)
        return _recurrence(xs, coef, h0, lead), h0, coef

    def forward(init, x, a):
        return forward_parts(init, x, a)[0]

    def vjp(g, out, init, x, a):
        h0, coef = align(init, init_shape, init_b), align(a, a_shape, a_b)
        lam = _recurrence(np.asarray(g, dtype=np.float64), coef, np.zeros(()), lead, reverse=True)
        g_init = g_a = None
        if needs[0]:
            g_init = coef * (lam[:, 0] if lead else lam[0])
            g_init = _reduce(g_init, init_shape, init_b, lead)
        if needs[2]:
            first = np.broadcast_to(h0, (out[:, 0] if lead else out[0]).shape)
            previous = np.concatenate([np.expand_dims(first, lead), out[:, :-1] if lead else out[:-1]], axis=lead)
            g_a = np.sum(lam * previous, axis=lead)
            g_a = _reduce(g_a, a_shape, a_b, lead)
        g_x = lam if needs[1] else None
        if g_x is not None and not x_b and lead:
            g_x = g_x.sum(axis=0)
        return g_init, g_x, g_a
    return Kernel(forward, vjp)


def _recurrence(seq: np.ndarray, coef, start, lead: int, reverse: bool = False) -> np.ndarray:
    """``out_t = seq_t + coef out_{t-1}`` over time axis ``lead`` (0, or 1 after a chain axis),
    from ``out_{-1} = start``; with ``reverse``, ``out_t = seq_t + coef out_{t+1}`` from the end."""
    out = np.empty(seq.shape)
    previous = start
    length = seq.shape[lead]
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        index = (slice(None), t) if lead else t
        previous = seq[index] + coef * previous
        out[index] = previous
    return out


def _reduce(grad, core, is_batched, lead):
    """A gradient of shape ``(C?,) + step`` summed to an argument of core shape ``core``."""
    if lead and is_batched:
        chains = grad.shape[0]
        return np.stack([sum_to_shape(grad[c], tuple(core)) for c in range(chains)])
    if lead:
        grad = grad.sum(axis=0)
    return sum_to_shape(grad, tuple(core))


#: ``linear_recurrence(init, x, a)``: ``h_t = x_t + a h_{t-1}`` over the leading axis of ``x``
#: (merged into :data:`exmc.ops.OPS`): the scan of AR/MA/GARCH models, one numpy operation per
#: step instead of one kernel call per step entry.
LINEAR_RECURRENCE = Op("linear_recurrence", 3, False, {}, _linear_rule, _linear_kernel)
