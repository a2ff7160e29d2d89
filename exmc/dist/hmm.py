"""HMM{init, trans, log_emission}: a hidden Markov model with its discrete states marginalised out.

``init`` (``K``: the initial state probabilities), ``trans`` (``K x K``: row ``i`` is the
distribution of the next state given state ``i``) and ``log_emission`` (``T x K``: the log-likelihood
of observation ``t`` under state ``k``, computed by dets from the data and the parameters) give the
likelihood of the whole observed sequence by the forward algorithm in log space::

    alpha_0 = log init + le_0,   alpha_t = logsumexp_i(alpha_{t-1,i} + log trans_ij) + le_t,
    lp = logsumexp(alpha_{T-1})

(Stan's ``hmm_marginal``). Gradients come from the backward pass ``beta``: with the state
marginals ``gamma_t = exp(alpha_t + beta_t - lp)``, ``d lp / d le_t = gamma_t``, ``d lp / d init =
gamma_0 / init`` and ``d lp / d trans_ij = sum_t exp(alpha_{t-1,i} + le_tj + beta_tj - lp)``.

The rv is a carrier: it is observed with a dummy value (``Builder.hmm`` does both steps), its
log-density does not depend on the value, and it contributes one log-likelihood per sequence.
Leading batch axes (chains, several sequences) broadcast.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from exmc._numeric import as_float
from exmc.dist.base import Distribution

__all__ = ["HMM", "forward_backward"]


def forward_backward(log_init: np.ndarray, log_trans: np.ndarray, log_emission: np.ndarray):
    """``(lp, alpha, beta)`` for log-space inputs ``(..., K)``, ``(..., K, K)``, ``(..., T, K)``."""
    batch = np.broadcast_shapes(log_init.shape[:-1], log_trans.shape[:-2], log_emission.shape[:-2])
    t_len, k = log_emission.shape[-2], log_emission.shape[-1]
    log_trans = np.broadcast_to(log_trans, batch + (k, k))
    log_emission = np.broadcast_to(log_emission, batch + (t_len, k))
    alpha = np.empty(batch + (t_len, k))
    beta = np.empty(batch + (t_len, k))
    alpha[..., 0, :] = log_init + log_emission[..., 0, :]
    for t in range(1, t_len):
        alpha[..., t, :] = logsumexp(alpha[..., t - 1, :, None] + log_trans, axis=-2) + log_emission[..., t, :]
    beta[..., t_len - 1, :] = 0.0
    for t in range(t_len - 2, -1, -1):
        beta[..., t, :] = logsumexp(log_trans + (log_emission[..., t + 1, :] + beta[..., t + 1, :])[..., None, :],
                                    axis=-1)
    return logsumexp(alpha[..., t_len - 1, :], axis=-1), alpha, beta


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
        with np.errstate(divide="ignore"):
            log_init, log_trans = np.log(init), np.log(trans)
        lp, alpha, beta = forward_backward(log_init, log_trans, le)
        norm = lp[..., None, None]
        gamma = np.exp(alpha + beta - norm)
        # d lp / d trans_ij = sum_t exp(alpha_{t-1,i} + le_tj + beta_tj - lp) (d/d log trans over trans)
        after = le[..., 1:, :] + beta[..., 1:, :]
        g_trans = np.sum(np.exp(alpha[..., :-1, :, None] + after[..., None, :] - norm[..., None]), axis=-3)
        g_init = gamma[..., 0, :] / np.where(init > 0, init, 1.0)
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
