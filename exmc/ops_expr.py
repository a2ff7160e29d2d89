"""``exmc.math``: write a log-density (or a scan step) as ordinary Python on symbolic values, and
get the exmc op program it stands for -- so its gradient comes from the ops' exact VJPs.

    import exmc.math as em

    def laplace_logp(value, mu, b):
        return -em.abs(value - mu) / b - em.log(2.0 * b)

    Builder.rv(ir, "x", Dist.Custom, {"logp": laplace_logp, "mu": "m", "b": 1.0})

This is PyMC's ``CustomDist(logp=...)`` with ``pm.math``: the function is called *once*, at model
build time, with :class:`Expr` placeholders; every arithmetic operator, numpy ufunc (``np.log``,
``np.exp``, ``np.abs``, ``np.square``, ``np.maximum``...) and function of this module applied to
them records an op of :data:`exmc.ops.OPS`, and :func:`trace` returns the recorded program as
scan-style step entries ``(name, op, args, options)`` (plain data: it travels with the IR).
Any op is reachable by name: ``em.logsumexp(x, axis=-1)``, ``em.where(cond, a, b)``,
``em.op("softplus", x)``.

What cannot be traced: Python control flow on values (``if value > 0``: use ``where``), numpy
functions that are not ufuncs (``np.where``, ``np.logaddexp.reduce``; use this module's), and
in-place item assignment. Those raise ``TypeError`` at build time, naming the operation.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["Expr", "trace", "op"]

#: numpy ufunc name -> (exmc op name, argument order).
_UFUNCS = {
    "add": "add", "subtract": "sub", "multiply": "mul", "true_divide": "div", "divide": "div",
    "negative": "neg", "power": "pow", "exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1",
    "sqrt": "sqrt", "square": "square", "absolute": "abs", "tanh": "tanh", "maximum": "maximum",
    "minimum": "minimum", "fabs": "abs",
}


class _Tape:
    """The entries recorded while one function is traced (one per :func:`trace` call)."""

    def __init__(self) -> None:
        self.entries: list[tuple] = []
        self.counter = itertools.count()

    def record(self, op_name: str, args: Sequence[Any], options: dict) -> "Expr":
        names = []
        for a in args:
            if isinstance(a, Expr):
                if a.tape is not self:
                    raise TypeError("an exmc.math expression from another trace was mixed into this one")
                names.append(a.name)
            elif isinstance(a, (bool, int, float, np.number, np.ndarray, list, tuple)):
                names.append(np.asarray(a, dtype=np.float64))
            else:
                raise TypeError(f"exmc.math: {op_name} got an argument of type {type(a).__name__}")
        name = f"_{next(self.counter)}"
        self.entries.append((name, op_name, names, dict(options)))
        return Expr(name, self)


class Expr:
    """A symbolic value during :func:`trace`: arithmetic on it records ops."""

    __slots__ = ("name", "tape")
    __array_priority__ = 1000  # ndarray + Expr defers to Expr.__radd__

    def __init__(self, name: str, tape: _Tape) -> None:
        self.name = name
        self.tape = tape

    def __repr__(self) -> str:
        return f"Expr({self.name!r})"

    def _op(self, name, *args, **options):
        return self.tape.record(name, args, options)

    def __add__(self, o): return self._op("add", self, o)
    def __radd__(self, o): return self._op("add", o, self)
    def __sub__(self, o): return self._op("sub", self, o)
    def __rsub__(self, o): return self._op("sub", o, self)
    def __mul__(self, o): return self._op("mul", self, o)
    def __rmul__(self, o): return self._op("mul", o, self)
    def __truediv__(self, o): return self._op("div", self, o)
    def __rtruediv__(self, o): return self._op("div", o, self)
    def __pow__(self, o): return self._op("square", self) if isinstance(o, (int, float)) and o == 2 else self._op("pow", self, o)
    def __rpow__(self, o): return self._op("pow", o, self)
    def __neg__(self): return self._op("neg", self)
    def __pos__(self): return self
    def __abs__(self): return self._op("abs", self)
    def __matmul__(self, o): return self._op("matmul", self, o)
    def __rmatmul__(self, o): return self._op("matmul", o, self)

    def sum(self, axis=None, **_):
        """``x.sum(axis)`` (and ``np.sum(x, axis)``, which calls it)."""
        return self._op("sum", self, axis=axis)

    def __bool__(self):
        raise TypeError("exmc.math: a traced value has no truth value (Python `if`/`and`/comparisons on it "
                        "cannot be recorded; use exmc.math.where)")

    def _compare(self, other):
        raise TypeError("exmc.math: a comparison of traced values cannot be recorded (Python `if` on a value "
                        "is not an op; use exmc.math.where with a constant mask, or maximum/minimum)")

    __lt__ = __le__ = __gt__ = __ge__ = _compare

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs or ufunc.__name__ not in _UFUNCS:
            raise TypeError(f"exmc.math: numpy {ufunc.__name__}{'' if method == '__call__' else '.' + method} "
                            "cannot be traced (use an exmc.math function)")
        return self.tape.record(_UFUNCS[ufunc.__name__], inputs, {})

    def __array_function__(self, func, types, args, kwargs):
        if func is np.sum:
            return args[0].sum(*args[1:], **kwargs) if isinstance(args[0], Expr) else NotImplemented
        raise TypeError(f"exmc.math: numpy.{func.__name__} cannot be traced (use an exmc.math function)")


def op(name: str, *args: Any, **options: Any) -> Expr:
    """Apply the exmc op ``name`` (any of :data:`exmc.ops.OPS`) to traced values and constants."""
    tape = next((a.tape for a in args if isinstance(a, Expr)), None)
    if tape is None:
        raise TypeError(f"exmc.math.{name}: at least one argument must be a traced value")
    return tape.record(name, args, options)


def __getattr__(name: str) -> Callable[..., Expr]:
    """``exmc.math.<op>(*args, **options)`` for every op name (``log``, ``logsumexp``, ``where``...)."""
    from exmc import ops

    if name.startswith("__") or name not in ops.OPS:
        raise AttributeError(f"module 'exmc.math' has no attribute {name!r} (not an exmc op)")

    def apply(*args: Any, **options: Any) -> Expr:
        return op(name, *args, **options)
    apply.__name__ = name
    return apply


def trace(fn: Callable[..., Any], inputs: Sequence[str], *, keywords: bool = True) -> tuple:
    """The step entries of ``fn`` applied to placeholders named ``inputs`` (the first passed
    positionally, the others by keyword, or all positionally with ``keywords=False``); the last
    entry is the result. Raises ``TypeError`` when ``fn`` does something that cannot be
    recorded, or returns something that is not built from its inputs."""
    from exmc.ops_scan import normalise_step

    tape = _Tape()
    placeholders = [Expr(name, tape) for name in inputs]
    if keywords:
        result = fn(placeholders[0], **dict(zip(inputs[1:], placeholders[1:])))
    else:
        result = fn(*placeholders)
    if not isinstance(result, Expr) or result.tape is not tape:
        raise TypeError(f"exmc.math: {getattr(fn, '__name__', fn)!r} must return an expression of its inputs, "
                        f"got {type(result).__name__}")
    if not tape.entries or result.name != tape.entries[-1][0]:
        # The result is an input or an earlier entry: make it the last entry.
        tape.record("add", [result, 0.0], {})
    return normalise_step(tape.entries)
