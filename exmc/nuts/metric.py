"""Euclidean metrics (mass matrices) of Hamiltonian Monte Carlo.

Stan parameterises the kinetic energy by the *inverse* metric ``M⁻¹`` (the adapted posterior
(co)variance estimate): ``K(p) = ½ pᵀ M⁻¹ p``, momentum ``p ~ N(0, M)`` and velocity ``dτ/dp = M⁻¹ p``
(Stan's ``p_sharp``). Each metric precomputes what a leapfrog step needs so that a step costs one
multiply (diagonal) or one matrix-vector product (dense) beyond the gradient.

Metrics work on single states ``(dim,)`` and on batches ``(C, dim)`` (the vectorized sampler).
"""
from __future__ import annotations

import numpy as np


class DiagonalMetric:
    """Diagonal inverse metric ``M⁻¹ = diag(inv_diag)`` (Stan's ``diag_e``).

    Raises ``ValueError`` naming the problem when ``inv_diag`` has a non-positive or non-finite entry.
    """

    def __init__(self, inv_diag: np.ndarray) -> None:
        inv_diag = np.array(inv_diag, dtype=float)
        if inv_diag.ndim != 1:
            raise ValueError(f"diagonal inverse metric must be 1-D, got shape {inv_diag.shape}")
        if not np.all(np.isfinite(inv_diag)) or np.any(inv_diag <= 0):
            raise ValueError(f"diagonal inverse metric must be finite and positive, got {inv_diag}")
        self.inverse = inv_diag
        self._momentum_scale = 1.0 / np.sqrt(inv_diag)

    def sample_momentum(self, rng: np.random.Generator, batch: int | None = None) -> np.ndarray:
        """Draw ``p ~ N(0, M)``; ``batch`` draws a ``(batch, dim)`` array."""
        shape = self.inverse.shape if batch is None else (batch,) + self.inverse.shape
        return rng.standard_normal(shape) * self._momentum_scale

    def velocity(self, p: np.ndarray) -> np.ndarray:
        """``dτ/dp = M⁻¹ p`` for ``(dim,)`` or ``(C, dim)`` momenta."""
        return self.inverse * p


class DenseMetric:
    """Dense inverse metric ``M⁻¹`` (Stan's ``dense_e``).

    Momenta are drawn as ``p = L⁻ᵀ z`` with ``M⁻¹ = L Lᵀ`` (Cholesky), whose covariance is ``M``.
    Raises ``ValueError`` when ``inverse`` is not square, symmetric and positive definite.
    """

    def __init__(self, inverse: np.ndarray) -> None:
        inverse = np.array(inverse, dtype=float)
        if inverse.ndim != 2 or inverse.shape[0] != inverse.shape[1]:
            raise ValueError(f"dense inverse metric must be a square matrix, got shape {inverse.shape}")
        if not np.allclose(inverse, inverse.T, rtol=1e-10, atol=1e-12):
            raise ValueError("dense inverse metric must be symmetric")
        try:
            chol = np.linalg.cholesky(inverse)
        except np.linalg.LinAlgError as exc:
            raise ValueError("dense inverse metric is not positive definite") from exc
        self.inverse = inverse
        # p = L^{-T} z; precomputed as a matrix so a draw is one product.
        self._momentum_map = np.linalg.inv(chol).T

    def sample_momentum(self, rng: np.random.Generator, batch: int | None = None) -> np.ndarray:
        """Draw ``p ~ N(0, M)``; ``batch`` draws a ``(batch, dim)`` array."""
        dim = self.inverse.shape[0]
        if batch is None:
            return self._momentum_map @ rng.standard_normal(dim)
        return rng.standard_normal((batch, dim)) @ self._momentum_map.T

    def velocity(self, p: np.ndarray) -> np.ndarray:
        """``dτ/dp = M⁻¹ p`` for ``(dim,)`` or ``(C, dim)`` momenta."""
        return p @ self.inverse  # symmetric: equals M⁻¹ p row by row


def unit_metric(dim: int, dense: bool) -> DiagonalMetric | DenseMetric:
    """Stan's initial metric: the identity."""
    return DenseMetric(np.eye(dim)) if dense else DiagonalMetric(np.ones(dim))


class LowRankMetric:
    """Diagonal inverse metric with a low-rank correction:
    ``M⁻¹ = S (I + U (Λ - I) Uᵀ) S`` with ``S = diag(scale)`` and ``U`` (``dim × k``, orthonormal
    columns) the directions, in the scaled coordinates ``x / scale``, whose variance ``Λ`` differs
    clearly from 1 (see :mod:`exmc.nuts.metric_choice`). With ``k = 0`` it is the diagonal metric.

    Every operation costs ``O(dim · k)``: the velocity is ``S (x + U ((Λ - 1) ⊙ Uᵀ x))`` with
    ``x = S p``, a momentum ``p = S⁻¹ (z + U ((Λ^-½ - 1) ⊙ Uᵀ z))`` for ``z ~ N(0, I)``, whose
    covariance is ``M`` (``(I + U a Uᵀ)² = I + U ((1 + a)² - 1) Uᵀ`` for orthonormal ``U``). One
    standard-normal vector is drawn per momentum, as for the other metrics, so the random stream
    of a chain advances the same way whichever metric it uses. For small ``dim`` the product is
    materialised as one dense matrix (:data:`DENSE_PRODUCT_MAX_DIM`): one matrix-vector product is
    cheaper than the factored form's five numpy calls.

    Raises ``ValueError`` when ``scale`` or ``values`` are not finite and positive or the shapes
    disagree.
    """

    #: Up to this dimension velocity and momentum use the materialised ``dim × dim`` matrices
    #: (one BLAS call each); above it the factored form. Measured on this box (2026-12-03, loaded,
    #: µs per velocity, factored / dense): d=64 3.0-3.6 / 0.9; d=102 2.2-3.9 / 1.5 (SV's rank 29:
    #: 3.9 / 1.6); d=150 3.3-5.3 / 3.4-5.1; d=200 5.0-7.5 / 4.7-8.6; d=300 4.3-9.2 / 15-17.
    #: The crossover is near d=150 for every rank, so 128 keeps the dense product where it wins.
    DENSE_PRODUCT_MAX_DIM = 128

    def __init__(self, scale: np.ndarray, vectors: np.ndarray, values: np.ndarray) -> None:
        scale = np.array(scale, dtype=float)
        vectors = np.array(vectors, dtype=float).reshape(scale.shape[0], -1)
        values = np.array(values, dtype=float).reshape(-1)
        if scale.ndim != 1 or vectors.shape[1] != values.shape[0]:
            raise ValueError(f"low-rank metric: scale {scale.shape}, vectors {vectors.shape}, values {values.shape}")
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError("low-rank metric: scale must be finite and positive")
        if not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise ValueError("low-rank metric: eigenvalues must be finite and positive")
        self.scale, self.vectors, self.values = scale, vectors, values
        self.rank = int(values.shape[0])
        self._v_coef = values - 1.0
        self._p_coef = 1.0 / np.sqrt(values) - 1.0
        dim = scale.shape[0]
        eye = np.eye(dim)
        inner = eye + (vectors * self._v_coef) @ vectors.T
        #: The inverse metric as a matrix (reported in ``Trace.info``; used directly for small dim).
        self.inverse = 0.5 * ((scale[:, None] * inner * scale[None, :]) + (scale[:, None] * inner * scale[None, :]).T)
        self._dense = dim <= self.DENSE_PRODUCT_MAX_DIM
        if self._dense:
            # p = S⁻¹ (I + U a Uᵀ) z: one matrix, applied to z on the right for batches.
            self._momentum_map = (eye + (vectors * self._p_coef) @ vectors.T) / scale[:, None]

    def sample_momentum(self, rng: np.random.Generator, batch: int | None = None) -> np.ndarray:
        """Draw ``p ~ N(0, M)``; ``batch`` draws a ``(batch, dim)`` array."""
        dim = self.scale.shape[0]
        if batch is None:
            z = rng.standard_normal(dim)
            if self._dense:
                return self._momentum_map @ z
            return (z + self.vectors @ (self._p_coef * (z @ self.vectors))) / self.scale
        z = rng.standard_normal((batch, dim))
        if self._dense:
            return z @ self._momentum_map.T
        return (z + ((z @ self.vectors) * self._p_coef) @ self.vectors.T) / self.scale

    def velocity(self, p: np.ndarray) -> np.ndarray:
        """``dτ/dp = M⁻¹ p`` for ``(dim,)`` or ``(C, dim)`` momenta."""
        if self._dense:
            return p @ self.inverse
        x = p * self.scale
        return self.scale * (x + ((x @ self.vectors) * self._v_coef) @ self.vectors.T)
