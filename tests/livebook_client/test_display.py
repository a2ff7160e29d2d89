"""Per-chain numbers and headless plots, from hand-made draws."""
from __future__ import annotations

import numpy as np
import pytest

from livebook_client import display


def fake_chains(num_chains=3, num_samples=400, seed=1):
    rng = np.random.default_rng(seed)
    return [
        {"mu": rng.normal(2.0 + 0.1 * c, 0.1, num_samples),
         "theta": rng.normal(0.0, 1.0, (num_samples, 2, 2))}
        for c in range(num_chains)
    ]


def test_chain_means_and_pooled_follow_the_draws():
    chains = fake_chains()
    means = display.chain_means(chains, "mu")
    assert means == pytest.approx([2.0, 2.1, 2.2], abs=0.03)
    mean, sd = display.pooled_mean_sd(chains, "mu")
    everything = np.concatenate([c["mu"] for c in chains])
    assert mean == pytest.approx(everything.mean())
    assert sd == pytest.approx(everything.std(ddof=1))


def test_unknown_variable_is_named_with_the_known_ones():
    with pytest.raises(KeyError, match=r"'nu'.*\['mu', 'theta'\]"):
        display.chain_means(fake_chains(), "nu")


def test_no_chains_is_a_clear_error():
    with pytest.raises(ValueError, match="no chains"):
        display.plot_trace([])


def test_elements_label_array_entries():
    labels = [e.label for e in display.elements(fake_chains())]
    assert labels == ["mu", "theta[0,0]", "theta[0,1]", "theta[1,0]", "theta[1,1]"]
    assert display.elements(fake_chains(), ["theta"])[2].draws.shape == (3, 400)


def test_hdi_of_a_normal_matches_its_quantiles():
    samples = np.random.default_rng(0).normal(0, 1, 200_000)
    low, high = display.hdi(samples, 0.94)
    assert low == pytest.approx(-1.881, abs=0.02)
    assert high == pytest.approx(1.881, abs=0.02)


def test_trace_plot_saves_a_png_with_one_row_per_element(tmp_path):
    path = tmp_path / "trace.png"
    figure = display.plot_trace(fake_chains(), path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figure.axes) == 2 * 5
    assert len(figure.axes[0].lines) == 3  # one density per chain


def test_posterior_plot_saves_svg_with_pooled_curve(tmp_path):
    path = tmp_path / "posterior.svg"
    figure = display.plot_posterior(fake_chains(), ["mu"], path=path)
    assert path.read_text().lstrip().startswith("<?xml")
    (ax,) = figure.axes
    assert [line.get_label() for line in ax.lines[:4]] == ["chain 0", "chain 1", "chain 2", "pooled"]
    assert "94% HDI" in ax.get_title()


def exmc_like_chains(num_chains=2, num_samples=300, seed=2, divergent_at=()):
    """Real exmc Traces (stats, info naming the deterministics), from hand-made draws."""
    from exmc.nuts.trace import STAT_DTYPES, Chains, Trace

    rng = np.random.default_rng(seed)
    traces = []
    for chain in range(num_chains):
        theta = rng.normal(0.0, 1.0, (num_samples, 8))
        draws = {"sigma": np.abs(rng.normal(0.0, 1.0, num_samples)), "theta": theta,
                 "theta_sum": theta.sum(axis=1)}
        stats = {name: np.zeros(num_samples, dtype=dtype) for name, dtype in STAT_DTYPES.items()}
        stats["divergent"][list(divergent_at)] = True
        traces.append(Trace(draws, stats, {"chain": chain, "deterministics": ["theta_sum"]}))
    return Chains(traces)


def test_posterior_plot_is_a_grid_not_one_row():
    figure = display.plot_posterior(exmc_like_chains(), ["theta"])
    width, height = figure.get_size_inches() * figure.dpi
    assert len([ax for ax in figure.axes if ax.axison]) == 8
    assert width <= 4 * display.POSTERIOR_PANEL[0] * figure.dpi + 1  # 4 columns at most
    assert height == pytest.approx(2 * display.POSTERIOR_PANEL[1] * figure.dpi)  # 2 rows
    with pytest.raises(ValueError, match="columns"):
        display.plot_posterior(exmc_like_chains(), ["theta"], columns=0)


def test_plots_show_free_rvs_by_default_not_deterministics():
    chains = exmc_like_chains()
    assert display.free_variable_names(chains) == ["sigma", "theta"]
    labels = [ax.get_title() for ax in display.plot_trace(chains).axes[::2]]
    assert labels[0] == "sigma" and len(labels) == 9 and not any("theta_sum" in t for t in labels)
    assert any("theta_sum" in ax.get_title() for ax in display.plot_trace(chains, ["theta_sum"]).axes)


def test_density_of_a_bounded_variable_does_not_spill_past_the_bound():
    samples = np.abs(np.random.default_rng(3).normal(0, 1, 4000))  # half-normal: bounded at 0
    grid, pdf = display.density(samples)
    assert grid.min() >= 0.0 and grid.max() <= samples.max()
    # Boundary-corrected: the density at the bound is near the half-normal's 0.80, not halved.
    assert pdf[0] == pytest.approx(2 * 0.3989, abs=0.12)
    figure = display.plot_posterior(exmc_like_chains(), ["sigma"])
    assert all(np.min(line.get_xdata()) >= 0 for line in figure.axes[0].lines if line.get_label() != "divergent")


def test_divergent_draws_are_marked_on_both_panels():
    chains = exmc_like_chains(divergent_at=(5, 17, 200))
    figure = display.plot_trace(chains, ["sigma"])
    density_ax, trace_ax = figure.axes
    ticks = [line for line in trace_ax.lines if line.get_label() == "divergent"]
    assert len(ticks) == 1 and sorted(ticks[0].get_xdata()) == [5, 5, 17, 17, 200, 200]
    (values,) = [line.get_xdata() for line in density_ax.lines if line.get_label() == "divergent"]
    assert sorted(values) == sorted(np.concatenate([t["sigma"][[5, 17, 200]] for t in chains]))
    quiet = display.plot_trace(exmc_like_chains(), ["sigma"])
    assert not any(line.get_label() == "divergent" for ax in quiet.axes for line in ax.lines)


def test_display_is_an_attribute_after_a_plain_import():
    """README: ``import livebook_client`` then ``livebook_client.display.plot_trace(...)``."""
    import subprocess
    import sys

    code = ("import livebook_client, sys\n"
            "assert 'livebook_client.display' not in sys.modules\n"
            "print(livebook_client.display.plot_trace.__name__, livebook_client.progress.__name__)\n"
            "try:\n    livebook_client.nonsense\nexcept AttributeError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "plot_trace livebook_client.progress"
    assert "no attribute 'nonsense'" in lines[1]


def test_one_chain_numbering_in_warnings_plots_progress_and_arviz():
    from livebook_client.progress import ChainProgress, ProgressView

    chains = exmc_like_chains(num_chains=3)
    chains[1].stats["divergent"][[3, 4]] = True
    for trace in chains:
        trace.info["max_tree_depth"] = 10
    (divergence_warning,) = [w for w in chains.warnings() if "divergent" in w]
    assert "(chain 1: 2)" in divergence_warning
    figure = display.plot_trace(chains, ["sigma"])
    labels = [line.get_label() for line in figure.axes[0].lines if line.get_label().startswith("chain")]
    assert labels == ["chain 0", "chain 1", "chain 2"]
    assert "chain 1: 5/10" in repr(ProgressView([ChainProgress(1, 5, 10, "warmup")], "running"))
    pytest.importorskip("arviz_base")
    tree = chains.to_arviz()
    assert list(tree.posterior["sigma"].coords["chain"].values) == [0, 1, 2]
