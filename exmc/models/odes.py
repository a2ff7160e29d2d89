"""Ports of posteriordb's ODE programs ``lotka_volterra`` and ``one_comp_mm_elim_abs`` (the
``ode`` op: LSODA with forward sensitivities, right-hand sides and Jacobians written for a
trailing chain axis so that ``parallel="vectorized"`` solves all chains as one system).

Stan integrates lotka_volterra with ``integrate_ode_rk45`` (rtol 1e-5, atol 1e-3, given in the
program) and one_comp_mm_elim_abs with ``integrate_ode_bdf`` at its defaults, which the program
does not override: rtol 1e-10, atol 1e-10, at most 1e8 steps (Stan Math's
``integrate_ode_bdf``, unchanged from its first versions through rstan 2.19, which made the
reference draws, to today; only the newer ``ode_bdf`` defaults to 1e-6). The ports use LSODA (ODEPACK's stiff/non-stiff switching solver,
run in one Fortran call) at :data:`LOTKA_VOLTERRA_TOLERANCES` (measured at 40 reference draws
against a 1e-11 solve: log-density off by at most 3e-3 on |lp| ~ 130, steps controlled on the
populations alone; gradient 2e-3 relative -- of the order of Stan's own rk45 run) and at Stan's
tolerances for one_comp (:data:`ONE_COMP_TOLERANCES`: log-density within 3e-9 of a 1e-11 solve at
50 reference draws, the 30 of largest ``K_m`` among them; 1e-6 was within 3e-5, at half the cost).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exmc import Builder, Dist
from exmc.models._regression import vector

#: lotka_volterra's solver tolerances (populations are 1-80, Stan's atol was 1e-3), on the
#: populations alone (sensitivities out of the error control: 253 instead of 389 right-hand
#: sides per solve at the reference draws, populations within 6e-5 relative of a 1e-12 solve).
LOTKA_VOLTERRA_TOLERANCES = {"rtol": 1e-6, "atol": 1e-4, "sensitivity_error_control": False}
#: one_comp_mm_elim_abs's solver tolerances: Stan's ``integrate_ode_bdf`` defaults (relative and
#: absolute 1e-10), which the program uses. (Its step cap, 1e8 in all, is ours per output interval:
#: ``exmc.ops_ode.MAX_STEPS_PER_OUTPUT``; no reference draw comes near either.)
ONE_COMP_TOLERANCES = {"rtol": 1e-10, "atol": 1e-10}
#: lotka_volterra: ``theta[{1,3}] ~ normal(1, 0.5)``, ``theta[{2,4}] ~ normal(0.05, 0.05)`` (``<lower=0>``),
#: ``sigma ~ lognormal(-1, 1)``, ``z_init ~ lognormal(log(10), 1)``.
THETA_MU = np.array([1.0, 0.05, 1.0, 0.05])
THETA_SIGMA = np.array([0.5, 0.05, 0.5, 0.05])


def lotka_volterra_rhs(t, z, theta):
    """``du/dt = (alpha - beta v) u``, ``dv/dt = (-gamma + delta u) v``."""
    u, v = z
    alpha, beta, gamma, delta = theta
    return np.array([(alpha - beta * v) * u, (-gamma + delta * u) * v])


def lotka_volterra_jac_y(t, z, theta):
    u, v = z
    alpha, beta, gamma, delta = theta
    return np.array([[alpha - beta * v, -beta * u], [delta * v, -gamma + delta * u]])


def lotka_volterra_jac_theta(t, z, theta):
    u, v = z
    out = np.zeros((2, 4) + np.shape(u))
    uv = u * v
    out[0, 0], out[0, 1], out[1, 2], out[1, 3] = u, -uv, -v, uv
    return out


def lotka_volterra(data: Mapping[str, Any]):
    """Free rvs ``theta`` (4,), ``z_init`` (2,), ``sigma`` (2,); det ``z`` (N, 2), the populations."""
    ts = vector(data, "ts")
    y = np.asarray(data["y"], dtype=float)
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "theta", Dist.Normal, {"mu": THETA_MU, "sigma": THETA_SIGMA}, lower=0.0)
    ir = Builder.rv(ir, "z_init", Dist.Lognormal, {"mu": np.log(10.0), "sigma": 1.0}, shape=(2,))
    ir = Builder.rv(ir, "sigma", Dist.Lognormal, {"mu": -1.0, "sigma": 1.0}, shape=(2,))
    ir = Builder.det(ir, "z", "ode", ["z_init", "theta"], rhs=lotka_volterra_rhs, times=tuple(ts), t0=0.0,
                     method="LSODA", vectorized=True, jac_y=lotka_volterra_jac_y, jac_theta=lotka_volterra_jac_theta,
                     **LOTKA_VOLTERRA_TOLERANCES)
    ir = Builder.det(ir, "log_z_init", "log", ["z_init"])
    ir = Builder.det(ir, "log_z", "log", ["z"])
    ir = Builder.rv(ir, "y_init", Dist.Lognormal, {"mu": "log_z_init", "sigma": "sigma"})
    ir = Builder.obs(ir, "y_init_obs", "y_init", vector(data, "y_init"))
    ir = Builder.rv(ir, "y", Dist.Lognormal, {"mu": "log_z", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", y)


def _one_comp_rhs(dose: float, volume: float):
    def rhs(t, y, theta):
        k_a, k_m, v_m = theta
        absorbed = np.exp(-k_a * t) * dose * k_a / volume * (t > 0)
        return np.array([absorbed - (v_m / volume) * y[0] / (k_m + y[0])])

    def jac_y(t, y, theta):
        k_a, k_m, v_m = theta
        return np.array([[-(v_m / volume) * k_m / (k_m + y[0]) ** 2]])

    def jac_theta(t, y, theta):
        k_a, k_m, v_m = theta
        d_ka = np.exp(-k_a * t) * dose / volume * (1.0 - k_a * t) * (t > 0) + 0.0 * y[0]
        d_km = (v_m / volume) * y[0] / (k_m + y[0]) ** 2
        d_vm = -y[0] / (volume * (k_m + y[0]))
        return np.array([[d_ka, d_km, d_vm]])
    return rhs, jac_y, jac_theta


def one_comp_mm_elim_abs(data: Mapping[str, Any]):
    """Free rvs ``k_a``, ``K_m``, ``V_m``, ``sigma`` (half-Cauchy(0, 1) each); det ``C`` (N_t, 1)."""
    times = vector(data, "times")
    c_hat = vector(data, "C_hat")
    rhs, jac_y, jac_theta = _one_comp_rhs(float(data["D"]), float(data["V"]))
    ir = Builder.new_ir()
    for name in ("k_a", "K_m", "V_m", "sigma"):
        ir = Builder.rv(ir, name, Dist.HalfCauchy, {"scale": 1.0})
    ir = Builder.det(ir, "ode_theta", "stack", ["k_a", "K_m", "V_m"])
    ir = Builder.det(ir, "C", "ode", [np.zeros(1), "ode_theta"], rhs=rhs, times=tuple(times),
                     t0=float(data["t0"]), method="LSODA", vectorized=True, jac_y=jac_y, jac_theta=jac_theta,
                     **ONE_COMP_TOLERANCES)
    ir = Builder.det(ir, "log_C", "log", ["C"])
    ir = Builder.det(ir, "log_C_flat", "sum", ["log_C"], axis=1)
    ir = Builder.rv(ir, "C_hat", Dist.Lognormal, {"mu": "log_C_flat", "sigma": "sigma"})
    return Builder.obs(ir, "C_hat_obs", "C_hat", c_hat)
