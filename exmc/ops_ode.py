"""``ode``: the solution of ``dy/dt = f(t, y, theta)`` at given times, with forward sensitivities.

``Builder.det(ir, "z", "ode", [y0, theta], rhs=f, times=ts, t0=0.0, method="LSODA", rtol=1e-6,
atol=1e-8)`` gives ``z`` of shape ``(len(times), len(y0))`` with ``z[i] = y(times[i])`` where
``y(t0) = y0``. ``f(t, y, theta)`` is plain numpy on 1-d ``y`` (``n``) and ``theta`` (``p``) and
returns ``dy/dt`` (``n``).

Solvers (``method``):

- ``"LSODA"`` (the default): ODEPACK's LSODA through ``scipy.integrate.odeint`` -- Adams for
  non-stiff stretches, BDF with the supplied Jacobian for stiff ones, switching automatically.
  The whole integration runs inside the Fortran loop (Python only evaluates the right-hand side),
  so it costs a few microseconds of overhead per right-hand side call instead of the ~100 µs per
  step of a ``solve_ivp`` solver stepped from Python: the fast choice, stiff or not.
- any other ``scipy.integrate.solve_ivp`` method: non-stiff ``"RK45"``, ``"DOP853"``; stiff
  ``"BDF"``, ``"Radau"`` (given the same Jacobian).

Gradient (forward sensitivities): the solver integrates, next to ``y``, ``S = dy/d(y0, theta)``
(``n x (n + p)``) through ``dS/dt = J_y S + [0 | J_theta]``, and the VJP is ``sum_i S(t_i)^T
g_i``. The Jacobians ``J_y = df/dy`` and ``J_theta = df/dtheta`` come from the options
``jac_y(t, y, theta)`` / ``jac_theta(t, y, theta)`` when given (write them: they are exact and
save ``2 (n + p)`` calls of ``f`` per right-hand side), else from central finite differences of
``f`` (approximate, ~1e-8 relative). The sensitivities are in the solver's error control, so the
gradient is as accurate as the solution; ``sensitivity_error_control=False`` leaves them out
(CVODES' ``errconS = false``): the steps follow the solution alone, the sensitivities ride on
them -- fewer steps, a gradient about as accurate as the solution on smooth problems but not
guaranteed so. (An inexact gradient costs NUTS acceptance, never correctness: the
log-density, which the steps do control, decides.) The stiff solvers get the Jacobian of the augmented
system ``[[J_y, 0], [., I (x) J_y]]`` (the sensitivities' dependence on ``y`` left out, as CVODES'
simultaneous corrector does: it only steers the Newton iteration, not the accuracy).

The solve is kept for the VJP of the same point (a per-thread one-entry cache keyed by the
inputs' bytes), so a value-and-gradient evaluation solves once.

Chains: ``vectorized=True`` declares that ``f`` (and ``jac_y``/``jac_theta``) also accept a batch
in a *trailing* axis -- ``y`` of shape ``(n, C)`` and ``theta`` ``(p, C)``, returning ``(n, C)``
(``(n, n, C)``, ``(n, p, C)``), ``solve_ivp``'s own ``vectorized`` convention; code written as
``u, v = y`` and ``np.array([...])`` of elementwise expressions usually is. A chain-batched
evaluation (``parallel="vectorized"``) then solves all chains as one system, so the per-call
overhead is paid once for all chains (the step size follows the hardest chain). Without it, a
batched call solves once per chain.

Failure modes: a failed solve (``odeint``'s "excess work", a ``solve_ivp`` failure) or non-finite
inputs raise ``FloatingPointError``: a rejected point for the sampler. An exception raised by
``f`` or a Jacobian propagates unchanged (a bug in user code is not a rejected point). A Jacobian
of the wrong shape raises ``ValueError``.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
from scipy.integrate import ODEintWarning, odeint, solve_ivp
from scipy.linalg import block_diag

from exmc.ops import Kernel, Op
from exmc.ops_scan import per_chain_kernel

__all__ = ["ODE"]

#: Relative step of the finite-difference Jacobians of ``f`` (about the cube root of epsilon).
JACOBIAN_STEP = 6e-6
#: ``odeint``'s step budget per output interval (its default, 500, is short for a trajectory
#: through a stiff corner of the posterior; beyond it the point is rejected).
MAX_STEPS_PER_OUTPUT = 20_000
#: The absolute tolerance given to components left out of the error control (no error reaches it).
UNCONTROLLED_ATOL = 1e12
#: The method that runs through ``scipy.integrate.odeint``; every other name goes to ``solve_ivp``.
ODEINT_METHOD = "LSODA"


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


class _Augmented:
    """The state-and-sensitivity system of ``C`` solutions at once.

    The flat state is a ``(C, m)`` array (``m = n + n (n + p)``: ``y`` then ``S`` row-major) in C
    order. ``vectorized``: the user's callables take ``(n, C)``/``(p, C)`` (trailing batch axis);
    otherwise ``C`` is 1 and they take 1-d arrays.
    """

    def __init__(self, options, n: int, p: int, chains: int, vectorized: bool) -> None:
        self.f = options["rhs"]
        self.jac_y_fn, self.jac_theta_fn = options["jac_y"], options["jac_theta"]
        self.n, self.p, self.chains, self.vectorized = n, p, chains, vectorized
        self.m = n + n * (n + p)

    # The user's callables on (C, n) / (C, p) rows, returning (C, n), (C, n, n), (C, n, p).
    def rate(self, t, y, theta) -> np.ndarray:
        if self.vectorized:
            return np.asarray(self.f(t, y.T, theta.T), dtype=np.float64).T
        return np.asarray(self.f(t, y[0], theta[0]), dtype=np.float64).reshape(1, self.n)

    def _jacobian(self, fn, t, y, theta, wrt: str) -> np.ndarray:
        width = self.n if wrt == "y" else self.p
        if fn is not None:
            if self.vectorized:
                out = np.asarray(fn(t, y.T, theta.T), dtype=np.float64).transpose(2, 0, 1)
            else:
                out = np.asarray(fn(t, y[0], theta[0]), dtype=np.float64)[None]
            if out.shape != (self.chains, self.n, width):
                raise ValueError(f"ode: jac_{wrt} returned shape {out.shape[1:]}, expected {(self.n, width)}"
                                 + (" (and a trailing chain axis)" if self.vectorized else ""))
            return out
        x = y if wrt == "y" else theta
        columns = []
        for j in range(width):
            h = JACOBIAN_STEP * np.maximum(1.0, np.abs(x[:, j]))
            up, down = x.copy(), x.copy()
            up[:, j] += h
            down[:, j] -= h
            if wrt == "y":
                diff = self.rate(t, up, theta) - self.rate(t, down, theta)
            else:
                diff = self.rate(t, y, up) - self.rate(t, y, down)
            columns.append(diff / (2.0 * h[:, None]))
        return np.stack(columns, axis=2) if columns else np.zeros((self.chains, self.n, 0))

    def rhs(self, t, flat, theta):
        n = self.n
        state = flat.reshape(self.chains, self.m)
        y = state[:, :n]
        sens = state[:, n:].reshape(self.chains, n, n + self.p)
        out = np.empty((self.chains, self.m))
        out[:, :n] = self.rate(t, y, theta)
        d_sens = self._jacobian(self.jac_y_fn, t, y, theta, "y") @ sens
        if self.p:
            d_sens[:, :, n:] += self._jacobian(self.jac_theta_fn, t, y, theta, "theta")
        out[:, n:] = d_sens.reshape(self.chains, -1)
        return out.reshape(-1)

    def jacobian(self, t, flat, theta):
        """d rhs / d state, block-diagonal over chains (the sensitivities' y-dependence left out)."""
        state = flat.reshape(self.chains, self.m)
        j_y = self._jacobian(self.jac_y_fn, t, state[:, :self.n], theta, "y")
        eye = np.eye(self.n + self.p)
        return block_diag(*[block_diag(j, np.kron(j, eye)) for j in j_y])


def _ode_kernel(shapes, batched, needs, options) -> Kernel:
    (n,), theta_shape = shapes
    p = theta_shape[0] if theta_shape else 0
    times = np.asarray(options["times"], dtype=np.float64)
    t0 = float(options["t0"])
    method, rtol, atol = str(options["method"]), float(options["rtol"]), float(options["atol"])
    vectorized = bool(options["vectorized"])
    sensitivity_error_control = bool(options["sensitivity_error_control"])
    cache = threading.local()
    systems: dict[int, _Augmented] = {}

    def system(chains: int) -> _Augmented:
        if chains not in systems:
            systems[chains] = _Augmented(options, n, p, chains, vectorized)
        return systems[chains]

    def tolerance(aug: _Augmented, value: float):
        """The absolute tolerance per component: the sensitivities left out of the error control
        (an atol no error reaches) unless ``sensitivity_error_control``."""
        if sensitivity_error_control:
            return value
        per_chain = np.concatenate([np.full(n, value), np.full(aug.m - n, UNCONTROLLED_ATOL)])
        return np.tile(per_chain, aug.chains)

    def integrate(aug: _Augmented, start: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """The flat states at ``times``, ``(len(times), C m)``."""
        if method == ODEINT_METHOD:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ODEintWarning)
                states, info = odeint(aug.rhs, start, np.concatenate([[t0], times]), args=(theta,),
                                      Dfun=aug.jacobian, rtol=rtol, atol=tolerance(aug, atol),
                                      mxstep=MAX_STEPS_PER_OUTPUT, full_output=True, tfirst=True)
            if info["message"] != "Integration successful.":
                raise FloatingPointError(f"ode: the solver failed ({info['message']})")
            return states[1:]
        stiff = method in ("BDF", "Radau", "LSODA")
        result = solve_ivp(aug.rhs, (t0, float(times[-1])), start, method=method, t_eval=times, args=(theta,),
                           rtol=rtol, atol=tolerance(aug, atol), **({"jac": aug.jacobian} if stiff else {}))
        if not result.success or result.y.shape[1] != times.size:
            raise FloatingPointError(f"ode: the solver failed ({result.message})")
        return result.y.T

    def solve(y0, theta):
        """``(z, S)`` of shapes ``(C, T, n)`` and ``(C, T, n, n + p)`` for ``(C, n)``/``(C, p)`` inputs."""
        y0 = np.asarray(y0, dtype=np.float64)
        theta = np.asarray(theta, dtype=np.float64)
        key = (y0.shape, y0.tobytes(), theta.tobytes())
        if getattr(cache, "key", None) == key:
            return cache.value
        if not (np.all(np.isfinite(y0)) and np.all(np.isfinite(theta))):
            # Far out in a trajectory (or in the step-size search) a transform overflows: no solution
            # there, a rejected point -- not the ValueError the solvers would raise.
            raise FloatingPointError("ode: non-finite initial state or parameters")
        chains = y0.shape[0]
        aug = system(chains)
        start = np.concatenate([y0, np.broadcast_to(np.eye(n, n + p).ravel(), (chains, n * (n + p)))], axis=1)
        states = integrate(aug, start.reshape(-1), theta).reshape(times.size, chains, aug.m).transpose(1, 0, 2)
        value = (states[:, :, :n].copy(), states[:, :, n:].reshape(chains, times.size, n, n + p))
        cache.key, cache.value = key, value
        return value

    def rows(y0, theta, chains):
        y0 = np.broadcast_to(np.asarray(y0, dtype=np.float64), (chains, n))
        theta = np.broadcast_to(np.asarray(theta, dtype=np.float64).reshape(-1, p) if p else np.zeros((1, 0)),
                                (chains, p))
        return y0, theta

    if vectorized and any(batched):
        def forward(y0, theta):
            chains = next(np.shape(a)[0] for a, b in zip((y0, theta), batched) if b)
            return solve(*rows(y0, theta, chains))[0]

        def vjp(g, out, y0, theta):
            chains = np.shape(out)[0]
            _, sens = solve(*rows(y0, theta, chains))
            total = np.einsum("cti,ctij->cj", np.asarray(g, dtype=np.float64), sens)
            grads = []
            for need, b, part in zip(needs, batched, (total[:, :n], total[:, n:])):
                grads.append(None if not need else (part if b else part.sum(axis=0)))
            return tuple(grads)
        return Kernel(forward, vjp)

    def single_forward(y0, theta):
        return solve(*rows(y0, theta, 1))[0][0]

    def single_vjp(g, out, y0, theta):
        _, sens = solve(*rows(y0, theta, 1))
        total = np.einsum("ti,tij->j", np.asarray(g, dtype=np.float64), sens[0])
        return (total[:n] if needs[0] else None, total[n:] if needs[1] else None)

    return per_chain_kernel(single_forward, single_vjp, batched, needs)


#: The ode op (merged into :data:`exmc.ops.OPS`).
ODE = Op("ode", 2, False, {"rhs": None, "times": (), "t0": 0.0, "method": ODEINT_METHOD, "rtol": 1e-6,
                           "atol": 1e-8, "jac_y": None, "jac_theta": None, "vectorized": False,
                           "sensitivity_error_control": True},
         _ode_rule, _ode_kernel)
