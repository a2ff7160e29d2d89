"""Direct numpy transcriptions of the posteriordb Stan programs' model blocks.

Each function is written line by line from ``models/<model>.stan`` and knows nothing of exmc: it
takes the program's data dict (as JSON gives it) and one draw of the program's *parameters* block
(name -> float or 0-based numpy array) and returns the log-density the model block accumulates,
on the constrained scale and without Jacobian terms (what Stan's ``log_prob(jacobian=False)``
gives, up to the constants ``~`` statements drop). They are the independent reference the ports in
``exmc.models`` are checked against; keep them free of shared structure so a mistake in one port
is not repeated here.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from scipy.special import gammaln

LOG_2PI = np.log(2.0 * np.pi)

Params = Mapping[str, Any]
Data = Mapping[str, Any]


# --- Stan's lpdf functions (normalised, summed over vectorised arguments) ---------------------

def normal_lpdf(y, mu, sigma) -> float:
    y, mu, sigma = np.broadcast_arrays(np.asarray(y, float), np.asarray(mu, float), np.asarray(sigma, float))
    z = (y - mu) / sigma
    return float(np.sum(-0.5 * z * z - np.log(sigma) - 0.5 * LOG_2PI))


def cauchy_lpdf(y, loc, scale) -> float:
    y, loc, scale = np.broadcast_arrays(np.asarray(y, float), np.asarray(loc, float), np.asarray(scale, float))
    z = (y - loc) / scale
    return float(np.sum(-np.log(np.pi) - np.log(scale) - np.log1p(z * z)))


def student_t_lpdf(y, nu, mu, sigma) -> float:
    y, nu, mu, sigma = np.broadcast_arrays(*(np.asarray(a, float) for a in (y, nu, mu, sigma)))
    z = (y - mu) / sigma
    return float(np.sum(gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)
                        - np.log(sigma) - (nu + 1) / 2 * np.log1p(z * z / nu)))


def _vec(data: Data, key: str) -> np.ndarray:
    return np.asarray(data[key], dtype=float)


# --- eight_schools_noncentered.stan -------------------------------------------------------

def eight_schools_noncentered(data: Data, p: Params) -> float:
    y, sigma = _vec(data, "y"), _vec(data, "sigma")
    theta_trans, mu, tau = np.asarray(p["theta_trans"]), p["mu"], p["tau"]
    theta = theta_trans * tau + mu
    return (normal_lpdf(theta_trans, 0, 1) + normal_lpdf(y, theta, sigma)
            + normal_lpdf(mu, 0, 5) + cauchy_lpdf(tau, 0, 5))


# --- earnings: earn_height.stan, log10earn_height.stan, logearn_*.stan ---------------------

def earn_height(data: Data, p: Params) -> float:
    beta = p["beta"]
    return normal_lpdf(_vec(data, "earn"), beta[0] + beta[1] * _vec(data, "height"), p["sigma"])


def log10earn_height(data: Data, p: Params) -> float:
    beta = p["beta"]
    log10_earn = np.log10(_vec(data, "earn"))
    return normal_lpdf(log10_earn, beta[0] + beta[1] * _vec(data, "height"), p["sigma"])


def logearn_height(data: Data, p: Params) -> float:
    beta = p["beta"]
    log_earn = np.log(_vec(data, "earn"))
    return normal_lpdf(log_earn, beta[0] + beta[1] * _vec(data, "height"), p["sigma"])


def logearn_height_male(data: Data, p: Params) -> float:
    beta = p["beta"]
    log_earn = np.log(_vec(data, "earn"))
    mu = beta[0] + beta[1] * _vec(data, "height") + beta[2] * _vec(data, "male")
    return normal_lpdf(log_earn, mu, p["sigma"])


def logearn_interaction(data: Data, p: Params) -> float:
    beta = p["beta"]
    height, male = _vec(data, "height"), _vec(data, "male")
    log_earn = np.log(_vec(data, "earn"))
    inter = height * male
    mu = beta[0] + beta[1] * height + beta[2] * male + beta[3] * inter
    return normal_lpdf(log_earn, mu, p["sigma"])


def logearn_interaction_z(data: Data, p: Params) -> float:
    beta = p["beta"]
    height, male = _vec(data, "height"), _vec(data, "male")
    log_earn = np.log(_vec(data, "earn"))
    z_height = (height - height.mean()) / height.std(ddof=1)  # Stan's sd() is the sample sd
    inter = z_height * male
    mu = beta[0] + beta[1] * z_height + beta[2] * male + beta[3] * inter
    return normal_lpdf(log_earn, mu, p["sigma"])


def logearn_logheight_male(data: Data, p: Params) -> float:
    beta = p["beta"]
    log_earn = np.log(_vec(data, "earn"))
    log_height = np.log(_vec(data, "height"))
    mu = beta[0] + beta[1] * log_height + beta[2] * _vec(data, "male")
    return normal_lpdf(log_earn, mu, p["sigma"])


# --- kidiq: kidscore_momhs/momiq/momhsiq/interaction.stan (sigma ~ cauchy(0, 2.5)) -----------

def kidscore_momhs(data: Data, p: Params) -> float:
    beta, sigma = p["beta"], p["sigma"]
    return cauchy_lpdf(sigma, 0, 2.5) + normal_lpdf(
        _vec(data, "kid_score"), beta[0] + beta[1] * _vec(data, "mom_hs"), sigma)


def kidscore_momiq(data: Data, p: Params) -> float:
    beta, sigma = p["beta"], p["sigma"]
    return cauchy_lpdf(sigma, 0, 2.5) + normal_lpdf(
        _vec(data, "kid_score"), beta[0] + beta[1] * _vec(data, "mom_iq"), sigma)


def kidscore_momhsiq(data: Data, p: Params) -> float:
    beta, sigma = p["beta"], p["sigma"]
    mu = beta[0] + beta[1] * _vec(data, "mom_hs") + beta[2] * _vec(data, "mom_iq")
    return cauchy_lpdf(sigma, 0, 2.5) + normal_lpdf(_vec(data, "kid_score"), mu, sigma)


def kidscore_interaction(data: Data, p: Params) -> float:
    beta, sigma = p["beta"], p["sigma"]
    mom_hs, mom_iq = _vec(data, "mom_hs"), _vec(data, "mom_iq")
    inter = mom_hs * mom_iq
    mu = beta[0] + beta[1] * mom_hs + beta[2] * mom_iq + beta[3] * inter
    return cauchy_lpdf(sigma, 0, 2.5) + normal_lpdf(_vec(data, "kid_score"), mu, sigma)


# --- kidiq_with_mom_work: kidscore_interaction_c/c2/z.stan, kidscore_mom_work.stan (flat priors)

def kidscore_interaction_c(data: Data, p: Params) -> float:
    beta = p["beta"]
    mom_hs, mom_iq = _vec(data, "mom_hs"), _vec(data, "mom_iq")
    c_mom_hs = mom_hs - mom_hs.mean()
    c_mom_iq = mom_iq - mom_iq.mean()
    inter = c_mom_hs * c_mom_iq
    mu = beta[0] + beta[1] * c_mom_hs + beta[2] * c_mom_iq + beta[3] * inter
    return normal_lpdf(_vec(data, "kid_score"), mu, p["sigma"])


def kidscore_interaction_c2(data: Data, p: Params) -> float:
    beta = p["beta"]
    c2_mom_hs = _vec(data, "mom_hs") - 0.5
    c2_mom_iq = _vec(data, "mom_iq") - 100
    inter = c2_mom_hs * c2_mom_iq
    mu = beta[0] + beta[1] * c2_mom_hs + beta[2] * c2_mom_iq + beta[3] * inter
    return normal_lpdf(_vec(data, "kid_score"), mu, p["sigma"])


def kidscore_interaction_z(data: Data, p: Params) -> float:
    beta = p["beta"]
    mom_hs, mom_iq = _vec(data, "mom_hs"), _vec(data, "mom_iq")
    z_mom_hs = (mom_hs - mom_hs.mean()) / (2 * mom_hs.std(ddof=1))
    z_mom_iq = (mom_iq - mom_iq.mean()) / (2 * mom_iq.std(ddof=1))
    inter = z_mom_hs * z_mom_iq
    mu = beta[0] + beta[1] * z_mom_hs + beta[2] * z_mom_iq + beta[3] * inter
    return normal_lpdf(_vec(data, "kid_score"), mu, p["sigma"])


def kidscore_mom_work(data: Data, p: Params) -> float:
    beta = p["beta"]
    mom_work = np.asarray(data["mom_work"])
    work2 = (mom_work == 2).astype(float)
    work3 = (mom_work == 3).astype(float)
    work4 = (mom_work == 4).astype(float)
    mu = beta[0] + beta[1] * work2 + beta[2] * work3 + beta[3] * work4
    return normal_lpdf(_vec(data, "kid_score"), mu, p["sigma"])


# --- kilpisjarvi.stan ------------------------------------------------------------------------

def kilpisjarvi(data: Data, p: Params) -> float:
    alpha, beta, sigma = p["alpha"], p["beta"], p["sigma"]
    return (normal_lpdf(alpha, data["pmualpha"], data["psalpha"])
            + normal_lpdf(beta, data["pmubeta"], data["psbeta"])
            + normal_lpdf(_vec(data, "y"), alpha + beta * _vec(data, "x"), sigma))


# --- mesquite: mesquite.stan, logmesquite*.stan (flat priors) ----------------------------------

def mesquite(data: Data, p: Params) -> float:
    b = p["beta"]
    v = {k: _vec(data, k) for k in ("weight", "diam1", "diam2", "canopy_height", "total_height", "density", "group")}
    mu = (b[0] + b[1] * v["diam1"] + b[2] * v["diam2"] + b[3] * v["canopy_height"]
          + b[4] * v["total_height"] + b[5] * v["density"] + b[6] * v["group"])
    return normal_lpdf(v["weight"], mu, p["sigma"])


def logmesquite(data: Data, p: Params) -> float:
    b = p["beta"]
    lg = {k: np.log(_vec(data, k)) for k in ("weight", "diam1", "diam2", "canopy_height", "total_height", "density")}
    mu = (b[0] + b[1] * lg["diam1"] + b[2] * lg["diam2"] + b[3] * lg["canopy_height"]
          + b[4] * lg["total_height"] + b[5] * lg["density"] + b[6] * _vec(data, "group"))
    return normal_lpdf(lg["weight"], mu, p["sigma"])


def logmesquite_logva(data: Data, p: Params) -> float:
    b = p["beta"]
    d1, d2, ch = _vec(data, "diam1"), _vec(data, "diam2"), _vec(data, "canopy_height")
    log_canopy_volume = np.log(d1 * d2 * ch)
    log_canopy_area = np.log(d1 * d2)
    mu = b[0] + b[1] * log_canopy_volume + b[2] * log_canopy_area + b[3] * _vec(data, "group")
    return normal_lpdf(np.log(_vec(data, "weight")), mu, p["sigma"])


def logmesquite_logvas(data: Data, p: Params) -> float:
    b = p["beta"]
    d1, d2, ch = _vec(data, "diam1"), _vec(data, "diam2"), _vec(data, "canopy_height")
    mu = (b[0] + b[1] * np.log(d1 * d2 * ch) + b[2] * np.log(d1 * d2) + b[3] * np.log(d1 / d2)
          + b[4] * np.log(_vec(data, "total_height")) + b[5] * np.log(_vec(data, "density"))
          + b[6] * _vec(data, "group"))
    return normal_lpdf(np.log(_vec(data, "weight")), mu, p["sigma"])


def logmesquite_logvash(data: Data, p: Params) -> float:
    b = p["beta"]
    d1, d2, ch = _vec(data, "diam1"), _vec(data, "diam2"), _vec(data, "canopy_height")
    mu = (b[0] + b[1] * np.log(d1 * d2 * ch) + b[2] * np.log(d1 * d2) + b[3] * np.log(d1 / d2)
          + b[4] * np.log(_vec(data, "total_height")) + b[5] * _vec(data, "group"))
    return normal_lpdf(np.log(_vec(data, "weight")), mu, p["sigma"])


def logmesquite_logvolume(data: Data, p: Params) -> float:
    b = p["beta"]
    log_canopy_volume = np.log(_vec(data, "diam1") * _vec(data, "diam2") * _vec(data, "canopy_height"))
    return normal_lpdf(np.log(_vec(data, "weight")), b[0] + b[1] * log_canopy_volume, p["sigma"])


# --- nes.stan --------------------------------------------------------------------------------

def nes(data: Data, p: Params) -> float:
    b = p["beta"]
    age = np.asarray(data["age_discrete"])
    age30_44, age45_64, age65up = ((age == k).astype(float) for k in (2, 3, 4))
    mu = (b[0] + b[1] * _vec(data, "real_ideo") + b[2] * _vec(data, "race_adj") + b[3] * age30_44
          + b[4] * age45_64 + b[5] * age65up + b[6] * _vec(data, "educ1") + b[7] * _vec(data, "gender")
          + b[8] * _vec(data, "income"))
    return normal_lpdf(_vec(data, "partyid7"), mu, p["sigma"])


# --- blr.stan (sblrc, sblri) ---------------------------------------------------------------------

def blr(data: Data, p: Params) -> float:
    beta, sigma = np.asarray(p["beta"]), p["sigma"]
    X = np.asarray(data["X"], dtype=float)
    return normal_lpdf(beta, 0, 10) + normal_lpdf(sigma, 0, 10) + normal_lpdf(_vec(data, "y"), X @ beta, sigma)


# --- arK.stan ----------------------------------------------------------------------------------

def arK(data: Data, p: Params) -> float:
    K, T = data["K"], data["T"]
    y = _vec(data, "y")
    alpha, beta, sigma = p["alpha"], np.asarray(p["beta"]), p["sigma"]
    lp = normal_lpdf(alpha, 0, 10) + normal_lpdf(beta, 0, 10) + cauchy_lpdf(sigma, 0, 2.5)
    for t in range(K, T):  # Stan's t in (K+1):T, 1-based
        mu = alpha
        for k in range(1, K + 1):
            mu = mu + beta[k - 1] * y[t - k]
        lp += normal_lpdf(y[t], mu, sigma)
    return lp


# --- diamonds.stan (brms) ------------------------------------------------------------------------

def diamonds(data: Data, p: Params) -> float:
    X = np.asarray(data["X"], dtype=float)
    Y = _vec(data, "Y")
    means_X = X[:, 1:].mean(axis=0)
    Xc = X[:, 1:] - means_X
    b, intercept, sigma = np.asarray(p["b"]), p["Intercept"], p["sigma"]
    lp = normal_lpdf(b, 0, 1) + student_t_lpdf(intercept, 3, 8, 10)
    # student_t_lpdf(sigma | 3, 0, 10) - student_t_lccdf(0 | 3, 0, 10); the lccdf is log(1/2).
    lp += student_t_lpdf(sigma, 3, 0, 10) - np.log(0.5)
    if not data["prior_only"]:
        lp += normal_lpdf(Y, intercept + Xc @ b, sigma)  # normal_id_glm_lpdf(Y | Xc, Intercept, b, sigma)
    return lp


# --- gp_regr.stan / gp_pois_regr.stan --------------------------------------------------------

def _gp_exp_quad_cov(x, alpha, rho):
    x = np.asarray(x, dtype=float)
    return alpha ** 2 * np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * rho ** 2))


def _gamma_lpdf(y, a, b):
    return float(a * np.log(b) - gammaln(a) + (a - 1) * np.log(y) - b * y)


def gp_regr(data: Data, p: Params) -> float:
    n = data["N"]
    cov = _gp_exp_quad_cov(data["x"], p["alpha"], p["rho"]) + np.diag(np.full(n, p["sigma"]))
    chol = np.linalg.cholesky(cov)
    y = _vec(data, "y")
    z = np.linalg.solve(chol, y)  # multi_normal_cholesky_lpdf(y | 0, L)
    lik = -0.5 * z @ z - np.sum(np.log(np.diag(chol))) - 0.5 * n * LOG_2PI
    return _gamma_lpdf(p["rho"], 25, 4) + normal_lpdf(p["alpha"], 0, 2) + normal_lpdf(p["sigma"], 0, 1) + lik


def gp_pois_regr(data: Data, p: Params) -> float:
    n = data["N"]
    cov = _gp_exp_quad_cov(data["x"], p["alpha"], p["rho"]) + np.diag(np.full(n, 1e-10))
    f = np.linalg.cholesky(cov) @ np.asarray(p["f_tilde"])
    k = np.asarray(data["k"], dtype=float)
    lik = float(np.sum(k * f - np.exp(f) - gammaln(k + 1)))  # poisson_log_lpmf(k | f)
    return _gamma_lpdf(p["rho"], 25, 4) + normal_lpdf(p["alpha"], 0, 2) + normal_lpdf(p["f_tilde"], 0, 1) + lik


# --- low_dim_gauss_mix.stan ----------------------------------------------------------------------

def low_dim_gauss_mix(data: Data, p: Params) -> float:
    mu, sigma, theta = np.asarray(p["mu"]), np.asarray(p["sigma"]), p["theta"]
    lp = normal_lpdf(sigma, 0, 2) + normal_lpdf(mu, 0, 2)
    lp += float((5 - 1) * np.log(theta) + (5 - 1) * np.log1p(-theta) - (gammaln(5) * 2 - gammaln(10)))
    for y_n in _vec(data, "y"):
        a = np.log(theta) + normal_lpdf(y_n, mu[0], sigma[0])
        b = np.log1p(-theta) + normal_lpdf(y_n, mu[1], sigma[1])
        lp += float(np.logaddexp(a, b))  # log_mix
    return lp


# --- hmm_example.stan ----------------------------------------------------------------------------

def hmm_example(data: Data, p: Params) -> float:
    y, K, N = _vec(data, "y"), data["K"], data["N"]
    theta = [np.asarray(p["theta1"]), np.asarray(p["theta2"])]
    mu = np.asarray(p["mu"])
    lp = normal_lpdf(mu[0], 3, 1) + normal_lpdf(mu[1], 10, 1)
    gamma = np.zeros((N, K))
    for k in range(K):
        gamma[0, k] = normal_lpdf(y[0], mu[k], 1)
    for t in range(1, N):
        for k in range(K):
            acc = [gamma[t - 1, j] + np.log(theta[j][k]) + normal_lpdf(y[t], mu[k], 1) for j in range(K)]
            gamma[t, k] = np.logaddexp.reduce(acc)
    return lp + float(np.logaddexp.reduce(gamma[N - 1]))


# --- hmm_drive_0.stan / hmm_drive_1.stan -------------------------------------------------------

def _dirichlet_lpdf(x, alpha):
    x, alpha = np.asarray(x, float), np.asarray(alpha, float)
    return float(gammaln(alpha.sum()) - gammaln(alpha).sum() + np.sum((alpha - 1) * np.log(x)))


def _exponential_lpdf(y, rate):
    return float(np.log(rate) - rate * y)


def _hmm_drive(data: Data, p: Params, emission) -> float:
    u, v, K, N = _vec(data, "u"), _vec(data, "v"), data["K"], data["N"]
    alpha = np.asarray(data["alpha"], dtype=float)
    theta = [np.asarray(p["theta1"]), np.asarray(p["theta2"])]
    phi, lam = np.asarray(p["phi"]), np.asarray(p["lambda"])
    lp = sum(_dirichlet_lpdf(theta[k], alpha[k]) for k in range(K))
    lp += normal_lpdf(phi[0], 0, 1) + normal_lpdf(phi[1], 3, 1) + normal_lpdf(lam[0], 0, 1) + normal_lpdf(lam[1], 3, 1)
    gamma = np.zeros((N, K))
    for k in range(K):
        gamma[0, k] = emission(u[0], v[0], phi[k], lam[k])
    for t in range(1, N):
        for k in range(K):
            acc = [gamma[t - 1, j] + np.log(theta[j][k]) + emission(u[t], v[t], phi[k], lam[k]) for j in range(K)]
            gamma[t, k] = np.logaddexp.reduce(acc)
    return lp + float(np.logaddexp.reduce(gamma[N - 1]))


def hmm_drive_0(data: Data, p: Params) -> float:
    return _hmm_drive(data, p, lambda u, v, phi, lam: _exponential_lpdf(u, phi) + _exponential_lpdf(v, lam))


def hmm_drive_1(data: Data, p: Params) -> float:
    tau, rho = data["tau"], data["rho"]
    return _hmm_drive(data, p, lambda u, v, phi, lam: normal_lpdf(u, phi, tau) + normal_lpdf(v, lam, rho))


# --- arma11.stan / garch11.stan ------------------------------------------------------------------

def arma11(data: Data, p: Params) -> float:
    y, T = _vec(data, "y"), data["T"]
    mu, phi, theta, sigma = p["mu"], p["phi"], p["theta"], p["sigma"]
    lp = normal_lpdf(mu, 0, 10) + normal_lpdf(phi, 0, 2) + normal_lpdf(theta, 0, 2) + cauchy_lpdf(sigma, 0, 2.5)
    err = np.zeros(T)
    nu = mu + phi * mu
    err[0] = y[0] - nu
    for t in range(1, T):
        nu = mu + phi * y[t - 1] + theta * err[t - 1]
        err[t] = y[t] - nu
    return lp + normal_lpdf(err, 0, sigma)


def _garch11_stan(data: Data, p: Params) -> float:
    y, T = _vec(data, "y"), data["T"]
    mu, alpha0, alpha1, beta1 = p["mu"], p["alpha0"], p["alpha1"], p["beta1"]
    sigma = np.zeros(T)
    sigma[0] = data["sigma1"]
    for t in range(1, T):
        sigma[t] = np.sqrt(alpha0 + alpha1 * (y[t - 1] - mu) ** 2 + beta1 * sigma[t - 1] ** 2)
    return normal_lpdf(y, mu, sigma)


def garch11(data: Data, p: Params) -> float:
    """The port samples ``beta1 = (1 - alpha1) beta1_unit`` (Stan's bound ``upper=(1 - alpha1)``):
    Stan's density in ``(alpha1, beta1)`` times that map's Jacobian ``1 - alpha1``."""
    alpha1 = p["alpha1"]
    stan = dict(p, beta1=(1.0 - alpha1) * p["beta1_unit"])
    return _garch11_stan(data, stan) + float(np.log1p(-alpha1))


# --- lotka_volterra.stan / one_comp_mm_elim_abs.stan (scipy's odeint, tight tolerances) ----------

def _lognormal_lpdf(y, mu, sigma):
    y = np.asarray(y, float)
    return normal_lpdf(np.log(y), mu, sigma) - float(np.sum(np.log(y) * np.ones(np.broadcast(y, mu, sigma).shape)))


def lotka_volterra(data: Data, p: Params) -> float:
    from scipy.integrate import odeint

    theta, z_init, sigma = np.asarray(p["theta"]), np.asarray(p["z_init"]), np.asarray(p["sigma"])

    def dz_dt(z, t):
        u, v = z
        alpha, beta, gamma, delta = theta
        return [(alpha - beta * v) * u, (-gamma + delta * u) * v]

    ts = np.asarray(data["ts"], float)
    z = odeint(dz_dt, z_init, np.concatenate([[0.0], ts]), rtol=1e-11, atol=1e-11)[1:]
    y, y_init = np.asarray(data["y"], float), np.asarray(data["y_init"], float)
    lp = normal_lpdf(theta[[0, 2]], 1, 0.5) + normal_lpdf(theta[[1, 3]], 0.05, 0.05)
    lp += _lognormal_lpdf(sigma, -1, 1) + _lognormal_lpdf(z_init, np.log(10), 1)
    for k in range(2):
        lp += _lognormal_lpdf(y_init[k], np.log(z_init[k]), sigma[k])
        lp += _lognormal_lpdf(y[:, k], np.log(z[:, k]), sigma[k])
    return lp


def one_comp_mm_elim_abs(data: Data, p: Params) -> float:
    from scipy.integrate import odeint

    k_a, K_m, V_m, sigma = p["k_a"], p["K_m"], p["V_m"], p["sigma"]
    D, V = data["D"], data["V"]

    def rhs(y, t):
        dose = np.exp(-k_a * t) * D * k_a / V if t > 0 else 0.0
        return [dose - (V_m / V) * y[0] / (K_m + y[0])]

    times = np.asarray(data["times"], float)
    C = odeint(rhs, [0.0], np.concatenate([[data["t0"]], times]), rtol=1e-11, atol=1e-11)[1:, 0]
    lp = cauchy_lpdf(k_a, 0, 1) + cauchy_lpdf(K_m, 0, 1) + cauchy_lpdf(V_m, 0, 1) + cauchy_lpdf(sigma, 0, 1)
    return lp + _lognormal_lpdf(np.asarray(data["C_hat"], float), np.log(C), sigma)


#: Stan model name -> transcription.
TRANSCRIPTIONS: dict[str, Callable[[Data, Params], float]] = {
    f.__name__: f
    for f in (
        eight_schools_noncentered, earn_height, log10earn_height, logearn_height, logearn_height_male,
        logearn_interaction, logearn_interaction_z, logearn_logheight_male, kidscore_momhs,
        kidscore_momiq, kidscore_momhsiq, kidscore_interaction, kidscore_interaction_c,
        kidscore_interaction_c2, kidscore_interaction_z, kidscore_mom_work, kilpisjarvi, mesquite,
        logmesquite, logmesquite_logva, logmesquite_logvas, logmesquite_logvash,
        logmesquite_logvolume, nes, blr, arK, diamonds, gp_regr, gp_pois_regr, low_dim_gauss_mix,
        hmm_example, hmm_drive_0, hmm_drive_1, arma11, garch11, lotka_volterra, one_comp_mm_elim_abs,
    )
}
