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

Speed: the step is compiled once into a :class:`StepProgram` (integer slots, each entry's kernel
and argument slots, the gradient routing decided up front), so an element costs one kernel call
per entry and no name lookups. The forward pass keeps its per-element values (the tape) for the
VJP of the same inputs (a per-thread one-entry cache keyed by the inputs' bytes; another thread
or other inputs recompute). A chain-batched call whose step is elementwise runs all chains in
one pass (the chain axis lined up by broadcasting); a step with a structural op (``sum``,
``matmul``...) runs once per chain. Measured on arma11 (T = 200, a loaded 2-core box, ms per
value-and-gradient): single 3.3 -> 1.3, 4-chain batch 17.1 -> 1.3 (``linear_recurrence``, the
one-numpy-call-per-element special case: 0.29 and 0.53).
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from exmc.dist.base import sum_to_shape
from exmc.ops import Kernel, Op


def ops_get(name: str):
    from exmc import ops

    return ops.get(name)

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
    """``(length, n_seq, inputs)`` of a scan (inputs: name -> core shape), its step checked by
    compiling a single-evaluation :class:`StepProgram`; raises ``ValueError`` naming the problem."""
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
    inputs = {"carry": tuple(init), **{f"x{i}": tuple(s[1:]) for i, s in enumerate(sequences)},
              **{f"p{j}": tuple(p) for j, p in enumerate(params)}}
    program = StepProgram(step, inputs)
    last = step[-1][0]
    if program.core[last] != tuple(init):
        raise ValueError(f"the step's result {last!r} has shape {program.core[last]}, the carry (init) has {tuple(init)}")
    return sequences[0][0], n_seq, inputs


def _scan_rule(shapes, consts, options):
    length, _, _ = _plan(shapes, options)
    return (length,) + tuple(shapes[0])


class StepProgram:
    """Step entries compiled once for fixed shapes: integer slots instead of names, each entry's
    kernel with its argument slots, and the reverse routing of gradients -- what the scan runs
    at every element (and a Custom's ops logp once per evaluation).

    ``inputs`` maps input names (``carry``, ``x0``, ``p0``...; or ``value`` and parameter names)
    to their core shapes, ``batched_inputs`` names those carrying a leading chain axis and
    ``needs`` those whose gradient is wanted. ``chains`` is ``None`` for single evaluations; with
    a chain count, every entry must be elementwise and every batched value is held as ``(C,) +
    (1,) * (R - ndim) + core`` (``R`` the largest core rank), so numpy broadcasting lines the
    chain axis up in every entry and one pass serves all chains.

    State: ``template`` (constants in their slots, ``None`` elsewhere) is read-only after
    construction; :meth:`forward` fills a copy, so concurrent evaluations share nothing mutable.
    """

    def __init__(self, step, inputs: dict[str, tuple], batched_inputs=(), needs=(), chains: int | None = None):
        from exmc import ops

        step = normalise_step(step)
        self.names = list(inputs)
        core = dict(inputs)
        self.chains = chains
        batched = {name: chains is not None and name in batched_inputs for name in inputs}
        need = {name: name in needs for name in inputs}
        self.template: list[Any] = [None] * len(inputs)
        slot = {name: i for i, name in enumerate(inputs)}
        plans = []
        for name, op_name, args, entry_options in step:
            if name in slot:
                raise ValueError(f"step entry {name!r} reuses a name")
            try:
                op = ops.get(op_name)
            except KeyError:
                raise ValueError(f"step entry {name!r}: unknown op {op_name!r}") from None
            if op.name == "scan":
                raise ValueError(f"step entry {name!r}: scan inside scan is not supported")
            if chains is not None and not op.elementwise:
                raise ValueError(f"step entry {name!r}: op {op.name!r} is not elementwise")
            idx, arg_shapes = [], []
            for a in args:
                if isinstance(a, str):
                    if a not in slot:
                        raise ValueError(f"step entry {name!r} refers to unknown {a!r} (known: {sorted(slot)})")
                    idx.append(slot[a])
                    arg_shapes.append(core[a])
                else:
                    idx.append(len(self.template))
                    self.template.append(a)
                    core[f"#{len(self.template)}"] = tuple(np.shape(a))
                    arg_shapes.append(tuple(np.shape(a)))
            merged = {**op.options, **dict(entry_options)}
            out = tuple(op.shape(arg_shapes, [None if isinstance(a, str) else a for a in args], merged))
            arg_needs = [isinstance(a, str) and need[a] for a in args]
            kernel = op.kernel(arg_shapes, [False] * len(args), arg_needs, merged)
            slot[name] = len(self.template)
            self.template.append(None)
            core[name] = out
            batched[name] = any(isinstance(a, str) and batched[a] for a in args)
            need[name] = any(arg_needs)
            plans.append((name, kernel, tuple(idx), tuple(arg_needs)))
        self.slot = slot
        self.core = core
        rank = max((len(s) for s in core.values()), default=0)
        self.rank = rank
        #: Every slot's held shape (constants and entries alike), by slot number.
        shapes = [None] * len(self.template)
        for name, i in slot.items():
            shapes[i] = self.held_shape(core[name], batched[name])
        for i, value in enumerate(self.template):
            if value is not None:
                shapes[i] = tuple(np.shape(value))
        self.shapes = shapes
        self.batched = batched
        self.need = need
        self.last = slot[step[-1][0]]
        # Per argument: does its gradient need summing to the slot's shape? Not when the slot
        # holds the entry's own output shape (elementwise VJPs return the output's shape).
        self.entries = [(kernel.forward, kernel.vjp, idx, slot[name],
                         tuple(n and shapes[i] != shapes[slot[name]] for i, n in zip(idx, arg_needs)),
                         arg_needs)
                        for name, kernel, idx, arg_needs in plans]
        self.reverse = [entry for entry in reversed(self.entries) if need[self.names_of(entry[3])]]

    def names_of(self, i: int) -> str:
        return next(name for name, j in self.slot.items() if j == i)

    def held_shape(self, core: tuple, batched: bool) -> tuple:
        if not batched:
            return tuple(core)
        return (self.chains,) + (1,) * (self.rank - len(core)) + tuple(core)

    def hold(self, name: str, value) -> np.ndarray:
        """An input as held (chain axis lined up); ``value`` is ``(C,) + core`` when batched."""
        value = np.asarray(value, dtype=np.float64)
        return value.reshape(self.shapes[self.slot[name]]) if self.batched[name] else value

    def forward(self, values: list) -> list:
        """All slots' values after one pass; ``values`` are the held inputs in ``inputs`` order."""
        env = self.template.copy()
        env[:len(values)] = values
        for forward, _, idx, out, _, _ in self.entries:
            env[out] = forward(*[env[i] for i in idx])
        return env

    def backward(self, env: list, seeds: dict[int, np.ndarray]) -> list:
        """Gradients of every slot (``None`` where nothing flows) from upstream ``seeds``
        (slot -> gradient of that slot's held shape)."""
        grads: list[Any] = [None] * len(env)
        for i, g in seeds.items():
            grads[i] = g
        shapes = self.shapes
        for _, vjp, idx, out, reduce, arg_needs in self.reverse:
            upstream = grads[out]
            if upstream is None:
                continue
            contributions = vjp(upstream, env[out], *[env[i] for i in idx])
            for i, need, summed, c in zip(idx, arg_needs, reduce, contributions):
                if not need or c is None:
                    continue
                if summed:
                    c = sum_to_shape(c, shapes[i])
                grads[i] = c if grads[i] is None else grads[i] + c
        return grads


def _scan_kernel(shapes, batched, needs, options) -> Kernel:
    length, n_seq, inputs = _plan(shapes, options)
    step = normalise_step(options["step"])
    names = list(inputs)
    wanted = {name for name, need in zip(names, needs) if need}
    # The carry needs a gradient whenever anything upstream of a later step does.
    wanted = wanted | {"carry"} if wanted else wanted
    elementwise = all(ops_get(op).elementwise for _, op, _, _ in step)
    init_shape = tuple(shapes[0])
    cache = threading.local()
    programs: dict[int | None, StepProgram] = {}

    def program(chains):
        if chains not in programs:
            batched_names = {"carry"} | {name for name, b in zip(names, batched) if b}
            programs[chains] = StepProgram(step, inputs, batched_names, wanted, chains)
        return programs[chains]

    def run(args, chains):
        """(outputs, tapes) for the arguments; a per-thread one-entry cache serves the VJP."""
        key = (chains, tuple(np.asarray(a, dtype=np.float64).tobytes() for a in args))
        if getattr(cache, "key", None) == key:
            return cache.value
        prog = program(chains)
        init, sequences, params = args[0], args[1:1 + n_seq], args[1 + n_seq:]
        if chains is not None:
            held = prog.shapes[0]
            init = (prog.hold("carry", init) if batched[0]
                    else np.broadcast_to(np.asarray(init, dtype=np.float64).reshape((1,) + held[1:]), held))
            params = [prog.hold(f"p{j}", p) for j, p in enumerate(params)]
            seq_axis = [1 if b else 0 for b in batched[1:1 + n_seq]]
        else:
            init = np.asarray(init, dtype=np.float64)
            params = [np.asarray(p, dtype=np.float64) for p in params]
            seq_axis = [0] * n_seq
        sequences = [np.asarray(s, dtype=np.float64) for s in sequences]
        carry, last = init, prog.last
        tapes, outs = [], []
        for t in range(length):
            values = [carry]
            for i, (seq, axis) in enumerate(zip(sequences, seq_axis)):
                x_t = seq[:, t] if axis else seq[t]
                values.append(prog.hold(f"x{i}", x_t) if axis else x_t)
            env = prog.forward(values + params)
            carry = env[last]
            tapes.append(env)
            outs.append(carry)
        if chains is None:
            out = np.stack([np.asarray(o, dtype=np.float64) for o in outs])
        else:
            out = np.stack([np.broadcast_to(o, prog.shapes[0]) for o in outs], axis=1)
            out = out.reshape((chains, length) + init_shape)
        cache.key, cache.value = key, (out, tapes)
        return out, tapes

    def gradients(g, args, chains):
        prog = program(chains)
        _, tapes = run(args, chains)
        g = np.asarray(g, dtype=np.float64)
        carry_shape = prog.shapes[0]
        g_carry = np.zeros(carry_shape)
        seq_grads = [[None] * length for _ in range(n_seq)]
        param_grads: list[Any] = [None] * (len(args) - 1 - n_seq)
        for t in range(length - 1, -1, -1):
            g_t = (g[:, t] if chains is not None else g[t]).reshape(carry_shape)
            grads = prog.backward(tapes[t], {prog.last: g_carry + g_t})
            g_carry = grads[0] if grads[0] is not None else np.zeros(carry_shape)
            for i in range(n_seq):
                seq_grads[i][t] = grads[1 + i]
            for j in range(len(param_grads)):
                gj = grads[1 + n_seq + j]
                if gj is not None:
                    param_grads[j] = gj if param_grads[j] is None else param_grads[j] + gj
        return g_carry, seq_grads, param_grads, prog

    def finish(value, core, is_batched, chains):
        """A held gradient as the argument's own gradient: ``(C,) + core`` or ``core``."""
        if value is None:
            return np.zeros(((chains,) if is_batched else ()) + tuple(core))
        value = np.asarray(value, dtype=np.float64)
        if chains is None:
            return sum_to_shape(value, tuple(core))
        if is_batched:
            return sum_to_shape(value, (chains,) + (1,) * (value.ndim - 1 - len(core)) + tuple(core)
                                ).reshape((chains,) + tuple(core))
        return sum_to_shape(value, tuple(core))

    def vjp_for(chains):
        def vjp(g, out, *args):
            g_carry, seq_grads, param_grads, prog = gradients(g, args, chains)
            result = []
            for position, need in enumerate(needs):
                if not need:
                    result.append(None)
                    continue
                core = shapes[position]
                is_batched = chains is not None and batched[position]
                if position == 0:
                    result.append(finish(g_carry, core, is_batched, chains))
                elif position <= n_seq:
                    held = prog.shapes[position]
                    steps = [np.zeros(held) if s is None else s for s in seq_grads[position - 1]]
                    if is_batched:  # (C, T) + held[1:] -> (C, T) + core step shape
                        result.append(np.stack(steps, axis=1).reshape((chains, length) + tuple(core[1:])))
                    else:
                        stacked = np.stack([np.broadcast_to(s, held) for s in steps])
                        result.append(stacked.reshape((length,) + tuple(core[1:])))
                else:
                    result.append(finish(param_grads[position - 1 - n_seq], core, is_batched, chains))
            return tuple(result)
        return vjp

    def single_forward(*args):
        return run(args, None)[0]

    if any(batched) and elementwise:
        def forward(*args):
            chains = next(np.shape(a)[0] for a, b in zip(args, batched) if b)
            return run(args, chains)[0]

        def vjp(g, out, *args):
            return vjp_for(np.shape(out)[0])(g, out, *args)
        return Kernel(forward, vjp)
    return per_chain_kernel(single_forward, vjp_for(None), batched, needs)


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
