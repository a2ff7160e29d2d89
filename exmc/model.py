"""``exmc.compile(ir)``: a model as a function of one flat unconstrained vector.

The free rvs (unobserved) are laid out in ``theta`` in dependency order, each on its unconstrained
scale (``transform.unconstrained_shape`` coordinates); a noncentered rv takes the coordinates of its
standard-normal ``z``. :meth:`Model.logp_and_grad` is the sampler's hot path; it runs a flat program
compiled once per variant (see :mod:`exmc.program`).

A :class:`Model` pickles as its IR and options and recompiles on load: compilation is
deterministic, so a sampler worker that receives the IR gets the same layout of ``theta``.
"""
from __future__ import annotations

import logging
from typing import Any, Collection, Literal, Mapping

import numpy as np

from exmc import codegen
from exmc.analysis import Analysis, analyse, apply_auto_noncentered
from exmc.errors import ValidationError
from exmc.ir import IR, NONCENTERED, RV, is_ref
from exmc.program import FreeRV, Program
from exmc.variants import ROWWISE_MAX_CHAINS, Variants

logger = logging.getLogger(__name__)

__all__ = ["Model", "compile", "ROWWISE_MAX_CHAINS"]

#: numpy's float64 dtype (a singleton: an identity test is half the cost of ``!=``, and any other
#: dtype object, e.g. a byte-swapped float64, takes the conversion path).
_F64 = np.dtype(np.float64)



def _layout(analysis: Analysis) -> list[FreeRV]:
    """Assign each free rv its slice of theta and its transform (``None`` when noncentered)."""
    free, start = [], 0
    for node in analysis.free:
        shape = analysis.shapes[node.name]
        if node.reparam == NONCENTERED:
            transform, ushape = None, shape
        else:
            transform = node.transform or _default_transform(node, analysis)
            try:
                ushape = tuple(transform.unconstrained_shape(shape))
            except ValueError as exc:
                raise ValidationError("rv", node.name, "transform", str(exc)) from None
        size = int(np.prod(ushape, dtype=np.int64))
        free.append(FreeRV(node.name, shape, ushape, start, start + size, transform, node))
        start += size
    return free


def _default_transform(node: RV, analysis: Analysis):
    family, _ = analysis.families[node.name]
    try:
        return family.default_transform(**analysis.constant_params(node.name))
    except ValueError as exc:
        raise ValidationError("rv", node.name, "transform", str(exc)) from None


class Model:
    """A compiled model (see the module docstring and ``docs/design.md``).

    Attributes:
        ir: the (possibly auto-reparametrised) IR it was compiled from.
        dim: length of the unconstrained vector theta.
        free_names: ``(name, shape)`` of each free rv in theta's order (constrained shapes).
        det_names: ``(name, shape)`` of each det.
    """

    def __init__(self, ir: IR, ncp: bool | Literal["auto"] = False) -> None:
        if not isinstance(ir, IR):
            raise TypeError(f"exmc.compile expects an IR built with exmc.Builder, got {type(ir).__name__}")
        if ncp not in (False, "auto"):
            raise ValueError(f"ncp must be False or 'auto', got {ncp!r}")
        self._source = ir
        self.ncp = ncp
        self.ir = apply_auto_noncentered(ir) if ncp == "auto" else ir
        self._analysis = analyse(self.ir)
        self._free = _layout(self._analysis)
        self.dim = self._free[-1].stop if self._free else 0
        self.free_names = [(f.name, f.shape) for f in self._free]
        self.det_names = [(n.name, self._analysis.shapes[n.name]) for n in self._analysis.order if n.kind == "det"]
        self._variants = Variants(self._analysis, self._free, self.dim)
        self._single = self._variants.single
        # The hot path reads it without a call: the generated function (exmc.codegen) when there
        # is one, else the closure program (the same bits either way).
        generated = self._single.generated
        self._single_run = self._single.run if generated is None else codegen.checked(generated, self._single.run)
        self._single_shape = (self.dim,)
        logger.debug("compiled model: dim=%d, free=%s", self.dim, self.free_names)

    def __reduce__(self):
        return (Model, (self._source, self.ncp))

    def __repr__(self) -> str:
        return f"<exmc.Model dim={self.dim} free={[n for n, _ in self.free_names]}>"

    @property
    def grad_kernel(self) -> str:
        """``"numba"`` when a term of this model runs a compiled gradient kernel (chosen by
        :data:`exmc.accel.GRAD_ENV` when the model was compiled), else ``"numpy"``; what
        ``Trace.info["grad_kernel"]`` reports."""
        return self._single.grad_kernel

    # --- the hot path ---------------------------------------------------------------------------

    def _program(self, theta: np.ndarray) -> Program:
        return self._variants.program(theta)

    def logp_and_grad(self, theta: np.ndarray) -> tuple[Any, np.ndarray]:
        """Log-density on the unconstrained scale (Jacobians included) and its gradient.

        ``theta`` of shape ``(dim,)`` gives ``(float, (dim,))``; ``(C, dim)`` gives ``((C,), (C, dim))``.
        Up to :data:`ROWWISE_MAX_CHAINS` chains of a model whose free rvs are all scalars, and
        whose program needs no numpy call, are evaluated row by row on Python floats: the same
        bits as single calls, in fewer numpy calls; where floats raise (overflow, division by
        zero) the batched program answers (see :meth:`exmc.program.Program.run_rows`).

        Raises ``ValueError`` for a wrong shape. Outside the support the log-density is ``-inf``
        or NaN (the sampler treats both as divergent); numpy warnings are not suppressed here.
        """
        if type(theta) is not np.ndarray or theta.dtype is not _F64:
            theta = np.asarray(theta, dtype=np.float64)
        if theta.shape == self._single_shape:  # the sampler's hot path: no further checks
            lp, grad = self._single_run(theta)
            return float(lp), grad
        rows = self._variants.rows_for(theta)
        if rows is not None:
            try:
                return rows.run_rows(theta)
            except ArithmeticError:
                pass  # Python floats raise where numpy gives inf or nan: the batched program does
        program = self._variants.program(theta)
        lp, grad = program.run(theta)
        if program.batched:
            if type(lp) is np.ndarray and lp.shape == theta.shape[:1]:
                return lp, grad  # a fresh array: the sum of the terms' contributions
            return np.broadcast_to(lp, theta.shape[:1]).astype(np.float64), grad
        return float(lp), grad

    # --- conversions -----------------------------------------------------------------------------

    def to_constrained(self, theta: np.ndarray, dets: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """Every free rv and det on its natural scale (with a leading axis for ``(C, dim)`` input);
        with ``dets``, only those dets are computed and returned (a regression's linear predictor
        over 20,000 rows is 160 MB per 1000 draws: the sampler skips the dets it drops)."""
        theta = np.asarray(theta, dtype=np.float64)
        program = self._program(theta)
        if dets is None:
            v = program.evaluate(theta)
            names = self.free_names + self.det_names
        else:
            v = program.evaluate(theta, only=self._values_needed(dets))
            names = self.free_names + [(n, s) for n, s in self.det_names if n in dets]
        lead = theta.shape[:1] if program.batched else ()
        out = {}
        for name, shape in names:
            value = np.asarray(v[program.slots[name]], dtype=np.float64)
            out[name] = np.array(np.broadcast_to(value, lead + tuple(shape)))
        return out

    def _values_needed(self, dets: Collection[str]) -> frozenset[str]:
        """The nodes ``to_constrained`` must evaluate for ``dets`` and every noncentered free rv
        (whose value ``mu + sigma * z`` reads its parameters): those and all their ancestors."""
        need = set(dets) | {f.name for f in self._free if f.transform is None}
        for node in reversed(self._analysis.order):
            if node.name not in need:
                continue
            if node.kind == "det":
                need.update(a for a in node.args if is_ref(a))
            elif node.kind == "rv":
                need.update(v for v in self._analysis.families[node.name][1].values() if is_ref(v))
        return frozenset(need)

    def to_unconstrained(self, values: Mapping[str, Any]) -> np.ndarray:
        """theta for the free rvs' constrained ``values`` (a leading chain axis is kept).

        Raises ``KeyError`` naming a missing free rv and ``ValueError`` for a wrong shape.
        """
        if not self._free:
            return np.zeros(0)
        lead = self._lead_shape(values)
        theta = np.zeros(lead + (self.dim,))
        for f in self._free:
            if f.transform is None:
                continue
            value = np.asarray(values[f.name], dtype=np.float64)
            theta[..., f.start:f.stop] = np.asarray(f.transform.inverse(value)).reshape(lead + (-1,))
        program = self._program(theta)
        for f in self._free:
            if f.transform is not None:
                continue
            # mu and sigma depend only on rvs earlier in theta, which are already in place.
            v = program.evaluate(theta)
            mu, sigma = (self._param_value(f, key, v, program) for key in ("mu", "sigma"))
            value = np.asarray(values[f.name], dtype=np.float64)
            z = (value - mu) / sigma
            theta[..., f.start:f.stop] = z.reshape(lead + (-1,))
        return theta

    def _lead_shape(self, values: Mapping[str, Any]) -> tuple[int, ...]:
        for f in self._free:
            if f.name not in values:
                raise KeyError(f"no value for free rv {f.name!r}")
        f = self._free[0]
        value = np.asarray(values[f.name])
        extra = value.ndim - len(f.shape)
        if extra not in (0, 1) or value.shape[extra:] != f.shape:
            raise ValueError(f"value of {f.name!r} has shape {value.shape}; expected {f.shape} or (chains,) + {f.shape}")
        return value.shape[:extra]

    def _param_value(self, f: FreeRV, key: str, v: list, program: Program) -> np.ndarray:
        """Parameter ``key`` of noncentered rv ``f`` from evaluated slots ``v``, its chain axis (if
        any) padded so it broadcasts against the rv's value."""
        value = f.node.param(key)
        if not is_ref(value):
            return np.asarray(value)
        x = np.asarray(v[program.slots[value]])
        if program.batched and value in program.varying:
            pad = len(f.shape) + 1 - x.ndim
            x = x.reshape(x.shape[:1] + (1,) * pad + x.shape[1:])
        return x

    def logp(self, values: Mapping[str, Any], jacobian: bool = False) -> Any:
        """Log-density of constrained ``values`` (free rvs; dets are recomputed).

        With ``jacobian=False`` it is the sum of every rv's log-density at those values — what
        ``scipy.stats`` would say; with ``jacobian=True`` it is the density of the unconstrained
        point, i.e. ``logp_and_grad(to_unconstrained(values))[0]``.
        """
        theta = self.to_unconstrained(values)
        program = self._program(theta)
        lp = program.logp(theta)
        if not jacobian:
            lp = lp - self._log_jacobian(theta, program)
        return np.asarray(lp, dtype=np.float64) if program.batched else float(lp)

    def _log_jacobian(self, theta: np.ndarray, program: Program) -> Any:
        """Sum of the transforms' log-Jacobians plus ``log sigma`` of each noncentered rv."""
        lead = theta.shape[:-1]
        total = np.zeros(lead)
        v = None
        for f in self._free:
            u = theta[..., f.start:f.stop].reshape(lead + f.ushape)
            if f.transform is not None:
                logdet = np.asarray(f.transform.log_det_jacobian(u))
                total = total + logdet.reshape(lead + (-1,)).sum(axis=-1)
            else:
                v = program.evaluate(theta) if v is None else v
                sigma = self._param_value(f, "sigma", v, program)
                log_sigma = np.broadcast_to(np.log(sigma), lead + f.shape)
                total = total + log_sigma.reshape(lead + (-1,)).sum(axis=-1)
        return total


def compile(ir: IR, ncp: bool | Literal["auto"] = False) -> Model:  # noqa: A001 - the issue's name
    """Validate ``ir`` and compile it (see :class:`Model`). ``ncp="auto"`` reparametrises every
    unobserved Normal whose ``mu`` and ``sigma`` are both references (as eXMC does).

    Raises ``ValidationError`` naming the offending node and field for any malformed model,
    ``TypeError`` when ``ir`` is not an IR and ``ValueError`` for another ``ncp``.
    """
    return Model(ir, ncp=ncp)
