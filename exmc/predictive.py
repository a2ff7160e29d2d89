"""Prior and posterior predictive draws by ancestral sampling through the IR.

Nodes are visited in dependency order with a leading draw axis on every random value: an rv is
drawn from its family's ``sample`` given its (drawn or constant) parameters, a det is computed with
its op's kernel. Posterior predictive draws take the free rvs from posterior draws and sample only
the observed rvs. Censored observations are drawn uncensored and then clipped to their bounds, as
censored data are recorded.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from exmc import ops
from exmc.analysis import Analysis, analyse
from exmc.ir import IR, RV, Det, is_ref

logger = logging.getLogger(__name__)

__all__ = ["Predictive"]


class _Ancestral:
    """Values of the nodes for ``n`` draws: ``drawn`` holds arrays of shape ``(n,) + shape``."""

    def __init__(self, analysis: Analysis, n: int, rng: np.random.Generator) -> None:
        self.a, self.n, self.rng = analysis, n, rng
        self.drawn: dict[str, np.ndarray] = {}

    def arg(self, value: Any, target_ndim: int) -> Any:
        """A parameter/argument: drawn values padded after the draw axis to ``target_ndim`` core
        dimensions; constants as they are."""
        if is_ref(value) and value in self.drawn:
            x = self.drawn[value]
            pad = target_ndim - (x.ndim - 1)
            return x.reshape(x.shape[:1] + (1,) * pad + x.shape[1:]) if pad > 0 else x
        return self.a.value_of(value)

    def det(self, node: Det) -> None:
        op = ops.get(node.op)
        options = {**op.options, **dict(node.options)}
        out_ndim = len(self.a.shapes[node.name])
        batched = [is_ref(x) and x in self.drawn for x in node.args]
        if not any(batched):
            return  # a constant det: its value is in the analysis
        # Elementwise ops need drawn arguments rank-aligned; structural ops take them as they are.
        args = [self.arg(x, out_ndim if op.elementwise else 0) for x in node.args]
        kernel = op.kernel([self.a.shape_of(x) for x in node.args], batched, [False] * len(args), options)
        out = np.asarray(kernel.forward(*args))
        self.drawn[node.name] = np.array(np.broadcast_to(out, (self.n,) + self.a.shapes[node.name]))

    def rv(self, node: RV) -> None:
        family, params = self.a.families[node.name]
        shape = self.a.shapes[node.name]
        batch = shape[:len(shape) - family.event_ndim]
        event_ndims = family.param_event_ndim
        aligned = {k: self.arg(v, len(batch) + event_ndims.get(k, 0)) for k, v in params.items()}
        target = (self.n,) + shape
        if any(is_ref(v) and v in self.drawn for v in params.values()):
            draws = family.sample(self.rng, None, shape=shape, **aligned)
        else:
            draws = family.sample(self.rng, (self.n,), shape=shape, **aligned)
        draws = np.asarray(draws, dtype=np.float64)
        if draws.shape != target:
            try:
                draws = np.array(np.broadcast_to(draws, target))
            except ValueError:
                raise ValueError(f"rv {node.name!r}: {family.name}.sample gave shape {draws.shape}, "
                                 f"expected {target}") from None
        obs = self.a.observations.get(node.name)
        if obs is not None and obs.censored is not None:
            draws = np.clip(draws, obs.censored[0], obs.censored[1])
        self.drawn[node.name] = draws


class Predictive:
    """Prior and posterior predictive sampling (static methods)."""

    @staticmethod
    def prior_samples(ir: IR, n: int, seed: int = 0) -> dict[str, np.ndarray]:
        """``n`` joint draws from the prior of every rv (observed ones included: the prior
        predictive) and every det, each of shape ``(n,) + shape``. Potentials and HMM carriers
        have no draws and are left out (the prior ignores potential terms).

        Raises ``ValidationError`` for a malformed IR, ``ValueError`` when ``n < 1`` and (from the
        family) for a family without draws (``Flat``, ``HalfFlat``, ``Custom`` without ``sample``).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        analysis = analyse(ir)
        state = _Ancestral(analysis, int(n), np.random.default_rng(seed))
        for node in analysis.order:
            if node.kind == "rv" and _is_carrier(analysis, node.name):
                continue
            if node.kind == "rv":
                state.rv(node)
            elif node.kind == "det":
                state.det(node)
        return _with_constant_dets(state, analysis)

    @staticmethod
    def posterior_predictive(ir: IR, draws: Mapping[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
        """Draws of every observed rv (keyed by the rv's name) given posterior ``draws``.

        ``draws`` maps each free rv to an array of shape ``lead + shape`` (e.g. ``(num_samples,)`` as
        a sampler trace gives, or ``(chains, num_samples)``); the result arrays have the same leading
        axes. Dets are recomputed from the free rvs. Raises ``KeyError`` naming a missing free rv and
        ``ValueError`` for inconsistent shapes.
        """
        analysis = analyse(ir)
        if not analysis.free:
            raise ValueError("the model has no free rvs to condition on")
        first = analysis.free[0]
        sample = np.asarray(_get(draws, first.name))
        lead = sample.shape[:sample.ndim - len(analysis.shapes[first.name])]
        n = int(np.prod(lead, dtype=np.int64))
        state = _Ancestral(analysis, n, np.random.default_rng(seed))
        for node in analysis.order:
            if node.kind == "rv" and node.name not in analysis.observations:
                shape = analysis.shapes[node.name]
                value = np.asarray(_get(draws, node.name), dtype=np.float64)
                if value.shape != lead + shape:
                    raise ValueError(f"draws of {node.name!r} have shape {value.shape}, expected {lead + shape}")
                state.drawn[node.name] = value.reshape((n,) + shape)
            elif node.kind == "rv" and _is_carrier(analysis, node.name):
                continue
            elif node.kind == "rv":
                state.rv(node)
            elif node.kind == "det":
                state.det(node)
        return {name: state.drawn[name].reshape(lead + analysis.shapes[name]) for name in analysis.observations
                if not _is_carrier(analysis, name)}


def _is_carrier(analysis: Analysis, name: str) -> bool:
    """A Potential's or HMM's carrier rv: observed with a dummy value, nothing to draw."""
    return bool(getattr(analysis.families[name][0], "is_carrier", False))


def _get(draws: Mapping[str, Any], name: str) -> Any:
    try:
        return draws[name]
    except KeyError:
        raise KeyError(f"no draws for free rv {name!r}") from None


def _with_constant_dets(state: _Ancestral, analysis: Analysis) -> dict[str, np.ndarray]:
    out = dict(state.drawn)
    for node in analysis.order:
        if node.kind == "det" and node.name not in out:
            out[node.name] = np.array(np.broadcast_to(analysis.consts[node.name], (state.n,) + analysis.shapes[node.name]))
    return out
