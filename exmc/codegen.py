"""One generated Python function per model: the single variant's program as straight-line code.

:class:`exmc.program.Program` evaluates a model by calling a list of closures, each reading and
writing slots of a value list ``v`` (and a gradient list ``gs``). Per gradient that costs, besides
the numpy work, one Python call per step, the loop, the ``None`` test of each contribution, the
list indexing and, inside the closures, the argument lists, tapes and "first contribution" tests
that are fixed at compile time. Here the same steps become the body of one function, compiled once
with :func:`compile`: every closure of the single variant carries a source snippet (attached by
``exmc.program._Builder._src``) that performs the same operations on the same objects in the same
order, with slots as local variables (``v<slot>`` values, ``g<slot>`` gradients, ``t<slot>``
tapes), compile-time facts resolved in the text, and the common elementwise ops' VJPs written out
(``exmc.program._INLINE_OPS``). A chain of elementwise dets therefore runs as a run of numpy
expressions with no Python call between them.

Why source text rather than a faster interpreter: what costs is the dispatch itself (radon, 90-d:
32 closure calls and the loop around them), and only the compiler removes it; the snippets stay
next to the closures they replace, so the closure program remains the reference implementation.
The generated function must give the *same bits* as :meth:`Program.run` (same float operations in
the same order; tests/exmc/test_codegen.py checks the log-density and gradient bit for bit on the
bench models, the test models and the posteriordb ports), so which one runs never changes a draw.

Only the single variant ``(dim,)`` is generated (the sampler's hot path, one chain per process),
and the float-rows variant's function of one row (compiled from the same snippets); the batched
variant, ``logp`` and ``evaluate`` keep the closures. A step without a
snippet (none today) makes :func:`generate` return ``None`` and the interpreter serve.

Failure modes: the same as :meth:`Program.run` (numpy warnings are not suppressed; a log-density
outside the support is ``-inf`` or NaN). Slots read but never written in the function (constants
of the template) are bound as globals of its namespace.
"""
from __future__ import annotations

import itertools
import os
import re
from typing import Any, Callable

import numpy as np

__all__ = ["generate", "checked", "CHECK_ENV"]

#: With this environment variable set to ``1`` when a model is compiled, every single-variant
#: evaluation runs both the generated function and the closures and raises ``AssertionError`` when
#: their bits differ: a whole test suite run this way checks the generator on every model in it.
CHECK_ENV = "EXMC_CODEGEN_CHECK"

#: Numbers the generated functions' file names, so tracebacks and profiles tell models apart.
_counter = itertools.count()


def generate(program: Any, names: dict[str, Any], rows: bool = False) -> Callable | None:
    """``run(theta) -> (lp, grad)`` equivalent to ``program.run`` (an :class:`exmc.program.Program`
    of the single variant) from its closures' snippets; ``names`` are the objects the snippets
    name. ``None`` when a step has no snippet. The function's source is its ``source`` attribute.

    ``rows=True`` (a float-rows program): the function of one row, a list of Python floats, whose
    gradient is a list (the steps of ``Program._row``)."""
    forward = program.phase1 + program.forward
    steps = forward + program.reverse
    if any(getattr(step, "src", None) is None for step in steps):
        return None
    lines = ["def run(theta):", "    lp = lp0"]
    lines += ["    " + line for step in forward for line in step.src.split("\n")]
    lines.append("    out = [0.0] * len(theta)" if rows else "    out = empty(theta.shape)")
    reverse = [line for step in program.reverse for line in step.src.split("\n")]
    lines += ["    " + line for line in (reverse if rows else _sum_into_out(reverse))]
    lines.append("    return lp, out")
    source = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {"__builtins__": __builtins__, "lp0": program.lp_const, "empty": np.empty,
                                 "add": np.add}
    namespace.update(names)
    # Template constants (a slot with a value at compile time) that a snippet reads as v<slot>.
    namespace.update({f"v{slot}": value for slot, value in enumerate(program.template) if value is not None})
    code = compile(source, f"<exmc model {next(_counter)}>", "exec")
    exec(code, namespace)  # noqa: S102 - our own source text, built from compile-time facts only
    run = namespace["run"]
    run.source = source
    return run


_WRITE = re.compile(r"out\[(\d+):(\d+)\] = (g\d+)")


def _sum_into_out(lines: list[str]) -> list[str]:
    """The reverse pass with a vector rv's last gradient sum written straight into its span of
    ``out``: ``gN = gN + e`` ... ``out[a:b] = gN`` becomes ``add(gN, e, out=out[a:b])`` (the same
    addition, without the temporary and the copy) when nothing between the two lines or after
    them reads ``gN``. A gradient of another shape than the span's makes ``add`` raise where the
    assignment would have broadcast; gradients have their rv's shape by construction."""
    lines = list(lines)
    for w, line in enumerate(lines):
        write = _WRITE.fullmatch(line)
        if write is None:
            continue
        name = write.group(3)
        uses = re.compile(rf"\b{name}\b")
        if any(uses.search(later) for later in lines[w + 1:]):
            continue
        prefix = f"{name} = {name} + "
        for s in range(w - 1, -1, -1):
            if lines[s].startswith(prefix):
                if not any(uses.search(between) for between in lines[s + 1:w]):
                    lines[s] = f"add({name}, {lines[s][len(prefix):]}, out=out[{write.group(1)}:{write.group(2)}])"
                    lines[w] = ""
                break
            if uses.search(lines[s]):
                break
    return [line for line in lines if line]


def checked(generated: Callable, oracle: Callable) -> Callable:
    """``generated`` as is, or (under :data:`CHECK_ENV` ``=1``) a function that also runs
    ``oracle`` and raises ``AssertionError`` unless log-density and gradient are the same bits."""
    if os.environ.get(CHECK_ENV) != "1":
        return generated

    def run(theta):
        lp, grad = generated(theta)
        lp_ref, grad_ref = oracle(theta)
        if not (_same(lp, lp_ref) and type(grad) is type(grad_ref) and _same(grad, grad_ref)):
            raise AssertionError(f"generated function differs from the closures at theta={theta!r}: "
                                 f"lp {lp!r} vs {lp_ref!r}\n{generated.source}")
        return lp, grad
    run.source = generated.source
    return run


def _same(a: Any, b: Any) -> bool:
    """Same value bit for bit (NaNs equal), same type for scalars."""
    if np.ndim(a) == 0 and type(a) is not type(b):
        return False
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
