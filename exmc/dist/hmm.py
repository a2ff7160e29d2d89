"""HMM{init, trans, log_emission}: a hidden Markov model with its discrete states marginalised out.

``init`` (``K``: the initial state probabilities), ``trans`` (``K x K``: row ``i`` is the
distribution of the next state given state ``i``) and ``log_emission`` (``T x K``: the log-likelihood
of observation ``t`` under state ``k``, computed by dets from the data and the parameters) give the
likelihood of the whole observed sequence by the forward algorithm in log space::

    alpha_0 = log init + le_0,   alpha_t = logsumexp_i(alpha_{t-1,i} + log trans_ij) + le_t,
    lp = logsumexp(alpha_{T-1})

(Stan's ``hmm_marginal``), computed from scaled prefix products of the step matrices
(:func:`forward_backward`: a few batched matrix products, not a Python loop over time).
Gradients come from the backward pass ``beta``: with the state marginals ``gamma_t = exp(alpha_t +
beta_t - lp)``, ``d lp / d le_t = gamma_t``, ``d lp / d init = gamma_0 / init`` and ``d lp / d
trans_ij = sum_t exp(alpha_{t-1,i} + le_tj + beta_tj - lp)``.

The rv is a carrier: it is observed with a dummy value (``Builder.hmm`` does both steps), its
log-density does not depend on the value, and it contributes one log-likelihood per sequence.
Leading batch axes (chains, several sequences) broadcast.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from exmc._numeric import as_float
from exmc.dist.base import Distribution

__all__ = ["HMM", "forward_backward"]


#: Up to this many states, batched K x K products are written as a broadcast multiply and sum
#: (one vectorised pass) instead of ``np.matmul``, which loops over the stack of tiny matrices.
SMALL_STATES = 8


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape[-1] <= SMALL_STATES:
        return np.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)
    return a @ b


def _scaled_prefix_products(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive prefix products ``P_t = m_0 m_1 ... m_t`` of ``(..., T, K, K)`` matrices, as
    ``(Ptilde, log_scale)`` with ``P_t = exp(log_scale_t) Ptilde_t`` and ``max Ptilde_t = 1``.

    Hillis-Steele doubling: ``ceil(log2 T)`` rounds of one batched matrix product each, instead of
    T dependent small products (each a numpy call: the loop's cost for short state spaces)."""
    top = np.max(m, axis=(-2, -1), keepdims=True)
    prod = m / top
    scale = np.log(top[..., 0, 0])
    t_len = m.shape[-3]
    shift = 1
    while shift < t_len:
        later = prod[..., shift:, :, :]
        combined = _matmul(prod[..., :-shift, :, :], later)
        norm = np.max(combined, axis=(-2, -1), keepdims=True)
        prod = np.concatenate([prod[..., :shift, :, :], combined / norm], axis=-3)
        scale = np.concatenate([scale[..., :shift], scale[..., :-shift] + scale[..., shift:] + np.log(norm[..., 0, 0])],
                               axis=-1)
        shift *= 2
    return prod, scale


def forward_backward(init: np.ndarray, trans: np.ndarray, log_emission: np.ndarray):
    """The forward-backward recursions by scaled prefix products on inputs ``(..., K)``,
    ``(..., K, K)``, ``(..., T, K)``: ``(lp, gamma, g_trans, g_init)``.

    With ``E_t = exp(le_t - max_k le_t)`` and ``M_t = trans diag(E_t)``: ``alpha_t = (init E_0)
    M_1 ... M_t`` and ``beta_t = M_{t+1} ... M_{T-1} 1``, both from prefix products
    (:func:`_scaled_prefix_products`; the suffix ones over the reversed, transposed sequence);
    ``lp = log(alpha_{T-1} . 1) + sum_t max le_t``, ``gamma_t = alpha_t beta_t / p``,
    ``d lp / d trans_ij = sum_{t>=1} alpha_{t-1,i} E_tj beta_tj / p``, ``d lp / d init_k =
    E_0k beta_0k / p`` (``p`` the likelihood). All in logs of the scaled factors."""
    batch = np.broadcast_shapes(init.shape[:-1], trans.shape[:-2], log_emission.shape[:-2])
    t_len, k = log_emission.shape[-2], log_emission.shape[-1]
    trans = np.broadcast_to(trans, batch + (k, k))
    init = np.broadcast_to(init, batch + (k,))
    top = np.max(log_emission, axis=-1, keepdims=True)
    emission = np.broadcast_to(np.exp(log_emission - top), batch + (t_len, k))
    offset = np.sum(top[..., 0], axis=-1)
    with np.errstate(divide="ignore"):
        log_e = np.log(emission)
        a0 = init * emission[..., 0, :]
        log_alpha = np.empty(batch + (t_len, k))
        log_alpha[..., 0, :] = np.log(a0)
        log_beta = np.zeros(batch + (t_len, k))
        if t_len > 1:
            steps = trans[..., None, :, :] * emission[..., 1:, None, :]           # M_1 .. M_{T-1}
            prod, scale = _scaled_prefix_products(steps)
            forward = (a0[..., None, None, :] @ prod)[..., 0, :]                  # a0 M_1..M_t
            log_alpha[..., 1:, :] = np.log(forward) + scale[..., None]
            # beta_t = M_{t+1} .. M_{T-1} 1: prefix products of the transposed, reversed sequence.
            reverse = np.flip(np.swapaxes(steps, -1, -2), axis=-3)
            rprod, rscale = _scaled_prefix_products(reverse)
            backward = np.sum(rprod, axis=-2)                                     # (M^T..)^T 1, reversed
            log_beta[..., :-1, :] = np.flip(np.log(backward) + rscale[..., None], axis=-2)
        lp_scaled = np.log(np.sum(np.exp(log_alpha[..., -1, :] - np.max(log_alpha[..., -1, :], axis=-1,
                                                                            keepdims=True)), axis=-1)) \
            + np.max(log_alpha[..., -1, :], axis=-1)
        gamma = np.exp(log_alpha + log_beta - lp_scaled[..., None, None])
        pair = (log_alpha[..., :-1, :, None] + (log_e[..., 1:, :] + log_beta[..., 1:, :])[..., None, :]
                - lp_scaled[..., None, None, None])
        g_trans = np.sum(np.exp(pair), axis=-3)
        g_init = np.exp(log_e[..., 0, :] + log_beta[..., 0, :] - lp_scaled[..., None])
    return lp_scaled + offset, gamma, g_trans, g_init


@dataclass(frozen=True)
class HMMFamily(Distribution):
    """The marginalised HMM (see the module docstring)."""

    is_carrier: bool = True  # observed with a dummy value; no draws (see exmc.predictive)

    def param_event_shape(self, key, event_shape):
        return None

    def check_params(self, params):
        for key in ("init", "trans"):
            if key in params:
                p = as_float(params[key])
                if np.any(p < 0) or np.any(np.abs(np.sum(p, axis=-1) - 1.0) > 1e-6):
                    raise ValueError(f"param {key!r} must be non-negative with rows summing to 1")
        if "trans" in params and np.shape(params["trans"])[-1:] != np.shape(params["trans"])[-2:-1]:
            raise ValueError(f"param 'trans' must be square, got shape {np.shape(params['trans'])}")
        shapes = {key: np.shape(params[key])[-1] for key in ("init", "trans", "log_emission") if key in params}
        if len(set(shapes.values())) > 1:
            raise ValueError(f"init, trans and log_emission disagree on the number of states: {shapes}")

    def in_support(self, value, **params):
        return np.ones(np.shape(value), dtype=bool)

    def logp_and_grads(self, value, **params):
        init, trans, le = as_float(params["init"]), as_float(params["trans"]), as_float(params["log_emission"])
        lp, gamma, g_trans, g_init = forward_backward(init, trans, le)
        batch = lp.shape
        k = init.shape[-1]
        lp = np.broadcast_to(lp, np.broadcast_shapes(batch, np.shape(value)))
        return lp, {"init": np.broadcast_to(g_init, lp.shape + (k,)),
                    "trans": np.broadcast_to(g_trans, lp.shape + (k, k)),
                    "log_emission": np.broadcast_to(gamma, lp.shape + gamma.shape[-2:])}

    def sample(self, rng, size, shape=None, **params):
        raise ValueError("HMM is a marginalised likelihood carrier: it has no draws (sample the states "
                         "and emissions with their own rvs)")


HMM = HMMFamily(name="HMM", params=("init", "trans", "log_emission"), support="custom", discrete=True,
                param_event_ndim={"init": 1, "trans": 2, "log_emission": 2})
