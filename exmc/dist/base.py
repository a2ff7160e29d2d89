"""The contract every distribution family fulfils, and the gradient-reduction helper.

A family is a stateless object (one instance per family, e.g. ``exmc.Dist.Normal``). The model
compiler calls it with concrete numpy arrays: the value and the parameters, each possibly carrying
extra leading axes (a chain axis when several chains are evaluated in one call).

Gradient shapes: every gradient a family returns has exactly the broadcast shape
``lp.shape + event_shape_of_that_input`` (never a smaller, un-broadcast shape), so that
:func:`sum_to_shape` recovers the derivative of ``lp.sum()`` with respect to each input.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

import numpy as np

from exmc import transforms

#: Supports whose unconstraining transform needs no parameter (others are handled by the family).
_TRANSFORM_BY_SUPPORT = {
    "real": transforms.identity,
    "positive": transforms.log,
    "unit": transforms.logit,
    "simplex": transforms.simplex,
}


class FrozenMapping(Mapping):
    """A read-only, hashable mapping (families are frozen dataclasses and must stay hashable)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] = ()) -> None:
        self._data = dict(data)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self):
        return FrozenMapping, (self._data,)


@dataclass(frozen=True)
class Distribution:
    """Base class of distribution families.

    Attributes:
        name: the family's name as users write it (``"Normal"``).
        params: required parameter names, eXMC's spelling (``("mu", "sigma")``).
        alternatives: alternative parameter sets, e.g. Bernoulli accepts ``("p",)`` or
            ``("logit_p",)``; ``params`` is the first of them. Exactly one set must be given.
        optional: parameters with defaults (name -> default value).
        support: one of ``"real"``, ``"positive"``, ``"unit"`` (0, 1), ``"interval"`` (bounds from
            params), ``"simplex"``, ``"binary"``, ``"count"`` (0, 1, 2, ...), ``"bounded_count"``
            (0..n), ``"custom"``.
        discrete: discrete families may only be observed (NUTS cannot sample them).
        event_ndim: number of trailing value dimensions one draw occupies (0 for scalar families,
            1 for MvNormal/Dirichlet/GaussianRandomWalk).
        param_event_ndim: trailing event dimensions of each parameter that has any (``{"cov": 2}``
            for MvNormal, ``{"mu": 1}``); parameters not listed are batch-only (0).
        integer_params: parameters that must be integers and get no gradient (Binomial ``n``); the
            model must not let them refer to a free (continuous) rv.
    """

    name: str
    params: tuple[str, ...]
    alternatives: tuple[tuple[str, ...], ...] = ()
    optional: Mapping[str, Any] = field(default_factory=dict)
    support: str = "real"
    discrete: bool = False
    event_ndim: int = 0
    param_event_ndim: Mapping[str, int] = field(default_factory=dict)
    integer_params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # dict arguments become hashable read-only mappings, so families can be dict keys / set members
        for name in ("optional", "param_event_ndim"):
            value = getattr(self, name)
            if not isinstance(value, FrozenMapping):
                object.__setattr__(self, name, FrozenMapping(value))

    def __reduce_ex__(self, protocol):
        # The registered families pickle by name, so ``family is Dist.Normal`` survives a round trip
        # (IRs travel to worker processes); specialised families (Mixture, Custom) pickle by value.
        from exmc.dist import FAMILIES, by_name

        if FAMILIES.get(self.name) is self:
            return by_name, (self.name,)
        return object.__reduce_ex__(self, protocol)

    def resolve(self, params: Mapping[str, Any]) -> tuple["Distribution", dict[str, Any]]:
        """The concrete family and flat parameter dict to use for the user's ``params``.

        Most families return ``(self, params)`` with the ``optional`` defaults filled in for omitted
        parameters (so a later ``default_transform(**constants)`` can tell "omitted" from "not a
        constant"). Families whose parameters are structured
        (``Mixture``'s component list, ``Custom``'s callables) return a family specialised to that
        structure and a flat dict of its numeric parameters (values may still be reference names).
        The model compiler calls this once, at build time, before checking parameter names.
        Raises ``ValueError`` naming the offending field when the structure is malformed.
        """
        return self, {**self.optional, **params}

    def check_params(self, params: Mapping[str, np.ndarray]) -> None:
        """Raise ``ValueError`` naming the parameter when a *constant* parameter is outside its
        domain (e.g. ``sigma`` <= 0). Called at compile time on constant parameters only: any
        subset of the parameters may be given."""

    def param_event_shape(self, key: str, event_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """The event shape parameter ``key`` must have for an rv of event shape ``event_shape``, or
        ``None`` when it is not tied to it (analysis checks it, naming the parameter).

        Default: a parameter with as many event dimensions as the family (Dirichlet's ``alpha``,
        MvNormal's ``mu``) has the rv's event shape, where a length of 1 broadcasts; one with two
        event dimensions over a vector family (MvNormal's ``cov``) is the square ``(d, d)``.
        Families whose parameters follow other rules (a Mixture's weights) override this.
        """
        k = self.param_event_ndim.get(key, 0)
        if not k:
            return None
        if k == self.event_ndim:
            return tuple(event_shape)
        if k == 2 and self.event_ndim == 1:
            return (event_shape[0], event_shape[0])
        return None

    def in_support(self, value: np.ndarray, **params: np.ndarray) -> np.ndarray:
        """Boolean array of ``value``'s shape: which entries lie in the support (used to validate
        observations; for event families every entry of an event carries that event's verdict).

        Parameters the support depends on (Uniform's bounds, Binomial's ``n``) may be omitted when
        they are not constants; the check then covers what can be decided without them.
        """
        raise NotImplementedError

    def logp(self, value: np.ndarray, **params: np.ndarray) -> np.ndarray:
        """Elementwise log-density (event dimensions summed), normalised as ``scipy.stats``."""
        return self.logp_and_grads(value, **params)[0]

    def logp_and_grads(self, value: np.ndarray, **params: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Elementwise log-density and its partial derivatives.

        Returns ``(lp, grads)``. ``grads`` has the key ``"value"`` (continuous families) and one key per
        given parameter (except ``integer_params``); each array has the shape ``lp.shape`` + that
        input's event dimensions and is reduced to the input's own shape by the caller with
        :func:`sum_to_shape`. Outside the support ``lp`` is ``-inf`` (gradients there are unspecified
        but finite or nan); discrete families are the exception: they are evaluated only at observed
        values, validated once with :meth:`in_support`, and do not re-check the support per call. Parameters outside their domain give nan (they are checked at compile time
        when constant; sampled ones are kept in-domain by their transforms).
        """
        raise NotImplementedError

    def prior_kernel(self, shape: tuple[int, ...], batched: bool, value_in_support: bool, **params: Any):
        """Optional compile-time specialisation for a free rv whose parameters are all constants.

        Returns ``None`` (no specialisation: the model calls :meth:`logp_and_grads`) or a function
        ``kernel(value) -> (lp_total, g_value)``: ``value`` has the rv's ``shape`` (with a leading
        chain axis when ``batched``), ``lp_total`` is the log-density summed over those ``shape``
        axes (a scalar, or ``(C,)``) and ``g_value`` its gradient, of the value's shape. Outside the
        support ``lp_total`` is ``-inf`` as in :meth:`logp_and_grads`, except that with
        ``value_in_support`` (the value comes from the family's default transform, whose range is the
        closure of the support) the kernel may skip that check. ``params`` are the resolved
        constants (see :mod:`exmc.dist.kernels` for the helpers).
        """
        return None

    def observed_kernel(self, value: np.ndarray, varying: tuple[tuple[str, tuple[int, ...]], ...],
                        batched: bool, **params: Any):
        """Optional compile-time specialisation for an uncensored observed rv with constant ``value``.

        ``varying`` lists ``(param name, shape)`` of the parameters that change per call (shapes
        without the chain axis); ``params`` holds the constant ones. Returns ``None`` (no
        specialisation) or ``kernel(*args) -> (lp_total, grads)`` where ``args`` are the varying
        parameters in ``varying``'s order, each with a leading chain axis when ``batched`` (no
        padding axes), ``lp_total`` is the log-density summed over the value (a scalar, or
        ``(C,)``) and ``grads`` a tuple of each argument's gradient, of that argument's shape.
        """
        return None

    def latent_kernel(self, shape: tuple[int, ...], varying: tuple[tuple[str, tuple[int, ...]], ...],
                      batched: bool, **params: Any):
        """Optional compile-time specialisation for a free rv (of ``shape``) with some varying
        parameters, e.g. a hierarchical ``theta ~ Normal(mu, tau)``.

        As :meth:`observed_kernel`, except that the value varies too: ``kernel(value, *args) ->
        (lp_total, (g_value, *grads))``, ``value`` of ``shape`` (with a leading chain axis when
        ``batched``). Returns ``None`` when there is no specialisation.
        """
        return None

    def sample(self, rng: np.random.Generator, size: tuple[int, ...] | int | None,
               shape: tuple[int, ...] | None = None, **params: np.ndarray) -> np.ndarray:
        """Draws of shape ``size + broadcast(shape, parameter shapes)``.

        ``shape`` is the rv's declared shape (batch + event dimensions), needed when the parameters
        alone do not determine it (a vector rv with scalar parameters; GaussianRandomWalk's length).
        Improper families (Flat, HalfFlat) and Custom without a ``sample`` callable raise ``ValueError``.
        """
        raise NotImplementedError

    def default_transform(self, **params: np.ndarray) -> transforms.Transform:
        """The unconstraining transform for this family's support (an ``exmc.transforms.Transform``).

        Called with the family's *constant* parameters. Raises ``ValueError`` for discrete families
        (NUTS cannot sample them) and when the support depends on a parameter that is not constant.
        """
        if self.discrete:
            raise ValueError(f"{self.name} is discrete: it can only be observed (NUTS cannot sample it)")
        try:
            return _TRANSFORM_BY_SUPPORT[self.support]
        except KeyError:
            raise ValueError(f"{self.name} has support {self.support!r} with no default transform") from None


#: ``ndarray.sum`` without its Python-level wrapper.
_sum = np.add.reduce

#: (gradient shape, target shape) -> (shape to broadcast to first or None, axes to sum, reshape?).
_PLANS: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[Any, tuple[int, ...], bool]] = {}


def sum_to_shape(grad: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Sum (or broadcast) ``grad`` to ``shape``: the transpose of numpy broadcasting, so a
    gradient of the broadcast shape becomes the derivative with respect to an input of ``shape``.

    The model compiler calls it on every gradient of every evaluation: plans are cached per
    (input shape, target shape), so after the first call this is a tuple comparison, a dict lookup
    and one ``sum``. Raises ``ValueError`` when the shapes do not broadcast.
    """
    try:
        gshape = grad.shape
    except AttributeError:
        grad = np.asarray(grad)
        gshape = grad.shape
    if gshape == shape:
        return grad
    plan = _PLANS.get((gshape, shape))
    if plan is None:
        full = tuple(np.broadcast_shapes(gshape, shape))
        lead = len(full) - len(shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and full[lead + i] != 1)
        summed = tuple(n for i, n in enumerate(full) if i not in axes)
        plan = _PLANS[(gshape, shape)] = (full if full != gshape else None, axes, summed != shape)
    full, axes, reshape = plan
    if full is not None:
        grad = np.broadcast_to(grad, full)
    if axes:
        grad = _sum(grad, axes)
    return grad.reshape(shape) if reshape else grad


def draw_shape(size: tuple[int, ...] | int | None, shape: tuple[int, ...] | None, *arrays: np.ndarray) -> tuple[int, ...]:
    """``size`` (an int counts as a 1-tuple) followed by the broadcast of ``shape`` (the rv's declared
    shape, if any) and the shapes of ``arrays``. Raises ``ValueError`` when they do not broadcast."""
    batch = np.broadcast_shapes(tuple(shape or ()), *(np.shape(a) for a in arrays))
    return size_tuple(size) + batch


def size_tuple(size: tuple[int, ...] | int | None) -> tuple[int, ...]:
    """``size`` as a tuple: ``None`` -> ``()``, an int ``n`` -> ``(n,)``."""
    if size is None:
        return ()
    if isinstance(size, (int, np.integer)):
        return (int(size),)
    return tuple(size)


def require(params: Mapping[str, Any], name: str, ok, what: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``ok(value)`` holds everywhere (skip when absent).

    ``what`` describes the domain for the message, e.g. ``"> 0"``.
    """
    if name not in params:
        return
    value = np.asarray(params[name])
    with np.errstate(invalid="ignore"):
        good = np.all(ok(value))
    if not good:
        raise ValueError(f"param {name!r} must be {what}, got {_short(value)}")


def require_positive(params: Mapping[str, Any], *names: str) -> None:
    """``require(..., "> 0")`` for each of ``names`` (finite, strictly positive)."""
    for name in names:
        require(params, name, lambda v: np.isfinite(v) & (v > 0), "finite and > 0")


def require_finite(params: Mapping[str, Any], *names: str) -> None:
    """``require(..., "finite")`` for each of ``names``."""
    for name in names:
        require(params, name, np.isfinite, "finite")


def _short(value: np.ndarray) -> str:
    """A compact rendering of a parameter value for error messages."""
    if value.size <= 6:
        return np.array2string(value, precision=6)
    return f"array of shape {value.shape} (min {np.nanmin(value):.6g}, max {np.nanmax(value):.6g})"
