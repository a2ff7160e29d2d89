"""``to_constrained(theta, dets=...)``: the sampler computes only the deterministics it keeps."""
import numpy as np

import exmc
from exmc import Builder, Dist


def _hierarchy():
    """A noncentered ``theta`` whose ``mu`` is a det, a det nobody reads, and a GLM-like det."""
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "m", Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    ir = Builder.rv(ir, "tau", Dist.HalfNormal, {"sigma": 1.0})
    ir = Builder.det(ir, "shift", "exp", ["m"])
    ir = Builder.rv(ir, "theta", Dist.Normal, {"mu": "shift", "sigma": "tau"}, shape=(3,), reparam="noncentered")
    ir = Builder.det(ir, "spare", "exp", ["theta"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "theta", "sigma": 1.0})
    return Builder.obs(ir, "y_obs", "y", np.array([0.5, 1.5, 2.0]))


def test_selected_dets_equal_the_full_conversion_and_skip_the_rest():
    model = exmc.compile(_hierarchy())
    theta = np.random.default_rng(0).normal(size=(50, model.dim))
    full = model.to_constrained(theta)
    none = model.to_constrained(theta, dets=[])
    assert set(none) == {"m", "tau", "theta"}  # the noncentered theta still reads its det mu
    some = model.to_constrained(theta, dets=["spare"])
    assert set(some) == {"m", "tau", "theta", "spare"}
    for part in (none, some):
        for name, value in part.items():
            np.testing.assert_array_equal(value, full[name])


def test_sampler_draws_without_dets_equal_those_with():
    ir = _hierarchy()
    kept = exmc.NUTS.Sampler.sample_chains(ir, 1, num_samples=30, num_warmup=30, seed=4, parallel=False)[0]
    dropped = exmc.NUTS.Sampler.sample_chains(ir, 1, num_samples=30, num_warmup=30, seed=4, parallel=False,
                                              keep_deterministics=False)[0]
    assert set(dropped) == {"m", "tau", "theta"}
    for name in dropped:
        np.testing.assert_array_equal(dropped[name], kept[name])
