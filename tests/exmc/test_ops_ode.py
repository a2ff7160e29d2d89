"""The ode op: solutions against closed forms, forward-sensitivity gradients against central
differences of the whole model (non-stiff and stiff solvers), batched against single."""
import numpy as np
import pytest

import exmc
from exmc import Builder as B
from exmc.errors import ValidationError
from dist_checks import numerical_gradient
from exmc.models.odes import lotka_volterra_jac_theta as _lotka_volterra_jac_theta
from exmc.models.odes import lotka_volterra_jac_y as _lotka_volterra_jac_y
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


def _lotka_volterra_model(**options):
    ir = B.rv(B.new_ir(), "theta", "Lognormal", {"mu": np.log([1.0, 0.05, 1.0, 0.05]), "sigma": 0.1}, shape=(4,))
    ir = B.rv(ir, "z_init", "Lognormal", {"mu": np.log(10.0), "sigma": 0.1}, shape=(2,))
    options.setdefault("rhs", _lotka_volterra)
    ir = B.det(ir, "z", "ode", ["z_init", "theta"], times=(1.0, 2.0, 3.0), **options)
    ir = B.rv(ir, "y", "Lognormal", {"mu": 0.0, "sigma": 0.5})
    ir = B.det(ir, "log_z", "log", ["z"])
    ir = B.rv(ir, "obs", "Normal", {"mu": "log_z", "sigma": 0.25})
    return B.obs(ir, "obs_data", "obs", np.log([[12.0, 9.0], [15.0, 10.0], [14.0, 14.0]]))


@pytest.mark.parametrize("options", [
    dict(method="RK45", rtol=1e-9, atol=1e-9),
    # LSODA is a multistep method: its global error at a tolerance is larger than RK45's.
    dict(method="LSODA", rtol=1e-12, atol=1e-12),
    dict(method="LSODA", rtol=1e-12, atol=1e-12, jac_y=_lotka_volterra_jac_y, jac_theta=_lotka_volterra_jac_theta),
], ids=["rk45", "lsoda-fd-jacobians", "lsoda-analytic-jacobians"])
def test_lotka_volterra_gradient(options):
    check_model_gradients(_lotka_volterra_model(**options), seed=2, chains=2, scale=0.1)


def test_vectorized_rhs_solves_all_chains_as_one_system():
    """``vectorized=True``: a chain-batched evaluation is one joint solve (shared step control, so
    rows agree with single solves to the tolerance, not bit for bit); single evaluations are
    unchanged; user Jacobians are called with the trailing chain axis."""
    calls = []

    def jac_y(t, z, theta):
        calls.append(np.shape(z))
        return _lotka_volterra_jac_y(t, z, theta)

    options = dict(method="LSODA", rtol=1e-10, atol=1e-10, jac_theta=_lotka_volterra_jac_theta)
    joint = exmc.compile(_lotka_volterra_model(vectorized=True, jac_y=jac_y, **options))
    plain = exmc.compile(_lotka_volterra_model(jac_y=_lotka_volterra_jac_y, **options))
    rng = np.random.default_rng(3)
    batch = rng.normal(size=(3, joint.dim)) * 0.1
    lps, grads = joint.logp_and_grad(batch)
    assert (2, 3) in calls  # (n, C): one call for the three chains
    for row in range(3):
        lp, grad = plain.logp_and_grad(batch[row])
        np.testing.assert_allclose(lps[row], lp, rtol=1e-7)
        np.testing.assert_allclose(grads[row], grad, rtol=1e-6, atol=1e-6 * np.max(np.abs(grad)))
        single_lp, single_grad = joint.logp_and_grad(batch[row])
        np.testing.assert_allclose(single_lp, lp, rtol=1e-12)
    check_model_gradients(_lotka_volterra_model(vectorized=True, method="LSODA", rtol=1e-12, atol=1e-12),
                          seed=4, chains=1, scale=0.1)


def _robertson(t, y, theta):
    """Robertson's chemical kinetics, the classic stiff test (rates spanning 1e-2 .. 3e7)."""
    k1, k2, k3 = theta
    a, b, c = y
    return np.array([-k1 * a + k3 * b * c, k1 * a - k3 * b * c - k2 * b * b, k2 * b * b])


def _robertson_jac_y(t, y, theta):
    k1, k2, k3 = theta
    a, b, c = y
    return np.array([[-k1, k3 * c, k3 * b], [k1, -k3 * c - 2 * k2 * b, -k3 * b], [0.0, 2 * k2 * b, 0.0]])


def _robertson_jac_theta(t, y, theta):
    a, b, c = y
    return np.array([[-a, 0.0, b * c], [a, -b * b, -b * c], [0.0, b * b, 0.0]])


def _robertson_model(method):
    ir = B.rv(B.new_ir(), "log_k", "Normal", {"mu": np.log([0.04, 3e7, 1e4]), "sigma": 0.1}, shape=(3,))
    ir = B.det(ir, "k", "exp", ["log_k"])
    ir = B.det(ir, "y", "ode", [np.array([1.0, 0.0, 0.0]), "k"], rhs=_robertson, times=(0.4, 4.0),
               method=method, rtol=1e-10, atol=1e-14, jac_y=_robertson_jac_y, jac_theta=_robertson_jac_theta)
    ir = B.rv(ir, "obs", "Normal", {"mu": "y", "sigma": 0.01})
    return exmc.compile(B.obs(ir, "obs_data", "obs", [[0.985, 3.4e-5, 0.015], [0.905, 2.2e-5, 0.095]]))


def test_stiff_problem_with_supplied_jacobian():
    """Robertson's problem to t = 4 with J_y supplied: BDF's gradient matches central differences
    of its log-density, LSODA's matches BDF's, both conserve a + b + c and reproduce the published
    solution; batched rows equal single evaluations."""
    rates = np.log([0.04, 3e7, 1e4])
    bdf, lsoda = _robertson_model("BDF"), _robertson_model("LSODA")
    _, grad = bdf.logp_and_grad(rates)
    # Central differences through an adaptive stiff solve carry the solver's noise over the step
    # (~1e-10 / 1e-6): agreement to 1e-4 of the gradient's scale is what the solution supports.
    # (LSODA's stiff/non-stiff switching makes its log-density too rough for differences at all.)
    numeric = numerical_gradient(lambda t: bdf.logp_and_grad(t)[0], rates)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4 * np.max(np.abs(numeric)))
    lp, lsoda_grad = lsoda.logp_and_grad(rates)
    np.testing.assert_allclose(lsoda_grad, grad, rtol=1e-5, atol=1e-5 * np.max(np.abs(grad)))
    lps, grads = lsoda.logp_and_grad(np.vstack([rates, rates + 0.05]))
    np.testing.assert_allclose(lps[0], lp, rtol=1e-12)
    np.testing.assert_allclose(grads[0], lsoda_grad, rtol=1e-10)
    for model in (bdf, lsoda):
        y = model.to_constrained(rates)["y"]
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-8)
        np.testing.assert_allclose(y[:, 0], [0.9851721, 0.9055186], rtol=1e-5)


def test_a_jacobian_of_the_wrong_shape_is_named():
    model = exmc.compile(_model("LSODA", jac_y=lambda t, y, th: np.ones(2)))
    with pytest.raises(ValueError, match="jac_y returned shape"):
        model.logp_and_grad(np.array([0.1, 0.2]))


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


def test_sensitivities_out_of_the_error_control_take_fewer_steps():
    """``sensitivity_error_control=False``: the steps follow the solution alone (fewer right-hand
    side calls); the gradient still matches the error-controlled one to the solution's accuracy."""
    calls = {True: 0, False: 0}

    def counting(control):
        def rhs(t, z, theta):
            calls[control] += 1
            return _lotka_volterra(t, z, theta)
        return rhs

    theta = np.random.default_rng(6).normal(size=7) * 0.1
    results = {}
    for control in (True, False):
        ir = _lotka_volterra_model(method="LSODA", rtol=1e-8, atol=1e-8, jac_y=_lotka_volterra_jac_y,
                                   jac_theta=_lotka_volterra_jac_theta, sensitivity_error_control=control,
                                   rhs=counting(control))
        results[control] = exmc.compile(ir).logp_and_grad(theta)
    assert calls[False] < calls[True]
    np.testing.assert_allclose(results[False][0], results[True][0], rtol=1e-6)
    np.testing.assert_allclose(results[False][1], results[True][1], rtol=1e-4,
                               atol=1e-4 * np.max(np.abs(results[True][1])))
