"""The sampler benchmark's models, each written three times: exmc IR, PyMC and NumPyro.

The three versions of a model define the *same* joint density (same priors, same likelihood, same
data), so their ESS per second can be compared. Synthetic data is drawn once from fixed seeds by the
``*_data`` functions and shared by the three versions.

Models (issue 4's list):

- ``seed``: the seed's normal model, ``mu ~ N(0, 10)``, ``sigma ~ HalfNormal(2)``, 10 observations.
- ``logistic``: logistic regression, N=500 rows, K=20 predictors, ``alpha ~ N(0, 2.5)``,
  ``beta ~ N(0, 2.5)``.
- ``eight_schools``: the centered parameterization (known to diverge; PyMC and Stan diverge too).
- ``funnel``: Neal's funnel in 10 dimensions, ``v ~ N(0, 3)``, ``x[1..9] ~ N(0, exp(v / 2))``.
- ``sv``: stochastic volatility as in PyMC's example (Gaussian random walk log-volatility with an
  ``N(0, 100)`` start, Student-t returns with scale ``exp(volatility)``), T=100 synthetic returns.

PyMC and NumPyro are optional: they are imported only inside the functions that build their models,
so this module (and exmc's half of it) works without them. PyMC's and NumPyro's free variables carry
the same names as exmc's free rvs, so ESS is taken over the same scalars in every framework.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from exmc import Builder, Dist

#: Observations of the seed model, as written in the seed (issue 3).
SEED_Y = np.array([2.1, 2.5, 1.8, 2.3, 2.7, 1.9, 2.4, 2.2, 2.6, 2.0])

#: Eight schools data (Rubin 1981; the Stan/PyMC/posteriordb version).
EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

#: Sizes fixed by issue 4.
LOGISTIC_N, LOGISTIC_K = 500, 20
FUNNEL_DIM = 10  # v plus 9 x's, as Neal (2003) and Stan's funnel example
SV_T = 100

#: Weakly informative prior scale of the logistic regression's coefficients (Gelman et al. 2008).
LOGISTIC_PRIOR_SCALE = 2.5
#: PyMC's stochastic-volatility example: step_size ~ Exponential(10), nu ~ Exponential(0.1),
#: volatility[0] ~ N(0, 100).
SV_STEP_RATE, SV_NU_RATE, SV_INIT_SIGMA = 10.0, 0.1, 100.0

#: Fixed seeds of the synthetic data sets (any fixed value: they only make runs reproducible).
LOGISTIC_DATA_SEED = 20_240_501
SV_DATA_SEED = 20_240_502


# --------------------------------------------------------------------------------------- data
def logistic_data() -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: standard-normal design (N, K) and 0/1 outcomes from a known ``alpha``, ``beta``."""
    rng = np.random.default_rng(LOGISTIC_DATA_SEED)
    X = rng.normal(size=(LOGISTIC_N, LOGISTIC_K))
    alpha = -0.5
    beta = rng.normal(0.0, 0.5, size=LOGISTIC_K)
    p = 1.0 / (1.0 + np.exp(-(alpha + X @ beta)))
    y = (rng.uniform(size=LOGISTIC_N) < p).astype(float)
    return X, y


def sv_data() -> np.ndarray:
    """T synthetic daily returns: log-volatility a random walk with steps N(0, 0.1) from log(0.01),
    returns ``exp(volatility) * t_5`` noise."""
    rng = np.random.default_rng(SV_DATA_SEED)
    volatility = np.log(0.01) + np.cumsum(rng.normal(0.0, 0.1, size=SV_T))
    return np.exp(volatility) * rng.standard_t(5.0, size=SV_T)


# --------------------------------------------------------------------------------------- exmc
def seed_ir():
    """The seed's model, exactly as issue 3 writes it."""
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 10.0})
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": 2.0})
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", SEED_Y)


def logistic_ir():
    """``y ~ Bernoulli(logit_p = alpha + X @ beta)``."""
    X, y = logistic_data()
    ir = Builder.new_ir()
    ir = Builder.data(ir, "X", X)
    ir = Builder.rv(ir, "alpha", Dist.Normal, {"mu": 0.0, "sigma": LOGISTIC_PRIOR_SCALE})
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": 0.0, "sigma": LOGISTIC_PRIOR_SCALE}, shape=(LOGISTIC_K,))
    ir = Builder.det(ir, "Xbeta", "matmul", ["X", "beta"])
    ir = Builder.det(ir, "eta", "add", ["alpha", "Xbeta"])
    ir = Builder.rv(ir, "y", Dist.Bernoulli, {"logit_p": "eta"})
    return Builder.obs(ir, "y_obs", "y", y)


def eight_schools_ir():
    """Centered eight schools: ``theta ~ N(mu, tau)``, ``y ~ N(theta, sigma)``."""
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 5.0})
    ir = Builder.rv(ir, "tau", Dist.HalfCauchy, {"scale": 5.0})
    ir = Builder.rv(ir, "theta", Dist.Normal, {"mu": "mu", "sigma": "tau"}, shape=(8,))
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "theta", "sigma": EIGHT_SCHOOLS_SIGMA})
    return Builder.obs(ir, "y_obs", "y", EIGHT_SCHOOLS_Y)


def funnel_ir():
    """Neal's funnel: ``v ~ N(0, 3)``, ``x ~ N(0, exp(v / 2))`` with ``FUNNEL_DIM - 1`` x's."""
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "v", Dist.Normal, {"mu": 0.0, "sigma": 3.0})
    ir = Builder.det(ir, "v_half", "mul", ["v", 0.5])
    ir = Builder.det(ir, "x_scale", "exp", ["v_half"])
    return Builder.rv(ir, "x", Dist.Normal, {"mu": 0.0, "sigma": "x_scale"}, shape=(FUNNEL_DIM - 1,))


def sv_ir():
    """PyMC's stochastic volatility example on :func:`sv_data`."""
    returns = sv_data()
    ir = Builder.new_ir()
    ir = Builder.rv(ir, "step_size", Dist.Exponential, {"lambda": SV_STEP_RATE})
    ir = Builder.rv(ir, "volatility", Dist.GaussianRandomWalk,
                    {"sigma": "step_size", "init_sigma": SV_INIT_SIGMA}, shape=(SV_T,))
    ir = Builder.rv(ir, "nu", Dist.Exponential, {"lambda": SV_NU_RATE})
    ir = Builder.det(ir, "return_scale", "exp", ["volatility"])
    ir = Builder.rv(ir, "returns", Dist.StudentT, {"df": "nu", "loc": 0.0, "scale": "return_scale"})
    return Builder.obs(ir, "returns_obs", "returns", returns)


# --------------------------------------------------------------------------------------- PyMC
def seed_pymc():
    """PyMC twin of :func:`seed_ir` (raises ``ImportError`` without PyMC)."""
    import pymc as pm

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", mu, sigma, observed=SEED_Y)
    return model


def logistic_pymc():
    """PyMC twin of :func:`logistic_ir` (raises ``ImportError`` without PyMC)."""
    import pymc as pm

    X, y = logistic_data()
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, LOGISTIC_PRIOR_SCALE)
        beta = pm.Normal("beta", 0.0, LOGISTIC_PRIOR_SCALE, shape=LOGISTIC_K)
        pm.Bernoulli("y", logit_p=alpha + pm.math.dot(X, beta), observed=y)
    return model


def eight_schools_pymc():
    """PyMC twin of :func:`eight_schools_ir` (raises ``ImportError`` without PyMC)."""
    import pymc as pm

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfCauchy("tau", 5.0)
        theta = pm.Normal("theta", mu, tau, shape=8)
        pm.Normal("y", theta, EIGHT_SCHOOLS_SIGMA, observed=EIGHT_SCHOOLS_Y)
    return model


def funnel_pymc():
    """PyMC twin of :func:`funnel_ir` (raises ``ImportError`` without PyMC)."""
    import pymc as pm

    with pm.Model() as model:
        v = pm.Normal("v", 0.0, 3.0)
        pm.Normal("x", 0.0, pm.math.exp(v / 2.0), shape=FUNNEL_DIM - 1)
    return model


def sv_pymc():
    """PyMC twin of :func:`sv_ir` (raises ``ImportError`` without PyMC)."""
    import pymc as pm

    returns = sv_data()
    with pm.Model() as model:
        step_size = pm.Exponential("step_size", SV_STEP_RATE)
        volatility = pm.GaussianRandomWalk(
            "volatility", mu=0.0, sigma=step_size, init_dist=pm.Normal.dist(0.0, SV_INIT_SIGMA), shape=SV_T
        )
        nu = pm.Exponential("nu", SV_NU_RATE)
        pm.StudentT("returns", nu=nu, mu=0.0, sigma=pm.math.exp(volatility), observed=returns)
    return model


# --------------------------------------------------------------------------------------- NumPyro
def seed_numpyro():
    """NumPyro twin of :func:`seed_ir`: the model function (raises ``ImportError`` without NumPyro)."""
    import numpyro
    import numpyro.distributions as dist

    def model():
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
        numpyro.sample("y", dist.Normal(mu, sigma), obs=SEED_Y)

    return model


def logistic_numpyro():
    """NumPyro twin of :func:`logistic_ir`: the model function (raises ``ImportError`` without NumPyro)."""
    import numpyro
    import numpyro.distributions as dist

    X, y = logistic_data()

    def model():
        alpha = numpyro.sample("alpha", dist.Normal(0.0, LOGISTIC_PRIOR_SCALE))
        beta = numpyro.sample("beta", dist.Normal(0.0, LOGISTIC_PRIOR_SCALE).expand([LOGISTIC_K]).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=alpha + X @ beta).to_event(1), obs=y)

    return model


def eight_schools_numpyro():
    """NumPyro twin of :func:`eight_schools_ir`: the model function (raises ``ImportError`` without NumPyro)."""
    import numpyro
    import numpyro.distributions as dist

    def model():
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        theta = numpyro.sample("theta", dist.Normal(mu, tau).expand([8]).to_event(1))
        numpyro.sample("y", dist.Normal(theta, EIGHT_SCHOOLS_SIGMA).to_event(1), obs=EIGHT_SCHOOLS_Y)

    return model


def funnel_numpyro():
    """NumPyro twin of :func:`funnel_ir`: the model function (raises ``ImportError`` without NumPyro)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    def model():
        v = numpyro.sample("v", dist.Normal(0.0, 3.0))
        numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2.0)).expand([FUNNEL_DIM - 1]).to_event(1))

    return model


def sv_numpyro():
    """NumPyro twin of :func:`sv_ir`: the model function (raises ``ImportError`` without NumPyro)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    returns = sv_data()

    def model():
        step_size = numpyro.sample("step_size", dist.Exponential(SV_STEP_RATE))
        # NumPyro's GaussianRandomWalk starts at N(0, scale); PyMC's example starts at N(0, 100),
        # so the walk's density is written out as a factor on an improper flat site.
        volatility = numpyro.sample("volatility", dist.ImproperUniform(constraints.real_vector, (), (SV_T,)))
        numpyro.factor("volatility_start", dist.Normal(0.0, SV_INIT_SIGMA).log_prob(volatility[0]))
        numpyro.factor("volatility_steps", dist.Normal(0.0, step_size).log_prob(jnp.diff(volatility)).sum())
        nu = numpyro.sample("nu", dist.Exponential(SV_NU_RATE))
        numpyro.sample("returns", dist.StudentT(nu, 0.0, jnp.exp(volatility)).to_event(1), obs=returns)

    return model


# --------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class BenchModel:
    """One benchmark model in its three spellings.

    Attributes:
        name: the key ``--models`` selects it by.
        exmc_ir: builds the exmc IR.
        pymc: builds the ``pymc.Model`` (imports PyMC; raises ``ImportError`` without it).
        numpyro: returns the NumPyro model function (imports NumPyro/JAX).
        params: the free parameters ESS is computed over (the same names in all three).
    """

    name: str
    exmc_ir: Callable[[], Any]
    pymc: Callable[[], Any]
    numpyro: Callable[[], Callable[[], None]]
    params: tuple[str, ...]


MODELS: dict[str, BenchModel] = {
    m.name: m
    for m in (
        BenchModel("seed", seed_ir, seed_pymc, seed_numpyro, ("mu", "sigma")),
        BenchModel("logistic", logistic_ir, logistic_pymc, logistic_numpyro, ("alpha", "beta")),
        BenchModel("eight_schools", eight_schools_ir, eight_schools_pymc, eight_schools_numpyro, ("mu", "tau", "theta")),
        BenchModel("funnel", funnel_ir, funnel_pymc, funnel_numpyro, ("v", "x")),
        BenchModel("sv", sv_ir, sv_pymc, sv_numpyro, ("step_size", "volatility", "nu")),
    )
}
