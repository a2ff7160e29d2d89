"""Chains.summary / warnings / _repr_html_ / to_arviz."""
import numpy as np
import pytest

from exmc.diagnostics import ebfmi, summary, warnings
from exmc.nuts import Chains, Sampler, Trace

from gaussian_models import isotropic


def _fake_chains(draws, divergent=None, tree_depth=None, energy=None):
    """Chains from a (C, N) array of draws of a scalar 'a' with chosen sampler statistics."""
    rng = np.random.default_rng(0)
    traces = []
    for c, row in enumerate(draws):
        n = row.shape[0]
        stats = {
            "lp": np.zeros(n), "accept_prob": np.full(n, 0.8), "step_size": np.full(n, 0.5),
            "tree_depth": np.full(n, 2) if tree_depth is None else tree_depth[c],
            "n_steps": np.full(n, 3),
            "divergent": np.zeros(n, bool) if divergent is None else divergent[c],
            "energy": rng.normal(size=n).cumsum() * 0 + rng.normal(size=n) if energy is None else energy[c],
        }
        traces.append(Trace({"a": row, "b": np.stack([row, 2 * row], axis=1)}, stats,
                            {"chain": c, "max_tree_depth": 10}))
    return Chains(traces)


def test_summary_matches_arviz():
    """Diagnostics equal arviz-stats' own summary; sd (ddof=1), the HDI and tail-ESS (5%/95%
    quantiles, Vehtari et al. 2021; arviz-stats' summary ties them to its 89% CI instead) equal
    ArviZ's az.summary."""
    pytest.importorskip("arviz_base")
    import arviz_stats

    draws = (np.random.default_rng(1).normal(size=(4, 300)).cumsum(axis=1) * 0.05
             + np.random.default_rng(2).normal(size=(4, 300)))
    chains = _fake_chains(draws)
    row = summary(chains)["a"]
    reference = arviz_stats.summary(chains.to_arviz(backend="datatree"), round_to="none").loc["a"]
    for column in ["mean", "mcse_mean", "mcse_sd", "ess_bulk", "r_hat"]:
        assert row[column] == pytest.approx(reference[column], rel=1e-9), column
    assert row["sd"] == pytest.approx(draws.std(ddof=1))
    az = pytest.importorskip("arviz")
    if int(az.__version__.split(".")[0]) >= 1:
        return  # ArviZ 1.x's summary is arviz-stats' (checked above); the HDI columns are legacy ArviZ's
    legacy = az.summary(draws, hdi_prob=0.94, round_to="none").iloc[0]
    for column in ["sd", "hdi_3%", "hdi_97%", "ess_tail"]:
        assert row[column] == pytest.approx(legacy[column], rel=1e-9), column


def test_summary_renders_as_text_and_html():
    table = summary(_fake_chains(np.random.default_rng(0).normal(size=(2, 100))))
    text = str(table)
    assert text.splitlines()[0].split() == table.columns
    assert "b[1]" in text
    html = table._repr_html_()
    assert html.count("<tr>") == 4 and "ess_bulk" in html


def test_summary_to_dict_holds_every_row_and_column():
    table = summary(_fake_chains(np.random.default_rng(0).normal(size=(2, 100))))
    as_dict = table.to_dict()
    assert list(as_dict) == ["a", "b[0]", "b[1]"]
    assert list(as_dict["b[1]"]) == table.columns
    assert as_dict["b[1]"]["mean"] == table.values[2, 0] and type(as_dict["b[1]"]["mean"]) is float


def test_summary_of_chosen_variables():
    chains = _fake_chains(np.random.default_rng(0).normal(size=(2, 100)))
    whole = chains.summary()
    chosen = chains.summary(var_names=["b"])
    assert chosen.rows == ["b[0]", "b[1]"]
    np.testing.assert_array_equal(chosen.values, whole.values[1:])
    with pytest.raises(KeyError, match="'c'.*variables: a, b"):
        chains.summary(var_names=["c"])


def test_warnings_report_each_problem():
    rng = np.random.default_rng(3)
    draws = rng.normal(size=(2, 200))
    draws[1] += 5  # chains disagree: R-hat explodes
    divergent = np.zeros((2, 200), bool)
    divergent[0, :3] = True
    depth = np.full((2, 200), 2)
    depth[1, :7] = 10
    energy = np.cumsum(rng.normal(size=(2, 200)), axis=1)  # random walk energy: E-BFMI ≈ 0
    found = warnings(_fake_chains(draws, divergent, depth, energy))
    text = "\n".join(found)
    assert "3 of 400 draws were divergent (chain 0: 3)" in text
    assert "7 of 400 draws hit the maximum tree depth 10" in text
    assert "E-BFMI" in text
    assert "a: R-hat" in text
    assert "effective sample size" in text


def test_a_healthy_run_has_no_warnings_and_exports_to_arviz():
    chains = Sampler.sample_chains(isotropic(1), 4, num_samples=400, num_warmup=300, seed=0, parallel=False)
    assert chains.warnings() == []
    assert np.all(ebfmi(chains) > 0.3)
    pytest.importorskip("arviz_base")
    tree = chains.to_arviz(backend="datatree")
    assert tree["posterior"]["x"].shape == (4, 400, 1)
    assert tree["sample_stats"]["diverging"].shape == (4, 400)
    assert "mean" in chains._repr_html_()


def test_warnings_name_chains_by_their_own_numbers_in_a_partial_result():
    # A cancelled job keeps chains 0 and 2 (chain 1 was still warming up): a warning about the
    # second one is about chain 2, the number progress and Trace.info use.
    rng = np.random.default_rng(3)
    draws = rng.normal(size=(2, 200))
    divergent = np.zeros((2, 200), bool)
    divergent[1, :4] = True
    energy = np.cumsum(rng.normal(size=(2, 200)), axis=1)  # E-BFMI ≈ 0 on both
    chains = _fake_chains(draws, divergent, energy=energy)
    chains[1].info["chain"] = 2
    text = "\n".join(warnings(chains))
    assert "(chain 2: 4)" in text
    assert "chain 0: E-BFMI" in text and "chain 2: E-BFMI" in text and "chain 1:" not in text
