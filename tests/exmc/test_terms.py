"""exmc.terms / exmc.interop: the IR as plain terms (what an Elixir node sends) and sampling from them."""

from __future__ import annotations

import numpy as np
import pytest

from exmc import IR, Builder, Dist, ValidationError
from exmc.interop import ERLANG_EXPORTS, sample_chains
from pynode.etf import Atom

SEED = [2.1, 2.5, 1.8, 2.3, 2.7, 1.9, 2.4, 2.2, 2.6, 2.0]


def seed_terms(keys=str):
    k = keys
    return [
        {k("rv"): "mu", k("dist"): "Normal", k("params"): {k("mu"): 0.0, k("sigma"): 10.0}},
        {k("rv"): "sigma", k("dist"): "HalfNormal", k("params"): {k("sigma"): 2.0}},
        {k("rv"): "y", k("dist"): "Normal", k("params"): {k("mu"): "mu", k("sigma"): "sigma"}},
        {k("obs"): "y_obs", k("rv"): "y", k("value"): SEED},
    ]


def python_seed() -> IR:
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 10.0})
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": 2.0})
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", np.array(SEED))


def test_to_terms_is_the_issue_s_shape_and_round_trips():
    terms = python_seed().to_terms()
    assert terms == [
        {"rv": "mu", "dist": "Normal", "params": {"mu": 0.0, "sigma": 10.0}},
        {"rv": "sigma", "dist": "HalfNormal", "params": {"sigma": 2.0}},
        {"rv": "y", "dist": "Normal", "params": {"mu": "mu", "sigma": "sigma"}},
        {"obs": "y_obs", "rv": "y", "value": SEED},
    ]
    assert IR.from_terms(terms).to_terms() == terms


def test_dets_data_shapes_and_options_round_trip():
    ir = Builder.new_ir()
    ir = Builder.data(ir, "x", np.array([[1.0, 2.0], [3.0, 4.0]]))
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=(2,))
    ir = Builder.det(ir, "eta", "matmul", ["x", "beta"])
    ir = Builder.det(ir, "total", "sum", ["eta"], axis=0)
    terms = ir.to_terms()
    assert terms[1]["shape"] == [2] and terms[3]["options"] == {"axis": 0}
    assert IR.from_terms(terms).to_terms() == terms


def test_atom_and_binary_keys_and_names_are_accepted():
    as_atoms = seed_terms(Atom)
    as_binaries = [{k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in t.items()} for t in seed_terms()]
    for variant in (as_atoms, as_binaries):
        assert IR.from_terms(variant).to_terms() == python_seed().to_terms()


def test_bad_ir_gets_the_same_validation_error_as_in_python():
    terms = seed_terms()
    terms[2]["params"]["sigma"] = "sigam"
    with pytest.raises(ValidationError) as from_terms_error:
        Builder.validate(IR.from_terms(terms))
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 10.0})
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": 2.0})
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigam"})
    ir = Builder.obs(ir, "y_obs", "y", np.array(SEED))
    with pytest.raises(ValidationError) as python_error:
        Builder.validate(ir)
    assert str(from_terms_error.value) == str(python_error.value)
    assert "sigam" in str(from_terms_error.value)


@pytest.mark.parametrize(
    "terms, message",
    [
        ("not a list", "must be a list"),
        ([42], "node #1: must be a map"),
        ([{"name": "mu"}], "exactly one of the keys"),
        ([{"rv": "mu", "dist": "Normal", "params": {"mu": 0.0, "sigma": 1.0}, "colour": 1}], "unknown key of a rv node"),
        ([{"rv": "mu", "dist": "Nromal", "params": {}}], "unknown distribution 'Nromal'"),
    ],
)
def test_malformed_terms_name_the_node(terms, message):
    with pytest.raises(ValidationError, match=message):
        IR.from_terms(terms)


def test_sample_chains_from_terms_returns_maps_of_float_lists():
    chains = sample_chains(seed_terms(Atom), 2, [(Atom("num_samples"), 50), (Atom("num_warmup"), 50), (Atom("seed"), 1)])
    assert len(chains) == 2
    assert set(chains[0]) == {"mu", "sigma"} and len(chains[0]["mu"]) == 50
    assert all(isinstance(x, float) for x in chains[0]["mu"])
    packed = sample_chains(seed_terms(), 1, {"num_samples": 20, "num_warmup": 20, "arrays": Atom("binary")})
    mu = packed[0]["mu"]
    assert mu["dtype"] == "f64" and mu["shape"] == [20]
    assert np.frombuffer(mu["data"], "<f8").shape == (20,)
    with pytest.raises(ValueError, match="unknown option 'num_draws'"):
        sample_chains(seed_terms(), 1, [(Atom("num_draws"), 10)])


def test_the_erlang_export_table_names_the_elixir_module():
    assert ERLANG_EXPORTS == {("Elixir.Exmc.NUTS.Sampler", "sample_chains"): "exmc.interop:sample_chains"}
