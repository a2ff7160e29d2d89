"""Transforms: round trips, log-Jacobians against numerical log|det J|, gradients of
``g_y . forward(x) + sum(logdet)`` against finite differences, shapes, and defaults by support."""
from __future__ import annotations

import numpy as np
import pytest

from dist_checks import assert_close_grad, numerical_gradient
from exmc import transforms
from exmc.dist import Dist

ELEMENTWISE = {
    "identity": transforms.identity,
    "log": transforms.log,
    "logit": transforms.logit,
    "lower_bound": transforms.LowerBound(lower=np.array([-2.0, 0.5, 3.0])),
    "upper_bound": transforms.UpperBound(upper=np.array(1.5)),
    "interval": transforms.Interval(lower=np.array([-1.0, 0.0, 2.0]), upper=np.array([1.0, 5.0, 2.5])),
}


def _x(rng, shape=(4, 3)):
    return rng.normal(0.0, 1.5, size=shape)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_round_trip_and_range(name):
    t = ELEMENTWISE[name]
    x = _x(np.random.default_rng(0))
    y = t.forward(x)
    np.testing.assert_allclose(t.inverse(y), x, rtol=1e-9, atol=1e-9)
    if name == "log":
        assert (y > 0).all()
    if name == "interval":
        assert ((y > t.lower) & (y < t.upper)).all()


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_log_jacobian_is_log_derivative(name):
    t = ELEMENTWISE[name]
    x = _x(np.random.default_rng(1))
    h = 1e-6
    numeric = np.log(np.abs((t.forward(x + h) - t.forward(x - h)) / (2 * h)))
    np.testing.assert_allclose(t.log_det_jacobian(x), numeric, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_forward_and_log_det_grads(name):
    t = ELEMENTWISE[name]
    rng = np.random.default_rng(2)
    x = _x(rng)
    g_y = rng.normal(size=x.shape)
    y, logdet, g_x = t.forward_and_log_det_grads(x, g_y)
    np.testing.assert_allclose(y, t.forward(x), rtol=1e-14)
    np.testing.assert_allclose(logdet, t.log_det_jacobian(x), rtol=1e-14, atol=1e-14)
    numeric = numerical_gradient(lambda z: float(np.sum(g_y * t.forward(z)) + np.sum(t.log_det_jacobian(z))), x)
    assert_close_grad(g_x, numeric, name)


@pytest.mark.parametrize("k", [2, 3, 6])
def test_stick_breaking_maps_onto_the_simplex_and_back(k):
    t = transforms.simplex
    x = _x(np.random.default_rng(k), (5, k - 1))
    y = t.forward(x)
    assert y.shape == (5, k)
    assert (y > 0).all()
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(t.inverse(y), x, rtol=1e-9, atol=1e-9)
    assert t.unconstrained_shape((5, k)) == (5, k - 1)
    np.testing.assert_allclose(t.forward(np.zeros(k - 1)), np.full(k, 1.0 / k), rtol=1e-14)


@pytest.mark.parametrize("k", [2, 4])
def test_stick_breaking_log_jacobian_is_log_det_of_the_first_k_minus_1_coordinates(k):
    # The simplex is parametrised by its first K-1 coordinates; the density of those is what the
    # Dirichlet's logp describes, so log|det d y[:K-1] / d x| is the right Jacobian.
    t = transforms.simplex
    x = _x(np.random.default_rng(10 + k), (k - 1,))
    h = 1e-6
    jac = np.empty((k - 1, k - 1))
    for j in range(k - 1):
        e = np.zeros(k - 1)
        e[j] = h
        jac[:, j] = (t.forward(x + e)[:-1] - t.forward(x - e)[:-1]) / (2 * h)
    np.testing.assert_allclose(t.log_det_jacobian(x), np.linalg.slogdet(jac)[1], rtol=1e-7, atol=1e-7)


def test_stick_breaking_gradient_with_batch_axes():
    t = transforms.simplex
    rng = np.random.default_rng(3)
    x = _x(rng, (2, 3, 4))
    g_y = rng.normal(size=(2, 3, 5))
    y, logdet, g_x = t.forward_and_log_det_grads(x, g_y)
    assert logdet.shape == (2, 3) and g_x.shape == x.shape
    numeric = numerical_gradient(lambda z: float(np.sum(g_y * t.forward(z)) + np.sum(t.log_det_jacobian(z))), x)
    assert_close_grad(g_x, numeric, "stick_breaking")


def test_interval_rejects_bad_bounds():
    with pytest.raises(ValueError, match="upper > lower"):
        transforms.Interval(lower=1.0, upper=1.0)
    with pytest.raises(ValueError, match="finite bounds"):
        transforms.Interval(lower=0.0, upper=np.inf)
    with pytest.raises(ValueError, match="length >= 2"):
        transforms.simplex.unconstrained_shape((1,))


def test_positional_bounds_are_the_bounds():
    # name and event_ndim are keyword-only: positional arguments go to the bounds.
    interval = transforms.Interval(2.0, 5.0)
    assert (interval.name, interval.lower, interval.upper) == ("interval", 2.0, 5.0)
    assert interval == transforms.Interval(lower=2.0, upper=5.0)
    np.testing.assert_allclose(interval.forward(np.array([0.0])), [3.5])
    assert (transforms.LowerBound(1.5).name, transforms.LowerBound(1.5).lower) == ("lower_bound", 1.5)
    assert (transforms.UpperBound(-1.0).name, transforms.UpperBound(-1.0).upper) == ("upper_bound", -1.0)
    with pytest.raises(TypeError):
        transforms.Interval("interval", 0.0, 1.0)  # the old (buggy) field order


def test_by_name_and_unknown_name():
    assert transforms.by_name("log") is transforms.log
    with pytest.raises(ValueError, match="unknown transform 'logg'"):
        transforms.by_name("logg")


@pytest.mark.parametrize("name, params, expected", [
    ("Normal", {"mu": 0.0, "sigma": 1.0}, transforms.Identity),
    ("HalfNormal", {"sigma": 1.0}, transforms.Log),
    ("Gamma", {"alpha": 1.0, "beta": 1.0}, transforms.Log),
    ("Beta", {"alpha": 1.0, "beta": 1.0}, transforms.Logit),
    ("Uniform01", {}, transforms.Logit),
    ("Uniform", {"lower": -1.0, "upper": 2.0}, transforms.Interval),
    ("TruncatedNormal", {"mu": 0.0, "sigma": 1.0, "lower": 0.0, "upper": np.inf}, transforms.LowerBound),
    ("TruncatedNormal", {"mu": 0.0, "sigma": 1.0, "lower": -np.inf, "upper": 0.0}, transforms.UpperBound),
    ("TruncatedNormal", {"mu": 0.0, "sigma": 1.0, "lower": -np.inf, "upper": np.inf}, transforms.Identity),
])
def test_default_transform_by_support(name, params, expected):
    t = getattr(Dist, name).default_transform(**{k: np.asarray(v) for k, v in params.items()})
    assert type(t) is expected


def test_default_transform_of_uniform_needs_constant_bounds():
    with pytest.raises(ValueError, match="param 'upper' must be a constant"):
        Dist.Uniform.default_transform(lower=np.asarray(0.0))


def test_uniform_default_transform_keeps_draws_inside():
    t = Dist.Uniform.default_transform(lower=np.asarray(-1.0), upper=np.asarray(2.0))
    y = t.forward(np.array([-40.0, 0.0, 40.0]))
    assert (y >= -1.0).all() and (y <= 2.0).all() and y[1] == pytest.approx(0.5)


def test_resolve_fills_optional_bounds_so_the_default_transform_sees_them():
    family, params = Dist.TruncatedNormal.resolve({"mu": 0.0, "sigma": 1.0, "lower": 0.5})
    assert family is Dist.TruncatedNormal and params["upper"] == np.inf
    t = family.default_transform(**{k: np.asarray(v) for k, v in params.items()})
    assert type(t) is transforms.LowerBound and t.lower == 0.5
    # a bound that is a reference is absent from the constants: no transform can be built
    family, params = Dist.TruncatedNormal.resolve({"mu": 0.0, "sigma": 1.0, "lower": "a"})
    with pytest.raises(ValueError, match="param 'lower' must be a constant"):
        family.default_transform(mu=np.asarray(0.0), sigma=np.asarray(1.0), upper=np.asarray(params["upper"]))


@pytest.mark.parametrize("name", sorted(ELEMENTWISE) + ["stick_breaking"])
def test_backward_equals_the_gradient_of_the_full_pass(name):
    t = ELEMENTWISE.get(name, transforms.simplex)
    rng = np.random.default_rng(4)
    x = _x(rng, (4, 3))
    g_y = rng.normal(size=t.forward(x).shape)
    y, _, g_x = t.forward_and_log_det_grads(x, g_y)
    np.testing.assert_allclose(t.backward(x, y, g_y), g_x, rtol=1e-12, atol=1e-12)
