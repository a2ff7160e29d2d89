"""Reference NUTS transition for the tests: a plain recursive transcription of Stan's
``base_nuts.hpp`` (``transition`` and ``build_tree``), with the leapfrog of
``exmc.nuts.integrator.leapfrog_steps``. ``exmc.nuts.tree`` builds the same trees iteratively and
with fewer numpy calls; ``test_tree`` checks that the two agree bit for bit.

Multinomial sampling over all states weighted by ``exp(H0 - H)``: biased progressive sampling at
the top level, uniform progressive sampling inside subtrees; the no-U-turn criterion on the merged
tree and across the two halves (Stan 2.21); divergence when the energy error exceeds
``max_delta_h`` (NaN counts as infinite); ``accept_prob`` is the mean of ``min(1, exp(H0 - H))``
over every leapfrog step taken.
"""
from __future__ import annotations

import math
from typing import Generator

import numpy as np

from exmc.nuts.integrator import LogpAndGrad, drive, hamiltonian, leapfrog_steps
from exmc.nuts.tree import DEFAULT_MAX_TREE_DEPTH, MAX_DELTA_H, Transition

_NEG_INF = -math.inf


def _log_sum_exp(a: float, b: float) -> float:
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


def _no_u_turn(v_minus: np.ndarray, v_plus: np.ndarray, rho: np.ndarray) -> bool:
    """Stan's ``compute_criterion``: both end velocities still point along the summed momentum."""
    return v_plus.dot(rho) > 0.0 and v_minus.dot(rho) > 0.0


def nuts_transition(
    logp_and_grad: LogpAndGrad,
    metric,
    q: np.ndarray,
    lp: float,
    grad: np.ndarray,
    step_size: float,
    rng: np.random.Generator,
    max_depth: int = DEFAULT_MAX_TREE_DEPTH,
    max_delta_h: float = MAX_DELTA_H,
) -> Transition:
    """Run one NUTS transition from ``q`` (with its log-density ``lp`` and gradient ``grad``),
    evaluating ``logp_and_grad`` directly. See :func:`nuts_transition_steps`."""
    steps = nuts_transition_steps(metric, q, lp, grad, step_size, rng, max_depth, max_delta_h)
    return drive(steps, logp_and_grad)


def nuts_transition_steps(
    metric,
    q: np.ndarray,
    lp: float,
    grad: np.ndarray,
    step_size: float,
    rng: np.random.Generator,
    max_depth: int = DEFAULT_MAX_TREE_DEPTH,
    max_delta_h: float = MAX_DELTA_H,
) -> Generator[np.ndarray, tuple[float, np.ndarray], Transition]:
    """One NUTS transition as a generator of log-density requests: it yields each new leapfrog
    position and expects its guarded ``(lp, grad)`` back (see ``integrator.drive``); it returns
    the :class:`Transition`.

    ``metric`` is a :mod:`exmc.nuts.metric` object; ``rng`` draws the momentum, the directions and
    the multinomial choices. Model failures arrive as ``lp = -inf`` and become divergences.
    """
    velocity = metric.velocity
    uniform = rng.random
    p0 = metric.sample_momentum(rng)
    v0 = velocity(p0)
    h0 = hamiltonian(lp, p0, v0)

    # The moving end of the trajectory during a build: (q, p, lp, grad).
    edge = (q, p0, lp, grad)
    n_leapfrog = 0
    sum_metro_prob = 0.0
    divergent = False

    def build(depth: int, eps: float):
        """Returns (valid, log_weight, rho, v_beg, v_end, p_beg, p_end, proposal)."""
        nonlocal edge, n_leapfrog, sum_metro_prob, divergent
        if depth == 0:
            q1, p1, lp1, g1, v1 = yield from leapfrog_steps(velocity, edge[0], edge[1], edge[3], eps)
            edge = (q1, p1, lp1, g1)
            n_leapfrog += 1
            h = -lp1 + 0.5 * float(p1.dot(v1))  # hamiltonian(), inlined: this is the hot path
            if h != h:
                h = math.inf
            if h - h0 > max_delta_h:
                divergent = True
            log_w = h0 - h
            sum_metro_prob += 1.0 if log_w > 0.0 else math.exp(log_w)
            return (not divergent, log_w, p1, v1, v1, p1, p1, (q1, p1, lp1, g1, v1))

        init = yield from build(depth - 1, eps)
        if not init[0]:
            return init
        final = yield from build(depth - 1, eps)
        if not final[0]:
            return final
        _, lw_init, rho_init, v_beg, v_init_end, p_beg, p_init_end, proposal = init
        _, lw_final, rho_final, v_final_beg, v_end, p_final_beg, p_end, proposal_final = final

        log_w = _log_sum_exp(lw_init, lw_final)
        if lw_final > log_w or uniform() < math.exp(lw_final - log_w):
            proposal = proposal_final
        rho = rho_init + rho_final
        persist = _no_u_turn(v_beg, v_end, rho)
        # Across the halves; when both halves are single states these two checks repeat the
        # first one exactly (same sums, same end velocities), so they are skipped.
        if persist and depth > 1:
            persist = (
                _no_u_turn(v_beg, v_final_beg, rho_init + p_final_beg)
                and _no_u_turn(v_init_end, v_end, rho_final + p_init_end)
            )
        return (persist, log_w, rho, v_beg, v_end, p_beg, p_end, proposal)

    fwd_end = bck_end = edge
    # Momenta / velocities at both ends of the forward and backward parts of the trajectory.
    p_fwd_fwd = p_fwd_bck = p_bck_fwd = p_bck_bck = p0
    v_fwd_fwd = v_fwd_bck = v_bck_fwd = v_bck_bck = v0
    rho = p0
    log_sum_weight = 0.0  # log(exp(H0 - H0))
    sample = (q, p0, lp, grad, v0)
    depth = 0

    while depth < max_depth:
        if uniform() > 0.5:
            edge = fwd_end
            rho_bck = rho
            p_bck_fwd, v_bck_fwd = p_fwd_fwd, v_fwd_fwd
            subtree = yield from build(depth, step_size)
            valid, lw_sub, rho_fwd, v_fwd_bck, v_fwd_fwd, p_fwd_bck, p_fwd_fwd, proposal = subtree
            fwd_end = edge
        else:
            edge = bck_end
            rho_fwd = rho
            p_fwd_bck, v_fwd_bck = p_bck_bck, v_bck_bck
            subtree = yield from build(depth, -step_size)
            valid, lw_sub, rho_bck, v_bck_fwd, v_bck_bck, p_bck_fwd, p_bck_bck, proposal = subtree
            bck_end = edge
        if not valid:
            break
        depth += 1
        if lw_sub > log_sum_weight or uniform() < math.exp(lw_sub - log_sum_weight):
            sample = proposal
        log_sum_weight = _log_sum_exp(log_sum_weight, lw_sub)

        rho = rho_bck + rho_fwd
        if not (
            _no_u_turn(v_bck_bck, v_fwd_fwd, rho)
            and _no_u_turn(v_bck_bck, v_fwd_bck, rho_bck + p_fwd_bck)
            and _no_u_turn(v_bck_fwd, v_fwd_fwd, rho_fwd + p_bck_fwd)
        ):
            break

    q_s, p_s, lp_s, g_s, v_s = sample
    return Transition(
        q=q_s,
        lp=lp_s,
        grad=g_s,
        accept_prob=sum_metro_prob / n_leapfrog,
        tree_depth=depth,
        n_steps=n_leapfrog,
        divergent=divergent,
        energy=hamiltonian(lp_s, p_s, v_s),
    )
