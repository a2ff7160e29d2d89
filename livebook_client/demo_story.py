"""The seed's story as text: the lines the demo prints, built from real values.

Kept apart from the demo's networking so the wording and number formats are tested on their own.
The order and wording follow the seed exactly::

    I am: livebook@127.0.0.13
    My peers: ['exmc@127.0.0.14']
    exmc connected: true
    Model defined (10 observations, estimating mu and sigma)
    Will sample on: exmc@127.0.0.14
    4 chains completed in 812ms on exmc@127.0.0.14
    Chains returned: 4
     Chain 1: mu=2.251, sigma=0.364
    ...
    Pooled posterior (4000 total samples across 4 chains):
    mu: 2.253 ± 0.115
    sigma: 0.357
    Computed on: exmc@127.0.0.14
    Displayed on: livebook@127.0.0.13
    Transport: erpc over rpyc (loopback)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .display import chain_means, pooled_mean_sd


def _and_list(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def node_lines(me: str, peers: Sequence[str], connected: bool) -> list[str]:
    """Who we are, who we see, and whether the compute node answered."""
    return [f"I am: {me}", f"My peers: {list(peers)}",
            f"exmc connected: {'true' if connected else 'false'}"]


def model_lines(num_observations: int, free_names: Sequence[str], target: str) -> list[str]:
    """The model just defined and where it will run."""
    return [f"Model defined ({num_observations} observations, estimating {_and_list(free_names)})",
            f"Will sample on: {target}"]


def result_lines(chains: Sequence[Any], *, elapsed_ms: float, computed_on: str, displayed_on: str,
                 loopback: bool, names: Sequence[str] = ("mu", "sigma")) -> list[str]:
    """Timing, per-chain means, the pooled posterior and where everything happened.

    The first name gets ``mean ± sd`` in the pooled block, the others their mean, as in the seed.
    """
    per_chain = {name: chain_means(chains, name) for name in names}
    num_draws = sum(len(trace[names[0]]) for trace in chains)
    lines = [f"{len(chains)} chains completed in {elapsed_ms:.0f}ms on {computed_on}",
             f"Chains returned: {len(chains)}"]
    for index in range(len(chains)):
        values = ", ".join(f"{name}={per_chain[name][index]:.3f}" for name in names)
        lines.append(f" Chain {index + 1}: {values}")
    lines.append(f"Pooled posterior ({num_draws} total samples across {len(chains)} chains):")
    for position, name in enumerate(names):
        mean, sd = pooled_mean_sd(chains, name)
        lines.append(f"{name}: {mean:.3f} ± {sd:.3f}" if position == 0 else f"{name}: {mean:.3f}")
    lines += [f"Computed on: {computed_on}", f"Displayed on: {displayed_on}",
              f"Transport: erpc over rpyc ({'loopback' if loopback else 'network'})"]
    return lines


def diagnostics_lines(summary: Any, warnings: Sequence[Any]) -> list[str]:
    """The summary table (R-hat, ESS) and the sampler's warnings, or a line saying there are none."""
    lines = ["", str(summary), ""]
    if warnings:
        lines += [f"warning: {warning}" for warning in warnings]
    else:
        lines.append("Sampler warnings: none")
    return lines
