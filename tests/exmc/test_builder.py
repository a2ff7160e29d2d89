"""The Builder API of the seed: each call returns a new, immutable, picklable IR."""
from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pytest

import exmc
from exmc import Builder, Dist
from exmc import transforms
from exmc.ir import IR, RV, Data, Det, Obs
from seed_model import SEED_Y, seed_ir


def test_each_call_returns_a_new_ir_and_leaves_the_old_one_alone():
    empty = Builder.new_ir()
    one = Builder.rv(empty, "mu", Dist.Normal, {"mu": 0.0, "sigma": 10.0})
    assert len(empty) == 0 and len(one) == 1
    assert one is not empty
    assert isinstance(one.nodes[0], RV) and one.nodes[0].dist is Dist.Normal


def test_seed_ir_structure():
    ir = seed_ir()
    kinds = [type(n) for n in ir]
    assert kinds == [RV, RV, RV, Obs]
    y = ir.get("y")
    assert y.param("mu") == "mu" and y.param("sigma") == "sigma"
    assert ir.get("y_obs").rv == "y"
    np.testing.assert_array_equal(ir.get("y_obs").value, SEED_Y)


def test_nodes_are_frozen_and_arrays_read_only():
    ir = seed_ir()
    with pytest.raises(AttributeError):
        ir.nodes[0].name = "nu"  # type: ignore[misc]
    with pytest.raises(ValueError):
        ir.get("y_obs").value[0] = 99.0


def test_caller_array_is_copied():
    data = np.array([1.0, 2.0])
    ir = Builder.data(Builder.new_ir(), "d", data)
    data[0] = 50.0
    assert ir.get("d").value[0] == 1.0


def test_constants_are_float_arrays_and_integer_data_stays_integer():
    ir = Builder.rv(Builder.new_ir(), "x", Dist.Normal, {"mu": 0, "sigma": 1})
    assert ir.get("x").param("mu").dtype == np.float64
    ir = Builder.data(ir, "g", [0, 2, 1])
    assert ir.get("g").value.dtype == np.int64


def test_ir_pickles_with_pickle_and_cloudpickle():
    ir = seed_ir()
    for module in (pickle, cloudpickle):
        back = module.loads(module.dumps(ir))
        assert [n.name for n in back] == [n.name for n in ir]
        assert back.get("mu").dist is Dist.Normal
        model = exmc.compile(back)
        theta = np.array([0.4, -0.3])
        assert model.logp_and_grad(theta)[0] == exmc.compile(ir).logp_and_grad(theta)[0]


def test_det_with_options_and_constants():
    ir = Builder.rv(Builder.new_ir(), "x", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=(2, 3))
    ir = Builder.det(ir, "s", "sum", ["x"], axis=1)
    ir = Builder.det(ir, "a", "affine", [1.0, 2.0, "s"])
    det = ir.get("s")
    assert isinstance(det, Det) and det.options == (("axis", 1),)
    model = exmc.compile(ir)
    values = model.to_constrained(np.arange(6.0))
    np.testing.assert_allclose(values["s"], np.arange(6.0).reshape(2, 3).sum(axis=1))
    np.testing.assert_allclose(values["a"], 1.0 + 2.0 * values["s"])


def test_shape_as_int_and_tuple():
    ir = Builder.rv(Builder.new_ir(), "a", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=3)
    ir = Builder.rv(ir, "b", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=(2, 2))
    model = exmc.compile(ir)
    assert model.free_names == [("a", (3,)), ("b", (2, 2))]
    assert model.dim == 7


def test_transform_override_by_name_and_instance():
    ir = Builder.rv(Builder.new_ir(), "s", Dist.HalfNormal, {"sigma": 1.0}, transform="identity")
    assert ir.get("s").transform is transforms.identity
    ir = Builder.rv(Builder.new_ir(), "s", Dist.Beta, {"alpha": 2.0, "beta": 2.0},
                    transform=transforms.Interval(lower=0.0, upper=1.0))
    model = exmc.compile(ir)
    # Interval(0, 1) maps theta=0 to 0.5.
    assert model.to_constrained(np.zeros(1))["s"] == pytest.approx(0.5)


def test_bad_transform_is_rejected():
    with pytest.raises(exmc.ValidationError, match="rv 's' transform"):
        Builder.rv(Builder.new_ir(), "s", Dist.HalfNormal, {"sigma": 1.0}, transform="squash")


def test_structured_parameters_pass_through():
    components = [(Dist.Normal, {"mu": -1.0, "sigma": 1.0}), (Dist.Normal, {"mu": 2.0, "sigma": 0.5})]
    ir = Builder.rv(Builder.new_ir(), "m", Dist.Mixture, {"weights": np.array([0.3, 0.7]), "components": components})
    model = exmc.compile(ir)
    lp, grad = model.logp_and_grad(np.array([0.1]))
    from scipy import stats
    expected = np.log(0.3 * stats.norm(-1, 1).pdf(0.1) + 0.7 * stats.norm(2, 0.5).pdf(0.1))
    assert lp == pytest.approx(expected)


def test_validate_runs_whole_model_checks():
    ir = Builder.rv(Builder.new_ir(), "y", Dist.Normal, {"mu": "nope", "sigma": 1.0})
    with pytest.raises(exmc.ValidationError, match="unknown node 'nope'"):
        Builder.validate(ir)
    assert Builder.validate(seed_ir()) is not None


def test_nodes_may_be_added_before_what_they_reference():
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": 1.0})
    ir = Builder.obs(ir, "y_obs", "y", SEED_Y)
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 10.0})
    model = exmc.compile(ir)
    assert model.free_names == [("mu", ())]


def test_ir_is_not_builder_input_type_error():
    with pytest.raises(TypeError, match="expected an IR"):
        Builder.rv([], "x", Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    assert isinstance(Builder.new_ir(), IR)
    assert isinstance(Builder.data(Builder.new_ir(), "d", [1.0]).nodes[0], Data)
