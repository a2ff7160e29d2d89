"""Unconstraining transforms: a free rv is sampled on an unconstrained scale and mapped back.

Direction convention (as TensorFlow-Probability bijectors and Stan's ``*_constrain``): **forward maps
the unconstrained point to the constrained value**, ``inverse`` maps a constrained value to the
unconstrained point. A transform is *named* after its unconstraining direction, as users know them
from Stan/PyMC: the "log" transform has ``forward = exp`` and ``inverse = log``.

For ``x`` unconstrained and ``y = forward(x)`` the model's density on the unconstrained scale is
``logp(y) + log|det dy/dx|``. :meth:`Transform.forward_and_log_det_grads` returns everything the model
needs for that in one pass: ``y``, the elementwise log-Jacobian, and ``g_x = J^T g_y + d(sum logdet)/dx``
where ``g_y`` is ``d logp / d y``; :meth:`Transform.backward` gives the same ``g_x`` for a reverse
pass that already holds ``y`` (cheaper than repeating the forward pass).

Elementwise transforms (``event_ndim == 0``) keep shapes; :class:`StickBreaking` maps the last axis
``K-1 -> K`` and its log-Jacobian has the shape of the leading axes.

Bounds of :class:`Interval`, :class:`LowerBound` and :class:`UpperBound` are constants (numbers or
arrays broadcasting against the value); a transform depending on sampled parameters is not supported.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from exmc._numeric import as_float, log_sigmoid, log_sigmoid_pair, sigmoid

__all__ = [
    "Transform",
    "Identity",
    "Log",
    "LowerBound",
    "UpperBound",
    "Interval",
    "Logit",
    "StickBreaking",
    "identity",
    "log",
    "logit",
    "simplex",
    "by_name",
]


def _kw(default):
    """A keyword-only field: ``name`` and ``event_ndim`` come first in every transform's field
    order, so positional arguments must skip them (``Interval(0.0, 1.0)`` sets the bounds)."""
    return field(default=default, kw_only=True)


@dataclass(frozen=True)
class Transform:
    """Base class: a bijection from unconstrained reals to a constrained set (see module doc).

    ``name`` and ``event_ndim`` are keyword-only; a subclass's own fields (the bounds) are the
    positional ones.
    """

    name: str = _kw("transform")
    event_ndim: int = _kw(0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Unconstrained ``x`` -> constrained ``y``."""
        raise NotImplementedError

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Constrained ``y`` -> unconstrained ``x``. Values outside the constrained set give nan/inf."""
        raise NotImplementedError

    def log_det_jacobian(self, x: np.ndarray) -> np.ndarray:
        """``log|det dy/dx|`` at unconstrained ``x`` (elementwise; event axis reduced)."""
        raise NotImplementedError

    def forward_and_log_det_grads(self, x: np.ndarray, g_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(y, logdet, g_x)`` with ``g_x = J^T g_y + d(sum logdet)/dx`` (see module doc)."""
        raise NotImplementedError

    def backward(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        """The ``g_x`` of :meth:`forward_and_log_det_grads` when ``y = forward(x)`` is already known
        (a reverse pass after a forward pass): cheaper for the elementwise transforms."""
        return self.forward_and_log_det_grads(x, g_y)[2]

    def unconstrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the unconstrained point for a constrained value of ``shape``."""
        return tuple(shape)


@dataclass(frozen=True)
class Identity(Transform):
    """No constraint: ``y = x``, log-Jacobian 0."""

    name: str = _kw("identity")

    def forward(self, x):
        return as_float(x)

    def inverse(self, y):
        return as_float(y)

    def log_det_jacobian(self, x):
        return np.zeros(np.shape(x))

    def forward_and_log_det_grads(self, x, g_y):
        x = as_float(x)
        return x, np.zeros(x.shape), np.broadcast_to(as_float(g_y), x.shape).copy()

    def backward(self, x, y, g_y):
        return np.broadcast_to(as_float(g_y), np.shape(x)).copy()


@dataclass(frozen=True)
class LowerBound(Transform):
    """``y = lower + exp(x)``, support ``(lower, inf)``; log-Jacobian ``x``."""

    name: str = _kw("lower_bound")
    lower: float | np.ndarray = 0.0

    def forward(self, x):
        return self.lower + np.exp(x)

    def inverse(self, y):
        return np.log(as_float(y) - self.lower)

    def log_det_jacobian(self, x):
        return as_float(x).copy()

    def forward_and_log_det_grads(self, x, g_y):
        x = as_float(x)
        ex = np.exp(x)
        return self.lower + ex, x.copy(), g_y * ex + 1.0

    def backward(self, x, y, g_y):
        return g_y * np.exp(x) + 1.0  # not y - lower: that cancels when lower is large


@dataclass(frozen=True)
class Log(LowerBound):
    """The "log" transform for positive support: ``y = exp(x)``, ``x = log(y)``."""

    name: str = _kw("log")

    def forward(self, x):
        return np.exp(x)

    def inverse(self, y):
        return np.log(y)

    def forward_and_log_det_grads(self, x, g_y):
        x = as_float(x)
        y = np.exp(x)
        return y, x.copy(), g_y * y + 1.0

    def backward(self, x, y, g_y):
        return g_y * y + 1.0


@dataclass(frozen=True)
class UpperBound(Transform):
    """``y = upper - exp(x)``, support ``(-inf, upper)``; log-Jacobian ``x``."""

    name: str = _kw("upper_bound")
    upper: float | np.ndarray = 0.0

    def forward(self, x):
        return self.upper - np.exp(x)

    def inverse(self, y):
        return np.log(self.upper - as_float(y))

    def log_det_jacobian(self, x):
        return as_float(x).copy()

    def forward_and_log_det_grads(self, x, g_y):
        x = as_float(x)
        ex = np.exp(x)
        return self.upper - ex, x.copy(), 1.0 - g_y * ex

    def backward(self, x, y, g_y):
        return 1.0 - g_y * np.exp(x)


@dataclass(frozen=True)
class Interval(Transform):
    """``y = lower + (upper - lower) * sigmoid(x)``, support ``(lower, upper)``.

    log-Jacobian ``log(upper - lower) + log sigmoid(x) + log sigmoid(-x)``, whose derivative is
    ``1 - 2 sigmoid(x)``. Raises ``ValueError`` at construction when ``upper <= lower`` anywhere or a
    bound is not finite.
    """

    name: str = _kw("interval")
    lower: float | np.ndarray = 0.0
    upper: float | np.ndarray = 1.0

    def __post_init__(self) -> None:
        lower, upper = as_float(self.lower), as_float(self.upper)
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ValueError(f"interval transform needs finite bounds, got lower={self.lower!r}, upper={self.upper!r}")
        if np.any(upper <= lower):
            raise ValueError(f"interval transform needs upper > lower, got lower={self.lower!r}, upper={self.upper!r}")
        object.__setattr__(self, "_width", upper - lower)
        object.__setattr__(self, "_log_width", np.log(upper - lower))

    def forward(self, x):
        return self.lower + self._width * sigmoid(x)

    def inverse(self, y):
        u = (as_float(y) - self.lower) / self._width
        return np.log(u) - np.log1p(-u)

    def log_det_jacobian(self, x):
        x = as_float(x)
        return self._log_width + log_sigmoid_pair(x)

    def forward_and_log_det_grads(self, x, g_y):
        x = as_float(x)
        s = sigmoid(x)
        y = self.lower + self._width * s
        logdet = self._log_width + log_sigmoid_pair(x)
        g_x = g_y * (self._width * s * (1.0 - s)) + (1.0 - 2.0 * s)
        return y, logdet, g_x

    def backward(self, x, y, g_y):
        s = sigmoid(x)
        return g_y * (self._width * s * (1.0 - s)) + (1.0 - 2.0 * s)


@dataclass(frozen=True)
class Logit(Interval):
    """The "logit" transform for the unit interval: ``y = sigmoid(x)``, ``x = logit(y)``."""

    name: str = _kw("logit")

    def forward(self, x):
        return sigmoid(x)

    def inverse(self, y):
        y = as_float(y)
        return np.log(y) - np.log1p(-y)

    def log_det_jacobian(self, x):
        x = as_float(x)
        return log_sigmoid_pair(x)

    def forward_and_log_det_grads(self, x, g_y):
        x = as_float(x)
        s = sigmoid(x)
        logdet = log_sigmoid_pair(x)
        return s, logdet, g_y * (s * (1.0 - s)) + (1.0 - 2.0 * s)

    def backward(self, x, y, g_y):
        return g_y * (y * (1.0 - y)) + (1.0 - 2.0 * y)


@dataclass(frozen=True)
class StickBreaking(Transform):
    """Simplex transform (Stan's stick-breaking): last axis ``K-1`` unconstrained -> ``K`` on the simplex.

    With ``u_k = x_k - log(K-1-k)`` (0-based k, the offset centres ``x = 0`` on the uniform simplex),
    ``z_k = sigmoid(u_k)``, ``y_k = z_k * prod_{j<k}(1 - z_j)`` and ``y_{K-1}`` takes the remainder.
    All in log space and vectorised with cumulative sums. ``log|det J| = sum_k log z_k + log(1-z_k) +
    log(remaining stick before k)``; gradients come from a reversed cumulative sum.
    """

    name: str = _kw("stick_breaking")
    event_ndim: int = _kw(1)

    @staticmethod
    def _offsets(km1: int) -> np.ndarray:
        return np.log(np.arange(km1, 0, -1, dtype=np.float64))

    def unconstrained_shape(self, shape):
        shape = tuple(shape)
        if not shape or shape[-1] < 2:
            raise ValueError(f"simplex transform needs a last axis of length >= 2, got shape {shape}")
        return shape[:-1] + (shape[-1] - 1,)

    def _parts(self, x):
        x = as_float(x)
        u = x - self._offsets(x.shape[-1])
        log_z = log_sigmoid(u)
        log_1mz = log_sigmoid(-u)
        # log of the stick remaining before piece k (exclusive cumulative sum of log(1-z)), and after all.
        csum = np.cumsum(log_1mz, axis=-1)
        log_rem = csum - log_1mz
        log_y = np.concatenate([log_z + log_rem, csum[..., -1:]], axis=-1)
        return u, log_z, log_1mz, log_rem, log_y

    def forward(self, x):
        return np.exp(self._parts(x)[4])

    def inverse(self, y):
        y = as_float(y)
        # remaining stick at k = y_k + ... + y_{K-1}: a reversed cumulative sum (accurate for small pieces)
        rem = np.flip(np.cumsum(np.flip(y, axis=-1), axis=-1), axis=-1)[..., :-1]
        z = y[..., :-1] / rem
        u = np.log(z) - np.log1p(-z)
        return u + self._offsets(u.shape[-1])

    def log_det_jacobian(self, x):
        _, log_z, log_1mz, log_rem, _ = self._parts(x)
        return np.sum(log_z + log_1mz + log_rem, axis=-1)

    def forward_and_log_det_grads(self, x, g_y):
        u, log_z, log_1mz, log_rem, log_y = self._parts(x)
        y = np.exp(log_y)
        logdet = np.sum(log_z + log_1mz + log_rem, axis=-1)
        z = np.exp(log_z)
        km1 = u.shape[-1]
        w = g_y * y  # d(sum g_y*y)/d(log y_k)
        # sum_{k>m} w_k for m = 0..K-2 (includes the remainder piece K-1)
        tail = np.flip(np.cumsum(np.flip(w, axis=-1), axis=-1), axis=-1)[..., 1:]
        g_chain = w[..., :-1] * np.exp(log_1mz) - z * tail  # exp(log(1-z)): exact where z is near 1
        # d logdet/du_m = (1 - z_m) - z_m - z_m * (number of later pieces k < K-1 that include log(1-z_m))
        later = np.arange(km1 - 1, -1, -1, dtype=np.float64)
        g_logdet = 1.0 - z * (2.0 + later)
        return y, logdet, g_chain + g_logdet


identity = Identity()
log = Log()
logit = Logit()
simplex = StickBreaking()

_BY_NAME: dict[str, Transform] = {
    "identity": identity,
    "log": log,
    "logit": logit,
    "simplex": simplex,
    "stick_breaking": simplex,
}


def by_name(name: str) -> Transform:
    """The parameterless transform called ``name`` ("identity", "log", "logit", "simplex",
    "ordered", "positive_ordered", "zerosum", "cholesky_corr").

    Raises ``ValueError`` naming the unknown transform and the known ones (bounded transforms need
    their bounds: build them with :class:`Interval`, :class:`LowerBound`, :class:`UpperBound`).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown transform {name!r}; known: {sorted(_BY_NAME)} "
                         "(bounded ones: Interval(lower, upper), LowerBound(lower), UpperBound(upper))") from None


# Vector transforms of their own module (ordered, positive_ordered, zerosum, cholesky_corr).
from exmc.transforms_extra import EXTRA_TRANSFORMS  # noqa: E402 - needs Transform above

_BY_NAME.update(EXTRA_TRANSFORMS)
