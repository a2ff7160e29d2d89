"""Vector transforms beyond the simplex: ordered vectors, zero-sum vectors, correlation Cholesky factors.

Same contract as :mod:`exmc.transforms` (``forward`` maps unconstrained to constrained); all act on
trailing event axes and broadcast over leading ones (a chain axis included).

- :class:`Ordered` (Stan's ``ordered``): ``y_0 = x_0``, ``y_k = y_{k-1} + exp(x_k)``;
  ``log|J| = sum_{k>=1} x_k``.
- :class:`PositiveOrdered` (``positive_ordered``): the same with ``y_0 = exp(x_0)``;
  ``log|J| = sum_k x_k``.
- :class:`ZeroSum`: ``n-1`` coordinates onto the vectors of length ``n`` summing to zero through
  an orthonormal (Helmert) basis ``H`` of that subspace: ``y = x H``, an isometry, so the
  log-Jacobian is 0 with respect to the subspace's own Lebesgue measure (ZeroSumNormal's density
  is written on it).
- :class:`CholeskyCorr` (Stan's ``cholesky_factor_corr``): ``K(K-1)/2`` coordinates onto lower-
  triangular ``K x K`` factors ``L`` of correlation matrices (unit rows, positive diagonal):
  canonical partial correlations ``z = tanh(x)`` fill each row, ``L_ij = z_ij sqrt(1 - sum_{l<j}
  L_il^2)``, ``L_ii`` takes the rest. ``log|J| = sum log(1 - z^2) + 1/2 sum log(1 - sum_{l<j}
  L_il^2)`` (with respect to the strictly lower entries, as LKJCholesky's density is written).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from exmc._numeric import as_float
from exmc.transforms import Transform, _kw

__all__ = ["Ordered", "PositiveOrdered", "ZeroSum", "CholeskyCorr", "ordered", "positive_ordered", "zerosum",
           "cholesky_corr", "helmert_basis", "EXTRA_TRANSFORMS"]


def _reverse_cumsum(a: np.ndarray) -> np.ndarray:
    return np.flip(np.cumsum(np.flip(a, axis=-1), axis=-1), axis=-1)


def _needs_vector(name: str, shape, minimum: int = 1) -> tuple[int, ...]:
    shape = tuple(shape)
    if not shape or shape[-1] < minimum:
        raise ValueError(f"the {name} transform needs a last axis of length >= {minimum}, got shape {shape}")
    return shape


@dataclass(frozen=True)
class Ordered(Transform):
    """Strictly increasing vectors on the last axis (see the module docstring)."""

    name: str = _kw("ordered")
    event_ndim: int = _kw(1)
    #: ``True``: the first entry is ``exp(x_0)`` too (positive_ordered).
    positive: bool = _kw(False)

    def unconstrained_shape(self, shape):
        return _needs_vector(self.name, shape)

    def _steps(self, x):
        x = as_float(x)
        steps = np.exp(x)
        if not self.positive:
            steps[..., 0] = x[..., 0]
        return x, steps

    def forward(self, x):
        return np.cumsum(self._steps(x)[1], axis=-1)

    def inverse(self, y):
        y = as_float(y)
        x = np.empty(y.shape)
        x[..., 0] = np.log(y[..., 0]) if self.positive else y[..., 0]
        x[..., 1:] = np.log(np.diff(y, axis=-1))
        return x

    def log_det_jacobian(self, x):
        x = as_float(x)
        return np.sum(x, axis=-1) if self.positive else np.sum(x[..., 1:], axis=-1)

    def forward_and_log_det_grads(self, x, g_y):
        x, steps = self._steps(x)
        y = np.cumsum(steps, axis=-1)
        tail = _reverse_cumsum(np.broadcast_to(g_y, y.shape))
        g_x = tail * np.exp(x) + 1.0
        if not self.positive:
            g_x[..., 0] = tail[..., 0]
        return y, self.log_det_jacobian(x), g_x


@dataclass(frozen=True)
class PositiveOrdered(Ordered):
    """Strictly increasing positive vectors on the last axis."""

    name: str = _kw("positive_ordered")
    positive: bool = _kw(True)


@lru_cache(maxsize=64)
def helmert_basis(n: int) -> np.ndarray:
    """``(n-1, n)``: orthonormal rows spanning the vectors of length ``n`` that sum to zero
    (row ``k`` is ``(1, ..., 1, -k, 0, ...) / sqrt(k (k+1))`` with ``k`` ones)."""
    basis = np.zeros((n - 1, n))
    for k in range(1, n):
        basis[k - 1, :k] = 1.0
        basis[k - 1, k] = -float(k)
        basis[k - 1] /= np.sqrt(k * (k + 1.0))
    basis.setflags(write=False)
    return basis


@dataclass(frozen=True)
class ZeroSum(Transform):
    """Vectors summing to zero on the last axis (see the module docstring)."""

    name: str = _kw("zerosum")
    event_ndim: int = _kw(1)

    def unconstrained_shape(self, shape):
        shape = _needs_vector(self.name, shape, 2)
        return shape[:-1] + (shape[-1] - 1,)

    def forward(self, x):
        x = as_float(x)
        return x @ helmert_basis(x.shape[-1] + 1)

    def inverse(self, y):
        y = as_float(y)
        return y @ helmert_basis(y.shape[-1]).T

    def log_det_jacobian(self, x):
        return np.zeros(np.shape(x)[:-1])

    def forward_and_log_det_grads(self, x, g_y):
        x = as_float(x)
        basis = helmert_basis(x.shape[-1] + 1)
        return x @ basis, np.zeros(x.shape[:-1]), np.asarray(g_y) @ basis.T


def _corr_size(m: int) -> int:
    k = int(round((1 + np.sqrt(1 + 8 * m)) / 2))
    if k * (k - 1) // 2 != m:
        raise ValueError(f"{m} is not K(K-1)/2 for any K")
    return k


@dataclass(frozen=True)
class CholeskyCorr(Transform):
    """Cholesky factors of correlation matrices on the last two axes (see the module docstring)."""

    name: str = _kw("cholesky_corr")
    event_ndim: int = _kw(1)  # on the unconstrained side: the K(K-1)/2 coordinates

    def unconstrained_shape(self, shape):
        shape = tuple(shape)
        if len(shape) < 2 or shape[-1] != shape[-2] or shape[-1] < 2:
            raise ValueError(f"the cholesky_corr transform needs square K x K values with K >= 2, got shape {shape}")
        k = shape[-1]
        return shape[:-2] + (k * (k - 1) // 2,)

    def _forward(self, x):
        """``L``, the log-Jacobian, and the tape the reverse pass needs: ``z`` and, per strictly
        lower entry, the remaining stick ``r = sqrt(1 - s)`` before it."""
        x = as_float(x)
        k = _corr_size(x.shape[-1])
        z = np.tanh(x)
        lead = x.shape[:-1]
        lower = np.zeros(lead + (k, k))
        lower[..., 0, 0] = 1.0
        r = np.empty(x.shape)
        logdet = np.sum(np.log1p(-z * z), axis=-1)
        position = 0
        for i in range(1, k):
            s = np.zeros(lead)
            for j in range(i):
                r[..., position] = np.sqrt(1.0 - s)
                lower[..., i, j] = z[..., position] * r[..., position]
                logdet = logdet + 0.5 * np.log1p(-s)
                s = s + lower[..., i, j] ** 2
                position += 1
            lower[..., i, i] = np.sqrt(1.0 - s)
        return lower, logdet, z, r

    def forward(self, x):
        return self._forward(x)[0]

    def log_det_jacobian(self, x):
        return self._forward(x)[1]

    def inverse(self, y):
        y = as_float(y)
        k = y.shape[-1]
        out = np.empty(y.shape[:-2] + (k * (k - 1) // 2,))
        position = 0
        for i in range(1, k):
            s = np.zeros(y.shape[:-2])
            for j in range(i):
                out[..., position] = np.arctanh(y[..., i, j] / np.sqrt(1.0 - s))
                s = s + y[..., i, j] ** 2
                position += 1
        return out

    def forward_and_log_det_grads(self, x, g_y):
        lower, logdet, z, r = self._forward(x)
        k = lower.shape[-1]
        g_y = np.broadcast_to(g_y, lower.shape)
        g_z = np.empty(z.shape)
        starts = [i * (i - 1) // 2 for i in range(k)]
        for i in range(1, k):
            diagonal = lower[..., i, i]
            g_s = g_y[..., i, i] * (-0.5 / diagonal)  # L_ii = sqrt(1 - s_final)
            for j in range(i - 1, -1, -1):
                position = starts[i] + j
                value, rest = lower[..., i, j], r[..., position]
                g_value = g_y[..., i, j] + g_s * 2.0 * value   # s_{j+1} = s_j + L_ij^2
                g_z[..., position] = g_value * rest               # L_ij = z r
                g_rest = g_value * z[..., position]
                # r = sqrt(1 - s_j) and the log-Jacobian's 0.5 log(1 - s_j) = log r
                g_s = g_s - 0.5 * g_rest / rest - 0.5 / (rest * rest)
        g_x = g_z * (1.0 - z * z) - 2.0 * z
        return lower, logdet, g_x


ordered = Ordered()
positive_ordered = PositiveOrdered()
zerosum = ZeroSum()
cholesky_corr = CholeskyCorr()

#: The transforms of this module by name (merged into :func:`exmc.transforms.by_name`).
EXTRA_TRANSFORMS = {
    "ordered": ordered,
    "positive_ordered": positive_ordered,
    "zerosum": zerosum,
    "cholesky_corr": cholesky_corr,
}
