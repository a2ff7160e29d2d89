"""Categorical, Multinomial, BetaBinomial, ZeroSumNormal, LKJCholesky, HMM, Potential and the
ordered / positive_ordered / zerosum / cholesky_corr transforms: densities against scipy (or an
exact construction where scipy has none), gradients against central differences (the family alone,
and inside compiled models single and batched), and draws against known moments."""
import itertools

import numpy as np
import pytest
from scipy import stats
from scipy.special import betaln, logsumexp

import exmc
from dist_checks import check_gradients, numerical_gradient
from exmc import Builder as B
from exmc import transforms
from exmc.dist import FAMILIES
from exmc.errors import ValidationError
from exmc.nuts import Sampler
from exmc.transforms_extra import helmert_basis
from model_checks import check_model_gradients

RNG = np.random.default_rng(2026)
Categorical, Multinomial, BetaBinomial = FAMILIES["Categorical"], FAMILIES["Multinomial"], FAMILIES["BetaBinomial"]
ZeroSumNormal, LKJCholesky, HMM = FAMILIES["ZeroSumNormal"], FAMILIES["LKJCholesky"], FAMILIES["HMM"]


# --- transforms ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shape", [("ordered", (2, 4)), ("positive_ordered", (5,)), ("zerosum", (2, 3)),
                                         ("cholesky_corr", (2, 6)), ("cholesky_corr", (1,))])
def test_vector_transforms_round_trip_and_chain_rule(name, shape):
    t = transforms.by_name(name)
    x = RNG.normal(size=shape)
    y = t.forward(x)
    np.testing.assert_allclose(t.inverse(y), x, atol=1e-12)
    g_y = RNG.normal(size=y.shape)
    y2, logdet, g_x = t.forward_and_log_det_grads(x, g_y)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_allclose(logdet, t.log_det_jacobian(x))
    numeric = numerical_gradient(lambda z: float(np.sum(g_y * t.forward(z)) + np.sum(t.log_det_jacobian(z))), x)
    np.testing.assert_allclose(g_x, numeric, rtol=1e-6, atol=1e-7)


def test_ordered_ranges():
    x = RNG.normal(size=(3, 5)) * 3
    assert np.all(np.diff(transforms.by_name("ordered").forward(x), axis=-1) > 0)
    y = transforms.by_name("positive_ordered").forward(x)
    assert np.all(y > 0) and np.all(np.diff(y, axis=-1) > 0)
    np.testing.assert_allclose(np.sum(transforms.by_name("zerosum").forward(x), axis=-1), 0.0, atol=1e-12)


@pytest.mark.parametrize("name, k", [("ordered", 4), ("positive_ordered", 3), ("cholesky_corr", 3),
                                     ("cholesky_corr", 4)])
def test_log_jacobian_is_the_log_determinant_of_the_free_coordinates(name, k):
    t = transforms.by_name(name)
    m = k * (k - 1) // 2 if name == "cholesky_corr" else k
    x = RNG.normal(size=m) * 0.7
    if name == "cholesky_corr":
        rows, cols = np.tril_indices(k, -1)

        def free(z):
            return t.forward(z)[rows, cols]  # the strictly lower entries: the density's coordinates
    else:
        def free(z):
            return t.forward(z)
    jacobian = np.stack([numerical_gradient(lambda z, i=i: free(z)[i], x) for i in range(m)])
    np.testing.assert_allclose(t.log_det_jacobian(x), np.linalg.slogdet(jacobian)[1], rtol=1e-6)


def test_cholesky_corr_gives_correlation_factors():
    lower = transforms.by_name("cholesky_corr").forward(RNG.normal(size=(4, 10)) * 2)
    corr = lower @ np.swapaxes(lower, -1, -2)
    np.testing.assert_allclose(np.diagonal(corr, axis1=-2, axis2=-1), 1.0, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(corr) > 0) and np.all(np.triu(lower, 1) == 0)


def test_ordered_rv_in_a_model():
    ir = B.rv(B.new_ir(), "c", "Normal", {"mu": 0.0, "sigma": 2.0}, shape=(4,), transform="ordered")
    ir = B.rv(ir, "y", "Normal", {"mu": "c", "sigma": 1.0})
    ir = B.obs(ir, "y_obs", "y", [-1.0, 0.0, 0.5, 2.0])
    model = check_model_gradients(ir, seed=1)
    assert np.all(np.diff(model.to_constrained(RNG.normal(size=4))["c"]) > 0)
    ir = B.rv(B.new_ir(), "p", "Gamma", {"alpha": 2.0, "beta": 1.0}, shape=(3,), transform="positive_ordered")
    check_model_gradients(ir, seed=2)


# --- Categorical, Multinomial, BetaBinomial -------------------------------------------------------

def test_categorical_matches_scipy_and_has_exact_gradients():
    p = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    x = np.array([[2, 0], [1, 1]])
    lp, _ = Categorical.logp_and_grads(x, p=p)
    expected = np.log(p[np.arange(2), x])
    np.testing.assert_allclose(lp, expected)
    np.testing.assert_allclose(lp[0, 0], stats.multinomial(1, p[0]).logpmf(np.eye(3)[2]))
    check_gradients(Categorical, x, {"p": p})
    logits = RNG.normal(size=(2, 3))
    lp, _ = Categorical.logp_and_grads(x, logit_p=logits)
    np.testing.assert_allclose(lp, (logits - logsumexp(logits, axis=-1, keepdims=True))[np.arange(2), x])
    check_gradients(Categorical, x, {"logit_p": logits})


def test_multinomial_matches_scipy_and_has_exact_gradients():
    p = np.array([0.2, 0.5, 0.3])
    x = np.array([[3.0, 0.0, 2.0], [1.0, 2.0, 2.0]])
    lp, _ = Multinomial.logp_and_grads(x, n=np.array(5.0), p=p)
    np.testing.assert_allclose(lp, stats.multinomial(5, p).logpmf(x))
    check_gradients(Multinomial, x, {"n": np.array(5.0), "p": p}, wrt=("p",))


def test_beta_binomial_matches_scipy_and_has_exact_gradients():
    k = np.array([0.0, 3.0, 7.0, 10.0])
    lp, _ = BetaBinomial.logp_and_grads(k, n=np.array(10.0), alpha=np.array(2.5), beta=np.array(0.7))
    np.testing.assert_allclose(lp, stats.betabinom(10, 2.5, 0.7).logpmf(k))
    check_gradients(BetaBinomial, k, {"n": np.array(10.0), "alpha": np.array([2.5, 1.0, 0.3, 4.0]),
                                       "beta": np.array(0.7)}, wrt=("alpha", "beta"))


def test_discrete_families_in_a_model_with_random_parameters():
    ir = B.rv(B.new_ir(), "w", "Dirichlet", {"alpha": np.ones(3)})
    ir = B.rv(ir, "z", "Categorical", {"p": "w"})
    ir = B.obs(ir, "z_obs", "z", np.array([0, 2, 2, 1, 0]))
    ir = B.rv(ir, "m", "Multinomial", {"n": 6, "p": "w"})
    ir = B.obs(ir, "m_obs", "m", np.array([[1, 2, 3], [0, 6, 0]]))
    ir = B.rv(ir, "a", "HalfNormal", {"sigma": 2.0})
    ir = B.rv(ir, "b", "HalfNormal", {"sigma": 2.0})
    ir = B.rv(ir, "k", "BetaBinomial", {"n": 8, "alpha": "a", "beta": "b"})
    ir = B.obs(ir, "k_obs", "k", np.array([0, 3, 8, 5]))
    ir = B.rv(ir, "logits", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(3,))
    ir = B.rv(ir, "z2", "Categorical", {"logit_p": "logits"})
    ir = B.obs(ir, "z2_obs", "z2", np.array([1, 1, 0]))
    check_model_gradients(ir, seed=3)


def test_discrete_supports_are_checked_on_the_data():
    ir = B.rv(B.new_ir(), "z", "Categorical", {"p": [0.5, 0.5]})
    with pytest.raises(ValidationError, match="outside the support"):
        exmc.compile(B.rv(B.obs(ir, "z_obs", "z", [0, 2]), "x", "Normal", {"mu": 0.0, "sigma": 1.0}))
    ir = B.rv(B.new_ir(), "m", "Multinomial", {"n": 4, "p": [0.5, 0.5]})
    with pytest.raises(ValidationError, match="outside the support"):
        exmc.compile(B.rv(B.obs(ir, "m_obs", "m", [[1, 2]]), "x", "Normal", {"mu": 0.0, "sigma": 1.0}))
    with pytest.raises(ValidationError, match="summing to 1"):
        B.rv(B.new_ir(), "z", "Categorical", {"p": [0.5, 0.6]})


def test_discrete_draws_have_the_right_moments():
    rng = np.random.default_rng(0)
    p = np.array([0.2, 0.5, 0.3])
    draws = Categorical.sample(rng, (20000,), p=p)
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 20000, p, atol=0.015)
    counts = Multinomial.sample(rng, (5000,), n=np.array(10), p=p)
    assert counts.shape == (5000, 3) and np.all(counts.sum(-1) == 10)
    np.testing.assert_allclose(counts.mean(0), 10 * p, atol=0.08)
    bb = BetaBinomial.sample(rng, (20000,), n=np.array(10), alpha=np.array(2.0), beta=np.array(3.0))
    assert abs(bb.mean() - stats.betabinom(10, 2, 3).mean()) < 4 * stats.betabinom(10, 2, 3).std() / np.sqrt(20000)


# --- ZeroSumNormal ---------------------------------------------------------------------------------

def test_zero_sum_normal_is_a_normal_on_the_subspace():
    basis = helmert_basis(4)
    u = RNG.normal(size=(2, 3))
    x = u @ basis
    lp, _ = ZeroSumNormal.logp_and_grads(x, sigma=np.array([0.7, 1.3]))
    np.testing.assert_allclose(lp, stats.norm(0, np.array([[0.7], [1.3]])).logpdf(u).sum(-1))
    check_gradients(ZeroSumNormal, x, {"sigma": np.array([0.7, 1.3])})


def test_zero_sum_normal_in_a_model_and_its_draws():
    ir = B.rv(B.new_ir(), "s", "HalfNormal", {"sigma": 1.0})
    ir = B.rv(ir, "eff", "ZeroSumNormal", {"sigma": "s"}, shape=(5,))
    ir = B.rv(ir, "y", "Normal", {"mu": "eff", "sigma": 1.0})
    ir = B.obs(ir, "y_obs", "y", [1.0, -0.5, 0.2, 0.0, -0.7])
    model = check_model_gradients(ir, seed=4)
    assert model.dim == 5  # 1 + (5 - 1)
    np.testing.assert_allclose(model.to_constrained(RNG.normal(size=5))["eff"].sum(), 0.0, atol=1e-12)
    draws = ZeroSumNormal.sample(np.random.default_rng(1), (20000,), shape=(5,), sigma=np.array(2.0))
    np.testing.assert_allclose(draws.sum(-1), 0.0, atol=1e-10)
    # Each entry's variance is sigma^2 (n-1)/n (the projection of an isotropic normal).
    np.testing.assert_allclose(draws.var(0), 4.0 * 4 / 5, rtol=0.05)
    with pytest.raises(ValidationError, match="explicit shape"):
        exmc.compile(B.rv(B.new_ir(), "e", "ZeroSumNormal", {"sigma": 1.0}))


# --- LKJCholesky -----------------------------------------------------------------------------------

@pytest.mark.parametrize("eta", [0.7, 1.0, 3.0])
def test_lkj_two_by_two_is_the_closed_form_on_the_correlation(eta):
    r = np.array([-0.6, 0.1, 0.9])
    lower = np.zeros((3, 2, 2))
    lower[:, 0, 0] = 1.0
    lower[:, 1, 0] = r
    lower[:, 1, 1] = np.sqrt(1 - r * r)
    lp, _ = LKJCholesky.logp_and_grads(lower, eta=np.array(eta))
    expected = (eta - 1) * np.log(1 - r * r) - ((2 * eta - 1) * np.log(2) + betaln(eta, eta))
    np.testing.assert_allclose(lp, expected, rtol=1e-12)


def test_lkj_density_integrates_to_one_for_three_by_three():
    """Monte Carlo over the three partial correlations (the cholesky_corr transform's image):
    E_uniform-z[exp(lp(L(z))) * |dL/dz|] * 2^3 must be 1."""
    t = transforms.by_name("cholesky_corr")
    rng = np.random.default_rng(5)
    z = rng.uniform(-1, 1, size=(200000, 3))
    x = np.arctanh(z)
    lower = t.forward(x)
    # |dL/dz| = exp(log|dL/dx|) / prod(1 - z^2)
    log_jac = t.log_det_jacobian(x) - np.sum(np.log1p(-z * z), axis=-1)
    lp, _ = LKJCholesky.logp_and_grads(lower, eta=np.array(2.0))
    weights = np.exp(lp + log_jac) * 8.0
    assert abs(weights.mean() - 1.0) < 4 * weights.std() / np.sqrt(len(weights))


def test_lkj_gradients_and_model():
    lower = transforms.by_name("cholesky_corr").forward(RNG.normal(size=(2, 3)))
    check_gradients(LKJCholesky, lower, {"eta": np.array([1.5, 0.8])})
    ir = B.rv(B.new_ir(), "eta", "Gamma", {"alpha": 2.0, "beta": 1.0})
    ir = B.rv(ir, "L", "LKJCholesky", {"eta": "eta"}, shape=(3, 3))
    ir = B.rv(ir, "sd", "HalfNormal", {"sigma": 1.0}, shape=(3,))
    ir = B.det(ir, "sd_col", "stack", ["sd"], axis=1)
    ir = B.det(ir, "chol_cov", "mul", ["sd_col", "L"])  # diag(sd) L: PyMC's LKJCholeskyCov
    ir = B.det(ir, "Lt", "transpose", ["chol_cov"])
    ir = B.det(ir, "cov", "matmul", ["chol_cov", "Lt"])
    ir = B.rv(ir, "y", "MvNormal", {"mu": np.zeros(3), "cov": "cov"})
    ir = B.obs(ir, "y_obs", "y", RNG.normal(size=(6, 3)))
    model = check_model_gradients(ir, seed=6)
    assert model.dim == 1 + 3 + 3


def test_lkj_draws_and_nuts_agree_with_the_beta_marginal():
    """Each correlation of an LKJ(eta) K x K matrix is 2 Beta(a, a) - 1 with a = eta - 1 + K/2, so
    E[r^2] = 1 / (2a + 1); the exact sampler and NUTS on the density both reproduce it."""
    eta, k = 2.0, 3
    expected = 1.0 / (2 * (eta - 1 + k / 2) + 1)
    draws = LKJCholesky.sample(np.random.default_rng(2), (20000,), shape=(k, k), eta=np.array(eta))
    r2 = draws[:, 1, 0] ** 2
    assert abs(r2.mean() - expected) < 4 * r2.std() / np.sqrt(len(r2))
    ir = B.rv(B.new_ir(), "L", "LKJCholesky", {"eta": eta}, shape=(k, k))
    chains = Sampler.sample_chains(ir, 2, num_samples=500, num_warmup=200, seed=3)
    lower = chains.stacked("L")
    corr = lower @ np.swapaxes(lower, -1, -2)
    r2 = corr[..., 0, 1] ** 2
    ess = chains.summary()["L[1,0]"]["ess_bulk"]
    assert abs(r2.mean() - expected) < 4 * r2.std() / np.sqrt(ess)


# --- HMM -------------------------------------------------------------------------------------------

def _brute_force_hmm(init, trans, le):
    t_len, k = le.shape
    total = []
    for path in itertools.product(range(k), repeat=t_len):
        lp = np.log(init[path[0]]) + le[0, path[0]]
        for t in range(1, t_len):
            lp += np.log(trans[path[t - 1], path[t]]) + le[t, path[t]]
        total.append(lp)
    return logsumexp(total)


def test_hmm_forward_algorithm_equals_enumerating_the_paths():
    init = np.array([0.6, 0.3, 0.1])
    trans = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.25, 0.25, 0.5]])
    le = RNG.normal(size=(5, 3))
    lp, _ = HMM.logp_and_grads(np.array(0.0), init=init, trans=trans, log_emission=le)
    np.testing.assert_allclose(lp, _brute_force_hmm(init, trans, le), rtol=1e-12)
    check_gradients(HMM, np.array(0.0), {"init": init, "trans": trans, "log_emission": le})


def test_hmm_in_a_model_with_gaussian_emissions():
    """The hmm_example posterior's structure: 2 states, ordered emission means, Dirichlet rows."""
    y = np.array([-1.2, -0.8, 1.1, 0.9, 1.4, -1.0, 0.8])
    ir = B.data(B.new_ir(), "y", y[:, None])
    ir = B.rv(ir, "theta1", "Dirichlet", {"alpha": np.ones(2)})
    ir = B.rv(ir, "theta2", "Dirichlet", {"alpha": np.ones(2)})
    ir = B.det(ir, "trans", "stack", ["theta1", "theta2"])
    ir = B.rv(ir, "mu", "Normal", {"mu": 0.0, "sigma": 2.0}, shape=(2,), transform="ordered")
    ir = B.det(ir, "resid", "sub", ["y", "mu"])
    ir = B.det(ir, "sq", "square", ["resid"])
    ir = B.det(ir, "le", "affine", [-0.5 * np.log(2 * np.pi), -0.5, "sq"])
    ir = B.hmm(ir, "y_hmm", [0.5, 0.5], "trans", "le")
    model = check_model_gradients(ir, seed=7)
    theta = RNG.normal(size=model.dim)
    values = model.to_constrained(theta)
    le = -0.5 * np.log(2 * np.pi) - 0.5 * (y[:, None] - values["mu"]) ** 2
    priors = (stats.norm(0, 2).logpdf(values["mu"]).sum() + stats.dirichlet(np.ones(2)).logpdf(values["theta1"])
              + stats.dirichlet(np.ones(2)).logpdf(values["theta2"]))
    np.testing.assert_allclose(model.logp(values), priors + _brute_force_hmm(np.array([0.5, 0.5]), values["trans"], le),
                               rtol=1e-10)
    trace = Sampler.sample(ir, num_samples=20, num_warmup=20, seed=1, log_likelihood=True)
    assert trace.log_likelihood["y_hmm"].shape == (20,)


# --- Potential -------------------------------------------------------------------------------------

def test_potential_adds_its_term_and_is_no_likelihood():
    ir = B.rv(B.new_ir(), "x", "Normal", {"mu": 0.0, "sigma": 1.0}, shape=(2,))
    ir = B.det(ir, "pen", "mul", [-2.0, "x"])
    ir = B.potential(ir, "penalty", "pen")
    model = check_model_gradients(ir, seed=8)
    theta = np.array([0.3, -0.4])
    np.testing.assert_allclose(model.logp({"x": theta}), stats.norm.logpdf(theta).sum() - 2.0 * theta.sum())
    # A Normal(0, 1) times exp(-2 sum x) is Normal(-2, 1) in each coordinate.
    chains = Sampler.sample_chains(ir, 2, num_samples=400, num_warmup=300, seed=4, parallel=False)
    x = chains.stacked("x")
    assert np.all(np.abs(x.mean(axis=(0, 1)) + 2.0) < 4 / np.sqrt(chains.summary()["x[0]"]["ess_bulk"]))
    assert "penalty" in chains[0]
    prior = exmc.Predictive.prior_samples(ir, 5)
    assert "penalty__potential" not in prior
    assert "observed_data" not in chains.groups


def test_lkj_cholesky_cov_builds_pymcs_factor():
    ir = B.lkj_cholesky_cov(B.new_ir(), "chol", 3, eta=2.0, sd_dist="HalfNormal", sd_params={"sigma": 1.0})
    ir = B.det(ir, "chol_t", "transpose", ["chol"])
    ir = B.det(ir, "cov", "matmul", ["chol", "chol_t"])
    ir = B.rv(ir, "y", "MvNormal", {"mu": np.zeros(3), "cov": "cov"})
    ir = B.obs(ir, "y_obs", "y", RNG.normal(size=(5, 3)))
    model = check_model_gradients(ir, seed=9)
    v = model.to_constrained(RNG.normal(size=model.dim))
    np.testing.assert_allclose(np.sqrt(np.diag(v["cov"])), v["chol_sd"], rtol=1e-12)
    prior = exmc.Predictive.prior_samples(ir, 50, seed=1)
    corr = prior["chol_corr"] @ np.swapaxes(prior["chol_corr"], -1, -2)
    np.testing.assert_allclose(np.diagonal(corr, axis1=-2, axis2=-1), 1.0, rtol=1e-12)
