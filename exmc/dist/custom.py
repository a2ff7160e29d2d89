"""User-defined densities: ``Custom{logp, grad, support}``.

Three ways to give the density, from the most to the least exact:

1. **Written with exmc ops** (no ``grad``): the gradient comes from the program, exactly, as for
   any built-in family -- PyMC's ``CustomDist(logp=...)`` with ``pm.math``::

       import exmc.math as em

       def laplace_logp(value, mu, b):
           return -em.abs(value - mu) / b - em.log(2.0 * b)

       Builder.rv(ir, "x", Dist.Custom, {"logp": laplace_logp, "mu": "m", "b": 1.0, "support": "real"})

   ``logp`` is called once, when the rv is added, with symbolic values (:mod:`exmc.ops_expr`):
   operators, numpy ufuncs (``np.log``, ``np.abs``...) and ``exmc.math`` functions record exmc
   ops. The traced program (or one given directly as scan-style entries, ``"logp": [("d", "sub",
   ["value", "mu"]), ...]``) is stored in the IR as data.
2. **Plain numpy with a hand-written gradient**::

       "logp": lambda value, scale: -np.abs(value / scale) ** 1.5,   # elementwise, unnormalised ok
       "grad": lambda value, scale: {"value": ..., "scale": ...},     # or just d lp / d value

3. **Plain numpy with** ``"grad": "fd"``: central finite differences of ``logp`` (slow and
   approximate: for quick trials).

Other keys: ``"support"`` (``"real"``, ``"positive"``, ``"unit"``), the optional ``"sample"``
callable, and the numeric params (any other key: a number, an array or a node name).

:meth:`CustomFamily.resolve` returns a specialised family whose ``params`` are the numeric ones.
The callables travel with the IR (cloudpickle carries lambdas and closures by value).

Contract for the density, however written (arrays may carry leading batch axes, e.g. a chain axis):

- ``logp(value, **params)`` returns the elementwise log-density, or its sum over *trailing* axes only
  (``.sum(axis=-1)``); a full ``.sum()`` would add up chains in a batched evaluation.
- ``grad(value, **params)`` returns ``d sum(lp) / d value`` (an array broadcasting to the value's
  shape), or a dict with ``"value"`` and any parameter keys; parameters without a gradient must not
  refer to free rvs (their gradient is simply absent).
- optional ``sample(rng, size, **params)`` draws for predictive checks; ``size`` is the requested
  leading shape followed by the rv's declared shape.

Failure modes: a ``logp`` without ``grad`` that cannot be traced (Python ``if`` on the value, a
numpy function that is not a ufunc) raises ``ValueError`` naming the param and the operation, at
build time. Errors raised by the callables at run time propagate unchanged; a gradient of the
wrong shape raises ``ValueError``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from exmc._numeric import as_float
from exmc.dist.base import Distribution, size_tuple

__all__ = ["Custom", "CustomFamily", "CUSTOM_SUPPORTS"]

#: Supports a Custom family may declare (each has a parameter-free default transform).
CUSTOM_SUPPORTS = ("real", "positive", "unit")
_RESERVED = ("logp", "grad", "support", "sample")


@dataclass(frozen=True)
class CustomFamily(Distribution):
    """``Dist.Custom`` (unresolved) and its specialisations carrying the user's callables."""

    logp_fn: Callable[..., Any] | None = None
    grad_fn: Callable[..., Any] | None = None
    sample_fn: Callable[..., Any] | None = None

    def resolve(self, params: Mapping[str, Any]) -> tuple["CustomFamily", dict[str, Any]]:
        """Split the callables from the numeric params. Raises ``ValueError`` naming the field when
        ``logp``/``grad`` are missing or not callable, or ``support`` is not one of
        :data:`CUSTOM_SUPPORTS`."""
        if self.logp_fn is not None:
            return self, dict(params)
        if "logp" not in params:
            raise ValueError("param 'logp' is missing (Custom takes logp, grad, support and numeric params)")
        numeric = {k: v for k, v in params.items() if k not in _RESERVED}
        by_ops = params.get("grad") is None
        if by_ops:
            logp_fn = OpsLogp.from_param(params["logp"], ("value", *numeric))
        for key in ("logp",) if by_ops else ("logp", "grad"):
            if key == "grad" and params[key] == FINITE_DIFFERENCES:
                continue
            if key == "logp" and by_ops:
                continue
            if not callable(params[key]):
                raise ValueError(f"param {key!r} must be a callable, got {type(params[key]).__name__}")
        sample_fn = params.get("sample")
        if sample_fn is not None and not callable(sample_fn):
            raise ValueError(f"param 'sample' must be a callable, got {type(sample_fn).__name__}")
        support = params.get("support", "real")
        if support not in CUSTOM_SUPPORTS:
            raise ValueError(f"param 'support' must be one of {CUSTOM_SUPPORTS}, got {support!r}")
        if by_ops:
            grad_fn = logp_fn.grads
        else:
            logp_fn, grad_fn = params["logp"], params["grad"]
            if grad_fn == FINITE_DIFFERENCES:
                grad_fn = _FiniteDifferences(params["logp"], tuple(numeric))
        family = CustomFamily(name=self.name, params=tuple(numeric), support=support,
                              logp_fn=logp_fn, grad_fn=grad_fn, sample_fn=sample_fn)
        return family, numeric

    def _require_resolved(self) -> None:
        if self.logp_fn is None:
            raise ValueError("Dist.Custom must be resolved first: Custom.resolve({'logp': f, 'grad': g, ...})")

    def in_support(self, value, **params):
        value = as_float(value)
        if self.support == "positive":
            return np.isfinite(value) & (value > 0)
        if self.support == "unit":
            return (value > 0) & (value < 1)
        return np.isfinite(value)

    def logp(self, value, **params):
        """The user's ``logp`` alone (no gradient call)."""
        self._require_resolved()
        return as_float(self.logp_fn(value, **params))

    def logp_and_grads(self, value, **params):
        self._require_resolved()
        if isinstance(self.logp_fn, OpsLogp):
            lp, raw = self.logp_fn.value_and_grads(value, **params)
        else:
            lp = as_float(self.logp_fn(value, **params))
            raw = self.grad_fn(value, **params)
        grads = {k: as_float(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {"value": as_float(raw)}
        if "value" not in grads:
            raise ValueError("Custom grad returned a dict without the 'value' key")
        unknown = sorted(set(grads) - {"value", *self.params})
        if unknown:
            raise ValueError(f"Custom grad returned a gradient for unknown param {unknown[0]!r}")
        try:
            np.broadcast_shapes(grads["value"].shape, np.shape(value))
        except ValueError:
            raise ValueError(f"Custom grad returned shape {grads['value'].shape} for a value of shape "
                             f"{np.shape(value)}") from None
        return lp, grads

    def sample(self, rng, size, shape=None, **params):
        self._require_resolved()
        if self.sample_fn is None:
            raise ValueError("Custom has no draws: give it a 'sample' callable (rng, size, **params) for predictive checks")
        return np.asarray(self.sample_fn(rng, size_tuple(size) + tuple(shape or ()), **params))


class OpsLogp:
    """A Custom log-density written with exmc ops: the traced step entries over ``value`` and the
    numeric params, compiled (a :class:`exmc.ops_scan.StepProgram`) once per combination of input
    shapes it meets; ``value_and_grads`` runs it forward and back (exact VJPs), seeding the
    result with ones, i.e. the gradient of ``sum(lp)``.

    State: ``step`` and ``inputs`` are fixed; ``_programs`` (shapes -> program) only grows and is
    rebuilt after unpickling. Concurrent evaluations may compile the same entry twice, harmlessly.
    """

    def __init__(self, step: tuple, inputs: tuple[str, ...]) -> None:
        self.step = step
        self.inputs = inputs
        self._programs: dict[tuple, Any] = {}

    @classmethod
    def from_param(cls, logp: Any, inputs: tuple[str, ...]) -> "OpsLogp":
        """From a callable (traced with :func:`exmc.ops_expr.trace`) or step entries; raises
        ``ValueError`` naming param ``logp`` when it can be neither."""
        from exmc.ops_expr import trace
        from exmc.ops_scan import normalise_step

        if isinstance(logp, OpsLogp):
            return logp
        try:
            if callable(logp):
                step = trace(logp, inputs)
            else:
                step = normalise_step(logp)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"param 'logp' is not an exmc-ops density and no 'grad' was given: {exc}. "
                             "Write it with exmc.math, or give grad=<callable> or grad='fd'") from None
        from exmc import ops

        known = set(inputs) | {entry[0] for entry in step}
        for name, op_name, args, _ in step:
            if op_name not in ops.OPS:
                raise ValueError(f"param 'logp': entry {name!r} uses unknown op {op_name!r}")
            for a in args:
                if isinstance(a, str) and a not in known:
                    raise ValueError(f"param 'logp': entry {name!r} refers to unknown {a!r} "
                                     f"(inputs: {list(inputs)})")
        return cls(step, inputs)

    def _program(self, values: list):
        from exmc.ops_scan import StepProgram

        key = tuple(v.shape for v in values)
        program = self._programs.get(key)
        if program is None:
            needs = [name for name, v in zip(self.inputs, values) if v.dtype.kind == "f"]
            try:
                program = StepProgram(self.step, dict(zip(self.inputs, key)), needs=needs)
            except ValueError as exc:
                raise ValueError(f"Custom logp (exmc ops) at input shapes {dict(zip(self.inputs, key))}: {exc}") from None
            self._programs[key] = program
        return program

    def _values(self, value, params) -> list:
        return [as_float(value), *(as_float(params[k]) for k in self.inputs[1:])]

    def __call__(self, value, **params):
        values = self._values(value, params)
        program = self._program(values)
        return program.forward(values)[program.last]

    def value_and_grads(self, value, **params):
        values = self._values(value, params)
        program = self._program(values)
        env = program.forward(values)
        lp = np.asarray(env[program.last], dtype=np.float64)
        grads = program.backward(env, {program.last: np.ones(lp.shape)})
        out = {}
        for i, (name, v) in enumerate(zip(self.inputs, values)):
            if v.dtype.kind == "f":
                out[name] = np.zeros(v.shape) if grads[i] is None else np.asarray(grads[i], dtype=np.float64)
        return lp, out

    def grads(self, value, **params):
        return self.value_and_grads(value, **params)[1]

    def __reduce__(self):
        return (OpsLogp, (self.step, self.inputs))


#: ``"grad": "fd"``: gradients by central finite differences of the user's ``logp``.
FINITE_DIFFERENCES = "fd"
#: Relative step of those differences: about the cube root of the float64 epsilon, which balances
#: truncation (O(h^2)) against rounding (O(eps/h)); gradients come out accurate to ~1e-10 relative
#: on smooth densities, an approximation all the same.
FD_RELATIVE_STEP = 6e-6


class _FiniteDifferences:
    """``grad="fd"``: d sum(lp) / d input for the value and every floating-point numeric parameter,
    one pair of ``logp`` calls per entry (2 x (value size + parameter sizes) calls per gradient:
    slow, meant for quick trials; write the density with exmc ops and ``Builder.potential``, or
    give ``grad``, for real work). Perturbing one entry changes only its own chain's log-density,
    so the differences of the total are exact per chain in batched calls too."""

    def __init__(self, logp, params: tuple[str, ...]) -> None:
        self.logp = logp
        self.params = params

    def __call__(self, value, **params):
        inputs = {"value": value, **params}
        grads = {}
        for key, x in inputs.items():
            x = np.asarray(x)
            if x.dtype.kind != "f":
                continue  # integer data: no gradient
            grads[key] = self._partials(key, np.array(x, dtype=np.float64), inputs)
        return grads

    def _partials(self, key, x, inputs):
        grad = np.zeros(x.shape)
        for index in np.ndindex(x.shape):
            h = FD_RELATIVE_STEP * max(1.0, abs(float(x[index])))
            up, down = x.copy(), x.copy()
            up[index] += h
            down[index] -= h
            total_up = np.sum(self._call(inputs, key, up))
            total_down = np.sum(self._call(inputs, key, down))
            grad[index] = (total_up - total_down) / (2.0 * h)
        return grad

    def _call(self, inputs, key, x):
        """``logp(value, **params)`` with input ``key`` replaced by ``x`` (the value positionally,
        as the Custom contract calls it)."""
        changed = {**inputs, key: x}
        value = changed.pop("value")
        return self.logp(value, **changed)

    def __reduce__(self):
        return (_FiniteDifferences, (self.logp, self.params))


Custom = CustomFamily(name="Custom", params=("logp", "grad", "support"), optional={"sample": None})
