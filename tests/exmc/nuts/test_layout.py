"""Chain layouts (exmc.nuts.layout): single chains or lockstep groups with batched gradients."""
import numpy as np
import pytest

import exmc
from exmc import Builder, Dist
from exmc.nuts import Sampler
from exmc.nuts.errors import ModelError
from exmc.nuts.layout import MAX_LOCKSTEP_GROUP, MIN_DATA_ELEMENTS, choose_layout, data_elements, groups

from gaussian_models import Gaussian, LogGamma

FAST = dict(num_samples=60, num_warmup=60)


def _poisson_glm(n: int, k: int = 2, seed: int = 5):
    """``y ~ Poisson(exp(alpha + X beta))``: the shape the auto rule batches (a design of n x k)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 0.3, size=(n, k))
    y = rng.poisson(np.exp(0.5 + X @ np.linspace(-0.5, 0.5, k))).astype(float)
    ir = Builder.new_ir()
    ir = Builder.data(ir, "X", X)
    ir = Builder.rv(ir, "alpha", Dist.Normal, {"mu": 0.0, "sigma": 2.5})
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=(k,))
    ir = Builder.det(ir, "Xbeta", "matmul", ["X", "beta"])
    ir = Builder.det(ir, "eta", "add", ["alpha", "Xbeta"])
    ir = Builder.det(ir, "rate", "exp", ["eta"])
    ir = Builder.rv(ir, "y", Dist.Poisson, {"mu": "rate"})
    return Builder.obs(ir, "y_obs", "y", y)


def test_the_auto_rule_batches_large_designs_when_every_core_has_two_chains():
    big = _poisson_glm(MIN_DATA_ELEMENTS // 2)  # X (n, 2) and y (n,): 1.5 x the threshold
    small = _poisson_glm(100)
    assert 0 <= data_elements(big) - 3 * (MIN_DATA_ELEMENTS // 2) < 10  # plus the priors' scalars
    assert data_elements(exmc.compile(big)) == data_elements(big)
    assert choose_layout(big, 4, cores=2).group == 2  # one pair per core
    assert "data elements" in choose_layout(big, 4, cores=2).reason
    assert choose_layout(big, 3, cores=2).group == 1  # a pair would leave a core without work
    assert choose_layout(big, 8, cores=4).group == 2
    assert choose_layout(big, 7, cores=2).group == 3  # groups (0-2), (3-5), (6)
    assert choose_layout(big, 64, cores=2).group == MAX_LOCKSTEP_GROUP
    assert choose_layout(small, 4, cores=2).group == 1
    assert choose_layout(Gaussian([0.0], [[1.0]]), 4, cores=2).group == 1  # no IR: no data to share
    assert choose_layout(big, 4, "single", cores=2).group == 1
    assert choose_layout(small, 4, 3).group == 3
    for bad in ("pairs", 0, True, 1.5):
        with pytest.raises(ValueError, match="layout must be"):
            choose_layout(small, 4, bad)


def test_groups_follow_chain_numbers_even_for_a_share_of_a_run():
    assert groups(range(5), 2) == [(0, 1), (2, 3), (4,)]
    assert groups([3, 1, 2], 2) == [(3, 2), (1,)]
    assert groups(range(3), 1) == [(0,), (1,), (2,)]


def test_lockstep_changes_nothing_where_batched_and_single_evaluations_agree():
    # LogGamma's batched gradient is elementwise: the same bits as one chain at a time, so the
    # lockstep pairs must reproduce the single chains exactly (same streams, same trajectories).
    model = LogGamma(2.5, dim=2)
    single = Sampler.sample_chains(model, 4, seed=11, parallel=False, layout="single", **FAST)
    paired = Sampler.sample_chains(model, 4, seed=11, parallel=False, layout=2, **FAST)
    for a, b in zip(single, paired):
        np.testing.assert_array_equal(a["theta"], b["theta"])
        np.testing.assert_array_equal(a.stats["n_steps"], b.stats["n_steps"])
    assert [t.info["layout"] for t in single] == ["single"] * 4
    assert [t.info["layout"] for t in paired] == ["lockstep"] * 4
    assert [t.info["lockstep_chains"] for t in paired] == [[0, 1], [0, 1], [2, 3], [2, 3]]
    assert paired[0].info["layout_reason"] == "layout=2"


@pytest.mark.parametrize("max_workers", [1, 2])
def test_pool_draws_equal_sequential_draws_in_lockstep(max_workers):
    ir = _poisson_glm(400)
    sequential = Sampler.sample_chains(ir, 5, seed=3, parallel=False, layout=2, keep_deterministics=False, **FAST)
    streamed = []
    pooled = Sampler.sample_chains(ir, 5, seed=3, parallel=True, max_workers=max_workers, layout=2,
                                   keep_deterministics=False, draws=streamed.append, **FAST)
    for a, b in zip(sequential, pooled):
        assert a.info["chain"] == b.info["chain"]
        np.testing.assert_array_equal(a["beta"], b["beta"])
        np.testing.assert_array_equal(a.stats["n_steps"], b.stats["n_steps"])
    assert [t.info["lockstep_chains"] for t in pooled][::2] == [[0, 1], [2, 3], [4]]
    assert pooled[4].info["layout"] == "lockstep" and pooled[4].info["lockstep_chains"] == [4]
    assert {t.info["worker"] for t in pooled[:2]} == {pooled[0].info["worker"]}  # a pair shares a worker
    assert sorted({batch.chain for batch in streamed}) == [0, 1, 2, 3, 4]
    assert sum(len(batch.draws["beta"]) for batch in streamed) == 5 * FAST["num_samples"]


def test_a_lockstep_chains_model_error_names_that_chain():
    class Broken(LogGamma):
        def logp_and_grad(self, theta):
            if np.any(np.asarray(theta) > 1.5):
                raise KeyError("no such column")  # a bug, not a domain error
            return super().logp_and_grad(theta)

    with pytest.raises(ModelError, match=r"chain [01]") as info:
        Sampler.sample_chains(Broken(), 2, seed=1, parallel=True, layout=2, **FAST)
    assert info.value.chain in (0, 1)
    assert any("in exmc chain" in note for note in info.value.__notes__)
    assert len(Sampler.sample_chains(LogGamma(), 2, seed=1, layout=2, **FAST)) == 2  # the pool still serves


def test_lockstep_glm_posterior_agrees_with_single_chains_within_mcse():
    # Batched products differ from single ones in the last bits, so the draws differ; the
    # posterior may not. Means of both runs agree within 4 combined MCSEs (fixed seeds).
    from exmc.diagnostics import summary

    ir = _poisson_glm(2000, k=3)
    runs = [Sampler.sample_chains(ir, 4, seed=21, parallel=False, layout=layout, keep_deterministics=False,
                                  num_samples=400, num_warmup=300) for layout in ("single", 2)]
    tables = [summary(chains) for chains in runs]
    for name in ("alpha", "beta[0]", "beta[1]", "beta[2]"):
        (m1, e1), (m2, e2) = [(t[name]["mean"], t[name]["mcse_mean"]) for t in tables]
        assert abs(m1 - m2) < 4.0 * np.hypot(e1, e2), (name, m1, m2, e1, e2)
    assert runs[1][0].info["layout"] == "lockstep"
