"""Builder.rv(..., lower=/upper=): constant bounds become transforms, node bounds a det of a free
raw coordinate with the family's density and the Jacobian as a potential (Stan's
``real<lower=alpha>`` semantics: the density is not renormalised)."""
import numpy as np
import pytest
from scipy import stats

import exmc
from exmc import Builder as B
from exmc.errors import ValidationError
from exmc.nuts import Sampler
from model_checks import check_model_gradients


def test_constant_bounds_are_transforms():
    ir = B.rv(B.new_ir(), "x", "Normal", {"mu": 0.0, "sigma": 1.0}, lower=0.5)
    model = exmc.compile(ir)
    assert model.to_constrained(np.array([-30.0]))["x"] > 0.5
    ir = B.rv(B.new_ir(), "y", "Normal", {"mu": 0.0, "sigma": 1.0}, lower=-1.0, upper=2.0)
    values = exmc.compile(ir).to_constrained(np.array([50.0]))
    assert -1.0 < values["y"] <= 2.0


@pytest.mark.parametrize("bounds", [{"lower": "a"}, {"upper": "b"}, {"lower": "a", "upper": "b"}])
def test_node_bounds_have_exact_gradients_and_the_stan_density(bounds):
    ir = B.rv(B.new_ir(), "a", "Normal", {"mu": 0.0, "sigma": 1.0})
    ir = B.rv(ir, "gap", "HalfNormal", {"sigma": 1.0})
    ir = B.det(ir, "b", "add", ["a", "gap"])
    ir = B.rv(ir, "x", "Normal", {"mu": 0.3, "sigma": 2.0}, **bounds)
    model = check_model_gradients(ir, seed=4)
    theta = np.array([0.2, 0.1, -0.4])
    values = model.to_constrained(theta)
    a, b, x = values["a"], values["b"], values["x"]
    assert (a < x if "lower" in bounds else True) and (x < b if "upper" in bounds else True)
    # logp(jacobian=False) is the density in (a, gap, raw): Stan's in (a, gap, x) plus log |dx/draw|.
    raw = theta[2]
    if len(bounds) == 2:
        log_jac = np.log(b - a) + np.log(1 / (1 + np.exp(-raw))) + np.log(1 / (1 + np.exp(raw)))
    else:
        log_jac = raw
    expected = (stats.norm.logpdf(a) + stats.halfnorm.logpdf(values["gap"]) + stats.norm(0.3, 2.0).logpdf(x)
                + log_jac)
    assert model.logp({"a": a, "gap": values["gap"], "x__raw": raw}) == pytest.approx(expected, rel=1e-12)


def test_a_bound_from_data_gives_the_truncated_posterior():
    ir = B.data(B.new_ir(), "c", 0.5)
    ir = B.rv(ir, "x", "Normal", {"mu": 0.0, "sigma": 1.0}, lower="c")
    chains = Sampler.sample_chains(ir, 2, num_samples=500, num_warmup=300, seed=5)
    x = chains.stacked("x")
    truncated = stats.truncnorm(0.5, np.inf)
    ess = chains.summary()["x__raw"]["ess_bulk"]
    assert x.min() > 0.5
    assert abs(x.mean() - truncated.mean()) < 4 * truncated.std() / np.sqrt(ess)


def test_node_bounds_refuse_what_they_cannot_do():
    ir = B.rv(B.new_ir(), "a", "Normal", {"mu": 0.0, "sigma": 1.0})
    with pytest.raises(ValidationError, match="continuous scalar family"):
        B.rv(ir, "p", "Dirichlet", {"alpha": np.ones(3)}, lower="a")
    with pytest.raises(ValidationError, match="no transform"):
        B.rv(ir, "x", "Normal", {"mu": 0.0, "sigma": 1.0}, lower="a", transform="log")
    with pytest.raises(ValidationError, match="either bounds"):
        B.rv(ir, "x", "Normal", {"mu": 0.0, "sigma": 1.0}, lower=0.0, transform="log")
