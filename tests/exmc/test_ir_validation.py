"""Every validation error of the issue, one by one: each must name the offending node and field."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import exmc
from exmc import Builder, Dist, ValidationError
from exmc.ir import check_structure
from seed_model import SEED_Y, seed_ir


def raises(match_node: str, match_field: str, *fragments: str):
    """Context manager: a ValidationError whose node/field are these and whose text has fragments."""
    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(ValidationError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.ctx.__exit__(*exc)
            err = self.info.value
            assert err.node == match_node, str(err)
            assert match_field in err.field, str(err)
            message = str(err)
            assert repr(match_node) in message
            for fragment in fragments:
                assert fragment in message, message
            return suppressed
    return _Check()


def test_seed_model_is_valid():
    model = exmc.compile(seed_ir())
    assert model.dim == 2


def test_unknown_reference_names_node_param_and_target():
    with raises("y", "param 'sigma'", "unknown node 'sigam'"):
        exmc.compile(seed_ir(sigma_ref="sigam"))


def test_unknown_reference_in_det_argument():
    ir = Builder.det(seed_ir(), "d", "add", ["mu", "nope"])
    with raises("d", "arg 1", "unknown node 'nope'"):
        exmc.compile(ir)


def test_dependency_cycle_is_named():
    ir = Builder.new_ir()
    ir = Builder.det(ir, "a", "exp", ["b"])
    ir = Builder.det(ir, "b", "exp", ["a"])
    ir = Builder.rv(ir, "x", Dist.Normal, {"mu": "a", "sigma": 1.0})
    with raises("a", "arg 0", "dependency cycle", "'a' -> 'b' -> 'a'"):
        exmc.compile(ir)


def test_self_reference_is_a_cycle():
    ir = Builder.rv(Builder.new_ir(), "x", Dist.Normal, {"mu": "x", "sigma": 1.0})
    with raises("x", "param 'mu'", "dependency cycle 'x' -> 'x'"):
        exmc.compile(ir)


def test_support_bounds_depending_on_a_free_rv_have_no_transform():
    ir = Builder.rv(Builder.new_ir(), "hi", Dist.HalfNormal, {"sigma": 1.0})
    ir = Builder.rv(ir, "u", Dist.Uniform, {"lower": 0.0, "upper": "hi"})
    with raises("u", "transform", "upper"):
        exmc.compile(ir)


def test_duplicate_name():
    with raises("mu", "name", "duplicate", "rv"):
        Builder.data(seed_ir(), "mu", [1.0])


def test_unknown_distribution():
    with raises("x", "dist", "unknown distribution 'Normall'"):
        Builder.rv(Builder.new_ir(), "x", "Normall", {"mu": 0.0, "sigma": 1.0})


def test_unknown_parameter_name():
    with raises("x", "param 'sd'", "unknown parameter of Normal", "mu, sigma"):
        Builder.rv(Builder.new_ir(), "x", Dist.Normal, {"mu": 0.0, "sd": 1.0})


def test_missing_parameter_name():
    with raises("x", "param 'sigma'", "missing parameter of Normal"):
        Builder.rv(Builder.new_ir(), "x", Dist.Normal, {"mu": 0.0})


def test_both_alternative_parameter_sets_given():
    with raises("k", "param", "exactly one of"):
        Builder.rv(Builder.new_ir(), "k", Dist.Bernoulli, {"p": 0.5, "logit_p": 0.0})


def test_constant_parameter_outside_domain():
    with raises("s", "param 'sigma'", "sigma"):
        Builder.rv(Builder.new_ir(), "s", Dist.HalfNormal, {"sigma": -1.0})


def test_constant_parameter_nan():
    with raises("x", "param 'mu'", "NaN"):
        Builder.rv(Builder.new_ir(), "x", Dist.Normal, {"mu": np.nan, "sigma": 1.0})


def test_data_referenced_parameter_outside_domain_is_caught_at_compile():
    ir = Builder.data(Builder.new_ir(), "s", np.array([1.0, -2.0]))
    ir = Builder.rv(ir, "x", Dist.Normal, {"mu": 0.0, "sigma": "s"})
    with raises("x", "param 'sigma'"):
        exmc.compile(ir)


def test_parameter_shape_mismatch():
    ir = Builder.rv(Builder.new_ir(), "x", Dist.Normal, {"mu": np.zeros(3), "sigma": 1.0}, shape=(4,))
    with raises("x", "param 'mu'", "(3,)", "(4,)"):
        exmc.compile(ir)


def test_parameter_shapes_that_do_not_broadcast():
    ir = Builder.rv(Builder.new_ir(), "x", Dist.Normal, {"mu": np.zeros(3), "sigma": np.ones(4)})
    with raises("x", "params", "do not broadcast"):
        exmc.compile(ir)


def test_det_arguments_that_do_not_broadcast():
    ir = Builder.rv(Builder.new_ir(), "x", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=3)
    ir = Builder.det(ir, "d", "add", ["x", np.zeros(4)])
    with raises("d", "args", "do not broadcast"):
        exmc.compile(ir)


def test_observed_shape_differs_from_declared_shape():
    ir = Builder.rv(Builder.new_ir(), "y", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=(3,))
    ir = Builder.obs(ir, "y_obs", "y", np.zeros(4))
    with raises("y", "shape", "(3,)", "(4,)"):
        exmc.compile(ir)


def test_nan_in_data():
    with raises("X", "value", "NaN"):
        Builder.data(Builder.new_ir(), "X", np.array([[1.0, np.nan]]))


def test_inf_in_observation():
    ir = Builder.rv(Builder.new_ir(), "y", Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    with raises("y_obs", "value", "infinity"):
        Builder.obs(ir, "y_obs", "y", np.array([1.0, np.inf]))


def test_observed_value_outside_bernoulli_support():
    ir = Builder.rv(Builder.new_ir(), "b", Dist.Bernoulli, {"p": 0.3})
    ir = Builder.obs(ir, "b_obs", "b", np.array([0.0, 1.5, 1.0]))
    with raises("b_obs", "value", "1.5", "Bernoulli"):
        exmc.compile(ir)


def test_negative_count_for_poisson():
    ir = Builder.rv(Builder.new_ir(), "lam", Dist.Exponential, {"lambda": 1.0})
    ir = Builder.rv(ir, "k", Dist.Poisson, {"mu": "lam"})
    ir = Builder.obs(ir, "k_obs", "k", np.array([3.0, -1.0]))
    with raises("k_obs", "value", "-1.0", "Poisson"):
        exmc.compile(ir)


def test_obs_of_unknown_rv():
    ir = Builder.obs(seed_ir(), "z_obs", "z", np.zeros(2))
    with raises("z_obs", "rv", "unknown rv 'z'"):
        exmc.compile(ir)


def test_obs_of_a_non_rv_node():
    ir = Builder.data(seed_ir(), "D", np.zeros(2))
    ir = Builder.obs(ir, "d_obs", "D", np.zeros(2))
    with raises("d_obs", "rv", "data node"):
        exmc.compile(ir)


def test_rv_observed_twice_at_build_time():
    with raises("y_obs2", "rv", "already observed", "'y_obs'"):
        Builder.obs(seed_ir(), "y_obs2", "y", SEED_Y)


def test_rv_observed_twice_in_a_hand_made_ir():
    from exmc.ir import IR, Obs

    ir = seed_ir()
    ir = IR(ir.nodes + (Obs("again", "y", SEED_Y),))
    with raises("again", "rv", "already observed"):
        check_structure(ir)


def test_unobserved_discrete_rv_says_nuts_cannot_sample_it():
    ir = Builder.rv(Builder.new_ir(), "k", Dist.Poisson, {"mu": 3.0})
    with raises("k", "dist", "discrete", "NUTS cannot sample"):
        exmc.compile(ir)


def test_index_out_of_range():
    ir = Builder.rv(Builder.new_ir(), "theta", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=3)
    ir = Builder.data(ir, "g", np.array([0, 1, 3]))
    ir = Builder.det(ir, "tg", "index", ["theta", "g"])
    with raises("tg", "args", "index out of range", "3"):
        exmc.compile(ir)


def test_negative_index_is_out_of_range():
    ir = Builder.rv(Builder.new_ir(), "theta", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=3)
    ir = Builder.det(ir, "tg", "index", ["theta", np.array([0, -1])])
    with raises("tg", "args", "index out of range", "-1"):
        exmc.compile(ir)


def test_index_by_random_quantity_is_rejected():
    ir = Builder.rv(Builder.new_ir(), "theta", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=3)
    ir = Builder.det(ir, "tg", "index", ["theta", "theta"])
    with raises("tg", "args", "constant integer data"):
        exmc.compile(ir)


def test_unknown_op_and_wrong_arity_and_unknown_option():
    with raises("d", "op", "unknown op 'frobnicate'"):
        Builder.det(seed_ir(), "d", "frobnicate", ["mu"])
    with raises("d", "args", "takes 2 argument"):
        exmc.compile(Builder.det(seed_ir(), "d", "add", ["mu"]))
    with raises("d", "option 'axes'", "no such option"):
        exmc.compile(Builder.det(seed_ir(), "d", "exp", ["mu"], axes=0))


def test_reference_to_an_obs_node_points_to_its_rv():
    ir = Builder.det(seed_ir(), "d", "exp", ["y_obs"])
    with raises("d", "arg 0", "obs node", "'y'"):
        exmc.compile(ir)


def test_noncentered_on_a_non_normal_rv():
    ir = Builder.rv(Builder.new_ir(), "s", Dist.HalfNormal, {"sigma": 1.0}, reparam="noncentered")
    with raises("s", "reparam", "Normal"):
        exmc.compile(ir)


def test_unknown_reparametrisation():
    with raises("x", "reparam", "unknown reparametrisation"):
        Builder.rv(Builder.new_ir(), "x", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, reparam="whitened")


def test_censoring_unsupported_family_names_obs():
    ir = Builder.rv(Builder.new_ir(), "y", Dist.Gamma, {"alpha": 2.0, "beta": 1.0})
    ir = Builder.obs(ir, "y_obs", "y", np.array([1.0, 3.0]), censored=(-np.inf, 3.0))
    with raises("y_obs", "censored", "Gamma"):
        exmc.compile(ir)


def test_censoring_bounds_must_be_ordered():
    ir = Builder.rv(Builder.new_ir(), "y", Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    with raises("y_obs", "censored", "below"):
        Builder.obs(ir, "y_obs", "y", np.zeros(2), censored=(1.0, 0.0))


def test_validation_error_is_a_value_error_and_pickles():
    err = ValidationError("rv", "y", "param 'sigma'", "refers to unknown node 'sigam'")
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.node, back.field, str(back)) == ("y", "param 'sigma'", str(err))
    assert str(err) == "rv 'y' param 'sigma': refers to unknown node 'sigam'"
