"""dims on nodes and coords on the IR: stored by the Builder, checked against shapes in analysis,
carried by Chains (and through pickling, as a remote call returns them)."""
import pickle

import numpy as np
import pytest

import exmc
from exmc import Builder as B
from exmc.errors import ValidationError
from exmc.nuts import Sampler


def _model(dims=("school",), labels=tuple("ABC"), n=3):
    ir = B.coords(B.new_ir(), school=list(labels))
    ir = B.rv(ir, "theta", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(n,), dims=dims)
    return ir


def test_dims_and_coords_are_kept_by_every_builder_step():
    ir = _model()
    ir = B.data(ir, "x", np.ones(3), dims="school")
    ir = B.det(ir, "t2", "mul", ["theta", "x"], dims=("school",))
    assert ir.coord_map() == {"school": ("A", "B", "C")}
    assert ir.dims_map() == {"theta": ("school",), "x": ("school",), "t2": ("school",)}
    exmc.compile(ir)
    assert exmc.compile(ir, ncp="auto").ir.coord_map() == ir.coord_map()


def test_dims_must_name_every_axis():
    with pytest.raises(ValidationError) as info:
        exmc.compile(_model(dims=("school", "year")))
    assert (info.value.node, info.value.field) == ("theta", "dims")


def test_coords_length_must_match_the_axis():
    with pytest.raises(ValidationError, match="dimension 'school' .* length 4, but coords gives it length 3"):
        exmc.compile(_model(n=4))


def test_one_dimension_has_one_length():
    ir = B.rv(B.new_ir(), "a", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(2,), dims=("g",))
    ir = B.rv(ir, "b", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(3,), dims=("g",))
    with pytest.raises(ValidationError) as info:
        exmc.compile(ir)
    assert info.value.node == "b" and "rv 'a'" in info.value.reason


@pytest.mark.parametrize("dims, reason", [(("chain",), "sampler's own"), (("g", "g"), "repeats"), ((1,), "strings")])
def test_bad_dims_are_refused_at_build_time(dims, reason):
    with pytest.raises(ValidationError, match=reason):
        B.rv(B.new_ir(), "a", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(2, 2), dims=dims)


def test_bad_coords_are_refused():
    with pytest.raises(ValidationError, match="repeats a label"):
        B.coords(B.new_ir(), g=["a", "a"])
    with pytest.raises(ValidationError, match="1-d"):
        B.coords(B.new_ir(), g="abc")


def test_chains_carry_data_dims_and_coords_through_pickling():
    ir = _model()
    ir = B.rv(ir, "y", "Normal", {"mu": "theta", "sigma": 1.0}, dims=("school",))
    ir = B.obs(ir, "y_obs", "y", [0.5, 1.0, 1.5])
    chains = Sampler.sample_chains(ir, 1, num_samples=10, num_warmup=10, parallel=False)
    back = pickle.loads(pickle.dumps(chains))
    assert back.dims == {"theta": ("school",), "y": ("school",)}
    assert back.coords == {"school": ("A", "B", "C")}
    np.testing.assert_array_equal(back.groups["observed_data"]["y"], [0.5, 1.0, 1.5])
    np.testing.assert_array_equal(back[0]["theta"], chains[0]["theta"])
    assert chains.ir is ir and back.ir is None  # the IR (data, callables) does not travel
