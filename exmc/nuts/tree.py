"""One NUTS transition: Stan's multinomial no-U-turn sampler (``base_nuts.hpp``).

The trajectory doubles in a random direction until the generalized no-U-turn criterion fails, a
divergence occurs or ``max_depth`` doublings were made. The draw is chosen by multinomial sampling
over all states, weighted by ``exp(H0 - H)``:

- *biased progressive sampling* at the top level: after each doubling, the new subtree's proposal
  replaces the current sample with probability ``min(1, w_subtree / w_old)`` (favouring states far
  from the start);
- *uniform progressive sampling* inside subtrees: the second half's proposal wins with probability
  ``w_final / (w_init + w_final)``.

The criterion is checked on the merged tree and, since Stan 2.21 (the 2019 fix), also across the two
halves: ``rho_init + p_final_beg`` and ``rho_final + p_init_end``, which catches U-turns that are
invisible when each half has an even number of states. A leapfrog step whose energy error exceeds
``max_delta_h`` (NaN counts as infinite) is a divergence: the subtree is discarded and the trajectory
stops. ``accept_prob`` is the mean of ``min(1, exp(H0 - H))`` over every leapfrog step taken,
including those of rejected subtrees (what step-size adaptation targets).

Why the subtree builder is a loop, not Stan's recursion: Stan's ``build_tree(depth)`` builds the
first half, then the second, then merges them, and any failure returns straight to the top. That
is a post-order walk over the leaves, so :func:`_subtree` takes the leaves in order and, after leaf
``i``, merges the two newest subtrees once for every trailing one bit of ``i`` (leaf 3 closes the
depth-1 pair ``2,3`` and then the depth-2 subtree ``0..3``). The merges, their random draws and
their order are Stan's exactly; what the loop saves is the Python cost of the recursion, since every
log-density request of a generator is passed up through each enclosing ``yield from``. Bit-for-bit
agreement with the recursive transcription is tested.

All arrays are treated as immutable, so states are shared between tree nodes without copies.

Why the subtree nodes are plain 7-tuples ``(log_w, rho, v_beg, v_end, p_beg, p_end, proposal)``
and not NamedTuples: one is built per leapfrog step and per merge, and building a NamedTuple of
seven fields costs 5-8x a tuple (measured 2026-12-03: ~1.5 µs against ~0.19 µs on a loaded box,
~0.9 µs with ``tuple.__new__``), about 1 µs more per leapfrog step, a tenth of the tree's whole
cost. :func:`_subtree`'s docstring names the fields; the unpacking sites name them again.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache, partial
from typing import Callable, Generator, NamedTuple

import numpy as np

from exmc.accel import import_error
from exmc.nuts.integrator import LogpAndGrad, drive, hamiltonian
from exmc.nuts.metric import DiagonalMetric

# Stan's base_nuts default ``max_deltaH_``: an energy error above this marks a divergence.
MAX_DELTA_H = 1000.0
# Stan's default ``max_depth`` (CmdStan's ``max_depth=10``): at most 2**10 - 1 leapfrog steps.
DEFAULT_MAX_TREE_DEPTH = 10

_NEG_INF = -math.inf
_INF = math.inf


class Transition(NamedTuple):
    """The state after one transition and its sampler statistics (Stan's ``*__`` columns)."""

    q: np.ndarray
    lp: float
    grad: np.ndarray
    accept_prob: float
    tree_depth: int
    n_steps: int
    divergent: bool
    energy: float


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


@lru_cache(maxsize=4)
def _step_arrays(step_size: float, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(step, half)``: ``step_size`` and ``step_size / 2`` as read-only ``(dim,)`` arrays.

    Arrays because numpy multiplies two small arrays faster than an array by a Python float (the
    scalar operand's type resolution costs ~0.5 µs a call); each product is the same IEEE
    multiplication either way. Cached: after warmup the step size no longer changes. Filled with
    ``ndarray.fill`` because ``np.full`` is a Python wrapper three times slower (~1.5 µs for both
    arrays), paid on every warmup iteration.
    """
    step, half = np.empty(dim), np.empty(dim)
    step.fill(step_size)
    half.fill(0.5 * step_size)
    step.flags.writeable = half.flags.writeable = False
    return step, half


def _velocity_function(metric) -> Callable[[np.ndarray], np.ndarray]:
    """``metric.velocity``; for the diagonal metric the same product ``inverse * p`` as one C-level
    call (``partial(np.multiply, inverse)``: no Python frame, two calls per leapfrog step)."""
    if type(metric) is DiagonalMetric:
        return partial(np.multiply, metric.inverse)
    return metric.velocity


def _subtree(
    velocity: Callable[[np.ndarray], np.ndarray],
    uniform: Callable[[], float],
    advance: Callable[[np.ndarray, np.ndarray], np.ndarray],
    step: np.ndarray,
    half: np.ndarray,
    edge: tuple,
    depth: int,
    h0: float,
    max_delta_h: float,
    sum_metro_prob: float,
) -> Generator[np.ndarray, tuple[float, np.ndarray], tuple]:
    """Stan's ``build_tree(depth)`` from the trajectory end ``edge = (q, p, grad, half * grad)``:
    ``2**depth`` leapfrog steps, merged bottom-up as they come (see the module notes).

    The direction of time is ``advance``: ``np.add`` forward, ``np.subtract`` backward, with the
    positive ``step`` and ``half`` arrays of :func:`_step_arrays` (``x + (-s) * y`` and
    ``x - s * y`` are the same IEEE operation, so this is Stan's leapfrog with a signed step size).
    ``half * grad`` of one leaf's end is the next leaf's first half kick, so it is carried along
    rather than recomputed.

    Yields each new position and expects its guarded ``(lp, grad)``. ``sum_metro_prob`` is the
    transition's running sum of acceptance probabilities, continued leaf by leaf (a separate
    subtree sum would round differently). Returns ``(valid, n_steps, sum_metro_prob, divergent,
    new_edge, node)`` with ``node = (log_w, rho, v_beg, v_end, p_beg, p_end, proposal)`` and
    ``proposal = (q, p, lp, grad, v)``; when ``valid`` is false (a divergence or a U-turn inside)
    only the counters and ``divergent`` are meaningful.
    """
    exp = math.exp
    q, p, g, half_g = edge
    stack: list[tuple] = []
    for leaf in range(1 << depth):
        # Leapfrog (Stan's expl_leapfrog; see integrator.leapfrog_steps), inlined: the hot path.
        p_half = advance(p, half_g)
        q = advance(q, step * velocity(p_half))
        lp, g = yield q
        half_g = half * g
        p = advance(p_half, half_g)
        v = velocity(p)
        h = -lp + 0.5 * float(p.dot(v))
        if h != h:
            h = _INF
        log_w = h0 - h
        sum_metro_prob += 1.0 if log_w > 0.0 else exp(log_w)
        if h - h0 > max_delta_h:
            return False, leaf + 1, sum_metro_prob, True, None, None
        node = (log_w, p, v, v, p, p, (q, p, lp, g, v))
        level = 1
        closed = leaf + 1
        while not closed & 1:  # this leaf completes a subtree of depth `level`: merge its halves
            lw_init, rho_init, v_beg, v_init_end, p_beg, p_init_end, proposal = stack.pop()
            lw_final, rho_final, v_final_beg, v_end, p_final_beg, p_end, proposal_final = node
            log_w = _log_sum_exp(lw_init, lw_final)
            if lw_final > log_w or uniform() < exp(lw_final - log_w):
                proposal = proposal_final
            rho = rho_init + rho_final
            persist = _no_u_turn(v_beg, v_end, rho)
            # Across the halves; when both halves are single states these two checks repeat the
            # first one exactly (same sums, same end velocities), so they are skipped.
            if persist and level > 1:
                persist = (
                    _no_u_turn(v_beg, v_final_beg, rho_init + p_final_beg)
                    and _no_u_turn(v_init_end, v_end, rho_final + p_init_end)
                )
            if not persist:
                return False, leaf + 1, sum_metro_prob, False, None, None
            node = (log_w, rho, v_beg, v_end, p_beg, p_end, proposal)
            level += 1
            closed >>= 1
        stack.append(node)
    return True, 1 << depth, sum_metro_prob, False, (q, p, g, half_g), stack[0]


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
    velocity = _velocity_function(metric)
    uniform = rng.random
    p0 = metric.sample_momentum(rng)
    v0 = velocity(p0)
    h0 = hamiltonian(lp, p0, v0)
    step, half = _step_arrays(step_size, p0.shape[-1])

    n_leapfrog = 0
    sum_metro_prob = 0.0
    divergent = False
    fwd_end = bck_end = (q, p0, grad, half * grad)
    # Momenta / velocities at both ends of the forward and backward parts of the trajectory.
    p_fwd_fwd = p_fwd_bck = p_bck_fwd = p_bck_bck = p0
    v_fwd_fwd = v_fwd_bck = v_bck_fwd = v_bck_bck = v0
    rho = p0
    log_sum_weight = 0.0  # log(exp(H0 - H0))
    sample = (q, p0, lp, grad, v0)
    depth = 0

    while depth < max_depth:
        forward = uniform() > 0.5
        subtree = yield from _subtree(
            velocity, uniform, np.add if forward else np.subtract, step, half, fwd_end if forward else bck_end,
            depth, h0, max_delta_h, sum_metro_prob,
        )
        valid, n, sum_metro_prob, divergent, edge, node = subtree
        n_leapfrog += n
        if not valid:
            break
        if forward:
            fwd_end = edge
            rho_bck = rho
            p_bck_fwd, v_bck_fwd = p_fwd_fwd, v_fwd_fwd
            lw_sub, rho_fwd, v_fwd_bck, v_fwd_fwd, p_fwd_bck, p_fwd_fwd, proposal = node
        else:
            bck_end = edge
            rho_fwd = rho
            p_fwd_bck, v_fwd_bck = p_bck_bck, v_bck_bck
            lw_sub, rho_bck, v_bck_fwd, v_bck_bck, p_bck_fwd, p_bck_bck, proposal = node
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


#: Environment variable choosing the implementation of a transition, read when a chain starts (in
#: the process running it: pool workers read theirs when they start). ``numpy``: this module;
#: ``numba``: the compiled kernel of :mod:`exmc.nuts.tree_numba` (the ``fast`` extra); ``auto``
#: (default, also when unset or empty): ``numba`` when numba imports, else ``numpy``.
TREE_ENV = "EXMC_TREE"
TREE_KERNELS = ("numpy", "numba")


def transition_kernel() -> str:
    """The implementation :data:`TREE_ENV` selects here: ``"numpy"`` or ``"numba"``.

    Raises ``ValueError`` naming the variable for a value other than ``auto``, ``numpy`` and
    ``numba``, and ``ImportError`` for ``numba`` when numba (or the kernel) does not import."""
    choice = os.environ.get(TREE_ENV, "").strip().lower() or "auto"
    if choice not in ("auto",) + TREE_KERNELS:
        raise ValueError(f"{TREE_ENV}={os.environ[TREE_ENV]!r}: expected auto, numpy or numba")
    if choice == "numpy":
        return "numpy"
    error = _kernel_import_error()
    if error is None:
        return "numba"
    if choice == "numba":
        raise error
    return "numpy"


def _kernel_import_error() -> ImportError | None:
    """Import :mod:`exmc.nuts.tree_numba` once per process (numba's import; nothing compiled is
    loaded yet): ``None`` when it imports, else its ``ImportError``. The first chain and the
    start-up warm-up thread (``exmc.nuts.sampler``) ask at once, so the attempt is made once,
    under a lock, and its outcome kept (:func:`exmc.accel.import_error`)."""
    return import_error("exmc.nuts.tree_numba")


def transition_steps_function(kernel: str) -> Callable[..., Generator[np.ndarray, tuple[float, np.ndarray], Transition]]:
    """:func:`nuts_transition_steps` for ``kernel="numpy"``; for ``"numba"`` the compiled kernel's
    (same arguments, requests, random draws and result), which hands metrics or generators it does
    not support (:func:`exmc.nuts.tree_numba.supports`) to :func:`nuts_transition_steps`."""
    return _kernel_function(kernel, direct=False)


def transition_function(kernel: str) -> Callable[..., Transition]:
    """The transition of :func:`transition_steps_function` evaluating the log-density itself:
    ``transition(logp_and_grad, metric, q, lp, grad, step_size, rng, max_depth, max_delta_h)``,
    :func:`nuts_transition` for ``"numpy"``, for ``"numba"`` the compiled kernel's direct loop
    (:func:`exmc.nuts.tree_numba.nuts_transition`; the same draws bit for bit)."""
    return _kernel_function(kernel, direct=True)


def _kernel_function(kernel: str, direct: bool) -> Callable:
    plain = nuts_transition if direct else nuts_transition_steps
    if kernel == "numpy":
        return plain
    if kernel != "numba":
        raise ValueError(f"unknown tree kernel {kernel!r}: expected one of {TREE_KERNELS}")
    from exmc.nuts import tree_numba

    supports = tree_numba.supports
    if direct:
        compiled = tree_numba.nuts_transition

        def transition(logp_and_grad, metric, q, lp, grad, step_size, rng, max_depth=DEFAULT_MAX_TREE_DEPTH,
                       max_delta_h=MAX_DELTA_H):
            run = compiled if supports(metric, rng) else plain
            return run(logp_and_grad, metric, q, lp, grad, step_size, rng, max_depth, max_delta_h)
        return transition
    compiled_steps = tree_numba.nuts_transition_steps

    def steps(metric, q, lp, grad, step_size, rng, max_depth=DEFAULT_MAX_TREE_DEPTH, max_delta_h=MAX_DELTA_H):
        run = compiled_steps if supports(metric, rng) else plain
        return run(metric, q, lp, grad, step_size, rng, max_depth, max_delta_h)
    return steps
