"""Finite mixtures of scalar families: ``p(x) = sum_k w_k p_k(x)``.

Users write::

    Builder.rv(ir, "x", Dist.Mixture, {
        "weights": np.array([0.3, 0.7]),            # or the name of a simplex rv / det
        "components": [(Dist.Normal, {"mu": "m0", "sigma": 1.0}),
                       (Dist.Normal, {"mu": "m1", "sigma": "s1"})],
    })

:meth:`MixtureFamily.resolve` turns that into a *specialised* family whose parameters are flat:
``weights`` plus ``c{k}_{param}`` for component ``k``'s parameter ``param`` (``c0_mu``, ``c0_sigma``,
``c1_mu``, ``c1_sigma`` above); parameter values (numbers, arrays or reference names) pass through
unchanged, so the model wires references exactly as for any family. Its ``logp_and_grads(value,
weights=..., c0_mu=..., ...)`` returns ``lp = logsumexp_k(log w_k + lp_k)`` and, with the
responsibilities ``r_k = w_k p_k / p``, the gradients ``sum_k r_k d lp_k/dx`` (value),
``r_k / w_k`` (weights, last axis k: the unconstrained partial derivative, not projected on the
simplex) and ``r_k d lp_k / d param`` (component parameters).

``weights`` has a trailing axis of length K (its event axis); batch axes broadcast with the value's.
All components must be scalar families (``event_ndim == 0``) with one common support and the same
discreteness; the mixture's default transform is that support's (not available for "interval").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from exmc._numeric import as_float
from exmc.dist.base import Distribution, draw_shape, require

__all__ = ["Mixture", "MixtureFamily", "component_param_name"]

#: Tolerance on ``sum(weights) == 1`` for constant weights (same rounding allowance as observed simplexes).
WEIGHTS_ATOL = 1e-6


def component_param_name(k: int, param: str) -> str:
    """The flat parameter name of component ``k``'s ``param`` (``"c0_mu"``)."""
    return f"c{k}_{param}"


@dataclass(frozen=True)
class MixtureFamily(Distribution):
    """``Dist.Mixture`` (unresolved: params ``weights, components``) and its specialisations.

    ``components`` holds, for a resolved mixture, ``(family, param_names)`` per component.
    """

    components: tuple[tuple[Distribution, tuple[str, ...]], ...] = ()

    def resolve(self, params: Mapping[str, Any]) -> tuple["MixtureFamily", dict[str, Any]]:
        """Flatten ``{"weights", "components"}`` into a specialised family and flat params.

        Raises ``ValueError`` naming the offending field: ``components`` not a non-empty sequence of
        ``(family, params)`` pairs, a component that is not a scalar family, unknown or missing
        component params, mixed supports, or an extra top-level key.
        """
        if self.components:
            return self, dict(params)
        extra = sorted(set(params) - {"weights", "components"})
        if extra:
            raise ValueError(f"param {extra[0]!r} is not a Mixture parameter (it takes weights, components)")
        for key in ("weights", "components"):
            if key not in params:
                raise ValueError(f"param {key!r} is missing (Mixture takes weights, components)")
        comps = params["components"]
        if isinstance(comps, (str, bytes)) or not hasattr(comps, "__len__") or len(comps) == 0:
            raise ValueError("param 'components' must be a non-empty list of (family, params) pairs")
        flat: dict[str, Any] = {"weights": params["weights"]}
        resolved: list[tuple[Distribution, tuple[str, ...]]] = []
        for k, item in enumerate(comps):
            where = f"components[{k}]"
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Distribution)
                    and isinstance(item[1], Mapping)):
                raise ValueError(f"param {where!r} must be a (family, params) pair, got {item!r:.80}")
            family, comp_params = item[0].resolve(item[1])
            if family.event_ndim != 0:
                raise ValueError(f"param {where!r}: {family.name} is not a scalar family (mixtures of "
                                 "vector families are not supported)")
            _check_component_params(where, family, comp_params)
            names = tuple(comp_params)
            resolved.append((family, names))
            flat.update({component_param_name(k, p): comp_params[p] for p in names})
        supports = {f.support for f, _ in resolved}
        if len(supports) != 1 or len({f.discrete for f, _ in resolved}) != 1:
            raise ValueError(f"param 'components' mixes supports {sorted(supports)}: all components need the same one")
        family = MixtureFamily(
            name=self.name,
            params=tuple(flat),
            support=supports.pop(),
            discrete=resolved[0][0].discrete,
            param_event_ndim={"weights": 1},
            integer_params=tuple(component_param_name(k, p) for k, (f, names) in enumerate(resolved)
                                 for p in names if p in f.integer_params),
            components=tuple(resolved),
        )
        return family, flat

    def _component_params(self, k: int, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {p: params[component_param_name(k, p)] for p in self.components[k][1]}

    def _given_component_params(self, k: int, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Component ``k``'s params among ``params`` (the checks receive constant params only)."""
        given = ((p, component_param_name(k, p)) for p in self.components[k][1])
        return {p: params[flat] for p, flat in given if flat in params}

    def _require_resolved(self) -> None:
        if not self.components:
            raise ValueError("Dist.Mixture must be resolved first: Mixture.resolve({'weights': ..., 'components': [...]})")

    def check_params(self, params):
        self._require_resolved()
        require(params, "weights", lambda w: np.ndim(w) >= 1 and np.shape(w)[-1] == len(self.components),
                f"an array whose last axis has one weight per component ({len(self.components)})")
        require(params, "weights", lambda w: np.all(w >= 0) & np.all(np.abs(np.sum(w, axis=-1) - 1.0) <= WEIGHTS_ATOL),
                "non-negative and sum to 1 on its last axis")
        for k, (family, _) in enumerate(self.components):
            try:
                family.check_params(self._given_component_params(k, params))
            except ValueError as exc:
                raise ValueError(f"param 'components[{k}]' ({family.name}): {exc}") from None

    def in_support(self, value, **params):
        self._require_resolved()
        ok = np.zeros(np.shape(value), dtype=bool)
        for k, (family, _) in enumerate(self.components):
            ok |= np.broadcast_to(family.in_support(value, **self._given_component_params(k, params)), ok.shape)
        return ok

    def logp_and_grads(self, value, **params):
        self._require_resolved()
        weights = as_float(params["weights"])
        comp = [family.logp_and_grads(value, **self._component_params(k, params))
                for k, (family, _) in enumerate(self.components)]
        lps = np.stack(np.broadcast_arrays(*(lp for lp, _ in comp)), axis=-1)
        with np.errstate(divide="ignore"):
            a = np.log(weights) + lps
        top = np.max(a, axis=-1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        lp = np.log(np.sum(np.exp(a - top), axis=-1)) + top[..., 0]
        resp = np.exp(a - lp[..., None])  # responsibilities r_k, shape batch + (K,)
        batch = lp.shape
        grads: dict[str, np.ndarray] = {}
        if not self.discrete:
            grads["value"] = np.sum(resp * np.stack(
                [np.broadcast_to(g["value"], batch) for _, g in comp], axis=-1), axis=-1)
        grads["weights"] = resp / weights
        for k, (family, names) in enumerate(self.components):
            for p in names:
                if p in comp[k][1]:
                    grads[component_param_name(k, p)] = resp[..., k] * comp[k][1][p]
        return lp, grads

    def sample(self, rng, size, shape=None, **params):
        self._require_resolved()
        weights = as_float(params["weights"])
        draws = [family.sample(rng, size, shape, **self._component_params(k, params))
                 for k, (family, _) in enumerate(self.components)]
        out_shape = draw_shape(None, None, weights[..., 0], *draws)
        stacked = np.stack([np.broadcast_to(d, out_shape) for d in draws], axis=-1)
        cum = np.cumsum(np.broadcast_to(weights, out_shape + weights.shape[-1:]), axis=-1)
        u = rng.random(out_shape)[..., None] * cum[..., -1:]
        pick = np.minimum(np.sum(u >= cum, axis=-1), len(draws) - 1)
        return np.take_along_axis(stacked, pick[..., None], axis=-1)[..., 0]


def _check_component_params(where: str, family: Distribution, given: Mapping[str, Any]) -> None:
    """Names of a component's params: exactly one alternative set, optional ones allowed."""
    sets = tuple(family.alternatives) or (tuple(family.params),)
    optional = set(family.optional)
    required = set(given) - optional
    if not any(required == set(s) for s in sets):
        known = " | ".join("{" + ", ".join(s) + "}" for s in sets)
        raise ValueError(f"param {where!r}: {family.name} takes {known}"
                         + (f" (optional {', '.join(sorted(optional))})" if optional else "")
                         + f", got {{{', '.join(sorted(given))}}}")


Mixture = MixtureFamily(name="Mixture", params=("weights", "components"))
