"""Statistical validation of exmc's NUTS on every posteriordb port (``make validate``; the
default ``make test`` run keeps the fast subset ``FAST_SUBSET``).

Each ported posterior is sampled with ``exmc.NUTS.Sampler.sample_chains`` (4 chains, 1000 warmup,
1000 draws, Stan's ``adapt_delta``/``max_treedepth`` from the reference run) and compared with
Stan's reference draws, element by element: ``|mean - ref| <= 4 sqrt(mcse^2 + ref_mcse^2)``, sd
within 10 %, and no divergences where Stan had none (criteria in :mod:`exmc.models.validation`).
"""
from __future__ import annotations

import pytest

from exmc.models import MODELS, VARIANTS, build, posteriordb, sampler_options, validation

pytestmark = pytest.mark.skipif(not posteriordb.available(), reason="posteriordb folder not found")

PORTED = [name for name in posteriordb.list_posteriors()
          if posteriordb.load_posterior(name).model_name in MODELS]
#: Posteriors quick enough for every test run (a few seconds each on 2 cores): a linear regression
#: with informative priors and one with flat priors on a log scale.
FAST_SUBSET = {"sblri-blr", "mesquite-logmesquite_logvolume"}
#: Fixed seed: a failure is reproducible; the criteria allow 4 MCSE so a correct sampler fails an
#: element only with probability ~6e-5.
SEED = 20240601


#: The per-port time limit (s). The two ODE ports solve an ODE with sensitivities at every
#: gradient (~6 ms a batched call) through Stan's adapt_delta 0.99 trees: lotka_volterra took
#: 3241 s and one_comp_mm_elim_abs 3607 s in the last report (docs/validation.md); 1800 s cut
#: them off, so ``make validate`` never finished them.
TIMEOUT = 1800
SLOW_TIMEOUT = {"hudson_lynx_hare-lotka_volterra": 3 * 3600, "one_comp_mm_elim_abs-one_comp_mm_elim_abs": 3 * 3600}


def _marks(name: str) -> tuple:
    if name in FAST_SUBSET:
        return (pytest.mark.timeout(TIMEOUT),)
    return (pytest.mark.validate, pytest.mark.timeout(SLOW_TIMEOUT.get(name, TIMEOUT)))


@pytest.mark.parametrize("name", [pytest.param(name, marks=_marks(name)) for name in PORTED])
def test_matches_reference_draws(name):
    posterior = posteriordb.load_posterior(name)
    check = validation.run(posterior, build(posterior), seed=SEED, **validation.stan_settings(posterior),
                           **sampler_options(posterior))
    assert check.ok, f"{name}: " + "; ".join(check.failures())


@pytest.mark.validate
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("row", sorted(VARIANTS))
def test_other_ports_match_reference_draws(row):
    """The same protocol on exmc.models.VARIANTS (arma11/garch11 through the general scan op)."""
    name, builder, options = VARIANTS[row]
    posterior = posteriordb.load_posterior(name)
    check = validation.run(posterior, builder(posterior.data()), seed=SEED, **validation.stan_settings(posterior),
                           **options)
    assert check.ok, f"{row}: " + "; ".join(check.failures())
