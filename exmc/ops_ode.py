"""``ode``: the solution of ``dy/dt = f(t, y, theta)`` at given times, with forward sensitivities.

``Builder.det(ir, "z", "ode", [y0, theta], rhs=f, times=ts, t0=0.0, method="RK45", rtol=1e-6,
atol=1e-8)`` gives ``z`` of shape ``(len(times), len(y0))`` with ``z[i] = y(times[i])`` where
``y(t0) = y0``. ``f(t, y, theta)`` is plain numpy on 1-d ``y`` (``n``) and ``theta`` (``p``) and
returns ``dy/dt`` (``n``). ``method`` is any of ``scipy.integrate.solve_ivp``'s: non-stiff
(``"RK45"``, ``"DOP853"``) or stiff (``"BDF"``, ``"Radau"``, ``"LSODA"``).

Gradient (forward sensitivities): the solver integrates, next to ``y``, ``S = dy/d(y0, theta)``
(``n x (n + p)``) through ``dS/dt = J_y S + [0 | J_theta]``, and the VJP is ``sum_i S(t_i)^T
g_i``. The Jacobians ``J_y = df/dy`` and ``J_theta = df/dtheta`` come from the options
``jac_y(t, y, theta)`` / ``jac_theta(t, y, theta)`` when given, else from central finite
differences of ``f`` (one pair of calls per state and parameter: approximate, ~1e-8 relative).
The sensitivities are computed with the solution (the gradient is therefore as accurate as the
solver's tolerances) and kept for the VJP of the same point (a one-entry cache keyed by the
inputs' values, so concurrent evaluations recompute rather than mix). A chain-batched call solves
once per chain. A failed solve, or non-finite inputs, raise ``FloatingPointError``: a rejected
point for the sampler.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from exmc.ops import Kernel, Op
from exmc.ops_scan import per_chain_kernel

__all__ = ["ODE"]

#: Relative step of the finite-difference Jacobians of ``f`` (about the cube root of epsilon).
JACOBIAN_STEP = 6e-6


def _ode_rule(shapes, consts, options):
    y0, theta = shapes
    if options["rhs"] is None or not callable(options["rhs"]):
        raise ValueError("ode needs rhs=f(t, y, theta), a callable returning dy/dt")
    if len(y0) != 1 or len(theta) > 1:
        raise ValueError(f"ode takes a state vector y0 (n,) and a parameter vector theta (p,), got {y0} and {theta}")
    times = np.asarray(options["times"], dtype=np.float64)
    if times.ndim != 1 or not times.size:
        raise ValueError("ode needs times=[t_1, ...], a non-empty 1-d sequence")
    if np.any(np.diff(times) <= 0) or times[0] <= float(options["t0"]):
        raise ValueError("ode times must increase strictly and start after t0")
    return (times.size, y0[0])


def _finite_jacobian(f, t, y, theta, wrt: str) -> np.ndarray:
    x = y if wrt == "y" else theta
    columns = []
    for j in range(x.size):
        h = JACOBIAN_STEP * max(1.0, abs(float(x[j])))
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        if wrt == "y":
            columns.append((np.asarray(f(t, up, theta)) - np.asarray(f(t, down, theta))) / (2 * h))
        else:
            columns.append((np.asarray(f(t, y, up)) - np.asarray(f(t, y, down))) / (2 * h))
    return np.stack(columns, axis=1) if columns else np.zeros((y.size, 0))


def _ode_kernel(shapes, batched, needs, options) -> Kernel:
    (n,), theta_shape = shapes
    p = theta_shape[0] if theta_shape else 0
    f = options["rhs"]
    jac_y, jac_theta = options["jac_y"], options["jac_theta"]
    times = np.asarray(options["times"], dtype=np.float64)
    t0 = float(options["t0"])
    solver = dict(method=options["method"], rtol=float(options["rtol"]), atol=float(options["atol"]))
    cache = threading.local()

    def augmented(t, state, theta):
        y = state[:n]
        sens = state[n:].reshape(n, n + p)
        j_y = jac_y(t, y, theta) if jac_y is not None else _finite_jacobian(f, t, y, theta, "y")
        j_theta = jac_theta(t, y, theta) if jac_theta is not None else _finite_jacobian(f, t, y, theta, "theta")
        d_sens = np.asarray(j_y) @ sens
        d_sens[:, n:] += np.asarray(j_theta).reshape(n, p)
        return np.concatenate([np.asarray(f(t, y, theta), dtype=np.float64), d_sens.ravel()])

    def solve(y0, theta):
        y0 = np.asarray(y0, dtype=np.float64).reshape(n)
        theta = np.asarray(theta, dtype=np.float64).reshape(p)
        key = (y0.tobytes(), theta.tobytes())
        if getattr(cache, "key", None) == key:
            return cache.value
        if not (np.all(np.isfinite(y0)) and np.all(np.isfinite(theta))):
            # Far out in a trajectory (or in the step-size search) a transform overflows: no solution
            # there, a rejected point -- not the ValueError solve_ivp would raise.
            raise FloatingPointError("ode: non-finite initial state or parameters")
        start = np.concatenate([y0, np.eye(n, n + p).ravel()])
        result = solve_ivp(augmented, (t0, float(times[-1])), start, t_eval=times, args=(theta,), **solver)
        if not result.success or result.y.shape[1] != times.size:
            raise FloatingPointError(f"ode: the solver failed ({result.message})")
        states = result.y.T
        value = (states[:, :n].copy(), states[:, n:].reshape(times.size, n, n + p))
        cache.key, cache.value = key, value
        return value

    def single_forward(y0, theta):
        return solve(y0, theta)[0]

    def single_vjp(g, out, y0, theta):
        _, sens = solve(y0, theta)
        total = np.einsum("ti,tij->j", np.asarray(g, dtype=np.float64), sens)
        return (total[:n] if needs[0] else None, total[n:] if needs[1] else None)

    return per_chain_kernel(single_forward, single_vjp, batched, needs)


#: The ode op (merged into :data:`exmc.ops.OPS`).
ODE = Op("ode", 2, False, {"rhs": None, "times": (), "t0": 0.0, "method": "RK45", "rtol": 1e-6, "atol": 1e-8,
                           "jac_y": None, "jac_theta": None}, _ode_rule, _ode_kernel)
