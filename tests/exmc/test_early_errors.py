"""Issue 15 item 7: malformed models and failing log-densities give early, named errors.

Event shapes are checked in analysis for every event family, strings among numbers are named with
their node and field, an empty IR or a model with nothing to sample is refused with a
ValidationError, wrong init_values are named, and an exception in a log-density that is not a
domain error reaches the user with the chain and iteration instead of becoming -inf.
"""
import math

import numpy as np
import pytest

import exmc
from exmc import Builder as B
from exmc.errors import DomainError, ValidationError
from exmc.nuts import ModelError, Sampler
from exmc.nuts.integrator import LogDensityError, guarded_logp_and_grad, is_domain_error


def _compile_error(ir) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        exmc.compile(ir)
    return info.value


# --- event shapes ----------------------------------------------------------------------------------

def test_dirichlet_alpha_length_must_match_the_declared_shape():
    ir = B.rv(B.new_ir(), "p", "Dirichlet", {"alpha": [1.0, 1.0, 1.0]}, shape=(4,))
    err = _compile_error(ir)
    assert (err.node, err.field) == ("p", "param 'alpha'")
    assert "(3,)" in err.reason and "(4,)" in err.reason


def test_mvnormal_observation_length_must_match_mu():
    ir = B.rv(B.new_ir(), "m", "MvNormal", {"mu": np.zeros(2), "cov": np.eye(2)})
    ir = B.obs(ir, "y", "m", [1.0, 2.0, 3.0])
    err = _compile_error(ir)
    assert (err.node, err.field) == ("m", "param 'mu'")
    assert "obs 'y'" in err.reason


def test_mvnormal_cov_from_data_must_be_d_by_d():
    ir = B.data(B.new_ir(), "c", np.eye(2))
    ir = B.rv(ir, "m", "MvNormal", {"mu": np.zeros(3), "cov": "c"})
    err = _compile_error(ir)
    assert (err.node, err.field) == ("m", "param 'cov'") and "(3, 3)" in err.reason


def test_referenced_dirichlet_alpha_is_checked_too():
    ir = B.rv(B.new_ir(), "a", "HalfNormal", {"sigma": 1.0}, shape=(3,))
    ir = B.rv(ir, "p", "Dirichlet", {"alpha": "a"}, shape=(5,))
    assert _compile_error(ir).field == "param 'alpha'"


def test_event_family_needs_event_dimensions():
    ir = B.rv(B.new_ir(), "w", "GaussianRandomWalk", {"sigma": 1.0, "init_sigma": 1.0}, shape=())
    err = _compile_error(ir)
    assert (err.node, err.field) == ("w", "shape") and "event dimension" in err.reason


def test_matching_event_shapes_still_compile():
    ir = B.rv(B.new_ir(), "m", "MvNormal", {"mu": 0.0, "cov": np.eye(3)})
    ir = B.rv(ir, "p", "Dirichlet", {"alpha": np.ones(3)}, shape=(2, 3))
    model = exmc.compile(ir)
    assert dict(model.free_names) == {"m": (3,), "p": (2, 3)}


# --- strings among numbers -------------------------------------------------------------------------

@pytest.mark.parametrize("call, node, field, where", [
    (lambda: B.rv(B.new_ir(), "x", "Normal", {"mu": [0.0, "a"], "sigma": 1.0}), "x", "param 'mu'", "(1,)"),
    (lambda: B.data(B.new_ir(), "d", [[1, 2], [3, "x"]]), "d", "value", "(1, 1)"),
    (lambda: B.obs(B.new_ir(), "o", "y", [1.0, "2"]), "o", "value", "(1,)"),
    (lambda: B.det(B.new_ir(), "s", "add", ["a", [1.0, "b"]]), "s", "arg 1", "(1,)"),
])
def test_strings_inside_numeric_lists_are_named(call, node, field, where):
    with pytest.raises(ValidationError) as info:
        call()
    assert (info.value.node, info.value.field) == (node, field)
    assert where in info.value.reason


# --- nothing to sample -----------------------------------------------------------------------------

def test_empty_ir_is_a_validation_error():
    with pytest.raises(ValidationError, match="empty"):
        exmc.compile(B.new_ir())
    with pytest.raises(ValidationError, match="empty"):
        Sampler.sample(B.new_ir(), num_samples=5, num_warmup=5)


def test_fully_observed_model_is_refused_before_sampling():
    ir = B.rv(B.new_ir(), "y", "Normal", {"mu": 0.0, "sigma": 1.0})
    ir = B.obs(ir, "y_obs", "y", 0.5)
    with pytest.raises(ValidationError, match="no free random variable"):
        Sampler.sample(ir, num_samples=5, num_warmup=5)


# --- init_values -----------------------------------------------------------------------------------

def _vector_model():
    return exmc.compile(B.rv(B.new_ir(), "m", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(2,)))


@pytest.mark.parametrize("value, match", [
    ([1.0, 2.0, 3.0], r"init_values\['m'\] has shape \(3,\), but free rv 'm' has shape \(2,\)"),
    ("a", r"init_values\['m'\] must be numeric"),
    ([np.nan, 0.0], r"init_values\['m'\] contains NaN"),
])
def test_wrong_init_values_are_named(value, match):
    with pytest.raises(ValueError, match=match):
        Sampler.sample(_vector_model(), init_values={"m": value}, num_samples=5, num_warmup=5)


def test_scalar_init_value_broadcasts_to_the_rv_shape():
    trace = Sampler.sample(_vector_model(), init_values={"m": 0.25}, num_samples=5, num_warmup=0)
    assert trace["m"].shape == (5, 2)


# --- exceptions inside a log-density ---------------------------------------------------------------

def test_domain_errors_are_recognised():
    assert is_domain_error(FloatingPointError("x"))
    assert is_domain_error(ZeroDivisionError("x"))
    assert is_domain_error(OverflowError("x"))
    assert is_domain_error(np.linalg.LinAlgError("not positive definite"))
    assert is_domain_error(DomainError("outside"))
    try:
        math.log(-1.0)
    except ValueError as exc:
        assert is_domain_error(exc)
    assert not is_domain_error(ValueError("operands could not be broadcast"))
    assert not is_domain_error(TypeError("unsupported operand"))
    assert not is_domain_error(KeyError("sigma"))


def test_guard_raises_non_domain_errors():
    def buggy(q):
        raise TypeError("unsupported operand type(s)")

    with pytest.raises(LogDensityError, match="TypeError: unsupported operand") as info:
        guarded_logp_and_grad(buggy, np.zeros(2))
    assert isinstance(info.value.cause, TypeError)


def _custom_model(bad: BaseException, threshold: float):
    """x ~ Normal(0, 1) written as a Custom density that raises ``bad`` where x > threshold."""
    def logp(value):
        if np.any(value > threshold):
            raise bad
        return -0.5 * value * value

    def grad(value):
        return -value
    return B.rv(B.new_ir(), "x", "Custom", {"logp": logp, "grad": grad, "support": "real"})


@pytest.mark.parametrize("parallel", [False, "vectorized", True])
def test_bug_in_a_log_density_reaches_the_user_with_chain_and_iteration(parallel):
    ir = _custom_model(NameError("name 'sigam' is not defined"), threshold=1.5)
    with pytest.raises(ModelError) as info:
        Sampler.sample_chains(ir, 2, num_samples=50, num_warmup=50, seed=3, parallel=parallel,
                              init_values={"x": 0.0})
    err = info.value
    assert err.chain in (0, 1) and err.phase in ("warmup", "sampling", "initialization")
    assert "NameError" in err.error and "sigam" in str(err)
    assert f"chain {err.chain}, {err.phase} iteration {err.iteration}" in str(err)
    if err.phase != "initialization":
        assert 1 <= err.iteration <= 100


def test_bug_at_initialization_is_reported_as_such():
    ir = _custom_model(KeyError("mu"), threshold=-np.inf)
    with pytest.raises(ModelError) as info:
        Sampler.sample(ir, num_samples=5, num_warmup=5)
    assert (info.value.phase, info.value.iteration) == ("initialization", 0)


def test_domain_error_in_a_log_density_is_a_rejected_point():
    ir = _custom_model(DomainError("x above 1.5"), threshold=1.5)
    trace = Sampler.sample(ir, num_samples=300, num_warmup=200, seed=1, init_values={"x": 0.0})
    assert trace["x"].max() <= 1.5  # the domain error truncates, by the user's own choice
    assert trace["x"].min() < -1.0
