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
    assert [line.get_label() for line in ax.lines[:4]] == ["chain 1", "chain 2", "chain 3", "pooled"]
    assert "94% HDI" in ax.get_title()
