"""The validation verdict (exmc.models.validation): the strict criteria, and the sd's Monte Carlo
error reported with an sd failure (informative only: it does not change the verdict)."""
import numpy as np

from exmc.models.validation import ElementCheck, PosteriorCheck


def _check(**overrides):
    fields = dict(name="K_m", mean=2.6, mcse=0.2, sd=9.0, ref_mean=2.54, ref_mcse=0.08, ref_sd=7.28,
                  sd_mcse=1.3, ref_sd_mcse=0.89)
    fields.update(overrides)
    return ElementCheck(**fields)


def test_an_sd_outside_ten_percent_fails_whatever_its_mcse():
    heavy = _check()
    assert heavy.mean_ok and not heavy.sd_ok
    assert np.isclose(heavy.sd_z, abs(9.0 - 7.28) / np.hypot(1.3, 0.89))
    run = PosteriorCheck("p", [heavy], divergences=0, ref_divergences=0, seconds=1.0)
    assert not run.ok
    (failure,) = run.failures()
    assert "ratio 1.236" in failure and "1.1 sd-MCSE" in failure and "sd MCSE 14% / ref 12%" in failure


def test_within_the_criteria_passes_and_divergences_count_only_where_stan_had_none():
    good = _check(sd=7.5, mean=2.5)
    assert PosteriorCheck("p", [good], 0, 0, 1.0).ok
    assert not PosteriorCheck("p", [good], 3, 0, 1.0).ok
    assert PosteriorCheck("p", [good], 3, 5, 1.0).ok
