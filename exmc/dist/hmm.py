"""HMM{init, trans, log_emission}: a hidden Markov model with its discrete states marginalised out.

``init`` (``K``: the initial state probabilities), ``trans`` (``K x K``: row ``i`` is the
distribution of the next state given state ``i``) and ``log_emission`` (``T x K``: the log-likelihood
of observation ``t`` under state ``k``, computed by dets from the data and the parameters) give the
likelihood of the whole observed sequence by the forward algorithm in log space::

    alpha_0 = log init + le_0,   alpha_t = logsumexp_i(alpha_{t-1,i} + log trans_ij) + le_t,
    lp = logsumexp(alpha_{T-1})

(Stan's ``hmm_marginal``), computed scaled in probability space (:func:`forward_backward`).
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


def forward_backward(init: np.ndarray, trans: np.ndarray, log_emission: np.ndarray):
    """The scaled forward-backward recursions (Rabiner 1989, section V.A) on inputs ``(..., K)``,
    ``(..., K, K)``, ``(..., T, K)``: ``(lp, gamma, g_trans, g_init)``.

    With ``E_t = exp(le_t - max_k le_t)``, ``a_t = (ahat_{t-1} trans) * E_t``, ``c_t = sum a_t``,
    ``ahat_t = a_t / c_t`` and ``bhat_t = trans (E_{t+1} bhat_{t+1}) / c_{t+1}``:
    ``lp = sum_t log c_t + max le_t``, ``gamma_t = ahat_t bhat_t``,
    ``d lp / d trans_ij = sum_t ahat_{t-1,i} E_tj bhat_tj / c_t``,
    ``d lp / d init_k = E_0k bhat_0k / c_0``. One small matrix-vector product per step and
    direction, no logarithm inside the loop (the log-space form costs ~10x more)."""
    batch = np.broadcast_shapes(init.shape[:-1], trans.shape[:-2], log_emission.shape[:-2])
    t_len, k = log_emission.shape[-2], log_emission.shape[-1]
    trans = np.broadcast_to(trans, batch + (k, k))
    top = np.max(log_emission, axis=-1, keepdims=True)
    emission = np.broadcast_to(np.exp(log_emission - top), batch + (t_len, k))
    ahat = np.empty(batch + (t_len, k))
    scale = np.empty(batch + (t_len,))
    a = init * emission[..., 0, :]
    for t in range(t_len):
        if t:
            a = (ahat[..., t - 1, None, :] @ trans)[..., 0, :] * emission[..., t, :]
        scale[..., t] = np.sum(a, axis=-1)
        ahat[..., t, :] = a / scale[..., t, None]
    bhat = np.empty(batch + (t_len, k))
    bhat[..., t_len - 1, :] = 1.0
    for t in range(t_len - 2, -1, -1):
        bhat[..., t, :] = (trans @ (emission[..., t + 1, :] * bhat[..., t + 1, :])[..., None])[..., 0] \
            / scale[..., t + 1, None]
    lp = np.sum(np.log(scale), axis=-1) + np.sum(top[..., 0], axis=-1)
    gamma = ahat * bhat
    weighted = emission[..., 1:, :] * bhat[..., 1:, :] / scale[..., 1:, None]
    g_trans = np.swapaxes(ahat[..., :-1, :], -1, -2) @ weighted
    g_init = emission[..., 0, :] * bhat[..., 0, :] / scale[..., 0, None]
    return lp, gamma, g_trans, g_init


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
