"""The ops of exmc.ops_extra inside compiled models: forward values against numpy/scipy, gradients
against central differences, batched against single (model_checks.check_model_gradients)."""
import numpy as np
import pytest
from scipy import linalg
from scipy.special import expit, logsumexp

import exmc
from exmc import Builder as B
from exmc.errors import ValidationError
from model_checks import check_model_gradients

RNG = np.random.default_rng(7)


def _free(ir, name, shape):
    return B.rv(ir, name, "Normal", {"mu": 0.0, "sigma": 1.0}, shape=shape)


def _observe(ir, det, shape, seed=0):
    data = np.random.default_rng(seed).normal(size=shape)
    ir = B.rv(ir, f"{det}_y", "Normal", {"mu": det, "sigma": 1.0})
    return B.obs(ir, f"{det}_obs", f"{det}_y", data)


def _values(model, theta):
    return model.to_constrained(theta)


@pytest.mark.parametrize("op, numpy_fn", [
    ("maximum", np.maximum), ("minimum", np.minimum),
])
def test_maximum_minimum(op, numpy_fn):
    ir = _free(_free(B.new_ir(), "a", (4,)), "b", (4,))
    ir = _observe(B.det(ir, "m", op, ["a", "b"]), "m", (4,))
    model = check_model_gradients(ir, seed=1)
    v = _values(model, np.linspace(-1, 1, model.dim))
    np.testing.assert_array_equal(v["m"], numpy_fn(v["a"], v["b"]))


@pytest.mark.parametrize("op, numpy_fn", [("abs", np.abs), ("log_sigmoid", lambda x: np.log(expit(x)))])
def test_unary(op, numpy_fn):
    ir = _observe(B.det(_free(B.new_ir(), "a", (5,)), "u", op, ["a"]), "u", (5,))
    model = check_model_gradients(ir, seed=2)
    v = _values(model, np.linspace(-2, 2, model.dim))
    np.testing.assert_allclose(v["u"], numpy_fn(v["a"]), rtol=1e-12)


def test_log_sigmoid_is_stable_far_out():
    ir = B.det(B.data(B.new_ir(), "x", [-800.0, 0.0, 800.0]), "ls", "log_sigmoid", ["x"])
    ir = _free(ir, "dummy", ())
    analysis_value = exmc.compile(ir).to_constrained(np.zeros(1))["ls"]
    np.testing.assert_allclose(analysis_value, [-800.0, np.log(0.5), 0.0], rtol=1e-12)


def test_where_routes_the_gradient_by_the_condition():
    ir = B.data(B.new_ir(), "cond", np.array([1, 0, 1, 0]))
    ir = _free(_free(ir, "a", (4,)), "b", (4,))
    ir = _observe(B.det(ir, "w", "where", ["cond", "a", "b"]), "w", (4,))
    model = check_model_gradients(ir, seed=3)
    v = _values(model, np.arange(model.dim, dtype=float))
    np.testing.assert_array_equal(v["w"], np.where([1, 0, 1, 0], v["a"], v["b"]))


@pytest.mark.parametrize("axis, out_shape", [(None, ()), (1, (2,)), (-1, (2,)), ((0, 1), ()), (0, (3,))])
def test_logsumexp(axis, out_shape):
    ir = _free(B.new_ir(), "x", (2, 3))
    ir = _observe(B.det(ir, "l", "logsumexp", ["x"], axis=axis), "l", out_shape)
    model = check_model_gradients(ir, seed=4)
    v = _values(model, np.linspace(-3, 3, model.dim))
    np.testing.assert_allclose(v["l"], logsumexp(v["x"], axis=axis), rtol=1e-12)


def _spd(ir, n=3):
    """A = M M^T + n I from a free (n, n) matrix M: symmetric positive definite everywhere."""
    ir = _free(ir, "M", (n, n))
    ir = B.det(ir, "Mt", "transpose", ["M"])
    ir = B.det(ir, "MMt", "matmul", ["M", "Mt"])
    return B.det(ir, "A", "add", ["MMt", n * np.eye(n)])


def test_cholesky_matches_numpy_and_has_exact_gradients():
    ir = B.det(_spd(B.new_ir()), "L", "cholesky", ["A"])
    model = check_model_gradients(_observe(ir, "L", (3, 3)), seed=5)
    v = _values(model, RNG.normal(size=model.dim))
    np.testing.assert_allclose(v["L"], np.linalg.cholesky(v["A"]), rtol=1e-12)


def test_cholesky_gradient_reads_only_the_lower_triangle():
    # A free (non-symmetric) matrix plus a large diagonal: numpy's Cholesky ignores the upper triangle,
    # so the gradient must give zeros there (central differences agree).
    ir = _free(B.new_ir(), "E", (3, 3))
    ir = B.det(ir, "A", "add", ["E", 6.0 * np.eye(3)])
    ir = B.det(ir, "L", "cholesky", ["A"])
    model = check_model_gradients(_observe(ir, "L", (3, 3)), seed=6, scale=0.3)
    _, grad = model.logp_and_grad(np.full(model.dim, 0.1))
    prior_part = -np.full(9, 0.1)  # d/dE of the standard normal prior
    upper = np.triu_indices(3, 1)
    np.testing.assert_allclose(grad.reshape(3, 3)[upper], prior_part.reshape(3, 3)[upper], rtol=1e-12)


@pytest.mark.parametrize("b_shape", [(3,), (3, 2)])
def test_solve_triangular_with_a_random_factor(b_shape):
    ir = B.det(_spd(B.new_ir()), "L", "cholesky", ["A"])
    ir = _free(ir, "b", b_shape)
    ir = B.det(ir, "x", "solve_triangular", ["L", "b"])
    model = check_model_gradients(_observe(ir, "x", b_shape), seed=8)
    v = _values(model, RNG.normal(size=model.dim))
    np.testing.assert_allclose(v["x"], linalg.solve_triangular(v["L"], v["b"], lower=True), rtol=1e-10)


def test_solve_triangular_upper_with_constant_factor():
    upper = np.triu(RNG.normal(size=(3, 3))) + 3 * np.eye(3)
    ir = _free(B.data(B.new_ir(), "U", upper), "b", (3,))
    ir = B.det(ir, "x", "solve_triangular", ["U", "b"], lower=False)
    model = check_model_gradients(_observe(ir, "x", (3,)), seed=9)
    v = _values(model, RNG.normal(size=model.dim))
    np.testing.assert_allclose(v["x"], linalg.solve_triangular(upper, v["b"], lower=False), rtol=1e-10)


def test_gp_style_matvec_of_a_random_cholesky_factor():
    """f = L z with L = chol(K(rho)): the non-centred GP of gp_pois_regr, gradients through rho."""
    x = np.linspace(0, 1, 4)
    d2 = (x[:, None] - x[None, :]) ** 2
    ir = B.data(B.new_ir(), "d2", d2)
    ir = B.rv(ir, "rho", "Lognormal", {"mu": 0.0, "sigma": 0.5})
    ir = _free(ir, "z", (4,))
    ir = B.det(ir, "r2", "square", ["rho"])
    ir = B.det(ir, "scaled", "div", ["d2", "r2"])
    ir = B.det(ir, "half", "mul", [-0.5, "scaled"])
    ir = B.det(ir, "Kraw", "exp", ["half"])
    ir = B.det(ir, "K", "add", ["Kraw", 1e-6 * np.eye(4) + 0.1 * np.eye(4)])
    ir = B.det(ir, "L", "cholesky", ["K"])
    ir = B.det(ir, "f", "matmul", ["L", "z"])
    check_model_gradients(_observe(ir, "f", (4,)), seed=10)


def test_outer_and_transpose():
    ir = _free(_free(B.new_ir(), "a", (2,)), "b", (3,))
    ir = B.det(ir, "o", "outer", ["a", "b"])
    ir = B.det(ir, "ot", "transpose", ["o"])
    model = check_model_gradients(_observe(ir, "ot", (3, 2)), seed=11)
    v = _values(model, RNG.normal(size=model.dim))
    np.testing.assert_allclose(v["ot"], np.outer(v["a"], v["b"]).T)


def test_shape_errors_name_the_det():
    ir = B.det(_free(B.new_ir(), "v", (3,)), "L", "cholesky", ["v"])
    with pytest.raises(ValidationError, match="det 'L' args: needs a square matrix"):
        exmc.compile(ir)
    ir = B.det(_free(_free(B.new_ir(), "m", (3, 3)), "b", (2,)), "x", "solve_triangular", ["m", "b"])
    with pytest.raises(ValidationError, match="det 'x' args"):
        exmc.compile(ir)


def test_non_positive_definite_matrix_is_a_rejected_point():
    ir = _free(B.new_ir(), "A", (2, 2))
    ir = _observe(B.det(ir, "L", "cholesky", ["A"]), "L", (2, 2))
    model = exmc.compile(ir)
    from exmc.nuts.integrator import guarded_logp_and_grad

    lp, _ = guarded_logp_and_grad(model.logp_and_grad, np.array([-1.0, 0.0, 0.0, 1.0]))
    assert lp == -np.inf
