"""The demo's wording and number formats, from hand-made draws."""
from __future__ import annotations

import numpy as np

from livebook_client import demo_story


def two_chains():
    return [
        {"mu": np.array([2.0, 2.2, 2.4]), "sigma": np.array([0.3, 0.4, 0.5])},
        {"mu": np.array([2.1, 2.3, 2.5]), "sigma": np.array([0.2, 0.3, 0.4])},
    ]


def test_node_lines_speak_like_the_seed():
    assert demo_story.node_lines("livebook@127.0.0.13", ["exmc@127.0.0.14"], True) == [
        "I am: livebook@127.0.0.13",
        "My peers: ['exmc@127.0.0.14']",
        "exmc connected: true",
    ]
    assert demo_story.node_lines("a@h", [], False)[2] == "exmc connected: false"


def test_model_lines_list_the_free_variables():
    assert demo_story.model_lines(10, ["mu", "sigma"], "exmc@127.0.0.14") == [
        "Model defined (10 observations, estimating mu and sigma)",
        "Will sample on: exmc@127.0.0.14",
    ]
    assert demo_story.model_lines(3, ["a", "b", "c"], "n@h")[0].endswith("estimating a, b and c)")


def test_result_lines_compute_per_chain_and_pooled_values():
    lines = demo_story.result_lines(two_chains(), elapsed_ms=812.4, computed_on="exmc@127.0.0.14",
                                    displayed_on="livebook@127.0.0.13", loopback=True)
    pooled_sd = np.std([2.0, 2.2, 2.4, 2.1, 2.3, 2.5], ddof=1)
    assert lines == [
        "2 chains completed in 812ms on exmc@127.0.0.14",
        "Chains returned: 2",
        " Chain 1: mu=2.200, sigma=0.400",
        " Chain 2: mu=2.300, sigma=0.300",
        "Pooled posterior (6 total samples across 2 chains):",
        f"mu: 2.250 ± {pooled_sd:.3f}",
        "sigma: 0.350",
        "Computed on: exmc@127.0.0.14",
        "Displayed on: livebook@127.0.0.13",
        "Transport: erpc over rpyc (loopback)",
    ]


def test_transport_says_network_off_loopback():
    lines = demo_story.result_lines(two_chains(), elapsed_ms=1, computed_on="e@10.0.0.4",
                                    displayed_on="l@10.0.0.3", loopback=False)
    assert lines[-1] == "Transport: erpc over rpyc (network)"


def test_diagnostics_show_table_then_warnings_or_none():
    assert demo_story.diagnostics_lines("TABLE", ["2 divergences"]) == [
        "", "TABLE", "", "warning: 2 divergences"]
    assert demo_story.diagnostics_lines("TABLE", [])[-1] == "Sampler warnings: none"
