"""Families whose draws are vectors (``event_ndim == 1``): the last value axis is one draw.

MvNormal{mu, cov} · GaussianRandomWalk{sigma, init_sigma} · Dirichlet{alpha}.

Batch axes (including a leading chain axis) broadcast as usual; event axes do not move. ``lp`` has the
batch shape; gradients have the batch shape plus the input's event shape (``cov``: two axes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln

from exmc import accel
from exmc._numeric import HALF_LOG_2PI, LOG_2PI, as_float
from exmc.dist.base import Distribution, require, require_finite, require_positive, size_tuple
from exmc.dist.kernels import scalar_log

#: ``ndarray.sum`` without its Python-level wrapper.
_sum = np.add.reduce

__all__ = ["MvNormal", "GaussianRandomWalk", "Dirichlet"]

#: Tolerance on ``sum(x) == 1`` when validating observed simplex values (stored proportions are
#: typically rounded to ~1e-8 or coarser; 1e-6 accepts those while rejecting real mistakes).
SIMPLEX_ATOL = 1e-6
#: Relative tolerance of the covariance symmetry check (floating-point round-off of a computed matrix).
SYMMETRY_RTOL = 1e-8


def _event_verdict(ok_per_event: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Spread a per-event boolean over every entry of the event (``in_support`` returns value's shape)."""
    return np.broadcast_to(ok_per_event[..., None], value.shape).copy()


@dataclass(frozen=True)
class MvNormalFamily(Distribution):
    """MvNormal{mu, cov}: ``-(d log 2pi + log det cov + r^T cov^-1 r)/2`` with ``r = x - mu``.

    Gradients treat ``cov``'s entries as independent (no symmetrisation): ``d/dcov =
    (s s^T - cov^-1)/2`` with ``s = cov^-1 r``, which at a symmetric point is the derivative with
    respect to each entry. A non-positive-definite ``cov`` (possible only when it is computed from
    sampled values) gives ``lp = -inf`` and nan gradients.
    """

    def check_params(self, params):
        require_finite(params, "mu", "cov")
        if "cov" not in params:
            return
        cov = as_float(params["cov"])
        if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
            raise ValueError(f"param 'cov' must be a square matrix (last two axes equal), got shape {cov.shape}")
        if not np.allclose(cov, np.swapaxes(cov, -1, -2), rtol=SYMMETRY_RTOL, atol=0.0):
            raise ValueError("param 'cov' must be symmetric")
        try:
            np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError("param 'cov' must be positive definite (its Cholesky factorisation failed)") from None
        if "mu" in params and np.shape(params["mu"])[-1:] not in ((), (1,), cov.shape[-1:]):
            raise ValueError(f"param 'mu' has last axis {np.shape(params['mu'])[-1]} but 'cov' is "
                             f"{cov.shape[-1]}x{cov.shape[-1]}")

    def in_support(self, value, **params):
        value = as_float(value)
        return _event_verdict(np.all(np.isfinite(value), axis=-1), value)

    def logp_and_grads(self, value, **params):
        mu, cov = params["mu"], params["cov"]
        r = value - mu
        d = r.shape[-1]
        try:
            inv = np.linalg.inv(cov)
            sign, logdet = np.linalg.slogdet(cov)
        except np.linalg.LinAlgError:
            batch = np.broadcast_shapes(r.shape[:-1], np.shape(cov)[:-2])
            nan = np.full(batch + (d,), np.nan)
            return np.full(batch, -np.inf), {"value": nan, "mu": nan.copy(),
                                              "cov": np.full(batch + (d, d), np.nan)}
        s = np.matmul(inv, r[..., None])[..., 0]
        quad = np.sum(r * s, axis=-1)
        lp = np.where(sign > 0, -0.5 * (d * LOG_2PI + logdet + quad), -np.inf)
        g_cov = 0.5 * (s[..., :, None] * s[..., None, :] - inv)
        return lp, {"value": -s, "mu": s.copy(), "cov": g_cov}

    def sample(self, rng, size, shape=None, **params):
        mu, cov = as_float(params["mu"]), as_float(params["cov"])
        d = cov.shape[-1]
        batch = np.broadcast_shapes(tuple(shape or (d,))[:-1], mu.shape[:-1], cov.shape[:-2])
        lead = size_tuple(size)
        z = rng.standard_normal(lead + batch + (d,))
        chol = np.linalg.cholesky(cov)
        return mu + np.matmul(chol, z[..., None])[..., 0]


@dataclass(frozen=True)
class GaussianRandomWalkFamily(Distribution):
    """GaussianRandomWalk{sigma, init_sigma} over the last axis (length T >= 1):
    ``x_0 ~ Normal(0, init_sigma)``, ``x_t - x_{t-1} ~ Normal(0, sigma)``.

    ``sigma`` and ``init_sigma`` are per series (batch-shaped, no time axis). ``sample`` needs the
    rv's ``shape`` (its last axis is T).
    """

    def check_params(self, params):
        require_positive(params, "sigma", "init_sigma")

    def in_support(self, value, **params):
        value = as_float(value)
        return _event_verdict(np.all(np.isfinite(value), axis=-1), value)

    def logp_and_grads(self, value, **params):
        sigma, init_sigma = as_float(params["sigma"]), as_float(params["init_sigma"])
        steps = value.shape[-1] - 1
        sig = sigma[..., None]
        inv_init = 1.0 / init_sigma
        x0 = value[..., 0]
        z0 = x0 * inv_init
        diff = np.diff(value, axis=-1)
        inv_sig2 = 1.0 / (sig * sig)
        sum_sq = np.sum(diff * diff, axis=-1) / (sigma * sigma)
        lp = (-0.5 * z0 * z0 - np.log(init_sigma) - HALF_LOG_2PI
              - 0.5 * sum_sq - steps * (np.log(sigma) + HALF_LOG_2PI))
        g_diff = -diff * inv_sig2
        batch = lp.shape
        g_value = np.zeros(batch + value.shape[-1:])
        g_value[..., 0] = -z0 * inv_init
        g_value[..., 1:] += g_diff
        g_value[..., :-1] -= g_diff
        return lp, {
            "value": g_value,
            "sigma": np.broadcast_to((sum_sq - steps) / sigma, batch).copy(),
            "init_sigma": np.broadcast_to((z0 * z0 - 1.0) * inv_init, batch).copy(),
        }

    def latent_kernel(self, shape, varying, batched, **params):
        """One walk (``shape == (T,)``, T >= 2) with scalar ``sigma`` and ``init_sigma`` (at least
        one varying): one difference, one dot product, the value gradient assembled in place."""
        return grw_latent_kernel(shape, varying, batched, params)

    def sample(self, rng, size, shape=None, **params):
        if not shape:
            raise ValueError("GaussianRandomWalk.sample needs the rv's shape (its last axis is the walk length)")
        sigma, init_sigma = as_float(params["sigma"]), as_float(params["init_sigma"])
        batch = np.broadcast_shapes(tuple(shape)[:-1], sigma.shape, init_sigma.shape)
        lead = size_tuple(size)
        z = rng.standard_normal(lead + batch + (shape[-1],))
        steps = np.concatenate([init_sigma[..., None] * z[..., :1], sigma[..., None] * z[..., 1:]], axis=-1)
        return np.cumsum(steps, axis=-1)


def grw_latent_kernel(shape: tuple[int, ...], varying: tuple[tuple[str, tuple[int, ...]], ...], batched: bool,
                      params: dict, engine: str | None = None):
    """:meth:`GaussianRandomWalkFamily.latent_kernel`, or ``None``. ``engine`` (default:
    :func:`exmc.accel.grad_kernel`'s choice) ``"numba"`` gives the compiled twin of
    :mod:`exmc.dist.kernels_numba`, ``"numpy"`` the kernels below, its oracle."""
    if len(shape) != 1 or shape[0] < 2 or any(s != () for _, s in varying) or any(
            np.ndim(p) for p in params.values()):
        return None
    steps = float(shape[0] - 1)
    c = -(steps + 1.0) * HALF_LOG_2PI
    names = [name for name, _ in varying]
    fixed = {name: float(value) for name, value in params.items()}
    if accel.grad_kernel(engine) == "numba":
        from exmc.dist import kernels_numba

        return accel.mark(kernels_numba.grw_latent_kernel(shape[0], names, fixed, c, batched), "numba")
    if not batched:
        return _grw_single_kernel(shape[0], names, fixed, c)
    log = np.log
    pad = (slice(None), None)

    def kernel(value, *given):
        args = dict(zip(names, given))
        sigma = args["sigma"] if "sigma" in args else fixed["sigma"]
        init_sigma = args["init_sigma"] if "init_sigma" in args else fixed["init_sigma"]
        x0 = value[..., 0]
        diff = value[..., 1:] - value[..., :-1]
        inv_sigma, inv_init = 1.0 / sigma, 1.0 / init_sigma
        inv_var = inv_sigma * inv_sigma
        q = (np.vdot(diff, diff) if not batched else _sum(diff * diff, -1)) * inv_var
        z0 = x0 * inv_init
        lp = c - 0.5 * z0 * z0 - log(init_sigma) - steps * log(sigma) - 0.5 * q
        g_diff = diff * (-inv_var[pad] if isinstance(inv_var, np.ndarray) else -inv_var)
        g_value = np.empty(value.shape)  # d lp / d x_k = g_diff[k-1] - g_diff[k], plus the start
        np.subtract(g_diff[..., :-1], g_diff[..., 1:], out=g_value[..., 1:-1])
        g_value[..., 0] = -g_diff[..., 0] - z0 * inv_init
        g_value[..., -1] = g_diff[..., -1]
        grads = {"sigma": (q - steps) * inv_sigma, "init_sigma": (z0 * z0 - 1.0) * inv_init}
        return lp, (g_value,) + tuple(grads[name] for name in names)
    return kernel


def _grw_single_kernel(length: int, names: list[str], fixed: dict[str, float], c: float):
    """The unbatched latent kernel of one walk of ``length >= 2`` (see
    :meth:`GaussianRandomWalkFamily.latent_kernel`) in four numpy calls: with ``d = diff(x)``
    and ``g_d = -d / sigma²``, the value gradient is ``g_d[k-1] - g_d[k]`` inside, ``g_d[-1]`` at
    the end and ``-g_d[0] - x_0 / init_sigma²`` at the start. The scalar work is on numpy scalars
    (a ``sigma`` of 0 gives inf, not an exception); the gradients are selected at compile time."""
    steps = float(length - 1)
    sigma_at = names.index("sigma") if "sigma" in names else None
    init_at = names.index("init_sigma") if "init_sigma" in names else None
    sigma_fixed, init_fixed = fixed.get("sigma"), fixed.get("init_sigma")
    log_sigma_fixed = None if sigma_fixed is None else scalar_log(sigma_fixed)
    log_init_fixed = None if init_fixed is None else scalar_log(init_fixed)
    both_first = names == ["sigma", "init_sigma"]
    dot, subtract, multiply, empty = np.dot, np.subtract, np.multiply, np.empty

    def kernel(value, *given):
        sigma = sigma_fixed if sigma_at is None else given[sigma_at]
        init_sigma = init_fixed if init_at is None else given[init_at]
        d = subtract(value[1:], value[:-1])
        inv_sigma, inv_init = 1.0 / sigma, 1.0 / init_sigma
        inv_var = inv_sigma * inv_sigma
        q = dot(d, d) * inv_var
        z0 = value[0] * inv_init
        lp = (c - 0.5 * z0 * z0 - (log_init_fixed if init_at is None else scalar_log(init_sigma))
              - steps * (log_sigma_fixed if sigma_at is None else scalar_log(sigma)) - 0.5 * q)
        g_d = multiply(d, -inv_var, out=d)
        g_value = empty(length)
        subtract(g_d[:-1], g_d[1:], out=g_value[1:-1])
        g_value[0] = -g_d[0] - z0 * inv_init
        g_value[-1] = g_d[-1]
        if init_at is None:
            return lp, (g_value, (q - steps) * inv_sigma)
        g_init = (z0 * z0 - 1.0) * inv_init
        if sigma_at is None:
            return lp, (g_value, g_init)
        g_sigma = (q - steps) * inv_sigma
        return lp, (g_value, g_sigma, g_init) if both_first else (g_value, g_init, g_sigma)
    return kernel


@dataclass(frozen=True)
class DirichletFamily(Distribution):
    """Dirichlet{alpha}: ``lgamma(sum alpha) - sum lgamma(alpha) + sum (alpha-1) log x`` on the simplex.

    The value gradient is with respect to all K coordinates (the simplex transform applies the
    constraint); ``logp`` does not re-check ``sum(x) == 1`` (the transform guarantees it, and
    observations are validated with :meth:`in_support`), only ``x > 0``.
    """

    def check_params(self, params):
        require_positive(params, "alpha")
        require(params, "alpha", lambda a: np.ndim(a) >= 1 and np.shape(a)[-1] >= 2,
                "a vector with at least 2 entries on its last axis")

    def in_support(self, value, **params):
        value = as_float(value)
        ok = np.all(value > 0, axis=-1) & (np.abs(np.sum(value, axis=-1) - 1.0) <= SIMPLEX_ATOL)
        return _event_verdict(ok, value)

    def logp_and_grads(self, value, **params):
        alpha = as_float(params["alpha"])
        positive = np.all(value > 0, axis=-1)
        x = np.where(value > 0, value, np.nan)
        log_x = np.log(x)
        am1 = alpha - 1.0
        alpha_sum = np.sum(alpha, axis=-1)
        lp = gammaln(alpha_sum) - np.sum(gammaln(alpha), axis=-1) + np.sum(am1 * log_x, axis=-1)
        lp = np.where(positive, lp, -np.inf)
        return lp, {
            "value": am1 / x,
            "alpha": (digamma(alpha_sum)[..., None] - digamma(alpha)) + log_x,
        }

    def sample(self, rng, size, shape=None, **params):
        alpha = as_float(params["alpha"])
        batch = np.broadcast_shapes(tuple(shape or alpha.shape[-1:])[:-1], alpha.shape[:-1])
        lead = size_tuple(size)
        g = rng.standard_gamma(np.broadcast_to(alpha, lead + batch + alpha.shape[-1:]))
        return g / np.sum(g, axis=-1, keepdims=True)


MvNormal = MvNormalFamily(name="MvNormal", params=("mu", "cov"), event_ndim=1,
                          param_event_ndim={"mu": 1, "cov": 2})
GaussianRandomWalk = GaussianRandomWalkFamily(name="GaussianRandomWalk", params=("sigma", "init_sigma"), event_ndim=1)
Dirichlet = DirichletFamily(name="Dirichlet", params=("alpha",), support="simplex", event_ndim=1,
                            param_event_ndim={"alpha": 1})
