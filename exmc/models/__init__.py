"""posteriordb models ported to exmc IR builders.

:data:`MODELS` maps a Stan program's name (posteriordb's ``model_name``) to a function that takes
the program's data dict, exactly as posteriordb stores it, and returns the IR. Free rvs carry the
Stan parameter names (``beta`` for ``vector[K] beta``; reference draws name its elements
``beta[1]``..``beta[K]``, our ``beta[0]``..``beta[K-1]``), so reference draws map onto a model's
values by :func:`exmc.models.posteriordb.group_stan_names`, except where
:data:`REFERENCE_ADAPTERS` says otherwise.

Ported: every posterior of the local posteriordb subset that is a regression or a hierarchical
normal — eight_schools_noncentered, the earnings, kidiq, kidiq_with_mom_work and mesquite
families, kilpisjarvi, nes (8 data sets), blr (sblrc, sblri), arK and diamonds; and, with the ops
and families of issue 15, gp_regr, gp_pois_regr (cholesky), low_dim_gauss_mix (ordered, Mixture)
hmm_example, hmm_drive_0 and hmm_drive_1 (ordered/positive_ordered, HMM), arma11 and garch11
(linear_recurrence), lotka_volterra and one_comp_mm_elim_abs (ode).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from exmc.models import ark, blr, diamonds, earnings, eight_schools, kidiq, kidiq_with_mom_work
from exmc.models import gp, kilpisjarvi, mesquite, mixtures, nes, odes, time_series
from exmc.models.posteriordb import Posterior, load_posterior

ModelBuilder = Callable[[Mapping[str, Any]], Any]

#: Stan model name -> IR builder taking the posteriordb data dict.
MODELS: dict[str, ModelBuilder] = {
    "eight_schools_noncentered": eight_schools.eight_schools_noncentered,
    "earn_height": earnings.earn_height,
    "log10earn_height": earnings.log10earn_height,
    "logearn_height": earnings.logearn_height,
    "logearn_height_male": earnings.logearn_height_male,
    "logearn_interaction": earnings.logearn_interaction,
    "logearn_interaction_z": earnings.logearn_interaction_z,
    "logearn_logheight_male": earnings.logearn_logheight_male,
    "kidscore_momhs": kidiq.kidscore_momhs,
    "kidscore_momiq": kidiq.kidscore_momiq,
    "kidscore_momhsiq": kidiq.kidscore_momhsiq,
    "kidscore_interaction": kidiq.kidscore_interaction,
    "kidscore_interaction_c": kidiq_with_mom_work.kidscore_interaction_c,
    "kidscore_interaction_c2": kidiq_with_mom_work.kidscore_interaction_c2,
    "kidscore_interaction_z": kidiq_with_mom_work.kidscore_interaction_z,
    "kidscore_mom_work": kidiq_with_mom_work.kidscore_mom_work,
    "kilpisjarvi": kilpisjarvi.kilpisjarvi,
    "mesquite": mesquite.mesquite,
    "logmesquite": mesquite.logmesquite,
    "logmesquite_logva": mesquite.logmesquite_logva,
    "logmesquite_logvas": mesquite.logmesquite_logvas,
    "logmesquite_logvash": mesquite.logmesquite_logvash,
    "logmesquite_logvolume": mesquite.logmesquite_logvolume,
    "nes": nes.nes,
    "blr": blr.blr,
    "arK": ark.arK,
    "diamonds": diamonds.diamonds,
    "gp_regr": gp.gp_regr,
    "gp_pois_regr": gp.gp_pois_regr,
    "low_dim_gauss_mix": mixtures.low_dim_gauss_mix,
    "hmm_example": mixtures.hmm_example,
    "hmm_drive_0": mixtures.hmm_drive_0,
    "hmm_drive_1": mixtures.hmm_drive_1,
    "arma11": time_series.arma11,
    "garch11": time_series.garch11,
    "lotka_volterra": odes.lotka_volterra,
    "one_comp_mm_elim_abs": odes.one_comp_mm_elim_abs,
}

#: Stan model name -> function from grouped reference draws to the program's parameters, for
#: programs whose reference draws do not list the sampled parameters themselves.
#: An adapter takes the grouped draws and the posterior's data dict.
REFERENCE_ADAPTERS: dict[str, Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], dict[str, np.ndarray]]] = {
    "eight_schools_noncentered": lambda draws, data: eight_schools.parameters_from_reference(draws),
    "gp_pois_regr": lambda draws, data: gp.gp_pois_regr_parameters_from_reference(
        draws, np.asarray(data["x"], dtype=float)),
    "garch11": lambda draws, data: time_series.garch11_parameters_from_reference(draws),
}

#: Validation rows of other ports of the same posterior: row name -> (posterior name, builder
#: taking the data dict, extra sampler options). arma11 and garch11 written with the general
#: ``scan`` op (the compiled step program) instead of ``linear_recurrence``; their chains run
#: ``parallel="vectorized"`` (an elementwise step serves all chains in one pass).
VARIANTS: dict[str, tuple[str, ModelBuilder, dict[str, Any]]] = {
    "arma-arma11 (scan)": ("arma-arma11", lambda data: time_series.arma11(data, recursion="scan"),
                           {"parallel": "vectorized"}),
    "garch-garch11 (scan)": ("garch-garch11", lambda data: time_series.garch11(data, recursion="scan"),
                             {"parallel": "vectorized"}),
}

#: Stan model name -> extra ``sample_chains`` options the validation runs use. The ODE ports run
#: their chains with ``parallel="vectorized"``: one process, all chains' ODE solves as one system
#: per leapfrog step (their right-hand sides take a trailing chain axis), ~3x less CPU than four
#: separate solves in four workers on this 2-core box.
SAMPLER_OPTIONS: dict[str, dict[str, Any]] = {
    "lotka_volterra": {"parallel": "vectorized"},
    "one_comp_mm_elim_abs": {"parallel": "vectorized"},
}


def sampler_options(posterior: Posterior) -> dict[str, Any]:
    """The :data:`SAMPLER_OPTIONS` of a posterior's program (empty for most)."""
    return dict(SAMPLER_OPTIONS.get(posterior.model_name, {}))


def is_ported(posterior: Posterior) -> bool:
    """True when the posterior's Stan program has a port in :data:`MODELS`."""
    return posterior.model_name in MODELS


def build(posterior: Posterior | str):
    """The IR of a posteriordb posterior (an object or a name read with :func:`load_posterior`).

    Raises ``KeyError`` naming the Stan program when it has no port, and
    :class:`~exmc.models.posteriordb.PosteriorDBError` when the posterior or its data is missing.
    """
    if isinstance(posterior, str):
        posterior = load_posterior(posterior)
    try:
        builder = MODELS[posterior.model_name]
    except KeyError:
        raise KeyError(f"posterior {posterior.name!r}: Stan program {posterior.model_name!r} has no exmc port") from None
    return builder(posterior.data())


def stan_parameters(model_name: str, draws: Mapping[str, np.ndarray],
                    data: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The port's free parameters from grouped reference draws (see :data:`REFERENCE_ADAPTERS`;
    ``data`` is the posterior's data dict, which some adapters need)."""
    adapter = REFERENCE_ADAPTERS.get(model_name)
    return adapter(draws, data or {}) if adapter is not None else dict(draws)
