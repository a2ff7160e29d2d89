"""The ode op: solutions against closed forms, forward-sensitivity gradients against central
differences of the whole model (non-stiff and stiff solvers), batched against single."""
import numpy as np
import pytest

import exmc
from exmc import Builder as B
from exmc.errors import ValidationError
from model_checks import check_model_gradients

TIMES = (0.5, 1.0, 2.0, 3.5)


def _decay(t, y, theta):
    return -theta[0] * y


def _model(method, **options):
    ir = B.rv(B.new_ir(), "y0", "Lognormal", {"mu": 0.0, "sigma": 0.3}, shape=(1,))
    ir = B.rv(ir, "k", "Lognormal", {"mu": -0.5, "sigma": 0.3}, shape=(1,))
    ir = B.det(ir, "z", "ode", ["y0", "k"], rhs=_decay, times=TIMES, method=method, rtol=1e-10, atol=1e-12,
               **options)
    ir = B.rv(ir, "obs", "Normal", {"mu": "z", "sigma": 0.1})
    return B.obs(ir, "obs_data", "obs", [[0.7], [0.5], [0.3], [0.1]])


def test_exponential_decay_matches_the_closed_form_and_its_gradient():
    model = check_model_gradients(_model("RK45"), seed=1, chains=2)
    v = model.to_constrained(np.array([0.1, -0.2]))
    expected = v["y0"][0] * np.exp(-v["k"][0] * np.array(TIMES))
    np.testing.assert_allclose(v["z"][:, 0], expected, rtol=1e-7)


def test_stiff_solver_gradient_is_as_accurate_as_its_solution():
    """BDF's error at rtol=1e-10 is ~1e-6 relative on this problem (a variable-order multistep
    method), so its sensitivities are compared at 1e-4, against the closed form's gradient."""
    model = exmc.compile(_model("BDF"))
    theta = np.array([0.1, -0.2])
    _, grad = model.logp_and_grad(theta)
    exact = exmc.compile(_model("RK45"))  # RK45 at these tolerances matches central differences to 1e-6
    np.testing.assert_allclose(grad, exact.logp_and_grad(theta)[1], rtol=1e-4)
    v = model.to_constrained(theta)
    np.testing.assert_allclose(v["z"][:, 0], v["y0"][0] * np.exp(-v["k"][0] * np.array(TIMES)), rtol=1e-5)


def test_user_jacobians_give_the_same_gradient():
    exact = _model("RK45", jac_y=lambda t, y, th: np.array([[-th[0]]]),
                   jac_theta=lambda t, y, th: np.array([[-y[0]]]))
    a, b = exmc.compile(exact), exmc.compile(_model("RK45"))
    theta = np.array([0.3, 0.1])
    np.testing.assert_allclose(a.logp_and_grad(theta)[1], b.logp_and_grad(theta)[1], rtol=1e-6)


def _lotka_volterra(t, z, theta):
    u, v = z
    alpha, beta, gamma, delta = theta
    return np.array([(alpha - beta * v) * u, (-gamma + delta * u) * v])


def test_lotka_volterra_gradient():
    ir = B.rv(B.new_ir(), "theta", "Lognormal", {"mu": np.log([1.0, 0.05, 1.0, 0.05]), "sigma": 0.1}, shape=(4,))
    ir = B.rv(ir, "z_init", "Lognormal", {"mu": np.log(10.0), "sigma": 0.1}, shape=(2,))
    ir = B.det(ir, "z", "ode", ["z_init", "theta"], rhs=_lotka_volterra, times=(1.0, 2.0, 3.0), rtol=1e-9,
               atol=1e-9)
    ir = B.rv(ir, "y", "Lognormal", {"mu": 0.0, "sigma": 0.5})
    ir = B.det(ir, "log_z", "log", ["z"])
    ir = B.rv(ir, "obs", "Normal", {"mu": "log_z", "sigma": 0.25})
    ir = B.obs(ir, "obs_data", "obs", np.log([[12.0, 9.0], [15.0, 10.0], [14.0, 14.0]]))
    check_model_gradients(ir, seed=2, chains=2, scale=0.1)


def test_ode_options_are_checked():
    ir = B.rv(B.new_ir(), "y0", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(1,))
    with pytest.raises(ValidationError, match="rhs"):
        exmc.compile(B.det(ir, "z", "ode", ["y0", np.ones(1)], times=TIMES))
    with pytest.raises(ValidationError, match="increase"):
        exmc.compile(B.det(ir, "z", "ode", ["y0", np.ones(1)], rhs=_decay, times=(1.0, 0.5)))


def test_a_failed_solve_is_a_rejected_point():
    def blow_up(t, y, theta):
        return theta[0] * y ** 3

    ir = B.rv(B.new_ir(), "y0", "Lognormal", {"mu": 0.0, "sigma": 1.0}, shape=(1,))
    ir = B.det(ir, "z", "ode", ["y0", np.array([5.0])], rhs=blow_up, times=(1.0, 2.0))
    ir = B.rv(ir, "obs", "Normal", {"mu": "z", "sigma": 1.0})
    model = exmc.compile(B.obs(ir, "o", "obs", [[1.0], [1.0]]))
    from exmc.nuts.integrator import guarded_logp_and_grad

    assert guarded_logp_and_grad(model.logp_and_grad, np.array([1.0]))[0] == -np.inf


def test_non_finite_inputs_are_a_rejected_point_not_a_model_error():
    """The step-size search can push a log-transformed y0 to inf: that is a domain error (the
    sampler then rejects the point) rather than scipy's ValueError (which would stop the run)."""
    model = exmc.compile(_model("RK45"))
    from exmc.nuts.integrator import guarded_logp_and_grad

    assert guarded_logp_and_grad(model.logp_and_grad, np.array([800.0, 0.0]))[0] == -np.inf
