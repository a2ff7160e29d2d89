"""The NUTS transition of :mod:`exmc.nuts.tree` with its per-leapfrog work compiled by numba.

Optional (``pip install 'pynode-exmc[fast]'``): :func:`exmc.nuts.tree.transition_kernel` selects it
when numba imports, ``EXMC_TREE=numpy`` selects the plain path. The algorithm, its random draws and
their order are :func:`exmc.nuts.tree.nuts_transition_steps`'s exactly (Stan's multinomial NUTS,
the loop over leaves described there); the plain path stays the reference and the test oracle.

Why: on small models the tree's Python and numpy dispatch cost more than the gradient. The plain
path makes ~14 numpy calls per leapfrog step (leapfrog, energy, the merges' sums and U-turn dot
products), 0.3 µs each, plus the Python around them: ~8 µs per step at d = 21 (measured 2026-12-03
on this 2-core box, CPU time, a near-free gradient; 2.6-3.2 µs here), and ~16 µs per transition on
top in both paths (momentum, the drivers, the result). Here
one compiled call per leapfrog step finishes the step that the gradient answered (momentum kick,
velocity, energy, weight), does every merge that leaf closes and, after the subtree's last leaf,
the top-level merge and the next doubling's direction, then starts the next leapfrog step up to the
position whose gradient is needed. Python keeps the generator protocol for the vectorized driver
(:func:`nuts_transition_steps`) and a direct loop for the sequential one (:func:`nuts_transition`).

State lives in one workspace per transition (:class:`_Workspace`, kept per metric for the next):

- ``W`` ``(rows, dim)`` float: the trajectory's two ends (``q, p, grad, half·grad`` each), the
  leapfrog's half-step momentum, the whole trajectory's ``rho`` and end momenta/velocities, the
  sample, the metric's diagonal (or scale), and ``max_depth + 1`` subtree nodes of :data:`NODE_ROWS`
  rows each (``rho, v_beg, v_end, p_beg, p_end`` and the proposal ``q, p, grad, v``): node ``k``
  is the ``k``-th entry of the merge stack of :func:`exmc.nuts.tree._subtree`.
- ``S`` float: scalars (``H0``, step, half step, ``max_delta_h``, the acceptance sum, the
  log-sum-weight, the sample's log-density), each node's ``log_w`` and proposal log-density.
- ``I`` int: depth, max depth, direction, leaf, stack top, leapfrog count, divergence, the metric's
  kind, the bit generator's ``next_double`` and state (addresses, see below).

Uniform draws: numba cannot take a numpy ``Generator`` cheaply (~15 µs a call), so the kernel
calls the chain's bit generator itself, through the C interface numpy publishes for it
(``bit_generator.ctypes``: its ``next_double`` function and its state's address, kept in ``I``;
:func:`_next_double`). ``Generator.random()`` is that same call, so the kernel draws the plain
path's doubles in the plain path's order and leaves the stream where the plain path leaves it.
(It replaced a buffer filled by ``rng.random(out=)`` and rewound by ``PCG64.advance`` at the end
of each transition: ~2 µs a transition, measured 2026-12-03.) Numpy's lock around the generator
is not taken: a chain's generator belongs to the one thread running the chain. Only PCG64, the
generator chains are seeded with, takes this path (:func:`supports`); others take the plain one.

Floating point: products and sums are elementwise IEEE operations in the plain path's order (numba
does not contract ``a * b + c`` into FMAs without ``fastmath``), the dot products are BLAS ``ddot``
as in numpy and matrix products BLAS ``dgemv`` (numba calls scipy's BLAS, numpy its own build).
On this machine the two paths agree bit for bit: ``tests/exmc/nuts/test_tree.py`` checks both
against the recursive transcription of Stan (every metric kind, divergences, 255-leaf trees, where
each transition leaves the random stream) and whole chains, warmup included, with
either kernel. Arguments of other dtypes or layouts than float64 C-contiguous vectors (a model's
float32 gradient) work too: numba compiles a variant for them once, at that first call.
"""
from __future__ import annotations

import ctypes
import math
import weakref
from typing import Generator

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from exmc.nuts.integrator import failed_evaluation
from exmc.nuts.metric import DenseMetric, DiagonalMetric, LowRankMetric
from exmc.nuts.tree import Transition

# Metric kinds (I[I_KIND]): velocity = inverse * p; p @ matrix; the factored low-rank product.
DIAG, MATRIX, FACTORED = 0, 1, 2

# Rows of W. End rows come in two groups of four, forward then backward: q, p, grad, half * grad.
FWD, BCK = 0, 4
EQ, EP, EG, EHG = 0, 1, 2, 3
P_HALF, V_NEW, RHO, P_FF, V_FF, P_BB, V_BB, TMP, Q_S, P_S, G_S, V_S, MDIAG = range(8, 21)
NODE_BASE = 21
# Rows of a node, from NODE_BASE + NODE_ROWS * k.
N_RHO, N_VB, N_VE, N_PB, N_PE, N_Q, N_P, N_G, N_V = range(9)
NODE_ROWS = 9

# S: scalars, then (log_w, proposal lp) per node from S_NODE.
S_H0, S_EPS, S_HALF, S_MAXDH, S_METRO, S_LSW, S_LP_S, S_ENERGY = range(8)
S_NODE = 8

# I: integer state.
# I_RNG_NEXT, I_RNG_STATE: the bit generator's next_double function and its state (addresses).
I_DEPTH, I_MAXD, I_FWD, I_LEAF, I_TOP, I_NLEAP, I_DIV, I_KIND, I_RNG_NEXT, I_RNG_STATE = range(10)
I_SIZE = 10

# Return flag of the kernels: a position waits in q_out for its gradient (0: the transition is over).
NEED_GRADIENT = 1

_INF = math.inf
_NEG_INF = -math.inf


@njit(cache=True)
def _dot(a, b):
    return np.dot(a, b)


@njit(cache=True)
def _velocity(W, I, M, C, p, out):
    """``out = M⁻¹ p`` as the metric classes compute it (see :mod:`exmc.nuts.metric`)."""
    kind = I[I_KIND]
    d = p.shape[0]
    if kind == DIAG:
        inv = W[MDIAG]
        for i in range(d):
            out[i] = inv[i] * p[i]
    elif kind == MATRIX:
        np.dot(p, M, out)  # into out: no temporary (BLAS dgemv either way)
    else:
        scale = W[MDIAG]
        x = np.empty(d)
        for i in range(d):
            x[i] = p[i] * scale[i]
        t = np.dot(x, M) * C
        y = np.dot(t, M.T)
        for i in range(d):
            out[i] = scale[i] * (x[i] + y[i])


@njit(cache=True)
def _log_sum_exp(a, b):
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@njit(cache=True)
def _no_u_turn(v_minus, v_plus, rho):
    return _dot(v_plus, rho) > 0.0 and _dot(v_minus, rho) > 0.0


@intrinsic
def _next_double(typingctx, function, state):
    """``function(state)`` for the integer addresses of a C ``double (*)(void *)`` and its
    argument: a numpy bit generator's ``next_double`` (see the module notes)."""
    if not (isinstance(function, types.Integer) and isinstance(state, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        kind = ir.FunctionType(ir.DoubleType(), [cgutils.voidptr_t])
        call = builder.inttoptr(args[0], kind.as_pointer())
        return builder.call(call, [builder.inttoptr(args[1], cgutils.voidptr_t)])
    return types.float64(function, state), codegen


@njit(cache=True)
def _uniform(I):
    """The chain's next ``rng.random()``."""
    return _next_double(I[I_RNG_NEXT], I[I_RNG_STATE])


@njit(cache=True)
def _along(out, a, b, scale, forward):
    """``out = a + scale * b`` in the direction of integration, ``a - scale * b`` backwards: the
    kicks (``scale`` 1) and the drift (``scale`` the step size). Bit for bit the plain ``a ± b`` and
    ``a ± eps * b``: ``1.0 * b`` is exact, and ``a + (-s) * b`` is ``a - s * b`` in IEEE."""
    s = scale if forward else -scale
    for i in range(out.shape[0]):
        out[i] = a[i] + s * b[i]


@njit(cache=True)
def _begin_leaf(W, S, I, M, C, q_out):
    """The first half of a leapfrog step from the current end: half kick, drift into ``q_out``."""
    e = FWD if I[I_FWD] else BCK
    q, p, hg, ph = W[e + EQ], W[e + EP], W[e + EHG], W[P_HALF]
    _along(ph, p, hg, 1.0, I[I_FWD])
    v = W[V_NEW]
    _velocity(W, I, M, C, ph, v)
    eps = S[S_EPS]
    _along(q_out, q, v, eps, I[I_FWD])
    q[:] = q_out  # the end moves there; step() finishes the leapfrog step once its gradient is known


@njit(cache=True)
def _begin_doubling(W, S, I, M, C, q_out):
    I[I_FWD] = 1 if _uniform(I) > 0.5 else 0
    I[I_LEAF] = 0
    I[I_TOP] = 0
    _begin_leaf(W, S, I, M, C, q_out)
    return NEED_GRADIENT


@njit(cache=True)
def start(W, S, I, M, C, q, p0, g, lp, q_out):
    """Set up a transition from ``(q, p0, lp, g)`` (step, ``max_delta_h`` and the metric already in
    the workspace) and begin its first leapfrog step; returns the flags."""
    d = q.shape[0]
    half = S[S_HALF]
    for e in (FWD, BCK):
        W[e + EQ, :] = q
        W[e + EP, :] = p0
        W[e + EG, :] = g
        for i in range(d):
            W[e + EHG, i] = half * g[i]
    v0 = W[V_FF]
    _velocity(W, I, M, C, p0, v0)
    W[V_BB, :] = v0
    W[P_FF, :] = p0
    W[P_BB, :] = p0
    W[RHO, :] = p0
    h0 = -lp + 0.5 * _dot(p0, v0)
    if h0 != h0:
        h0 = np.inf
    S[S_H0] = h0
    S[S_METRO] = 0.0
    S[S_LSW] = 0.0
    S[S_LP_S] = lp
    W[Q_S, :] = q
    W[P_S, :] = p0
    W[G_S, :] = g
    W[V_S, :] = v0
    I[I_DEPTH] = 0
    I[I_NLEAP] = 0
    I[I_DIV] = 0
    return _begin_doubling(W, S, I, M, C, q_out)


@njit(cache=True)
def _merge(W, S, I, level):
    """Merge the two newest stack nodes (``top - 1`` the first half, ``top`` the second) into
    ``top - 1``, as :func:`exmc.nuts.tree._subtree` does; False on a U-turn."""
    top = I[I_TOP] - 1  # the newest node
    a = NODE_BASE + NODE_ROWS * (top - 1)
    b = a + NODE_ROWS
    sa = S_NODE + 2 * (top - 1)
    sb = sa + 2
    lw_init, lw_final = S[sa], S[sb]
    log_w = _log_sum_exp(lw_init, lw_final)
    take_final = lw_final > log_w or _uniform(I) < math.exp(lw_final - log_w)
    rho = W[TMP]
    rho_init, rho_final = W[a + N_RHO], W[b + N_RHO]
    d = rho.shape[0]
    for i in range(d):
        rho[i] = rho_init[i] + rho_final[i]
    persist = _no_u_turn(W[a + N_VB], W[b + N_VE], rho)
    if persist and level > 1:
        cross = np.empty(d)
        p_final_beg = W[b + N_PB]
        for i in range(d):
            cross[i] = rho_init[i] + p_final_beg[i]
        persist = _no_u_turn(W[a + N_VB], W[b + N_VB], cross)
        if persist:
            p_init_end = W[a + N_PE]
            for i in range(d):
                cross[i] = rho_final[i] + p_init_end[i]
            persist = _no_u_turn(W[a + N_VE], W[b + N_VE], cross)
    if not persist:
        return False
    S[sa] = log_w
    W[a + N_RHO, :] = rho
    W[a + N_VE, :] = W[b + N_VE]
    W[a + N_PE, :] = W[b + N_PE]
    if take_final:
        W[a + N_Q:a + N_V + 1, :] = W[b + N_Q:b + N_V + 1]
        S[sa + 1] = S[sb + 1]
    I[I_TOP] = top
    return True


@njit(cache=True)
def _top_level(W, S, I):
    """After a complete subtree (node 0): Stan's biased progressive sampling and the no-U-turn
    criterion over the whole trajectory (see ``nuts_transition_steps``); False to stop."""
    n = NODE_BASE
    lw_sub = S[S_NODE]
    d = W.shape[1]
    rho_sub, rho_old = W[n + N_RHO], W[RHO]
    rho = W[TMP]
    for i in range(d):
        rho[i] = rho_old[i] + rho_sub[i]  # rho_bck + rho_fwd, either way round (IEEE + commutes)
    if I[I_FWD]:
        # old trajectory = backward part; p_bck_fwd/v_bck_fwd = the old forward end.
        p_bck_fwd, v_bck_fwd = W[P_FF], W[V_FF]
        p_fwd_bck, v_fwd_bck = W[n + N_PB], W[n + N_VB]
        rho_bck, rho_fwd = rho_old, rho_sub
        v_bb, v_ff = W[V_BB], W[n + N_VE]
    else:
        p_fwd_bck, v_fwd_bck = W[P_BB], W[V_BB]
        p_bck_fwd, v_bck_fwd = W[n + N_PB], W[n + N_VB]
        rho_fwd, rho_bck = rho_old, rho_sub
        v_bb, v_ff = W[n + N_VE], W[V_FF]
    if lw_sub > S[S_LSW] or _uniform(I) < math.exp(lw_sub - S[S_LSW]):
        W[Q_S:V_S + 1, :] = W[n + N_Q:n + N_V + 1]
        S[S_LP_S] = S[S_NODE + 1]
    S[S_LSW] = _log_sum_exp(S[S_LSW], lw_sub)
    cross = np.empty(d)
    persist = _no_u_turn(v_bb, v_ff, rho)
    if persist:
        for i in range(d):
            cross[i] = rho_bck[i] + p_fwd_bck[i]
        persist = _no_u_turn(v_bb, v_fwd_bck, cross)
    if persist:
        for i in range(d):
            cross[i] = rho_fwd[i] + p_bck_fwd[i]
        persist = _no_u_turn(v_bck_fwd, v_ff, cross)
    # The new trajectory's ends and rho (the checks above read the old ones first).
    if I[I_FWD]:
        W[P_FF, :] = W[n + N_PE]
        W[V_FF, :] = W[n + N_VE]
    else:
        W[P_BB, :] = W[n + N_PE]
        W[V_BB, :] = W[n + N_VE]
    W[RHO, :] = rho
    return persist


@njit(cache=True)
def step(W, S, I, M, C, g, lp, q_out):
    """Finish the leapfrog step whose position got ``(lp, g)``, do what that leaf closes, and begin
    the next step into ``q_out``; returns the flags (0: the transition is over, and the sample's
    energy is in ``S[S_ENERGY]``)."""
    flags = _step(W, S, I, M, C, g, lp, q_out)
    if flags == 0:
        h = -S[S_LP_S] + 0.5 * _dot(W[P_S], W[V_S])  # integrator.hamiltonian
        S[S_ENERGY] = np.inf if h != h else h
    return flags


@njit(cache=True)
def _step(W, S, I, M, C, g, lp, q_out):
    e = FWD if I[I_FWD] else BCK
    q, p, ge, hg, ph, v = W[e + EQ], W[e + EP], W[e + EG], W[e + EHG], W[P_HALF], W[V_NEW]
    d = q.shape[0]
    half = S[S_HALF]
    ge[:] = g
    for i in range(d):
        hg[i] = half * g[i]
    _along(p, ph, hg, 1.0, I[I_FWD])
    _velocity(W, I, M, C, p, v)
    h = -lp + 0.5 * _dot(p, v)
    if h != h:
        h = np.inf
    h0 = S[S_H0]
    log_w = h0 - h
    S[S_METRO] += 1.0 if log_w > 0.0 else math.exp(log_w)
    leaf = I[I_LEAF]
    I[I_NLEAP] += 1
    if h - h0 > S[S_MAXDH]:
        I[I_DIV] = 1
        return 0
    top = I[I_TOP]
    k = NODE_BASE + NODE_ROWS * top
    W[k + N_RHO, :] = p
    W[k + N_VB, :] = v
    W[k + N_VE, :] = v
    W[k + N_PB, :] = p
    W[k + N_PE, :] = p
    W[k + N_Q, :] = q
    W[k + N_P, :] = p
    W[k + N_G, :] = g
    W[k + N_V, :] = v
    S[S_NODE + 2 * top] = log_w
    S[S_NODE + 2 * top + 1] = lp
    I[I_TOP] = top + 1
    level = 1
    closed = leaf + 1
    while not closed & 1:
        if not _merge(W, S, I, level):
            return 0
        level += 1
        closed >>= 1
    leaf += 1
    I[I_LEAF] = leaf
    if leaf < (1 << I[I_DEPTH]):
        _begin_leaf(W, S, I, M, C, q_out)
        return NEED_GRADIENT
    I[I_DEPTH] += 1
    if not _top_level(W, S, I):
        return 0
    if I[I_DEPTH] >= I[I_MAXD]:
        return 0
    return _begin_doubling(W, S, I, M, C, q_out)


class _Workspace:
    """The arrays of one transition in progress (see the module notes); reused by later
    transitions with the same metric and ``max_depth`` once this one returned."""

    def __init__(self, metric, dim: int, max_depth: int) -> None:
        self.max_depth = max_depth
        self.W = np.zeros((NODE_BASE + NODE_ROWS * (max_depth + 1), dim))
        self.S = np.zeros(S_NODE + 2 * (max_depth + 1))
        self.I = np.zeros(I_SIZE, dtype=np.int64)
        self.I[I_MAXD] = max_depth
        self.I[I_RNG_NEXT] = _pcg64_next_double()
        self.M, self.C = self.W, self.S  # placeholders of the right types for the diagonal metric
        self.step_size = self.max_delta_h = math.nan  # what S holds (set by the first transition)
        if type(metric) is DiagonalMetric:
            self.I[I_KIND] = DIAG
            self.W[MDIAG] = metric.inverse
        elif type(metric) is DenseMetric or (type(metric) is LowRankMetric and metric._dense):
            self.I[I_KIND] = MATRIX
            self.M = np.ascontiguousarray(metric.inverse)
        else:  # LowRankMetric, factored
            self.I[I_KIND] = FACTORED
            self.W[MDIAG] = metric.scale
            self.M = np.ascontiguousarray(metric.vectors)
            self.C = np.ascontiguousarray(metric._v_coef)


#: metric -> its idle workspaces. A chain's transitions run one after another, so one workspace per
#: metric serves it; lockstep chains sharing a metric object take one each.
_WORKSPACES: "weakref.WeakKeyDictionary[object, list[_Workspace]]" = weakref.WeakKeyDictionary()


def supports(metric, rng: np.random.Generator) -> bool:
    """Whether this path can run a transition with ``metric`` and ``rng`` (the metric classes of
    :mod:`exmc.nuts.metric`, a PCG64 generator); otherwise the plain path runs it."""
    return type(metric) in (DiagonalMetric, DenseMetric, LowRankMetric) and type(rng.bit_generator) is np.random.PCG64


def _pcg64_next_double() -> int:
    """The address of PCG64's ``next_double`` C function (the same for every PCG64 of a process)."""
    global _NEXT_DOUBLE
    if _NEXT_DOUBLE is None:
        _NEXT_DOUBLE = ctypes.cast(np.random.PCG64(0).ctypes.next_double, ctypes.c_void_p).value
    return _NEXT_DOUBLE


#: Cache of :func:`_pcg64_next_double`.
_NEXT_DOUBLE: int | None = None


def _begin(metric, q, lp, grad, step_size, rng, max_depth, max_delta_h):
    """Take ``metric``'s idle workspace (or make one), draw the momentum and begin the
    transition's first leapfrog step: returns ``(ws, idle, q_out, status)``."""
    idle = _WORKSPACES.get(metric)
    if idle is None:
        idle = _WORKSPACES[metric] = []
    ws = idle.pop() if idle and idle[-1].max_depth == max_depth else None
    dim = q.shape[-1]
    if ws is None or ws.W.shape[1] != dim:
        ws = _Workspace(metric, dim, max_depth)
    S, I = ws.S, ws.I
    p0 = metric.sample_momentum(rng)
    I[I_RNG_STATE] = rng.bit_generator.ctypes.state_address  # rng outlives the transition
    if step_size != ws.step_size or max_delta_h != ws.max_delta_h:  # after warmup they stay fixed
        S[S_EPS] = ws.step_size = step_size
        S[S_HALF] = 0.5 * step_size
        S[S_MAXDH] = ws.max_delta_h = max_delta_h
    q_out = np.empty(dim)
    return ws, idle, q_out, start(ws.W, S, I, ws.M, ws.C, q, p0, grad, lp, q_out)


def _finish(ws: _Workspace, idle: list) -> Transition:
    """Give the workspace back and read the result."""
    W, S, I = ws.W, ws.S, ws.I
    depth, _, _, _, _, n_leapfrog, divergent = I[:7].tolist()
    _, _, _, _, metro, _, lp_s, energy = S[:8].tolist()
    idle.append(ws)
    return Transition(W[Q_S].copy(), lp_s, W[G_S].copy(), metro / n_leapfrog, depth, n_leapfrog, divergent == 1,
                      energy)


def nuts_transition_steps(metric, q, lp, grad, step_size, rng, max_depth, max_delta_h
                          ) -> Generator[np.ndarray, tuple[float, np.ndarray], Transition]:
    """One NUTS transition, as :func:`exmc.nuts.tree.nuts_transition_steps` (same requests, same
    random draws, same :class:`~exmc.nuts.tree.Transition`) for a metric and generator this path
    :func:`supports`."""
    ws, idle, q_out, status = _begin(metric, q, lp, grad, step_size, rng, max_depth, max_delta_h)
    W, S, I, M, C = ws.W, ws.S, ws.I, ws.M, ws.C
    while status:
        lp, g = yield q_out
        q_out = np.empty(q.shape[-1])
        status = step(W, S, I, M, C, g, lp, q_out)
    return _finish(ws, idle)


def nuts_transition(logp_and_grad, metric, q, lp, grad, step_size, rng, max_depth, max_delta_h) -> Transition:
    """:func:`nuts_transition_steps` with every request answered at once by ``logp_and_grad``,
    guarded as :func:`exmc.nuts.integrator.guarded_logp_and_grad` guards it: the same
    transition, without a generator between the kernel and the log-density (the sequential
    chain's driver, ``exmc.nuts.sampler.run_chain``). Per leapfrog step that saves the resumes of
    three generators, ``drive``'s send and the guard's call: 5.7 -> 4.8 µs of sampler CPU per step
    on the bench's logistic model (measured 2026-12-03 with its gradients replayed)."""
    ws, idle, q_out, status = _begin(metric, q, lp, grad, step_size, rng, max_depth, max_delta_h)
    W, S, I, M, C = ws.W, ws.S, ws.I, ws.M, ws.C
    dim, empty, kernel = q.shape[-1], np.empty, step
    while status:
        try:
            lp, g = logp_and_grad(q_out)
        except Exception as exc:  # noqa: BLE001 - domain errors are divergences, others LogDensityError
            lp, g = failed_evaluation(exc, q_out)
        else:
            if type(lp) is not float:
                lp = float(lp)
            if lp != lp or lp == _INF:  # guarded_logp_and_grad: no valid density there
                lp, g = _NEG_INF, np.zeros_like(q_out)
        q_out = empty(dim)
        status = kernel(W, S, I, M, C, g, lp, q_out)
    return _finish(ws, idle)


def warm_up() -> None:
    """Load (or compile, the first time on a machine) the kernels, so the first transition does
    not pay it: ~0.6 s per process from numba's on-disk cache."""
    from exmc.nuts.metric import DiagonalMetric as _Diag

    metric = _Diag(np.ones(2))
    rng = np.random.default_rng(0)
    steps = nuts_transition_steps(metric, np.zeros(2), 0.0, np.zeros(2), 0.1, rng, 2, 1000.0)
    try:
        q = next(steps)
        while True:
            q = steps.send((-0.5 * float(q.dot(q)), -q))
    except StopIteration:
        pass
