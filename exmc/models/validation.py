"""Check exmc's NUTS against posteriordb's reference draws, parameter by parameter.

The criteria are issue 4's: for every scalar element of every reference parameter,

- ``|mean - ref_mean| <= MEAN_Z * sqrt(mcse^2 + ref_mcse^2)`` (both Monte Carlo standard errors
  from ``arviz-stats``, ours on our chains, the reference's on its 10 chains);
- ``|sd / ref_sd - 1| <= SD_RTOL``;
- no divergent transition in our chains when Stan reported none.

Reference names are Stan's (``beta[1]``); the same element of our draws is ``trace["beta"][:, 0]``
(free rvs and deterministics alike, e.g. ``theta`` of eight schools, a det in the port).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from arviz_stats.base import array_stats

from exmc.models.posteriordb import Posterior, parse_stan_name

logger = logging.getLogger(__name__)

#: Issue 4: a mean may differ from the reference by at most 4 combined Monte Carlo standard errors.
MEAN_Z = 4.0
#: Issue 4: the posterior sd must be within 10 % of the reference sd.
SD_RTOL = 0.10


@dataclass(frozen=True)
class ElementCheck:
    """One scalar element (``"beta[2]"``) compared with the reference."""

    name: str
    mean: float
    mcse: float
    sd: float
    ref_mean: float
    ref_mcse: float
    ref_sd: float
    #: Monte Carlo standard errors of the two sds (not part of the verdict: reported with an sd
    #: failure, to say whether the draws can resolve the 10 % criterion at all -- they cannot for
    #: very heavy tails, where the sd's own MCSE is of that order).
    sd_mcse: float = float("nan")
    ref_sd_mcse: float = float("nan")

    @property
    def z(self) -> float:
        """Mean difference in combined Monte Carlo standard errors."""
        return abs(self.mean - self.ref_mean) / float(np.hypot(self.mcse, self.ref_mcse))

    @property
    def sd_ratio(self) -> float:
        return self.sd / self.ref_sd

    @property
    def sd_z(self) -> float:
        """sd difference in combined Monte Carlo standard errors of the sd."""
        return abs(self.sd - self.ref_sd) / float(np.hypot(self.sd_mcse, self.ref_sd_mcse))

    @property
    def mean_ok(self) -> bool:
        return self.z <= MEAN_Z

    @property
    def sd_ok(self) -> bool:
        return abs(self.sd_ratio - 1.0) <= SD_RTOL


@dataclass
class PosteriorCheck:
    """The comparison of one sampling run of a posterior with its reference."""

    posterior: str
    elements: list[ElementCheck]
    divergences: int
    ref_divergences: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def divergences_ok(self) -> bool:
        return self.ref_divergences > 0 or self.divergences == 0

    @property
    def ok(self) -> bool:
        return self.divergences_ok and all(e.mean_ok and e.sd_ok for e in self.elements)

    def failures(self) -> list[str]:
        """Human-readable reasons this run fails (empty when it passes)."""
        out = [f"{e.name}: mean {e.mean:.4g} vs {e.ref_mean:.4g} ({e.z:.1f} mcse)"
               for e in self.elements if not e.mean_ok]
        out += [f"{e.name}: sd {e.sd:.4g} vs {e.ref_sd:.4g} (ratio {e.sd_ratio:.3f}"
                + (f"; {e.sd_z:.1f} sd-MCSE, sd MCSE {e.sd_mcse / e.sd:.0%} / ref {e.ref_sd_mcse / e.ref_sd:.0%})"
                   if np.isfinite(e.sd_z) else ")")
                for e in self.elements if not e.sd_ok]
        if not self.divergences_ok:
            out.append(f"{self.divergences} divergences (Stan had none)")
        return out


def _moments(draws: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, sd, mcse of the mean, mcse of the sd) of ``(chains, draws)`` samples."""
    return (float(draws.mean()), float(draws.std(ddof=1)),
            float(array_stats.mcse(draws, chain_axis=0, draw_axis=1, method="mean")),
            float(array_stats.mcse(draws, chain_axis=0, draw_axis=1, method="sd")))


def compare(posterior: Posterior, chains: Sequence[Any], seconds: float = float("nan"),
            settings: dict[str, Any] | None = None) -> PosteriorCheck:
    """Compare traces (mappings name -> ``(num_samples, *shape)`` with ``.stats["divergent"]``)
    with the posterior's reference draws.

    Raises ``KeyError`` naming a reference parameter that the traces do not report.
    """
    reference = posterior.reference_chains()
    info = posterior.reference_info()
    ref_divergences = int(sum(info.get("diagnostics", {}).get("divergent_transitions", [0])))
    elements = []
    for stan_name in reference[0]:
        base, index = parse_stan_name(stan_name)
        if base not in chains[0]:
            raise KeyError(f"posterior {posterior.name!r}: parameter {base!r} is not in the traces")
        ours = np.stack([np.asarray(trace[base])[(slice(None), *index)] for trace in chains])
        theirs = np.stack([chain[stan_name] for chain in reference])
        mean, sd, mcse, sd_mcse = _moments(ours)
        ref_mean, ref_sd, ref_mcse, ref_sd_mcse = _moments(theirs)
        elements.append(ElementCheck(stan_name, mean, mcse, sd, ref_mean, ref_mcse, ref_sd, sd_mcse, ref_sd_mcse))
    divergences = int(sum(int(np.sum(trace.stats["divergent"])) for trace in chains))
    return PosteriorCheck(posterior.name, elements, divergences, ref_divergences, seconds, dict(settings or {}))


def stan_settings(posterior: Posterior) -> dict[str, Any]:
    """The reference run's NUTS controls as sampler options (``adapt_delta`` -> ``target_accept``,
    ``max_treedepth`` -> ``max_tree_depth``), so a port is sampled as Stan sampled it."""
    control = posterior.reference_info().get("inference", {}).get("method_arguments", {}).get("control") or {}
    options: dict[str, Any] = {}
    if "adapt_delta" in control:
        options["target_accept"] = float(control["adapt_delta"])
    if "max_treedepth" in control:
        options["max_tree_depth"] = int(control["max_treedepth"])
    return options


def run(posterior: Posterior, ir: Any, *, num_chains: int = 4, num_samples: int = 1000,
        num_warmup: int = 1000, seed: int = 0, **sampler_options: Any) -> PosteriorCheck:
    """Sample ``ir`` with ``exmc.NUTS.Sampler.sample_chains`` and :func:`compare` with the reference."""
    from exmc import NUTS

    settings = dict(num_chains=num_chains, num_samples=num_samples, num_warmup=num_warmup, seed=seed,
                    **sampler_options)
    start = time.perf_counter()
    chains = NUTS.Sampler.sample_chains(ir, num_chains, num_samples=num_samples, num_warmup=num_warmup,
                                        seed=seed, **sampler_options)
    seconds = time.perf_counter() - start
    check = compare(posterior, chains, seconds, settings)
    logger.info("%s: %s in %.1f s", posterior.name, "ok" if check.ok else "FAILED", seconds)
    return check


def markdown_table(checks: Sequence[PosteriorCheck]) -> str:
    """One row per posterior: verdict, worst mean z, worst sd ratio, divergences, wall time."""
    lines = [
        "| posterior | result | params | max mean z | worst sd ratio | divergences (Stan) | seconds | failures |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        worst_sd = max(c.elements, key=lambda e: abs(e.sd_ratio - 1.0))
        max_z = max(e.z for e in c.elements)
        reasons = c.failures()
        failures = "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "")
        lines.append(f"| {c.posterior} | {'pass' if c.ok else 'FAIL'} | {len(c.elements)} | {max_z:.2f} "
                     f"| {worst_sd.sd_ratio:.3f} ({worst_sd.name}) | {c.divergences} ({c.ref_divergences}) "
                     f"| {c.seconds:.1f} | {failures} |")
    return "\n".join(lines)
