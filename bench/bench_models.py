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

Issue 14's models (medium hierarchies and large data):

- ``radon``: a radon-sized varying-intercept hierarchy, 919 rows in 85 groups of uneven sizes
  (Gelman & Hill's Minnesota radon layout, synthetic data), non-centred county intercepts
  ``a = mu_a + gamma * u + sigma_a * a_z`` with a group-level predictor ``u``, a row-level
  predictor ``floor`` and ``y ~ N(a[county] + beta * floor, sigma_y)``: 90 free coordinates and
  an ``index`` op.
- ``poisson_glm``: ``y ~ Poisson(exp(alpha + X @ beta))``, N=20,000 rows, K=10 predictors.
- ``bernoulli_glm``: ``y ~ Bernoulli(logit_p = alpha + X @ beta)``, N=20,000, K=10.

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
RADON_DATA_SEED = 20_261_203
GLM_DATA_SEED = 20_261_204

#: Issue 14's sizes: the radon data set's 919 houses in 85 Minnesota counties; the large-data GLMs.
RADON_N, RADON_COUNTIES = 919, 85
GLM_N, GLM_K = 20_000, 10
#: Priors of the radon model (Gelman & Hill's weakly informative choices) and the GLMs.
RADON_PRIOR_SCALE, RADON_SIGMA_SCALE = 10.0, 5.0
GLM_INTERCEPT_SCALE, GLM_COEF_SCALE = 2.5, 1.0


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


def radon_data() -> dict[str, np.ndarray]:
    """``county`` (N,) int group of each row, ``floor`` (N,) 0/1, ``u`` (J,) group predictor and
    ``y`` (N,) from known parameters; group sizes uneven (Dirichlet weights, as radon's 1-116)."""
    rng = np.random.default_rng(RADON_DATA_SEED)
    weights = rng.dirichlet(np.full(RADON_COUNTIES, 0.8))
    # every county gets at least one house, the rest by the weights
    county = np.concatenate([np.arange(RADON_COUNTIES),
                             rng.choice(RADON_COUNTIES, size=RADON_N - RADON_COUNTIES, p=weights)])
    county = np.sort(county).astype(np.int64)
    floor = (rng.uniform(size=RADON_N) < 0.17).astype(float)
    u = rng.normal(0.0, 0.35, size=RADON_COUNTIES)
    a = 1.5 + 0.7 * u + rng.normal(0.0, 0.3, size=RADON_COUNTIES)
    y = a[county] - 0.65 * floor + rng.normal(0.0, 0.75, size=RADON_N)
    return {"county": county, "floor": floor, "u": u, "y": y}


def glm_data(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` for ``kind`` ``"poisson"`` or ``"bernoulli"``: a (N, K) design of N(0, 0.3²)
    entries and outcomes from a known ``alpha``, ``beta`` (counts with mean ~ e^0.5 for Poisson)."""
    rng = np.random.default_rng(GLM_DATA_SEED + (kind == "bernoulli"))
    X = rng.normal(0.0, 0.3, size=(GLM_N, GLM_K))
    beta = rng.normal(0.0, 0.5, size=GLM_K)
    eta = 0.5 + X @ beta
    if kind == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.uniform(size=GLM_N) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return X, y


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


def radon_ir():
    """The varying-intercept hierarchy on :func:`radon_data` (non-centred by hand)."""
    d = radon_data()
    ir = Builder.new_ir()
    ir = Builder.data(ir, "county", d["county"])
    ir = Builder.data(ir, "floor", d["floor"])
    ir = Builder.data(ir, "u", d["u"])
    ir = Builder.rv(ir, "mu_a", Dist.Normal, {"mu": 0.0, "sigma": RADON_PRIOR_SCALE})
    ir = Builder.rv(ir, "gamma", Dist.Normal, {"mu": 0.0, "sigma": RADON_PRIOR_SCALE})
    ir = Builder.rv(ir, "sigma_a", Dist.HalfNormal, {"sigma": RADON_SIGMA_SCALE})
    ir = Builder.rv(ir, "a_z", Dist.Normal, {"mu": 0.0, "sigma": 1.0}, shape=(RADON_COUNTIES,))
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": 0.0, "sigma": RADON_PRIOR_SCALE})
    ir = Builder.rv(ir, "sigma_y", Dist.HalfNormal, {"sigma": RADON_SIGMA_SCALE})
    ir = Builder.det(ir, "a_mean", "affine", ["mu_a", "gamma", "u"])
    ir = Builder.det(ir, "a_dev", "mul", ["sigma_a", "a_z"])
    ir = Builder.det(ir, "a", "add", ["a_mean", "a_dev"])
    ir = Builder.det(ir, "a_row", "index", ["a", "county"])
    ir = Builder.det(ir, "mu", "affine", ["a_row", "beta", "floor"])
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma_y"})
    return Builder.obs(ir, "y_obs", "y", d["y"])


def _glm_ir(kind: str):
    X, y = glm_data(kind)
    ir = Builder.new_ir()
    ir = Builder.data(ir, "X", X)
    ir = Builder.rv(ir, "alpha", Dist.Normal, {"mu": 0.0, "sigma": GLM_INTERCEPT_SCALE})
    ir = Builder.rv(ir, "beta", Dist.Normal, {"mu": 0.0, "sigma": GLM_COEF_SCALE}, shape=(GLM_K,))
    ir = Builder.det(ir, "Xbeta", "matmul", ["X", "beta"])
    ir = Builder.det(ir, "eta", "add", ["alpha", "Xbeta"])
    if kind == "poisson":
        ir = Builder.det(ir, "rate", "exp", ["eta"])
        ir = Builder.rv(ir, "y", Dist.Poisson, {"mu": "rate"})
    else:
        ir = Builder.rv(ir, "y", Dist.Bernoulli, {"logit_p": "eta"})
    return Builder.obs(ir, "y_obs", "y", y)


def poisson_glm_ir():
    """``y ~ Poisson(exp(alpha + X @ beta))`` on :func:`glm_data`."""
    return _glm_ir("poisson")


def bernoulli_glm_ir():
    """``y ~ Bernoulli(logit_p = alpha + X @ beta)`` on :func:`glm_data`."""
    return _glm_ir("bernoulli")


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


def radon_pymc():
    """PyMC twin of :func:`radon_ir` (raises ``ImportError`` without PyMC)."""
    import pymc as pm

    d = radon_data()
    with pm.Model() as model:
        mu_a = pm.Normal("mu_a", 0.0, RADON_PRIOR_SCALE)
        gamma = pm.Normal("gamma", 0.0, RADON_PRIOR_SCALE)
        sigma_a = pm.HalfNormal("sigma_a", RADON_SIGMA_SCALE)
        a_z = pm.Normal("a_z", 0.0, 1.0, shape=RADON_COUNTIES)
        beta = pm.Normal("beta", 0.0, RADON_PRIOR_SCALE)
        sigma_y = pm.HalfNormal("sigma_y", RADON_SIGMA_SCALE)
        a = mu_a + gamma * d["u"] + sigma_a * a_z
        pm.Normal("y", a[d["county"]] + beta * d["floor"], sigma_y, observed=d["y"])
    return model


def _glm_pymc(kind: str):
    import pymc as pm

    X, y = glm_data(kind)
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, GLM_INTERCEPT_SCALE)
        beta = pm.Normal("beta", 0.0, GLM_COEF_SCALE, shape=GLM_K)
        eta = alpha + pm.math.dot(X, beta)
        if kind == "poisson":
            pm.Poisson("y", mu=pm.math.exp(eta), observed=y)
        else:
            pm.Bernoulli("y", logit_p=eta, observed=y)
    return model


def poisson_glm_pymc():
    """PyMC twin of :func:`poisson_glm_ir` (raises ``ImportError`` without PyMC)."""
    return _glm_pymc("poisson")


def bernoulli_glm_pymc():
    """PyMC twin of :func:`bernoulli_glm_ir` (raises ``ImportError`` without PyMC)."""
    return _glm_pymc("bernoulli")


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


def radon_numpyro():
    """NumPyro twin of :func:`radon_ir`: the model function (raises ``ImportError`` without NumPyro)."""
    import numpyro
    import numpyro.distributions as dist

    d = radon_data()

    def model():
        mu_a = numpyro.sample("mu_a", dist.Normal(0.0, RADON_PRIOR_SCALE))
        gamma = numpyro.sample("gamma", dist.Normal(0.0, RADON_PRIOR_SCALE))
        sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(RADON_SIGMA_SCALE))
        a_z = numpyro.sample("a_z", dist.Normal(0.0, 1.0).expand([RADON_COUNTIES]).to_event(1))
        beta = numpyro.sample("beta", dist.Normal(0.0, RADON_PRIOR_SCALE))
        sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(RADON_SIGMA_SCALE))
        a = mu_a + gamma * d["u"] + sigma_a * a_z
        numpyro.sample("y", dist.Normal(a[d["county"]] + beta * d["floor"], sigma_y).to_event(1), obs=d["y"])

    return model


def _glm_numpyro(kind: str):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    X, y = glm_data(kind)

    def model():
        alpha = numpyro.sample("alpha", dist.Normal(0.0, GLM_INTERCEPT_SCALE))
        beta = numpyro.sample("beta", dist.Normal(0.0, GLM_COEF_SCALE).expand([GLM_K]).to_event(1))
        eta = alpha + X @ beta
        if kind == "poisson":
            numpyro.sample("y", dist.Poisson(jnp.exp(eta)).to_event(1), obs=y)
        else:
            numpyro.sample("y", dist.Bernoulli(logits=eta).to_event(1), obs=y)

    return model


def poisson_glm_numpyro():
    """NumPyro twin of :func:`poisson_glm_ir` (raises ``ImportError`` without NumPyro)."""
    return _glm_numpyro("poisson")


def bernoulli_glm_numpyro():
    """NumPyro twin of :func:`bernoulli_glm_ir` (raises ``ImportError`` without NumPyro)."""
    return _glm_numpyro("bernoulli")


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
        BenchModel("radon", radon_ir, radon_pymc, radon_numpyro, ("mu_a", "gamma", "sigma_a", "a_z", "beta", "sigma_y")),
        BenchModel("poisson_glm", poisson_glm_ir, poisson_glm_pymc, poisson_glm_numpyro, ("alpha", "beta")),
        BenchModel("bernoulli_glm", bernoulli_glm_ir, bernoulli_glm_pymc, bernoulli_glm_numpyro, ("alpha", "beta")),
    )
}
