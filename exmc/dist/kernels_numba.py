"""Two fused kernels of :mod:`exmc.dist` compiled by numba: the StudentT likelihood on the log
scale and the GaussianRandomWalk prior (the stochastic volatility model's whole gradient but its
scalars).

Optional (the ``fast`` extra): :func:`exmc.accel.grad_kernel` selects them when numba imports,
``EXMC_GRAD=numpy`` selects the numpy kernels, which stay the reference and the test oracle
(:func:`exmc.dist.studentt_kernels.studentt_log_scale_kernel`,
:func:`exmc.dist.multivariate.grw_latent_kernel`). Each factory here takes the numpy factory's
arguments, returns a kernel of the same signature and results (``(lp, grads)``, the same shapes,
batched or not), and is called by that numpy factory when the switch says ``numba``.

Why: at T = 100 a numpy call costs 0.3-1 µs whatever it computes, and the two kernels make 13 of
the SV gradient's 15 numpy calls (measured 2026-12-03 on this 2-core box, CPU time, best of N:
StudentT 7.3 µs, the walk 3.6 µs, the whole gradient 14.4 µs on a loaded box, 15.9 µs in the
quiet step-cost table): numpy could not get under ~8 µs for the gradient. Written as loops, the
StudentT kernel is 1.6 µs (the libm ``exp`` and ``log`` of 100 entries are ~1 µs of it), the walk
0.7 µs, the gradient 4.2 µs. Outputs are allocated by numpy and filled in place: boxing an array
that numba allocated costs ~0.5 µs a call.

Floating point: the formulas are the numpy kernels' (see their docstrings), but the loops sum in
entry order where numpy reduces pairwise or by BLAS and numba's ``exp``/``log`` are libm's, not
numpy's SIMD loops: results agree to ~1e-14 relative, not bit for bit, so a model's draws may
differ between the switch's two settings; with one setting they are reproducible, the same in pool
and sequential runs, and a batched kernel runs each row through the single kernel's code, so a
row of a batched gradient is the single gradient's bits. ``error_model="numpy"``: a division by
zero gives inf or nan as in numpy, never an exception. ``digamma`` is :func:`_digamma` (numba has
none): recurrence to x >= 10, then the asymptotic series, within ~1e-13 of scipy's.

Compiled with ``cache=True``: ``make install`` fills numba's on-disk cache (:func:`warm_up`), a
process then loads the kernels in ~0.1 s at its first model with these terms.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from numba import njit

from exmc._numeric import LOG_PI, as_float
from exmc.dist.kernels import constant

__all__ = ["studentt_log_scale_kernel", "grw_latent_kernel", "warm_up"]

#: Below this the digamma recurrence ``psi(x) = psi(x + 1) - 1/x`` moves x up: from 10 on, the
#: series' first omitted term (3617 / (8160 x^16)) is below 1e-16.
_DIGAMMA_SERIES_FROM = 10.0


@njit(cache=True, error_model="numpy")
def _digamma(x):
    """scipy's ``digamma`` (-inf at 0, nan at the negative integers and nan), by the reflection
    formula below 0, the recurrence and the asymptotic series (Abramowitz & Stegun 6.3.5, 6.3.18)."""
    if x != x:
        return x
    if x <= 0.0:
        if x == 0.0:
            return -math.inf
        if x == math.floor(x):
            return math.nan
        return _digamma(1.0 - x) - math.pi / math.tan(math.pi * x)
    shift = 0.0
    while x < _DIGAMMA_SERIES_FROM:
        shift += 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    series = f * (1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f * (
        1.0 / 132.0 - f * (691.0 / 32760.0 - f * (1.0 / 12.0)))))))
    return math.log(x) - 0.5 / x - series - shift


@njit(cache=True, error_model="numpy")
def _lgamma(x):
    """``lgamma`` with scipy's ``gammaln`` at the poles (inf) and for nan."""
    if x != x:
        return x
    if x <= 0.0 and x == math.floor(x):
        return math.inf
    return math.lgamma(x)


# --- StudentT(df, loc, exp(eta)) of constant data, as a function of eta ---------------------------

@njit(cache=True, error_model="numpy")
def _studentt_row(y2, eta, df, g):
    """``g = d lp / d eta`` in place; returns ``(sum eta, sum log u)`` with ``u = df + y2 e^(-2 eta)``."""
    minus_df_dfp1 = -df * (df + 1.0)
    sum_eta = 0.0
    sum_log_u = 0.0
    for i in range(eta.shape[0]):
        u = math.exp(-2.0 * eta[i]) * y2[i] + df
        sum_eta += eta[i]
        sum_log_u += math.log(u)
        g[i] = minus_df_dfp1 / u + df
    return sum_eta, sum_log_u


@njit(cache=True, error_model="numpy")
def _studentt_df_terms(y2, eta, df, g):
    """``(lp, d lp / d df)`` of one row with a varying ``df``; ``g`` as :func:`_studentt_row`."""
    n = float(eta.shape[0])
    sum_eta, sum_log_u = _studentt_row(y2, eta, df, g)
    log_df = math.log(df) if df > 0.0 else (-math.inf if df == 0.0 else math.nan)
    half_dfp1 = 0.5 * (df + 1.0)
    sum_log1p = sum_log_u - n * log_df
    lp = n * (_lgamma(half_dfp1) - _lgamma(0.5 * df) - 0.5 * (log_df + LOG_PI)) - sum_eta - half_dfp1 * sum_log1p
    sum_g = 0.0
    for i in range(eta.shape[0]):
        sum_g += g[i]
    g_df = 0.5 * (n * (_digamma(half_dfp1) - _digamma(0.5 * df) - 1.0 / df) - sum_log1p + (sum_g + n) / df)
    return lp, g_df


@njit(cache=True, error_model="numpy")
def _studentt_fixed(y2, df, half_dfp1, c_df, eta, g):
    sum_eta, sum_log_u = _studentt_row(y2, eta, df, g)
    return c_df - sum_eta - half_dfp1 * sum_log_u


@njit(cache=True, error_model="numpy")
def _studentt_fixed_batched(y2, df, half_dfp1, c_df, eta, lp, g):
    for c in range(eta.shape[0]):
        sum_eta, sum_log_u = _studentt_row(y2, eta[c], df, g[c])
        lp[c] = c_df - sum_eta - half_dfp1 * sum_log_u


@njit(cache=True, error_model="numpy")
def _studentt_varying_batched(y2, eta, df, lp, g, g_df):
    for c in range(eta.shape[0]):
        lp[c], g_df[c] = _studentt_df_terms(y2, eta[c], df[c], g[c])


def studentt_log_scale_kernel(y: np.ndarray, loc: Any, df: float | None, batched: bool) -> Callable | None:
    """The compiled :func:`exmc.dist.studentt_kernels.studentt_log_scale_kernel` (same arguments,
    same kernel signature), or ``None`` for data of more than one axis (the numpy kernel serves)."""
    y = as_float(y)
    if y.ndim != 1:
        return None
    centred = np.broadcast_to(y - constant(loc), y.shape)
    y2 = np.ascontiguousarray(centred * centred, dtype=np.float64)
    shape = y.shape
    empty = np.empty
    if df is None:
        if batched:
            def kernel(eta, df):
                lp, g, g_df = empty(eta.shape[:1]), empty(eta.shape), empty(eta.shape[:1])
                _studentt_varying_batched(y2, eta, df, lp, g, g_df)
                return lp, (g, g_df)
            return kernel

        def kernel(eta, df):
            g = empty(shape)
            lp, g_df = _studentt_df_terms(y2, eta, df, g)
            return lp, (g, g_df)
        return kernel
    df = float(df)
    n = float(y.size)
    # The numpy kernel's constant, with Σ log1p(t) = Σ log u - n log df folded in (math's lgamma
    # and log are the numpy kernel's unbatched ones).
    log_df = math.log(df)
    half_dfp1 = 0.5 * (df + 1.0)
    c_df = n * (math.lgamma(half_dfp1) - math.lgamma(0.5 * df) - 0.5 * (log_df + LOG_PI)) + half_dfp1 * n * log_df
    if batched:
        def kernel(eta):
            lp, g = empty(eta.shape[:1]), empty(eta.shape)
            _studentt_fixed_batched(y2, df, half_dfp1, c_df, eta, lp, g)
            return lp, (g,)
        return kernel

    def kernel(eta):
        g = empty(shape)
        return _studentt_fixed(y2, df, half_dfp1, c_df, eta, g), (g,)
    return kernel


# --- GaussianRandomWalk(sigma, init_sigma) of one walk ---------------------------------------------

@njit(cache=True, error_model="numpy")
def _grw_row(x, sigma, init_sigma, c, g):
    """``g = d lp / d x`` in place; returns ``(lp, d lp / d sigma, d lp / d init_sigma)``."""
    length = x.shape[0]
    steps = float(length - 1)
    inv_sigma = 1.0 / sigma
    inv_init = 1.0 / init_sigma
    inv_var = inv_sigma * inv_sigma
    z0 = x[0] * inv_init
    q = 0.0
    g[0] = -z0 * inv_init
    for k in range(length - 1):
        d = x[k + 1] - x[k]
        q += d * d
        g_d = -d * inv_var
        g[k] -= g_d
        g[k + 1] = g_d
    q *= inv_var
    log_init = math.log(init_sigma) if init_sigma > 0.0 else (-math.inf if init_sigma == 0.0 else math.nan)
    log_sigma = math.log(sigma) if sigma > 0.0 else (-math.inf if sigma == 0.0 else math.nan)
    lp = c - 0.5 * z0 * z0 - log_init - steps * log_sigma - 0.5 * q
    return lp, (q - steps) * inv_sigma, (z0 * z0 - 1.0) * inv_init


@njit(cache=True, error_model="numpy")
def _grw_ordered(x, a, b, a_is_sigma, c, g):
    """:func:`_grw_row` with ``(a, b)`` ``(sigma, init_sigma)`` or, unless ``a_is_sigma``, the
    other way round, and the gradients returned in that order: ``(lp, d/da, d/db)``."""
    if a_is_sigma:
        return _grw_row(x, a, b, c, g)
    lp, g_sigma, g_init = _grw_row(x, b, a, c, g)
    return lp, g_init, g_sigma


@njit(cache=True, error_model="numpy")
def _grw_batched(x, a, b, a_is_sigma, c, lp, g, g_a, g_b):
    """:func:`_grw_ordered` on every row of ``x`` ``(C, T)``, with ``a`` and ``b`` of shape ``(C,)``."""
    for i in range(x.shape[0]):
        lp[i], g_a[i], g_b[i] = _grw_ordered(x[i], a[i], b[i], a_is_sigma, c, g[i])


@njit(cache=True, error_model="numpy")
def _grw_batched_fixed(x, a, b, a_is_sigma, c, lp, g, g_a):
    """:func:`_grw_batched` with a constant ``b`` (a float) and only ``d/da`` returned."""
    for i in range(x.shape[0]):
        lp[i], g_a[i], _ = _grw_ordered(x[i], a[i], b, a_is_sigma, c, g[i])


def grw_latent_kernel(length: int, names: list[str], fixed: dict[str, float], c: float,
                      batched: bool) -> Callable:
    """The compiled :func:`exmc.dist.multivariate.grw_latent_kernel` of one walk of ``length >= 2``:
    ``kernel(value, *given)`` with ``given`` the varying ``names`` (``sigma``, ``init_sigma``),
    ``fixed`` the constant ones and ``c`` the constant ``-T log(2 pi) / 2``."""
    empty = np.empty
    a_is_sigma = names[0] == "sigma"
    if len(names) == 1:
        other = fixed["init_sigma" if a_is_sigma else "sigma"]
        if batched:
            def kernel(value, a):
                chains = value.shape[0]
                lp, g, g_a = empty(chains), empty(value.shape), empty(chains)
                _grw_batched_fixed(value, a, other, a_is_sigma, c, lp, g, g_a)
                return lp, (g, g_a)
            return kernel

        def kernel(value, a):
            g = empty(length)
            lp, g_a, _ = _grw_ordered(value, a, other, a_is_sigma, c, g)
            return lp, (g, g_a)
        return kernel
    if batched:
        def kernel(value, a, b):
            chains = value.shape[0]
            lp, g, g_a, g_b = empty(chains), empty(value.shape), empty(chains), empty(chains)
            _grw_batched(value, a, b, a_is_sigma, c, lp, g, g_a, g_b)
            return lp, (g, g_a, g_b)
        return kernel

    def kernel(value, a, b):
        g = empty(length)
        lp, g_a, g_b = _grw_ordered(value, a, b, a_is_sigma, c, g)
        return lp, (g, g_a, g_b)
    return kernel


def warm_up() -> None:
    """Load (or compile, the first time on a machine: ~10 s) every kernel of this module for the
    float64 arguments the programs pass, so that no sampling pays it: a value is a slice of theta
    (contiguous when single, a block of columns of ``(C, dim)`` when batched) or a fresh array, a
    batched scalar parameter a column of theta or a fresh ``(C,)`` array."""
    y = np.array([0.5, -1.0, 2.0])
    theta, rows = np.zeros(5), np.zeros((2, 5))
    cases = [(False, theta[1:4], 4.0), (True, rows[:, 1:4], np.full(2, 4.0)), (True, np.zeros((2, 3)), np.full(2, 4.0))]
    for batched, x, param in cases:
        studentt_log_scale_kernel(y, 0.0, 4.0, batched)(x)
        studentt_log_scale_kernel(y, 0.0, None, batched)(x, param)
        for names in (["sigma"], ["init_sigma"], ["sigma", "init_sigma"]):
            fixed = {"sigma": 1.0, "init_sigma": 1.0}
            grw_latent_kernel(3, names, fixed, -1.0, batched)(x, *[param] * len(names))
    column = np.full((2, 5), 4.0)[:, 0]  # a column of theta: not contiguous
    studentt_log_scale_kernel(y, 0.0, None, True)(rows[:, 1:4], column)
    for names in (["sigma"], ["sigma", "init_sigma"]):
        grw_latent_kernel(3, names, {"init_sigma": 1.0}, -1.0, True)(rows[:, 1:4], *[column] * len(names))
    _digamma(0.5)
