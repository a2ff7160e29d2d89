"""Custom without a hand-written gradient: ``grad="fd"`` (central differences of the user's logp),
and a density written with exmc ops through Builder.potential (exact gradient from the program)."""
import numpy as np
import pytest
from scipy import stats

import exmc
from exmc import Builder as B
from exmc.nuts import Sampler
from model_checks import check_model_gradients


def _gumbel_logp(x, loc, scale):
    z = (x - loc) / scale
    return -np.log(scale) - z - np.exp(-z)


def test_fd_gradient_matches_the_exact_one_in_a_model():
    ir = B.rv(B.new_ir(), "loc", "Normal", {"mu": 0.0, "sigma": 1.0})
    ir = B.rv(ir, "scale", "HalfNormal", {"sigma": 1.0})
    ir = B.rv(ir, "y", "Custom", {"logp": _gumbel_logp, "grad": "fd", "support": "real", "loc": "loc",
                                  "scale": "scale"})
    ir = B.obs(ir, "y_obs", "y", [0.3, -0.2, 1.5, 0.9])
    model = check_model_gradients(ir, seed=1)
    values = {"loc": 0.2, "scale": 1.3}
    expected = (stats.norm.logpdf(0.2) + stats.halfnorm.logpdf(1.3)
                + stats.gumbel_r(0.2, 1.3).logpdf([0.3, -0.2, 1.5, 0.9]).sum())
    assert model.logp(values) == pytest.approx(expected, rel=1e-12)


def test_fd_custom_free_rv_samples_its_density():
    ir = B.rv(B.new_ir(), "x", "Custom", {"logp": lambda v: -0.5 * v * v, "grad": "fd", "support": "real"},
              shape=(2,))
    chains = Sampler.sample_chains(ir, 2, num_samples=300, num_warmup=200, seed=2)
    x = chains.stacked("x")
    ess = min(chains.summary()[f"x[{i}]"]["ess_bulk"] for i in range(2))
    assert np.all(np.abs(x.mean(axis=(0, 1))) < 4 / np.sqrt(ess))


def test_density_written_with_ops_gets_the_programs_exact_gradient():
    """A Gumbel likelihood built from dets and added with Builder.potential equals scipy's."""
    y = np.array([0.3, -0.2, 1.5, 0.9])
    ir = B.rv(B.new_ir(), "loc", "Normal", {"mu": 0.0, "sigma": 1.0})
    ir = B.rv(ir, "scale", "HalfNormal", {"sigma": 1.0})
    ir = B.det(ir, "shifted", "sub", [y, "loc"])
    ir = B.det(ir, "z", "div", ["shifted", "scale"])
    ir = B.det(ir, "negz", "neg", ["z"])
    ir = B.det(ir, "expnz", "exp", ["negz"])
    ir = B.det(ir, "logscale", "log", ["scale"])
    ir = B.det(ir, "a", "add", ["z", "expnz"])
    ir = B.det(ir, "b", "add", ["a", "logscale"])
    ir = B.det(ir, "terms", "neg", ["b"])
    ir = B.potential(ir, "gumbel", "terms")
    model = check_model_gradients(ir, seed=3)
    expected = stats.norm.logpdf(0.2) + stats.halfnorm.logpdf(1.3) + stats.gumbel_r(0.2, 1.3).logpdf(y).sum()
    assert model.logp({"loc": 0.2, "scale": 1.3}) == pytest.approx(expected, rel=1e-12)
