"""Fused kernels: a likelihood (or a latent term) together with the dets that feed only it, compiled
into one term that never materialises what the gradient does not need (issue 14).

Five patterns are recognised by :func:`find_fusions` in the log-density program (the values program,
which reports dets with the draws, is unaffected and still computes every det):

- **Poisson log link**: ``y ~ Poisson(mu = exp(eta))`` with ``eta`` of ``y``'s shape. The term
  becomes :func:`exmc.dist.observed_kernels.poisson_log_rate_kernel` of ``eta``: ``y·eta - Σ e^eta``
  and ``y - e^eta`` — no log of the exponential, no division, ``gammaln(y + 1)`` a constant.
- **GLM**: the same Poisson, or ``y ~ Bernoulli(logit_p = eta)``, where ``eta`` is a linear
  predictor ``Z θ`` as below: ``y·eta = θ·(Zᵀy)`` with ``Zᵀy`` computed once and the gradient
  ``Zᵀy - Zᵀm`` (``m = e^eta`` or ``sigmoid(eta)``), see :func:`glm_kernel`.
- **Normal linear regression**: ``y ~ Normal(mu, sigma)`` with ``y`` a vector, ``sigma`` a scalar
  (varying or constant) and ``mu`` one of ``matmul(X, b)``, ``add(c, matmul(X, b))`` (either
  order), ``affine(c, s, x)`` (``c + s * x``), ``affine(a[idx], s, x)`` or ``a[idx]`` (a varying
  intercept gathered per row, as one-hot columns), with constant data ``X``/``x``/``idx`` and
  varying ``b``, ``c``, ``s``, ``a``. Write ``mu = Z θ`` (``Z`` the data, with a column of ones
  for ``c``). The sum of squares is ``S(θ) = Σ (y - Z θ)² = e·e - 2 Δ·h + Δ·G Δ`` with ``Δ = θ - θ̂``, ``θ̂`` the least
  squares fit, ``e = y - Z θ̂``, ``h = Zᵀe`` (zero up to rounding) and ``G = ZᵀZ``, all computed once:
  a call costs ``O(K²)`` instead of two passes over the ``N × K`` design. Expanding around the
  least squares fit instead of zero keeps the terms of the sum the size of the residuals, so there
  is no cancellation between large ``y·y`` and ``θ·Zᵀy`` terms.
- **Normal log scale** (a latent term): a free, centred ``x ~ Normal(mu, sigma = exp(eta))`` with
  a scalar ``eta`` (Neal's funnel, ``exp(log_tau)`` hierarchies) and a scalar ``mu`` becomes
  :func:`exmc.dist.normal_kernels.normal_log_scale_kernel` of ``(x, eta[, mu])``.
- **StudentT log scale**: ``y ~ StudentT(df, loc, scale = exp(eta))`` with ``eta`` of ``y``'s
  shape (stochastic volatility), a constant ``loc`` and a scalar ``df``. The term becomes
  :func:`exmc.dist.studentt_kernels.studentt_log_scale_kernel` of ``eta`` (and ``df``):
  ``log scale`` is ``eta`` itself, ``(y - loc)²`` is data, the scale and its reciprocal are never
  formed and the gradient reaches ``eta`` without the chain rule through the ``exp``.

Each fused term must equal the unfused program (the plain path, kept as the oracle):
``tests/exmc/test_fusion.py`` compiles both and compares log-density and gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy.special import gammaln

from exmc._numeric import HALF_LOG_2PI
from exmc.dist.kernels import scalar_log
from exmc.ir import NONCENTERED

__all__ = ["Fusion", "find_fusions", "normal_linear_kernel", "glm_kernel"]

#: ``ndarray.sum`` without its Python-level wrapper.
_sum = np.add.reduce

#: The regression fusion pays when the rows outnumber the coefficients by at least this factor
#: (below it two passes over the design cost about as much as the K² form) ...
MIN_ROWS_PER_COEFFICIENT = 2
#: ... and there are at least this many rows: the K² form is ~10 numpy calls, two passes over a
#: short design are cheaper (measured: kilpisjarvi, N=62, K=2: 13.2 µs fused vs 11.5 plain;
#: earnings, N=1059, K=3: 12.5 vs 14.0; diamonds, N=5000, K=25: 12.6 vs 48.3).
MIN_ROWS = 200
#: Groups of a gathered intercept ``a[idx]`` the fusion takes as one-hot columns (``G`` is
#: ``(J + k)²``: 86² for radon's 85 counties, a 2 µs product; far more groups would cost more than
#: the gather and scatter it replaces).
MAX_GROUPS = 256


@dataclass(frozen=True)
class Fusion:
    """One fused term: the observed rv it replaces, the dets it absorbs (left out of the
    log-density program), the kernel's kind (``"poisson_log"``, ``"glm"``, ``"normal_linear"``,
    ``"studentt_log_scale"`` or ``"normal_log_scale"``) and its
    inputs: ``inputs`` names the varying nodes the kernel takes, in order; ``data`` holds what the
    kernel is built from."""

    rv: str
    absorbed: tuple[str, ...]
    kind: str
    inputs: tuple[str, ...]
    data: dict[str, Any]


def _consumers(analysis) -> dict[str, list[str]]:
    """node name -> names of the dets and rvs that take it as an argument or parameter."""
    out: dict[str, list[str]] = {}
    for node in analysis.order:
        if node.kind == "det":
            refs = [a for a in node.args if isinstance(a, str)]
        elif node.kind == "rv":
            refs = [v for v in analysis.families[node.name][1].values() if isinstance(v, str)]
        else:
            continue
        for ref in refs:
            out.setdefault(ref, []).append(node.name)
    return out


def find_fusions(analysis, varying: set[str]) -> list[Fusion]:
    """The fusable terms of an analysed model (see the module notes); ``varying`` are the names of
    the nodes that change with theta."""
    consumers = _consumers(analysis)
    dets = {node.name: node for node in analysis.order if node.kind == "det"}
    fusions = []

    def only_feeds(name: str, consumer: str) -> bool:
        return consumers.get(name, []) == [consumer]

    for rv_name, obs in analysis.observations.items():
        if obs.censored is not None or rv_name in varying:
            continue
        family, params = analysis.families[rv_name]
        y = analysis.consts.get(rv_name)
        if y is None:
            continue
        y = np.asarray(y, dtype=float)
        if family.name == "Poisson" and set(params) == {"mu"}:
            rate = params["mu"]
            det = dets.get(rate) if isinstance(rate, str) else None
            if det is None or det.op != "exp" or not only_feeds(rate, rv_name):
                continue
            (eta,) = det.args
            if not (isinstance(eta, str) and eta in varying and analysis.shapes[eta] == y.shape and y.ndim >= 1):
                continue
            linear = _linear_predictor(eta, rate, y, dets, varying, analysis, only_feeds) if y.ndim == 1 else None
            if linear is not None:
                Z, inputs, absorbed, sizes = linear
                fusions.append(Fusion(rv_name, (rate,) + absorbed, "glm", inputs,
                                      {"link": "log", "y": y, "Z": Z, "sizes": sizes}))
            else:
                fusions.append(Fusion(rv_name, (rate,), "poisson_log", (eta,), {"y": y}))
        elif family.name == "Bernoulli" and set(params) == {"logit_p"} and y.ndim == 1:
            linear = _linear_predictor(params["logit_p"], rv_name, y, dets, varying, analysis, only_feeds)
            if linear is not None:
                Z, inputs, absorbed, sizes = linear
                fusions.append(Fusion(rv_name, absorbed, "glm", inputs,
                                      {"link": "logit", "y": y, "Z": Z, "sizes": sizes}))
        elif family.name == "Normal" and set(params) == {"mu", "sigma"} and y.ndim == 1:
            fusion = _normal_linear(rv_name, params, y, dets, varying, analysis, only_feeds)
            if fusion is not None:
                fusions.append(fusion)
        elif family.name == "StudentT" and set(params) == {"df", "loc", "scale"} and y.ndim >= 1:
            fusion = _studentt_log_scale(rv_name, params, y, dets, varying, analysis, only_feeds)
            if fusion is not None:
                fusions.append(fusion)
    for node in analysis.order:
        if node.kind == "rv" and node.name not in analysis.observations and node.reparam != NONCENTERED:
            fusion = _normal_log_scale(node.name, dets, varying, analysis, only_feeds)
            if fusion is not None:
                fusions.append(fusion)
    return fusions


def _normal_log_scale(rv_name, dets, varying, analysis, only_feeds) -> Fusion | None:
    """A free (centred) ``x ~ Normal(mu, exp(eta))`` of non-scalar shape with a varying scalar
    ``eta``, the ``exp`` det feeding only ``x``, and a scalar ``mu`` (varying or constant)."""
    family, params = analysis.families[rv_name]
    if family.name != "Normal" or set(params) != {"mu", "sigma"} or analysis.shapes[rv_name] == ():
        return None
    scale = params["sigma"]
    det = dets.get(scale) if isinstance(scale, str) else None
    if det is None or det.op != "exp" or not only_feeds(scale, rv_name):
        return None
    (eta,) = det.args
    if not (isinstance(eta, str) and eta in varying and analysis.shapes[eta] == ()):
        return None
    mu = params["mu"]
    if isinstance(mu, str) and mu in varying:
        if analysis.shapes[mu] != ():
            return None
        return Fusion(rv_name, (scale,), "normal_log_scale", (rv_name, eta, mu),
                      {"shape": analysis.shapes[rv_name], "mu": None})
    value = analysis.value_of(mu)
    if value is None or np.ndim(value) != 0:
        return None
    return Fusion(rv_name, (scale,), "normal_log_scale", (rv_name, eta),
                  {"shape": analysis.shapes[rv_name], "mu": float(value)})


def _studentt_log_scale(rv_name, params, y, dets, varying, analysis, only_feeds) -> Fusion | None:
    """``y ~ StudentT(df, loc, exp(eta))`` with ``eta`` varying of ``y``'s shape, the ``exp`` det
    feeding only ``y``, a constant ``loc`` and a scalar ``df`` (varying or constant)."""
    scale = params["scale"]
    det = dets.get(scale) if isinstance(scale, str) else None
    if det is None or det.op != "exp" or not only_feeds(scale, rv_name):
        return None
    (eta,) = det.args
    if not (isinstance(eta, str) and eta in varying and analysis.shapes[eta] == y.shape):
        return None
    loc = analysis.value_of(params["loc"])
    if loc is None or np.ndim(loc) > y.ndim or np.broadcast_shapes(np.shape(loc), y.shape) != y.shape:
        return None
    df = params["df"]
    if isinstance(df, str) and df in varying:
        if analysis.shapes[df] != ():
            return None
        return Fusion(rv_name, (scale,), "studentt_log_scale", (eta, df), {"y": y, "loc": loc, "df": None})
    value = analysis.value_of(df)
    if value is None or np.ndim(value) != 0:
        return None
    return Fusion(rv_name, (scale,), "studentt_log_scale", (eta,), {"y": y, "loc": loc, "df": float(value)})


def _normal_linear(rv_name, params, y, dets, varying, analysis, only_feeds) -> Fusion | None:
    mu, sigma = params["mu"], params["sigma"]
    if isinstance(sigma, str) and sigma in varying:
        if analysis.shapes[sigma] != ():
            return None
        sigma_input: tuple[str, ...] = (sigma,)
        sigma_const = None
    else:
        value = analysis.value_of(sigma)
        if value is None or np.ndim(value) != 0:
            return None
        sigma_input, sigma_const = (), float(value)
    linear = _linear_predictor(mu, rv_name, y, dets, varying, analysis, only_feeds)
    if linear is None:
        return None
    Z, inputs, absorbed, sizes = linear
    if y.shape[0] < max(MIN_ROWS, MIN_ROWS_PER_COEFFICIENT * Z.shape[1]):
        return None
    return Fusion(rv_name, absorbed, "normal_linear", inputs + sigma_input,
                  {"y": y, "Z": Z, "sizes": sizes, "sigma": sigma_const})


def _linear_predictor(mu, consumer, y, dets, varying, analysis, only_feeds):
    """``(Z, inputs, absorbed, sizes)`` when the det ``mu`` (feeding only ``consumer``) is
    ``matmul(X, b)``, ``add(c, matmul(X, b))`` (either order) or ``affine(c, s, x)`` with constant
    data of ``y``'s rows and varying ``b``, ``c``, ``s``: ``mu = Z θ`` with θ the inputs end to end
    (``sizes`` entries each); else ``None``."""
    det = dets.get(mu) if isinstance(mu, str) else None
    if det is None or not only_feeds(mu, consumer):
        return None

    def is_var(arg, shape) -> bool:
        return isinstance(arg, str) and arg in varying and analysis.shapes[arg] == shape

    def _gather(name, feeds) -> tuple[np.ndarray, str] | None:
        """``(one-hot (N, J), a)`` when det ``name`` is ``index(a, idx)`` of a varying ``a`` of
        shape ``(J,)`` with constant integer ``idx`` of ``y``'s shape, feeding only ``feeds``."""
        node = dets.get(name) if isinstance(name, str) else None
        if node is None or node.op != "index" or not only_feeds(name, feeds):
            return None
        a_arg, idx_arg = node.args
        idx = analysis.value_of(idx_arg)
        if idx is None or np.shape(idx) != y.shape or not isinstance(a_arg, str) or a_arg not in varying:
            return None
        a_shape = analysis.shapes[a_arg]
        if len(a_shape) != 1 or a_shape[0] > MAX_GROUPS:
            return None
        onehot = np.zeros((y.shape[0], a_shape[0]))
        onehot[np.arange(y.shape[0]), np.asarray(idx, dtype=np.int64)] = 1.0
        return onehot, a_arg

    def matmul_parts(node) -> tuple[np.ndarray, str] | None:
        if node.op != "matmul":
            return None
        x_arg, b_arg = node.args
        X = analysis.value_of(x_arg)
        if X is None or np.ndim(X) != 2 or X.shape[0] != y.shape[0]:
            return None
        return (np.asarray(X, dtype=float), b_arg) if is_var(b_arg, (X.shape[1],)) else None

    absorbed = [mu]
    if det.op == "matmul":
        parts = matmul_parts(det)
        if parts is None:
            return None
        Z, inputs = parts[0], (parts[1],)
    elif det.op == "add":
        for c_arg, p_arg in (det.args, det.args[::-1]):
            inner = dets.get(p_arg) if isinstance(p_arg, str) else None
            if inner is not None and is_var(c_arg, ()) and only_feeds(p_arg, mu):
                parts = matmul_parts(inner)
                if parts is not None:
                    break
        else:
            return None
        absorbed.append(p_arg)
        Z = np.column_stack([np.ones_like(y), parts[0]])
        inputs = (c_arg, parts[1])
    elif det.op == "affine":
        c_arg, s_arg, x_arg = det.args
        x = analysis.value_of(x_arg)
        if x is None or np.shape(x) != y.shape or not is_var(s_arg, ()):
            return None
        if is_var(c_arg, ()):
            Z = np.column_stack([np.ones_like(y), np.asarray(x, dtype=float)])
            inputs = (c_arg, s_arg)
        else:  # c = a[idx], a group effect gathered per row (a varying intercept)
            gathered = _gather(c_arg, mu)
            if gathered is None:
                return None
            onehot, a_arg = gathered
            absorbed.append(c_arg)
            Z = np.column_stack([onehot, np.asarray(x, dtype=float)])
            inputs = (a_arg, s_arg)
    elif det.op == "index":
        gathered = _gather(mu, consumer)
        if gathered is None:
            return None
        Z, inputs = gathered[0], (gathered[1],)
    else:
        return None
    if not np.all(np.isfinite(Z)):
        return None
    sizes = tuple(int(np.prod(analysis.shapes[name], dtype=np.int64)) for name in inputs)
    return Z, inputs, tuple(absorbed), sizes


def _theta_packer(sizes: tuple[int, ...], batched: bool) -> tuple[Callable, Callable]:
    """``(pack, unpack)``: the kernel inputs laid end to end as θ (``(K,)`` or ``(C, K)``), and a
    θ-gradient split back into one gradient per input, of that input's shape."""
    bounds = np.cumsum((0,) + tuple(sizes))
    spans = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    k = int(bounds[-1])
    if not batched:
        def pack(args):
            theta = np.empty(k)
            for (a, b), x in zip(spans, args):
                theta[a:b] = x
            return theta

        def unpack(g, args):
            return [g[a] if np.ndim(x) == 0 else g[a:b] for (a, b), x in zip(spans, args)]
        return pack, unpack

    def pack(args):
        chains = args[0].shape[0]
        theta = np.empty((chains, k))
        for (a, b), x in zip(spans, args):
            theta[:, a:b] = x.reshape(chains, -1)
        return theta

    def unpack(g, args):
        return [g[:, a:b].reshape(x.shape) for (a, b), x in zip(spans, args)]
    return pack, unpack


def glm_kernel(link: str, y: np.ndarray, Z: np.ndarray, sizes: tuple[int, ...], batched: bool) -> Callable:
    """``kernel(*coefficient inputs) -> (lp, grads)`` of ``y ~ Poisson(exp(Z θ))`` (``link``
    ``"log"``) or ``y ~ Bernoulli(logit_p = Z θ)`` (``"logit"``): ``y·η = θ·(Zᵀy)`` is one
    K-vector product, ``d lp/dθ = Zᵀy - Zᵀ m`` with ``m = exp(η)`` or ``sigmoid(η)``: one pass over
    the design each way and one elementwise pass, no per-row residual."""
    y = np.asarray(y, dtype=float)
    zty = Z.T @ y
    c = -float(np.sum(gammaln(y + 1.0))) if link == "log" else 0.0
    pack, unpack = _theta_packer(sizes, batched)
    log = link == "log"
    # The design column by column (Zt C-contiguous, Z = Zt.T Fortran-ordered): BLAS then streams
    # each column once for Z θ and takes one contiguous dot per column for Zᵀm. Measured on the
    # bench's N=20,000, K=11 design, µs: Z θ 34 vs 61 row-major, Zᵀm 29 vs 52; for 2 chains
    # (θ as (2, K)) 18 vs 47 per chain each way.
    Zt = np.ascontiguousarray(Z.T)
    Z = Zt.T

    def kernel(*args):
        theta = pack(args)
        eta = theta @ Zt if batched else Z @ theta
        # In place from here on: fewer row-sized temporaries keep more of Z in cache for Zᵀm
        # (Poisson 107 -> 97 µs, Bernoulli 217 -> 186 µs per kernel call, same design).
        if log:
            m = np.exp(eta, out=eta)
            total = _sum(m, -1)
        else:
            sp = np.abs(eta)  # softplus(eta) = max(eta, 0) + log1p(exp(-|eta|)), then m = exp(eta - sp)
            np.negative(sp, out=sp)
            np.exp(sp, out=sp)
            np.log1p(sp, out=sp)
            sp += np.maximum(eta, 0.0)
            total = _sum(sp, -1)
            m = np.exp(np.subtract(eta, sp, out=eta), out=eta)
        lp = theta @ zty - total + c
        g_theta = zty - (m @ Z)
        return lp, tuple(unpack(g_theta, args))
    return kernel


def normal_linear_kernel(y: np.ndarray, Z: np.ndarray, sizes: tuple[int, ...], sigma: float | None,
                         batched: bool) -> Callable:
    """``kernel(*coefficient inputs[, sigma]) -> (lp, grads)`` of ``y ~ Normal(Z θ, sigma)`` where
    θ is the inputs laid end to end (``sizes`` entries each: 1 for a scalar); ``sigma`` is the
    constant scale, or ``None`` when it is the kernel's last input (see the module notes)."""
    theta_hat, *_ = np.linalg.lstsq(Z, y, rcond=None)
    e = y - Z @ theta_hat
    ee = float(e @ e)
    h = Z.T @ e
    G = Z.T @ Z
    n = float(y.shape[0])
    count = len(sizes)
    pack, unpack = _theta_packer(sizes, batched)
    varying_sigma = sigma is None
    log_sigma_const = 0.0 if varying_sigma else float(np.log(sigma))
    inv_var_const = 0.0 if varying_sigma else 1.0 / (sigma * sigma)
    c = -n * HALF_LOG_2PI
    if not batched:
        return _normal_linear_single(theta_hat, ee, h, G, n, sizes, inv_var_const, log_sigma_const,
                                     varying_sigma, c)

    def kernel(*args):
        coefficients = args[:count]
        delta = pack(coefficients) - theta_hat
        g_delta = delta @ G  # G is symmetric: row by row G Δ
        if batched:
            ss = ee - 2.0 * (delta @ h) + np.einsum("ij,ij->i", delta, g_delta)
        else:
            ss = ee - 2.0 * float(delta @ h) + float(delta @ g_delta)
        if varying_sigma:
            s = args[-1]
            inv_var = 1.0 / (s * s)
            lp = c - n * np.log(s) - 0.5 * ss * inv_var
        else:
            inv_var = inv_var_const
            lp = c - n * log_sigma_const - 0.5 * ss * inv_var
        g_theta = (h - g_delta) * (inv_var[:, None] if batched and varying_sigma else inv_var)
        grads = unpack(g_theta, coefficients)
        if varying_sigma:
            grads.append(-n / s + ss * inv_var / s)
        return lp, tuple(grads)
    return kernel


def _normal_linear_single(theta_hat, ee, h, G, n, sizes, inv_var_const, log_sigma_const, varying_sigma, c):
    """:func:`normal_linear_kernel`'s unbatched kernel: the same sums of squares, with θ assembled
    in place, the gradient formed in ``G Δ``'s buffer, scalar work on scalars (``scalar_log``
    where numpy's ``log`` would be a ufunc call on one number) and the inputs' spans fixed."""
    count = len(sizes)
    bounds = np.cumsum((0,) + tuple(sizes))
    spans = tuple((int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]))
    k = int(bounds[-1])
    subtract, empty = np.subtract, np.empty

    def kernel(*args):
        delta = empty(k)
        for (a, b), x in zip(spans, args):  # zip stops at the coefficients when sigma is last
            delta[a:b] = x
        delta -= theta_hat
        g_delta = delta @ G  # G is symmetric: row by row G Δ
        ss = ee - 2.0 * float(delta @ h) + float(delta @ g_delta)
        if varying_sigma:
            s = args[count]
            inv_var = 1.0 / (s * s)
            lp = c - n * scalar_log(s) - 0.5 * ss * inv_var
        else:
            inv_var = inv_var_const
            lp = c - n * log_sigma_const - 0.5 * ss * inv_var
        g_theta = subtract(h, g_delta, out=g_delta)
        g_theta *= inv_var
        grads = [g_theta[a] if getattr(x, "ndim", 0) == 0 else g_theta[a:b] for (a, b), x in zip(spans, args)]
        if varying_sigma:
            grads.append(-n / s + ss * inv_var / s)
        return lp, tuple(grads)
    return kernel
