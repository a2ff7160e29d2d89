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
