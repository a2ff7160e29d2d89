"""Observed kernels that precompute the data-only terms (``exmc/dist/observed_kernels.py``) and the
fused link kernels of the compiler: each must equal the plain path — ``logp_and_grads`` summed and
reduced — for scalar and per-row parameters, single and batched, at tight tolerance."""
from __future__ import annotations

import numpy as np
import pytest

from exmc.dist import Dist
from exmc.dist.base import sum_to_shape

N = 7
CHAINS = 3
RTOL = 1e-12

rng = np.random.default_rng(14)
COUNTS = rng.poisson(3.0, size=N).astype(float)
COUNTS[0] = 0.0  # a zero count: xlogy's 0 * log(mu) = 0
TRIALS = COUNTS + rng.integers(0, 5, size=N)
POSITIVE = rng.gamma(2.0, 1.5, size=N)

# family, data, constant params, {varying name: sampler of a value of a given shape}
CASES = {
    "poisson": (Dist.Poisson, COUNTS, {}, {"mu": lambda s: rng.uniform(0.5, 5.0, size=s)}),
    "binomial-logit": (Dist.Binomial, COUNTS, {"n": TRIALS}, {"logit_p": lambda s: rng.normal(0.0, 1.5, size=s)}),
    "binomial-p": (Dist.Binomial, COUNTS, {"n": TRIALS}, {"p": lambda s: rng.uniform(0.05, 0.95, size=s)}),
    "binomial-scalar-n": (Dist.Binomial, COUNTS, {"n": float(TRIALS.max())},
                          {"logit_p": lambda s: rng.normal(0.0, 1.5, size=s)}),
    "negbin-both": (Dist.NegativeBinomial, COUNTS, {}, {"mu": lambda s: rng.uniform(0.5, 5.0, size=s),
                                                       "alpha": lambda s: rng.uniform(0.5, 8.0, size=s)}),
    "negbin-mu": (Dist.NegativeBinomial, COUNTS, {"alpha": 2.5}, {"mu": lambda s: rng.uniform(0.5, 5.0, size=s)}),
    "negbin-alpha": (Dist.NegativeBinomial, COUNTS, {"mu": 3.0}, {"alpha": lambda s: rng.uniform(0.5, 8.0, size=s)}),
    "gamma-both": (Dist.Gamma, POSITIVE, {}, {"alpha": lambda s: rng.uniform(0.5, 4.0, size=s),
                                            "beta": lambda s: rng.uniform(0.2, 3.0, size=s)}),
    "gamma-alpha": (Dist.Gamma, POSITIVE, {"beta": 0.7}, {"alpha": lambda s: rng.uniform(0.5, 4.0, size=s)}),
    "gamma-beta": (Dist.Gamma, POSITIVE, {"alpha": 2.0}, {"beta": lambda s: rng.uniform(0.2, 3.0, size=s)}),
}


def _plain(family, y, consts, values):
    """The oracle: ``logp_and_grads`` summed over the data, each gradient reduced to its input."""
    lp, grads = family.logp_and_grads(y, **consts, **values)
    return float(np.sum(lp)), {k: sum_to_shape(np.asarray(grads[k]), np.shape(v)) for k, v in values.items()}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("param_shape", ["scalar", "rows"])
def test_observed_kernel_equals_plain_path(case, param_shape):
    family, y, consts, samplers = CASES[case]
    shape = () if param_shape == "scalar" else y.shape
    varying = tuple((name, shape) for name in samplers)
    names = [name for name, _ in varying]
    single = family.observed_kernel(y, varying, False, **consts)
    batched = family.observed_kernel(y, varying, True, **consts)
    assert single is not None and batched is not None, f"{case}: kernel declined {varying}"
    rows = [{name: samplers[name](shape) for name in names} for _ in range(CHAINS)]
    for values in rows:
        lp, grads = single(*[values[name] for name in names])
        expected_lp, expected = _plain(family, y, consts, values)
        assert float(lp) == pytest.approx(expected_lp, rel=RTOL)
        for name, g in zip(names, grads):
            np.testing.assert_allclose(g, expected[name], rtol=RTOL, atol=1e-12, err_msg=f"{case} d/d{name}")
    lps, grads = batched(*[np.stack([np.asarray(r[name]) for r in rows]) for name in names])
    assert np.shape(lps) == (CHAINS,)
    for c, values in enumerate(rows):
        expected_lp, expected = _plain(family, y, consts, values)
        assert lps[c] == pytest.approx(expected_lp, rel=RTOL)
        for name, g in zip(names, grads):
            np.testing.assert_allclose(g[c], expected[name], rtol=RTOL, atol=1e-12)


def test_kernels_decline_shapes_they_do_not_cover():
    assert Dist.Poisson.observed_kernel(COUNTS, (("mu", (2,)),), False) is None
    assert Dist.Binomial.observed_kernel(COUNTS, (("logit_p", ()),), False, n=TRIALS[:3]) is None
    assert Dist.Gamma.observed_kernel(np.append(POSITIVE, 0.0), (("alpha", ()),), False, beta=1.0) is None
