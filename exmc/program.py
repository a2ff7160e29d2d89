"""Compile an analysed IR into flat forward and reverse step lists (the model's hot path).

The model's log-density is evaluated by a *program*: a list of forward steps and a list of reverse
steps, each a closure specialised at compile time (slots, paddings, shapes and constants resolved:
no IR lookups, shape inference or validation is left for the hot path). Values live in a plain list ``v`` indexed by slot; the
reverse pass accumulates gradients in a list ``gs`` of the same length, where each slot's first
contribution (known at compile time) is assigned and later ones added, so no zero arrays are
allocated. Nodes that do not influence the log-density (dets only reported with the draws) are
left out of the log-density program and computed only by the values program.

Two variants are compiled from the same IR: *single* (``theta`` of shape ``(dim,)``) and *batched*
(``(C, dim)``, a leading chain axis on every varying value). In the batched variant a varying value
of shape ``(C,) + core`` is padded to ``(C, 1, ..., 1) + core`` where it meets arrays of higher
rank, so numpy broadcasting lines up the core axes; the padding axes are summed away again when
gradients flow back. A third, *float rows*, is the single variant compiled to run on a Python list
of floats (:meth:`Program.run_rows`): for a model of scalar rvs, a batch of a few chains costs less
evaluated chain by chain in float arithmetic than in the batched variant's numpy calls on ``(C,)``
arrays.

A term (the log-density of one rv) uses its family's compile-time kernel when the family has one
for that term's shape of constants and varying inputs (``prior_kernel``, ``observed_kernel``,
``latent_kernel``: see :class:`exmc.dist.base.Distribution`); otherwise it calls
``logp_and_grads`` and reduces each gradient to its input's shape.

Failure modes: numpy floating-point warnings (overflow, invalid) are not suppressed here; a log-
density outside a family's support is ``-inf`` and its gradient unspecified (the sampler treats
non-finite values as divergences).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Collection

import numpy as np

from exmc import ops, transforms
from exmc._numeric import HALF_LOG_2PI
from exmc.analysis import Analysis
from exmc.censoring import censored_family
from exmc.codegen import generate
from exmc.dist.base import sum_to_shape
from exmc.dist.observed_kernels import poisson_log_rate_kernel
from exmc.dist.normal_kernels import normal_log_scale_kernel
from exmc.dist.studentt_kernels import studentt_log_scale_kernel
from exmc.fusion import Fusion, find_fusions, glm_kernel, normal_linear_kernel
from exmc.ir import RV, Det, is_ref

logger = logging.getLogger(__name__)

__all__ = ["Program", "FreeRV", "build_program"]

#: Fixed slots of the value list: theta and the gradient output array.
THETA, OUT = 0, 1

#: ``np.add.reduce`` is ``ndarray.sum`` without its Python-level wrapper (measurably cheaper on the
#: small arrays of the hot path).
_sum = np.add.reduce

@dataclass(frozen=True)
class FreeRV:
    """One free rv's place in theta: ``theta[start:stop]`` reshaped to ``ushape`` is the
    unconstrained point; ``transform`` maps it to the value of shape ``shape`` (``None`` for a
    noncentered rv, whose free coordinates are ``z`` with ``value = mu + sigma * z``)."""

    name: str
    shape: tuple[int, ...]
    ushape: tuple[int, ...]
    start: int
    stop: int
    transform: Any
    node: RV


@dataclass
class Program:
    """A compiled variant (single or batched) of a model."""

    batched: bool
    template: list
    slots: dict[str, int]
    varying: set[str]
    lp_const: float
    phase1: list[Callable]
    forward: list[Callable]
    reverse: list[Callable]
    values_phase1: list[Callable]
    values: list[Callable]
    # The node each step of ``values`` writes (same order), for ``evaluate(theta, only=...)``.
    values_names: tuple[str, ...] = ()
    #: The generated equivalent of :meth:`run` (:mod:`exmc.codegen`; single variant only), or
    #: ``None`` where the closures serve.
    generated: Callable[[np.ndarray], tuple[Any, np.ndarray]] | None = None
    #: ``"numba"`` when a term runs a compiled kernel (:mod:`exmc.accel`), else ``"numpy"``.
    grad_kernel: str = "numpy"

    def __post_init__(self) -> None:
        self._steps = self.phase1 + self.forward

    def run(self, theta: np.ndarray) -> tuple[Any, np.ndarray]:
        """Log-density and gradient at ``theta`` (the hot path)."""
        v = self.template.copy()
        v[THETA] = theta
        lp = self.lp_const
        for step in self._steps:
            contribution = step(v)
            if contribution is not None:
                lp = lp + contribution
        v[OUT] = np.empty(theta.shape)
        gs = [None] * len(v)
        for step in self.reverse:
            step(v, gs)
        return lp, v[OUT]

    def run_rows(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-densities ``(C,)`` and gradients ``(C, dim)`` of an unbatched program run once per
        row of ``theta`` (``(C, dim)``, ``C >= 1``), each row a list of Python floats.

        For a model of scalar rvs whose program computes on floats alone (see
        :meth:`computes_on_floats`) this beats the batched program over a few chains: every numpy
        call of the batched program costs ~0.5 us on a ``(C,)`` array, a float operation ~20 ns
        (see :data:`exmc.model.ROWWISE_MAX_CHAINS`). Raises ``ArithmeticError`` where Python floats
        raise and numpy gives inf or nan (division by zero, overflow); the caller then runs the
        batched program, so both give the same results.
        """
        # One value list serves every row: each step writes its slots before any later step of
        # the same row reads them, and the template's constants are never written.
        lps, grads = [], []
        generated = self.generated  # the same steps as _row, generated (exmc.codegen)
        if generated is not None:
            for row in theta.tolist():
                lp, grad = generated(row)
                lps.append(lp)
                grads.append(grad)
            return np.array(lps, dtype=np.float64), np.array(grads, dtype=np.float64)
        v = self.template.copy()
        for row in theta.tolist():
            lp, grad, _ = self._row(v, row)
            lps.append(lp)
            grads.append(grad)
        return np.array(lps, dtype=np.float64), np.array(grads, dtype=np.float64)

    def _row(self, v: list, row: list[float]) -> tuple[Any, list, list]:
        """One row of :meth:`run_rows`: log-density, gradient (a list) and the gradient slots.

        Repeats :meth:`run`'s loops with a list for the gradient instead of an array; a helper
        shared with ``run`` would add Python calls to the single hot path (see :meth:`logp`)."""
        v[THETA] = row
        lp = self.lp_const
        for step in self._steps:
            contribution = step(v)
            if contribution is not None:
                lp = lp + contribution
        out = v[OUT] = [0.0] * len(row)
        gs = [None] * len(v)
        for step in self.reverse:
            step(v, gs)
        return lp, out, gs

    def computes_on_floats(self, dim: int) -> bool:
        """Whether :meth:`run_rows` computes in Python floats alone, with no numpy call per row.

        Decided by one probe row of ``dim`` zeros: every slot the steps write, every gradient and
        the log-density must hold Python floats (or tuples of them). A step that calls numpy or
        scipy leaves a numpy scalar or array behind; the types follow the program's structure, not
        the point, so one probe decides. ``False`` as well when the probe raises ``ArithmeticError``.
        A kernel that turned a per-call numpy result into a float would pass unnoticed; the
        families' kernels convert only compile-time constants.
        """
        v = self.template.copy()
        try:
            lp, out, gs = self._row(v, [0.0] * dim)
        except ArithmeticError:
            return False
        written = [x for x, t in zip(v[OUT + 1:], self.template[OUT + 1:]) if t is None]
        return all(_is_floats(x) for x in [lp, out, *written, *gs] if x is not None)

    def logp(self, theta: np.ndarray) -> Any:
        """Log-density only (no reverse pass).

        Repeats :meth:`run`'s forward loop rather than sharing a helper with it: ``run`` is called
        once per leapfrog step, and a helper would add a Python call there."""
        v = self.template.copy()
        v[THETA] = theta
        lp = self.lp_const
        for step in self._steps:
            contribution = step(v)
            if contribution is not None:
                lp = lp + contribution
        return lp

    def evaluate(self, theta: np.ndarray, only: Collection[str] | None = None) -> list:
        """Every node's value at ``theta`` (free rvs, dets, constants), by slot; with ``only``,
        the values steps of the other varying nodes are skipped (their slots stay unset: the
        caller names every node it reads and every node those depend on)."""
        v = self.template.copy()
        v[THETA] = theta
        for step in self.values_phase1:
            step(v)
        if only is None:
            for step in self.values:
                step(v)
        else:
            for name, step in zip(self.values_names, self.values):
                if name in only:
                    step(v)
        return v


def _is_floats(x: Any) -> bool:
    """A Python float, or a list or tuple of them (nested)."""
    if type(x) is float:
        return True
    return type(x) in (list, tuple) and all(_is_floats(item) for item in x)


_f64 = np.float64


def _libm_exp(u: Any) -> np.float64:
    """``math.exp(u)`` as a numpy scalar, inf on overflow. libm's exp differs from ``np.exp`` in
    the last bit for a few percent of inputs; the single variant takes libm's so that it agrees
    bit for bit with float rows, and returns a numpy scalar so that arithmetic downstream keeps
    numpy's semantics (division by zero gives inf, not an exception). Cheaper than ``np.exp`` on a
    scalar, too."""
    try:
        return _f64(math.exp(u))
    except OverflowError:
        return _f64(math.inf)


def _fast_constant(value: Any) -> Any:
    """A 0-d float array as a numpy scalar: arithmetic on ``np.float64`` costs a fraction of that on
    0-d arrays, with the same IEEE semantics (division by zero gives inf, not an exception)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype == np.float64:
        return value[()]
    return value


#: Ops whose VJP the generated function writes out (:meth:`_Builder._det_src`): per op, the forward
#: expression (``None``: the kernel's forward is called) and each argument's gradient, exactly the
#: expressions of the op's functions in :mod:`exmc.ops` (``{g}`` the output's gradient, ``{o}`` the
#: output, ``{0}``, ``{1}``... the arguments).
_INLINE_OPS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "add": (None, ("{g}", "{g}")),
    "sub": (None, ("{g}", "-{g}")),
    "mul": (None, ("{g} * {1}", "{g} * {0}")),
    "neg": (None, ("-{g}",)),
    "exp": (None, ("{g} * {o}",)),
    "affine": ("{0} + {1} * {2}", ("{g}", "{g} * {2}", "{g} * {1}")),
}


#: Elementwise ops the generated function writes as Python operators when an argument is
#: numpy-typed (:meth:`_Builder._numpy_typed`): their ufunc, and the expression.
_OPERATORS: dict[str, tuple[np.ufunc, str]] = {
    "add": (np.add, "{0} + {1}"),
    "sub": (np.subtract, "{0} - {1}"),
    "mul": (np.multiply, "{0} * {1}"),
    "neg": (np.negative, "-{0}"),
}


#: Elementwise ops whose gradient for argument ``i`` is the output's gradient times argument
#: ``j`` (:meth:`_Builder._product_grads`): ``{i: j}``.
_PRODUCT_GRADS: dict[str, dict[int, int]] = {"mul": {0: 1, 1: 0}, "affine": {1: 2, 2: 1}}


#: The code of the forward functions whose expression ``_INLINE_OPS`` writes out.
_INLINE_FORWARD_CODE = {"affine": ops.get("affine").kernel([(), (), ()], [False] * 3, [True] * 3, {}).forward.__code__}


def _chain_sum(lp: Any, axes: tuple[int, ...], ndim: int) -> Any:
    """Sum an elementwise log-density over everything but the chain axis."""
    if lp.ndim == ndim:
        return _sum(lp, axes) if axes else lp
    lp = np.asarray(lp)
    return lp.reshape(lp.shape[0], -1).sum(axis=1) if lp.ndim else lp


class _Builder:
    """Builds one :class:`Program` variant; see :func:`build_program`."""

    def __init__(self, analysis: Analysis, free: list[FreeRV], batched: bool, float_rows: bool = False,
                 fuse: bool = True, codegen: bool = True) -> None:
        self.a = analysis
        self.fuse = fuse
        self.codegen = codegen
        self.free = {f.name: f for f in free}
        self.free_list = free
        self.batched = batched
        self.float_rows = float_rows
        self.template: list = [None, None]
        self.slots: dict[str, int] = {}
        self.varying: set[str] = set()
        self.lp_const = 0.0
        self.seen: set[int] = set()  # slots that already received a gradient (reverse build order)
        # Source text of the generated single-variant function (exmc.codegen): the objects its
        # snippets name, by name. Snippets are attached only to the single variant's closures.
        self.emit = codegen and not batched
        self.names: dict[str, Any] = {}
        self.grad_kernel = "numpy"  # "numba" once a term's kernel is compiled (exmc.accel)
        self._names_by_id: dict[int, str] = {}
        for node in analysis.order:
            if node.kind == "obs":
                continue
            self.slots[node.name] = self._slot(analysis.consts.get(node.name))
            if node.name in self.free or (node.kind == "det" and any(
                    is_ref(a) and a in self.varying for a in node.args)):
                self.varying.add(node.name)
        self.numpy_typed = self._numpy_typed() if self.emit and not float_rows else set()

    def _numpy_typed(self) -> set[str]:
        """Varying nodes whose value is a numpy object (``np.float64`` or an array, never a Python
        float) in every evaluation of the single variant: free rvs read from theta as they are
        (identity), through the log transform (``np.exp`` or :func:`_libm_exp`) or noncentered
        (``mu + sigma * z``, ``z`` read from theta), and dets whose forward is a numpy ufunc or an
        arithmetic op with a numpy-typed argument. For those, ``a * b`` is ``np.multiply(a, b)``
        bit for bit and type for type (numpy's scalar and array arithmetic; a Python float on the
        left defers to ``np.float64``'s reflected operator, numpy's scalar being its subclass)."""
        typed: set[str] = set()
        for node in self.a.order:
            if node.name not in self.varying:
                continue
            if node.kind == "rv":
                f = self.free.get(node.name)
                if f is not None and (f.transform is None or type(f.transform) is transforms.Log
                                      or isinstance(f.transform, transforms.Identity)):
                    typed.add(node.name)
            elif node.kind == "det":
                op = ops.get(node.op)
                if not op.elementwise:
                    continue
                if node.op in _OPERATORS and any(is_ref(a) and a in typed for a in node.args):
                    typed.add(node.name)
                elif node.op not in _OPERATORS and node.op not in _INLINE_FORWARD_CODE:
                    needs = [is_ref(a) and a in self.varying for a in node.args]
                    kernel = op.kernel([self.a.shape_of(a) for a in node.args], [False] * len(needs), needs,
                                       {**op.options, **dict(node.options)})
                    if isinstance(kernel.forward, np.ufunc):
                        typed.add(node.name)
        return typed

    def _slot(self, value: Any = None) -> int:
        self.template.append(_fast_constant(value))
        return len(self.template) - 1

    # --- inputs ----------------------------------------------------------------------------------

    def _pad(self, name: str, target_ndim: int) -> tuple | None:
        """Index that inserts the padding axes after the chain axis (batched only)."""
        if not self.batched:
            return None
        pad = target_ndim - len(self.a.shapes[name])
        return (slice(None),) + (None,) * pad if pad > 0 else None

    def _first(self, slot: int) -> bool:
        first = slot not in self.seen
        self.seen.add(slot)
        return first

    # --- source snippets for exmc.codegen ----------------------------------------------------------

    def _src(self, fn: Callable | None, *lines: str) -> Callable | None:
        """Attach to closure ``fn`` the statements the generated function runs instead of calling
        it (see :mod:`exmc.codegen`): the same operations on the same objects, in the same order,
        with values ``v<slot>``, gradients ``g<slot>``, tapes ``t<slot>``, ``theta``, ``out`` and
        the running ``lp`` as locals."""
        if self.emit and fn is not None:
            fn.src = "\n".join(lines)
        return fn

    def _name(self, obj: Any, hint: str = "k") -> str:
        """A name under which the generated function sees ``obj`` (a kernel, a constant)."""
        name = self._names_by_id.get(id(obj))
        if name is None:
            name = self._names_by_id[id(obj)] = f"{hint}{len(self.names)}"
            self.names[name] = obj  # also keeps obj alive, so its id stays unique
        return name

    def _arg(self, slot: int | None, const: Any) -> str:
        """Source for an input: the value local of ``slot``, or a name for the constant."""
        return f"v{slot}" if slot is not None else self._name(const, "c")

    @staticmethod
    def _acc(slot: int, first: bool, expr: str) -> str:
        """Source for one gradient contribution ``expr`` to ``slot`` (assigned when first)."""
        return f"g{slot} = {expr}" if first else f"g{slot} = g{slot} + {expr}"

    def _get_src(self, f: FreeRV) -> str:
        """Source of :meth:`_getter` (single variant)."""
        if f.ushape == ():
            return f"theta[{f.start}]"
        if len(f.ushape) == 1:  # the slice is already of that shape: a view like the reshape's
            return f"theta[{f.start}:{f.stop}]"
        return f"theta[{f.start}:{f.stop}].reshape({f.ushape!r})"

    def _write_src(self, f: FreeRV, expr: str) -> str:
        """Source of :meth:`_writer` (single variant) writing ``expr``."""
        if f.ushape == ():
            return f"out[{f.start}] = {expr}"
        if len(f.ushape) == 1:  # assignment flattens nothing for a vector: the same entries
            return f"out[{f.start}:{f.stop}] = {expr}"
        return f"out[{f.start}:{f.stop}] = ({expr}).reshape(-1)"

    # --- free rvs: theta -> value ------------------------------------------------------------------

    def _getter(self, f: FreeRV) -> Callable:
        a, b, ushape = f.start, f.stop, f.ushape
        if self.batched:
            if ushape == ():
                return lambda th: th[:, a]
            return lambda th: th[:, a:b].reshape((th.shape[0],) + ushape)
        if ushape == ():
            return lambda th: th[a]
        return lambda th: th[a:b].reshape(ushape)

    def _writer(self, f: FreeRV) -> Callable:
        a, b = f.start, f.stop
        if self.batched:
            if f.ushape == ():
                def write(out, g):
                    out[:, a] = g
            else:
                def write(out, g):
                    out[:, a:b] = g.reshape(out.shape[0], -1)
        elif f.ushape == ():
            def write(out, g):
                out[a] = g
        else:
            def write(out, g):
                out[a:b] = g.reshape(-1)
        return write

    def _phase1(self, f: FreeRV, with_logdet: bool) -> tuple[Callable, Callable | None]:
        """Forward (value and log-Jacobian) and reverse (chain rule into theta) of a transformed rv."""
        get, write, slot, transform = self._getter(f), self._writer(f), self.slots[f.name], f.transform
        log = type(transform) is transforms.Log
        if f.ushape == () and not self.batched and (log or isinstance(transform, transforms.Identity)):
            return self._scalar_phase1(f.start, slot, log, with_logdet)
        if isinstance(transform, transforms.Identity):
            def forward(v):
                v[slot] = get(v[THETA])

            def reverse(v, gs):
                write(v[OUT], gs[slot])
            return (self._src(forward, f"v{slot} = {self._get_src(f)}"),
                    self._src(reverse, self._write_src(f, f"g{slot}")))
        if log:
            return self._log_phase1(f, get, write, slot, with_logdet)
        tape = self._slot()
        axes = tuple(range(1, 1 + len(f.ushape) - transform.event_ndim))
        batched = self.batched
        scalar_free = f.ushape == ()

        def forward(v):
            u = get(v[THETA])
            v[tape] = u
            v[slot] = transform.forward(u)
            if not with_logdet:
                return None
            logdet = transform.log_det_jacobian(u)
            if batched:
                return _sum(logdet, axes) if axes else logdet
            return logdet if scalar_free else _sum(logdet, None)

        backward = transform.backward  # every Transform has one (the base class derives it)

        def reverse(v, gs):
            write(v[OUT], backward(v[tape], v[slot], gs[slot]))
        if with_logdet and not batched:
            tf, tl = self._name(transform.forward), self._name(transform.log_det_jacobian)
            logdet = "_ld" if scalar_free else f"{self._name(_sum)}(_ld, None)"
            self._src(forward, f"_u = {self._get_src(f)}", f"t{tape} = _u", f"v{slot} = {tf}(_u)",
                      f"_ld = {tl}(_u)", f"lp = lp + {logdet}")
        self._src(reverse, self._write_src(f, f"{self._name(backward)}(t{tape}, v{slot}, g{slot})"))
        return forward, reverse

    def _log_phase1(self, f: FreeRV, get: Callable, write: Callable, slot: int,
                    with_logdet: bool) -> tuple[Callable, Callable]:
        """The log transform (positive rvs, the most common), inlined: ``y = exp(u)``, the
        log-Jacobian is ``u`` itself and the reverse pass is ``g * y + 1``."""
        exp = np.exp
        if not with_logdet:
            def forward(v):
                v[slot] = exp(get(v[THETA]))
        elif f.ushape == ():
            def forward(v):
                u = get(v[THETA])
                v[slot] = exp(u)
                return u
        else:
            axes = tuple(range(1, 1 + len(f.ushape))) if self.batched else None

            def forward(v):
                u = get(v[THETA])
                v[slot] = exp(u)
                return _sum(u, axes)
            if not self.batched:
                self._src(forward, f"_u = {self._get_src(f)}", f"v{slot} = {self._name(exp)}(_u)",
                          f"lp = lp + {self._name(_sum)}(_u, None)")

        def reverse(v, gs):
            write(v[OUT], gs[slot] * v[slot] + 1.0)
        return forward, self._src(reverse, self._write_src(f, f"g{slot} * v{slot} + 1.0"))

    def _scalar_phase1(self, a: int, slot: int, log: bool, with_logdet: bool) -> tuple[Callable, Callable]:
        """Identity or log transform of an unbatched scalar rv at ``theta[a]`` (the hot path of
        small models): the entry is read and its gradient written in place, without getter and
        writer calls. Both variants take libm's exp (``math.exp``), so a float row and a single
        call give the same bits: on float rows it keeps the value a Python float (raising
        ``OverflowError`` where numpy gives inf), otherwise it is :func:`_libm_exp`."""
        if not log:
            def forward(v):
                v[slot] = v[THETA][a]

            def reverse(v, gs):
                v[OUT][a] = gs[slot]
            return self._src(forward, f"v{slot} = theta[{a}]"), self._src(reverse, f"out[{a}] = g{slot}")
        exp = math.exp if self.float_rows else _libm_exp
        if with_logdet:
            def forward(v):
                u = v[THETA][a]
                v[slot] = exp(u)
                return u
            self._src(forward, f"_u = theta[{a}]", f"v{slot} = {self._name(exp)}(_u)", "lp = lp + _u")
        else:
            def forward(v):
                v[slot] = exp(v[THETA][a])

        def reverse(v, gs):
            v[OUT][a] = gs[slot] * v[slot] + 1.0
        return forward, self._src(reverse, f"out[{a}] = g{slot} * v{slot} + 1.0")

    # --- terms: logp of an rv (prior of a free rv, likelihood of an observed one) -----------------

    def _term(self, node: RV) -> tuple[Callable | None, Callable | None]:
        family, params = self.a.families[node.name]
        shape = self.a.shapes[node.name]
        batch_ndim = len(shape) - family.event_ndim
        obs = self.a.observations.get(node.name)
        logp_and_grads = family.logp_and_grads
        if obs is not None and obs.censored is not None:
            logp_and_grads = censored_family(node.name, obs, family)
        event_ndims = family.param_event_ndim
        base: dict[str, Any] = {}
        varying: list[tuple[str, int, tuple | None]] = []
        for key, value in params.items():
            if is_ref(value) and value in self.varying:
                varying.append((key, self.slots[value], self._pad(value, batch_ndim + event_ndims.get(key, 0))))
            else:
                base[key] = _fast_constant(self.a.value_of(value))
        value_slot = self.slots[node.name] if node.name in self.varying else None
        const_value = self.a.consts.get(node.name)
        varying_shapes = tuple((key, self.a.shapes[params[key]]) for key, _, _ in varying)
        varying_slots = [slot for _, slot, _ in varying]
        if value_slot is not None and not varying:
            kernel = family.prior_kernel(shape, self.batched, node.transform is None, **base)
            if kernel is not None:
                return self._prior_term(kernel, value_slot)
        elif value_slot is None and varying and (obs is None or obs.censored is None):
            kernel = family.observed_kernel(const_value, varying_shapes, self.batched, **base)
            if kernel is not None:
                return self._kernel_term(kernel, varying_slots)
        elif value_slot is not None:
            kernel = family.latent_kernel(shape, varying_shapes, self.batched, **base)
            if kernel is not None:
                return self._kernel_term(kernel, [value_slot] + varying_slots)
        if value_slot is None and not varying:
            with np.errstate(all="ignore"):
                lp, _ = logp_and_grads(const_value, **base)
            self.lp_const += float(np.sum(lp))
            return None, None
        tape = self._slot()
        axes = tuple(range(1, 1 + batch_ndim))
        ndim = 1 + batch_ndim
        inputs = [(key, slot, pad is not None, self._first(slot)) for key, slot, pad in varying]
        if value_slot is not None:
            inputs.append(("value", value_slot, False, self._first(value_slot)))
        if not self.batched:
            static = [(key, slot, self.a.shapes[params[key] if key != "value" else node.name], first)
                      for key, slot, _, first in inputs]
            forward, reverse = self._single_term(logp_and_grads, base, varying, value_slot, const_value,
                                                 batch_ndim == 0, static, tape)
            return self._single_term_src(forward, reverse, logp_and_grads, base, varying, value_slot, const_value,
                                         batch_ndim == 0, static, tape)

        def forward(v):
            kw = dict(base)
            for key, slot, pad in varying:
                x = v[slot]
                kw[key] = x if pad is None else x[pad]
            value = const_value if value_slot is None else v[value_slot]
            lp, grads = logp_and_grads(value, **kw)
            v[tape] = (kw, grads, value)
            return _chain_sum(lp, axes, ndim)

        def reverse(v, gs):
            kw, grads, value = v[tape]
            for key, slot, padded, first in inputs:
                x = value if key == "value" else kw[key]
                g = sum_to_shape(grads[key], x.shape)
                if padded:
                    g = g.reshape(v[slot].shape)
                gs[slot] = g if first else gs[slot] + g
        return forward, reverse

    def _prior_term(self, kernel: Callable, value_slot: int) -> tuple[Callable, Callable]:
        """Closures around a family's ``prior_kernel`` (constant parameters: only the value's
        gradient, the log-density already summed)."""
        tape, first = self._slot(), self._first(value_slot)

        def forward(v):
            lp, v[tape] = kernel(v[value_slot])
            return lp

        if first:
            def reverse(v, gs):
                gs[value_slot] = v[tape]
        else:
            def reverse(v, gs):
                gs[value_slot] = gs[value_slot] + v[tape]
        return (self._src(forward, f"_lp, t{tape} = {self._name(kernel)}(v{value_slot})", "lp = lp + _lp"),
                self._src(reverse, self._acc(value_slot, first, f"t{tape}")))

    def _kernel_term(self, kernel: Callable, slots: list[int]) -> tuple[Callable, Callable]:
        """Closures around a family's ``observed_kernel`` or ``latent_kernel``: ``kernel`` takes
        the values of ``slots`` and returns the summed log-density and one gradient per slot,
        already of that slot's shape (no padding or reduction here)."""
        if getattr(kernel, "grad_kernel", "numpy") != "numpy":
            self.grad_kernel = kernel.grad_kernel
        tape = self._slot()
        inputs = [(i, slot, self._first(slot)) for i, slot in enumerate(slots)]
        if len(slots) == 1:
            ((_, slot, first),) = inputs

            def forward(v):
                lp, v[tape] = kernel(v[slot])
                return lp

            def reverse(v, gs):
                (g,) = v[tape]
                gs[slot] = g if first else gs[slot] + g
            return (self._src(forward, f"_lp, t{tape} = {self._name(kernel)}(v{slot})", "lp = lp + _lp"),
                    self._src(reverse, f"(_g,) = t{tape}", self._acc(slot, first, "_g")))
        if len(slots) == 2:  # a likelihood of two varying parameters (mu and sigma): unrolled
            (_, slot_a, first_a), (_, slot_b, first_b) = inputs

            def forward(v):
                lp, v[tape] = kernel(v[slot_a], v[slot_b])
                return lp

            def reverse(v, gs):
                g_a, g_b = v[tape]
                gs[slot_a] = g_a if first_a else gs[slot_a] + g_a
                gs[slot_b] = g_b if first_b else gs[slot_b] + g_b
            return (self._src(forward, f"_lp, t{tape} = {self._name(kernel)}(v{slot_a}, v{slot_b})", "lp = lp + _lp"),
                    self._src(reverse, f"_ga, _gb = t{tape}", self._acc(slot_a, first_a, "_ga"),
                              self._acc(slot_b, first_b, "_gb")))

        def forward(v):
            lp, v[tape] = kernel(*[v[slot] for slot in slots])
            return lp

        def reverse(v, gs):
            grads = v[tape]
            for i, slot, first in inputs:
                gs[slot] = grads[i] if first else gs[slot] + grads[i]
        args = ", ".join(f"v{slot}" for slot in slots)
        return (self._src(forward, f"_lp, t{tape} = {self._name(kernel)}({args})", "lp = lp + _lp"),
                self._src(reverse, f"_gr = t{tape}", *(self._acc(slot, first, f"_gr[{i}]") for i, slot, first in inputs)))

    @staticmethod
    def _single_term(logp_and_grads, base, varying, value_slot, const_value, scalar, static, tape):
        """Unbatched term closures, specialised for the common cases (a prior whose parameters
        are constants; a likelihood with one varying parameter) to keep per-call overhead low."""
        if not varying:
            def forward(v):
                lp, grads = logp_and_grads(v[value_slot], **base)
                v[tape] = grads
                return lp if scalar else _sum(lp, None)
        else:
            items = [(key, slot) for key, slot, _ in varying]

            def forward(v):
                kw = base.copy()
                for key, slot in items:
                    kw[key] = v[slot]
                lp, grads = logp_and_grads(const_value if value_slot is None else v[value_slot], **kw)
                v[tape] = grads
                return lp if scalar else _sum(lp, None)
        if len(static) == 1:
            key, slot, shape, first = static[0]
            if first:
                def reverse(v, gs):
                    gs[slot] = sum_to_shape(v[tape][key], shape)
            else:
                def reverse(v, gs):
                    gs[slot] = gs[slot] + sum_to_shape(v[tape][key], shape)
            return forward, reverse

        def reverse(v, gs):
            grads = v[tape]
            for key, slot, shape, first in static:
                g = sum_to_shape(grads[key], shape)
                gs[slot] = g if first else gs[slot] + g
        return forward, reverse

    def _single_term_src(self, forward, reverse, logp_and_grads, base, varying, value_slot, const_value,
                         scalar, static, tape):
        """:meth:`_single_term`'s closures with their source snippets."""
        if not self.emit:
            return forward, reverse
        fn, b = self._name(logp_and_grads), self._name(base)
        value = self._arg(value_slot, const_value)
        lp = "_lp" if scalar else f"{self._name(_sum)}(_lp, None)"
        if not varying:
            self._src(forward, f"_lp, t{tape} = {fn}({value}, **{b})", f"lp = lp + {lp}")
        else:
            self._src(forward, f"_kw = {b}.copy()", *(f"_kw[{key!r}] = v{slot}" for key, slot, _ in varying),
                      f"_lp, t{tape} = {fn}({value}, **_kw)", f"lp = lp + {lp}")
        sts = self._name(sum_to_shape)
        self._src(reverse, f"_gr = t{tape}", *(self._acc(slot, first, f"{sts}(_gr[{key!r}], {shape!r})")
                                               for key, slot, shape, first in static))
        return forward, reverse

    # --- noncentered rvs ------------------------------------------------------------------------

    def _noncentered(self, f: FreeRV, lp_program: bool) -> tuple[Callable, Callable]:
        node = f.node
        node_params = dict(node.params)
        slot, get, write = self.slots[node.name], self._getter(f), self._writer(f)
        ndim = len(f.shape)
        specs = []
        for key in ("mu", "sigma"):
            value = node_params[key]
            if is_ref(value) and value in self.varying:
                specs.append((self.slots[value], self._pad(value, ndim), None))
            else:
                specs.append((None, None, _fast_constant(self.a.value_of(value))))
        (mu_slot, mu_pad, mu_const), (sigma_slot, sigma_pad, sigma_const) = specs
        tape = self._slot()
        batched = self.batched
        axes = tuple(range(1, 1 + ndim))
        if lp_program:
            self.lp_const -= HALF_LOG_2PI * int(np.prod(f.shape))

        # Consumers were built before (reverse order); the values program keeps no gradients.
        has_grad = lp_program and slot in self.seen
        mu_first = self._first(mu_slot) if (mu_slot is not None and has_grad) else False
        sigma_first = self._first(sigma_slot) if (sigma_slot is not None and has_grad) else False

        def mu_sigma(v):
            mu = mu_const if mu_slot is None else (v[mu_slot] if mu_pad is None else v[mu_slot][mu_pad])
            sigma = sigma_const if sigma_slot is None else (
                v[sigma_slot] if sigma_pad is None else v[sigma_slot][sigma_pad])
            return mu, sigma

        if not batched:
            # Static shapes; np.vdot gives sum(z*z) and sum(g*z) in one call each.
            mu_shape, sigma_shape = (self.a.shape_of(node_params[k]) for k in ("mu", "sigma"))

            def forward(v):
                z = get(v[THETA])
                mu, sigma = mu_sigma(v)
                v[slot] = mu + sigma * z
                v[tape] = (z, sigma)
                return -0.5 * np.vdot(z, z)

            def reverse(v, gs):
                z, sigma = v[tape]
                if not has_grad:
                    write(v[OUT], -z)
                    return
                g = gs[slot]
                write(v[OUT], sigma * g - z)
                if mu_slot is not None:
                    gm = sum_to_shape(g, mu_shape)
                    gs[mu_slot] = gm if mu_first else gs[mu_slot] + gm
                if sigma_slot is not None:
                    gsig = np.vdot(g, z) if sigma_shape == () else sum_to_shape(g * z, sigma_shape)
                    gs[sigma_slot] = gsig if sigma_first else gs[sigma_slot] + gsig
            if lp_program and self.emit:
                vdot, sts, z_src = self._name(np.vdot), self._name(sum_to_shape), self._get_src(f)
                mu, sigma = self._arg(mu_slot, mu_const), self._arg(sigma_slot, sigma_const)
                self._src(forward, f"_z = {z_src}", f"v{slot} = {mu} + {sigma} * _z", f"t{tape} = _z",
                          f"lp = lp + -0.5 * {vdot}(_z, _z)")
                if not has_grad:
                    self._src(reverse, self._write_src(f, f"-t{tape}"))
                else:
                    lines = [f"_z = t{tape}", f"_g = g{slot}", self._write_src(f, f"{sigma} * _g - _z")]
                    if mu_slot is not None:
                        lines.append(self._acc(mu_slot, mu_first, f"{sts}(_g, {mu_shape!r})"))
                    if sigma_slot is not None:
                        gsig = f"{vdot}(_g, _z)" if sigma_shape == () else f"{sts}(_g * _z, {sigma_shape!r})"
                        lines.append(self._acc(sigma_slot, sigma_first, gsig))
                    self._src(reverse, *lines)
            return forward, reverse

        def forward(v):
            z = get(v[THETA])
            mu, sigma = mu_sigma(v)
            v[slot] = mu + sigma * z
            v[tape] = (z, mu, sigma)
            zz = z * z
            return -0.5 * (_sum(zz, axes) if axes else zz)

        def reverse(v, gs):
            z, mu, sigma = v[tape]
            if not has_grad:
                write(v[OUT], -z)
                return
            g = gs[slot]
            write(v[OUT], sigma * g - z)
            if mu_slot is not None:
                gm = sum_to_shape(g, np.shape(mu))
                if mu_pad is not None:
                    gm = gm.reshape(v[mu_slot].shape)
                gs[mu_slot] = gm if mu_first else gs[mu_slot] + gm
            if sigma_slot is not None:
                gsig = sum_to_shape(g * z, np.shape(sigma))
                if sigma_pad is not None:
                    gsig = gsig.reshape(v[sigma_slot].shape)
                gs[sigma_slot] = gsig if sigma_first else gs[sigma_slot] + gsig
        return forward, reverse

    # --- dets ------------------------------------------------------------------------------------

    def _det(self, node: Det, with_reverse: bool = True) -> tuple[Callable, Callable | None]:
        """Forward and reverse closures of a det in the log-density program; ``with_reverse=False``
        gives the values program's forward-only closure (no tape, no gradient bookkeeping)."""
        op = ops.get(node.op)
        options = {**op.options, **dict(node.options)}
        out_ndim = len(self.a.shapes[node.name])
        specs = []
        for arg in node.args:
            if is_ref(arg) and arg in self.varying:
                pad = self._pad(arg, out_ndim) if op.elementwise else None
                specs.append((self.slots[arg], pad, None))
            else:
                specs.append((None, None, _fast_constant(self.a.value_of(arg))))
        shapes = [self.a.shape_of(arg) for arg in node.args]
        batched_flags = [self.batched and s[0] is not None for s in specs]
        needs = [s[0] is not None for s in specs]
        kernel = op.kernel(shapes, batched_flags, needs, options)
        fwd = kernel.forward
        slot = self.slots[node.name]
        if not with_reverse:
            def value(v):
                v[slot] = fwd(*[c if s is None else (v[s] if p is None else v[s][p]) for s, p, c in specs])
            return value, None
        tape = self._slot()

        def forward(v):
            args = [c if s is None else (v[s] if p is None else v[s][p]) for s, p, c in specs]
            v[slot] = fwd(*args)
            v[tape] = args
            return None

        has_grad = slot in self.seen
        inputs = [(i, s, p is not None, self._first(s)) for i, (s, p, c) in enumerate(specs)
                  if s is not None and has_grad]
        vjp = kernel.vjp

        if not self.batched:
            static = [(i, s, shapes[i], first) for i, s, _, first in inputs]
            dots = self._product_grads(node, kernel, shapes)
            if dots:  # those gradients are dot products below: the VJP need not form them
                vjp = op.kernel(shapes, batched_flags, [n and i not in dots for i, n in enumerate(needs)], options).vjp
            steps = [(i, s, shape, first, dots.get(i)) for i, s, shape, first in static]
            vdot = np.vdot

            def reverse(v, gs):
                args = v[tape]
                g_out = gs[slot]
                grads = vjp(g_out, v[slot], *args)
                for i, s, shape, first, j in steps:
                    g = sum_to_shape(grads[i], shape) if j is None else vdot(g_out, args[j])
                    gs[s] = g if first else gs[s] + g
            if self.emit:
                self._det_src(node, forward, reverse, fwd, vjp, specs, slot, static, has_grad, dots)
        else:
            def reverse(v, gs):
                args = v[tape]
                grads = vjp(gs[slot], v[slot], *args)
                for i, s, padded, first in inputs:
                    g = sum_to_shape(grads[i], args[i].shape)
                    if padded:
                        g = g.reshape(v[s].shape)
                    gs[s] = g if first else gs[s] + g
        return forward, reverse if has_grad else None

    def _product_grads(self, node: Det, kernel, shapes) -> dict[int, int]:
        """``{i: j}`` for the scalar arguments ``i`` of a ``mul`` or ``affine`` det of non-scalar
        output whose gradient is ``sum(g * arg_j)`` with ``arg_j`` of the output's shape: the
        single variant takes it as one ``np.vdot`` (BLAS) instead of a product and a reduction."""
        out_shape = self.a.shapes[node.name]
        pairs = _PRODUCT_GRADS.get(node.op)
        standard = (kernel.forward is np.multiply if node.op == "mul"
                    else getattr(kernel.forward, "__code__", None) is _INLINE_FORWARD_CODE.get(node.op))
        if pairs is None or out_shape == () or not standard:
            return {}
        return {i: j for i, j in pairs.items() if shapes[i] == () and shapes[j] == out_shape}

    def _det_src(self, node: Det, forward, reverse, fwd, vjp, specs, slot: int, static, has_grad: bool,
                 dots: dict[int, int]) -> None:
        """Source snippets of a det's single-variant closures. The tape is not needed: the inputs
        are locals (or constants) that nothing overwrites. The common elementwise ops' VJPs (and
        ``affine``'s forward) are written out as the expressions their functions in
        :mod:`exmc.ops` evaluate, which saves a Python call and a tuple per op; ``add``, ``sub``,
        ``mul`` and ``neg`` of a numpy-typed argument are written as operators (no ufunc call on
        scalars), and an inlined gradient already of its argument's (non-scalar) shape is not
        passed through ``sum_to_shape`` (which would return it as it is)."""
        op_name = node.op
        args = [self._arg(s, c) for s, p, c in specs]
        inline = _INLINE_OPS.get(op_name)
        operator = _OPERATORS.get(op_name)
        if inline is not None and inline[0] is not None and getattr(fwd, "__code__", None) is _INLINE_FORWARD_CODE[op_name]:
            self._src(forward, f"v{slot} = " + inline[0].format(*args))
        elif operator is not None and fwd is operator[0] and any(
                is_ref(a) and a in self.numpy_typed for a in node.args):
            self._src(forward, f"v{slot} = " + operator[1].format(*args))
        else:
            self._src(forward, f"v{slot} = {self._name(fwd)}({', '.join(args)})")
        if not has_grad:
            return
        sts = self._name(sum_to_shape)
        out_shape = self.a.shapes[node.name]
        if inline is not None:
            lines = [f"_g = g{slot}"]
            grads = [inline[1][i].format(*args, g="_g", o=f"v{slot}") for i in range(len(args))]
        else:
            lines = [f"_gr = {self._name(vjp)}(g{slot}, v{slot}, {', '.join(args)})"]
            grads = [f"_gr[{i}]" for i in range(len(args))]
        for i, j in dots.items():  # mul and affine: inlined ops
            grads[i] = f"{self._name(np.vdot)}(_g, {args[j]})"
        lines += [self._acc(s, first, grads[i] if i in dots else self._reduce_src(grads[i], out_shape, shape)
                            if inline is not None else f"{sts}({grads[i]}, {shape!r})") for i, s, shape, first in static]
        self._src(reverse, *lines)

    def _reduce_src(self, expr: str, out_shape: tuple[int, ...], shape: tuple[int, ...]) -> str:
        """Source of ``sum_to_shape(expr, shape)`` for an inlined gradient ``expr``, an array of
        the det's (non-scalar) ``out_shape``: the reduction ``sum_to_shape`` would plan, written
        out (the expression as it is when the shapes agree). A scalar output keeps the call:
        there ``sum_to_shape`` also turns a Python float into an array."""
        if out_shape == ():
            return f"{self._name(sum_to_shape)}({expr}, {shape!r})"
        if shape == out_shape:
            return expr
        lead = len(out_shape) - len(shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and out_shape[lead + i] != 1)
        summed = tuple(n for i, n in enumerate(out_shape) if i not in axes)
        reduced = f"{self._name(_sum)}({expr}, {axes!r})"
        return f"{reduced}.reshape({shape!r})" if summed != shape else reduced

    # --- assembly --------------------------------------------------------------------------------

    def build(self) -> Program:
        order = [n for n in self.a.order if n.kind != "obs"]
        needed = self._needed_for_lp(order)
        lp_nodes = [n for n in order if n.name in needed]
        # Reverse steps are built first, in the order they will run (reverse dependency order), so
        # the "first contribution" of every gradient slot is known when its closure is made.
        reverse_by_name: dict[str, Callable | None] = {}
        forward_by_name: dict[str, Callable | None] = {}
        fusions = {f.rv: f for f in find_fusions(self.a, self.varying)} if self.fuse and not self.float_rows else {}
        absorbed = {name for f in fusions.values() for name in f.absorbed}
        for node in reversed(lp_nodes):
            if node.name in absorbed:
                continue
            if node.name in fusions:
                forward_by_name[node.name], reverse_by_name[node.name] = self._fused_term(fusions[node.name])
            elif node.kind == "det":
                if node.name in self.varying:
                    forward_by_name[node.name], reverse_by_name[node.name] = self._det(node)
            elif node.kind == "rv":
                free = self.free.get(node.name)
                if free is not None and free.transform is None:
                    forward_by_name[node.name], reverse_by_name[node.name] = self._noncentered(free, True)
                else:
                    forward_by_name[node.name], reverse_by_name[node.name] = self._term(node)
        forward = [forward_by_name[n.name] for n in lp_nodes if forward_by_name.get(n.name) is not None]
        reverse = [reverse_by_name[n.name] for n in reversed(lp_nodes) if reverse_by_name.get(n.name) is not None]
        phase1, values_phase1 = [], []
        for f in self.free_list:
            if f.transform is not None:
                fwd, rev = self._phase1(f, with_logdet=True)
                phase1.append(fwd)
                reverse.append(rev)
                values_phase1.append(self._phase1(f, with_logdet=False)[0])
        values, values_names = self._values_steps(order)
        program = Program(self.batched, self.template, self.slots, self.varying, self.lp_const, phase1, forward,
                          reverse, values_phase1, values, values_names, grad_kernel=self.grad_kernel)
        if self.emit:
            program.generated = generate(program, self.names, rows=self.float_rows)
        return program

    def _values_steps(self, order) -> tuple[list[Callable], tuple[str, ...]]:
        """The values program (every varying det and noncentered rv, for ``evaluate``): its own
        forward-only pass over all nodes, independent of the log-density program's reverse
        bookkeeping (``seen``) and of which nodes that program left out or fused."""
        values, names = [], []
        for node in order:
            if node.name not in self.varying:
                continue
            if node.kind == "det":
                values.append(self._det(node, with_reverse=False)[0])
            elif node.kind == "rv" and self.free[node.name].transform is None:
                values.append(self._noncentered(self.free[node.name], False)[0])
            else:
                continue
            names.append(node.name)
        return values, tuple(names)

    def _fused_term(self, fusion: Fusion) -> tuple[Callable, Callable]:
        """The closures of a fused likelihood (:mod:`exmc.fusion`) over its varying inputs."""
        data = fusion.data
        if fusion.kind == "poisson_log":
            kernel = poisson_log_rate_kernel(data["y"], self.batched)
        elif fusion.kind == "glm":
            kernel = glm_kernel(data["link"], data["y"], data["Z"], data["sizes"], self.batched)
        elif fusion.kind == "studentt_log_scale":
            kernel = studentt_log_scale_kernel(data["y"], data["loc"], data["df"], self.batched)
        elif fusion.kind == "normal_log_scale":
            kernel = normal_log_scale_kernel(data["shape"], data["mu"], self.batched)
        else:
            kernel = normal_linear_kernel(data["y"], data["Z"], data["sizes"], data["sigma"], self.batched)
        return self._kernel_term(kernel, [self.slots[name] for name in fusion.inputs])

    def _needed_for_lp(self, order) -> set[str]:
        """Names of the nodes the log-density depends on: every rv and its ancestors."""
        needed: set[str] = set()
        for node in reversed(order):
            if node.kind == "rv" or node.name in needed:
                needed.add(node.name)
                if node.kind == "rv":
                    _, params = self.a.families[node.name]
                    needed.update(v for v in params.values() if is_ref(v))
                elif node.kind == "det":
                    needed.update(a for a in node.args if is_ref(a))
        return needed


def build_program(analysis: Analysis, free: list[FreeRV], batched: bool, float_rows: bool = False,
                  fuse: bool = True, codegen: bool = True) -> Program:
    """Compile the single (``batched=False``) or batched variant of the model's program.

    ``fuse=False`` leaves out the fused link kernels of :mod:`exmc.fusion` (the plain path, kept as
    their test oracle).

    ``float_rows=True`` (unbatched, every free rv a scalar) compiles the single variant for
    :meth:`Program.run_rows`, whose values are Python floats: it may raise ``ArithmeticError``
    where numpy gives inf or nan, and must not serve :meth:`Program.run`.

    ``codegen=True`` (the default) also generates the single variant's :attr:`Program.generated`
    (:mod:`exmc.codegen`; for float rows, the function of one row that :meth:`Program.run_rows`
    calls); the closures stay its test oracle.
    """
    if float_rows and (batched or any(f.ushape != () for f in free)):
        raise ValueError("float rows need the unbatched variant of a model whose free rvs are all scalars")
    return _Builder(analysis, free, batched, float_rows, fuse, codegen).build()
