"""The posteriordb ports: their log-density at Stan's reference draws equals an independent numpy
transcription of each Stan program up to an additive constant, and their gradient is finite.

Skips when the posteriordb folder (``$EXMC_POSTERIORDB`` or ``../shared/posteriordb``) is absent.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import exmc
from exmc.models import MODELS, build, stan_parameters
from exmc.models import posteriordb

from stan_transcriptions import TRANSCRIPTIONS

pytestmark = pytest.mark.skipif(not posteriordb.available(), reason="posteriordb folder not found")

#: Reference draws checked per posterior: 20 spread over all 10 chains (every 500th of 10,000).
N_CHECK_DRAWS = 20
#: Allowed spread of (ours - Stan's) across draws, relative to the log-density's magnitude: the
#: difference must be one constant (normalising terms Stan's ``~`` drops, truncation constants).
CONSTANT_RTOL = 1e-8
#: The ODE ports' densities carry their solver's error (exmc.models.odes); the transcriptions
#: integrate to 1e-11, so the difference is constant only to about 1e-9 (one_comp, at Stan's
#: integrate_ode_bdf tolerances, 1e-10) or 3e-3 absolute on |lp| ~ 130 (lotka_volterra, whose
#: steps follow the populations alone, at Stan's order of accuracy).
ODE_CONSTANT_RTOL = {"lotka_volterra": 3e-5, "one_comp_mm_elim_abs": 1e-9}
#: Their chain-batched evaluation solves all chains as one ODE system (shared step control): rows
#: agree with single solves to the solver's accuracy, not to rounding.
ODE_BATCHED_TOLERANCE = {"lp_rtol": 1e-6, "lp_atol": 5e-3, "grad_rtol": 5e-3}
#: Fewer draws for them: each evaluation integrates the ODE and its sensitivities.
N_CHECK_DRAWS_ODE = 8

#: The posteriordb families issue 3 asks for, as prefixes of posterior names: every posterior of
#: the local subset that starts with one of them must be ported (35 in the shared copy).
EXPECTED_PREFIXES = ("eight_schools-eight_schools_noncentered", "earnings-", "kidiq-", "kidiq_with_mom_work-",
                     "mesquite-", "kilpisjarvi_mod-", "nes1", "nes2", "sblrc-", "sblri-", "arK-", "diamonds-",
                     # issue 15: the ops (cholesky, linear_recurrence) and families (Mixture with ordered
                     # means, HMM) these need
                     "gp_pois_regr-", "low_dim_gauss_mix-", "hmm_example-", "arma-", "garch-",
                     "bball_drive_event_", "hudson_lynx_hare-", "one_comp_mm_elim_abs-")
EXPECTED_COUNT = 45

PORTED = [name for name in posteriordb.list_posteriors()
          if posteriordb.load_posterior(name).model_name in MODELS]


@functools.lru_cache(maxsize=None)
def _case(name: str):
    """(posterior, compiled model, Stan parameters at the checked draws) for one posterior."""
    posterior = posteriordb.load_posterior(name)
    model = exmc.compile(build(posterior))
    draws = posterior.reference_draws()
    n = len(next(iter(draws.values())))
    count = N_CHECK_DRAWS_ODE if posterior.model_name in ODE_CONSTANT_RTOL else N_CHECK_DRAWS
    rows = np.linspace(0, n - 1, count).astype(int)
    params = stan_parameters(posterior.model_name, {k: v[rows] for k, v in draws.items()}, posterior.data())
    return posterior, model, params


def _draw(params: dict[str, np.ndarray], i: int, names) -> dict[str, np.ndarray]:
    return {name: np.asarray(params[name][i]) for name in names}


def test_every_expected_posterior_is_ported():
    expected = [name for name in posteriordb.list_posteriors() if name.startswith(EXPECTED_PREFIXES)]
    assert len(expected) >= EXPECTED_COUNT
    assert sorted(PORTED) == sorted(expected)


@pytest.mark.parametrize("name", PORTED)
def test_free_rvs_are_the_stan_parameters(name):
    posterior, model, params = _case(name)
    for rv, shape in model.free_names:
        assert rv in params, f"{name}: rv {rv!r} is not a parameter of the Stan program"
        assert tuple(params[rv].shape[1:]) == tuple(shape), f"{name}: rv {rv!r} has shape {shape}"
    assert {rv for rv, _ in model.free_names} == set(params)


@pytest.mark.parametrize("name", PORTED)
def test_logp_equals_stan_program_up_to_a_constant(name):
    posterior, model, params = _case(name)
    data = posterior.data()
    stan = TRANSCRIPTIONS[posterior.model_name]
    names = [rv for rv, _ in model.free_names]
    count = len(next(iter(params.values())))
    ours = np.array([model.logp(_draw(params, i, names), jacobian=False) for i in range(count)])
    theirs = np.array([stan(data, _draw(params, i, params)) for i in range(count)])
    scale = max(1.0, np.abs(theirs).max())
    # The check has teeth only if the density varies across the draws much more than the tolerance.
    assert np.ptp(theirs) > 1e3 * CONSTANT_RTOL * scale
    difference = ours - theirs
    assert np.ptp(difference) <= ODE_CONSTANT_RTOL.get(posterior.model_name, CONSTANT_RTOL) * scale, (
        f"{name}: logp - Stan's varies by {np.ptp(difference):.3g} across reference draws")


def test_one_comp_density_matches_stan_in_its_heavy_tail():
    """one_comp_mm_elim_abs's K_m and V_m run out along a ridge (kurtosis ~500): the port must be
    Stan's program there too, at Stan's solver tolerances (integrate_ode_bdf's 1e-10). At the old
    1e-6 the difference varied by 3e-5 over these draws; the bound below fails anything above 1e-8."""
    name = "one_comp_mm_elim_abs-one_comp_mm_elim_abs"
    posterior = posteriordb.load_posterior(name)
    model = exmc.compile(build(posterior))
    draws, data = posterior.reference_draws(), posterior.data()
    order = np.argsort(draws["K_m"])
    rows = np.concatenate([order[-6:], order[:2], order[len(order) // 2:][:2]])
    names = [rv for rv, _ in model.free_names]
    ours = np.array([model.logp({k: np.asarray(draws[k][i]) for k in names}, jacobian=False) for i in rows])
    theirs = np.array([TRANSCRIPTIONS["one_comp_mm_elim_abs"](data, {k: draws[k][i] for k in names}) for i in rows])
    assert draws["K_m"][rows].max() > 100 and np.ptp(theirs) > 1.0
    assert np.ptp(ours - theirs) <= 1e-8, f"{name}: logp - Stan's varies by {np.ptp(ours - theirs):.3g} in the tail"


def posterior_model(name: str) -> str:
    return name.split("-", 1)[1]


@pytest.mark.parametrize("name", PORTED)
def test_gradient_is_finite_and_batched_evaluation_agrees(name):
    _, model, params = _case(name)
    names = [rv for rv, _ in model.free_names]
    thetas = np.stack([model.to_unconstrained(_draw(params, i, names))
                       for i in range(len(next(iter(params.values()))))])
    single = [model.logp_and_grad(theta) for theta in thetas]
    lp = np.array([s[0] for s in single])
    grad = np.stack([s[1] for s in single])
    assert np.isfinite(lp).all() and np.isfinite(grad).all()
    assert np.abs(grad).max() > 0
    batched_lp, batched_grad = model.logp_and_grad(thetas)
    if posterior_model(name) in ODE_CONSTANT_RTOL:
        tol = ODE_BATCHED_TOLERANCE
        np.testing.assert_allclose(batched_lp, lp, rtol=tol["lp_rtol"], atol=tol["lp_atol"])
        np.testing.assert_allclose(batched_grad, grad, rtol=tol["grad_rtol"], atol=tol["grad_rtol"] * np.abs(grad).max())
        return
    np.testing.assert_allclose(batched_lp, lp, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(batched_grad, grad, rtol=1e-8, atol=1e-8 * np.abs(grad).max())
