"""Chains.to_inference_data: the groups ArviZ needs, on whichever ArviZ generation is installed.

The default environment has legacy ArviZ (0.2x, ``InferenceData``); ``.ci/run`` runs this file
again in a small second environment with ArviZ 1.x (``DataTree``). Each test asks the installed
generation for what a user would call: ``az.loo``, ``az.compare``, ``az.summary``, the plots.
"""
import numpy as np
import pytest
from scipy import stats

import exmc
from exmc import Builder as B
from exmc.arviz import installed_backend
from exmc.nuts import Sampler

xr = pytest.importorskip("xarray")
try:
    BACKEND = installed_backend()
except ImportError:
    pytest.skip("no ArviZ installed", allow_module_level=True)

import warnings  # noqa: E402

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az  # noqa: E402
except ImportError:
    # The ArviZ 1.x components without the ``arviz`` meta-package (Python 3.11 has only those):
    # ``arviz`` 1.x re-exports exactly these names.
    import types

    import arviz_base
    import arviz_plots
    import arviz_stats

    az = types.SimpleNamespace(**{**vars(arviz_base), **vars(arviz_plots), **vars(arviz_stats)})

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
SCHOOLS = list("ABCDEFGH")


def _schools(pooled: bool):
    ir = B.coords(B.new_ir(), school=SCHOOLS)
    ir = B.data(ir, "sigma_y", SIGMA, dims=("school",))
    ir = B.rv(ir, "mu", "Normal", {"mu": 0.0, "sigma": 5.0})
    if pooled:
        mean = "mu"
    else:
        ir = B.rv(ir, "tau", "HalfNormal", {"sigma": 5.0})
        ir = B.rv(ir, "theta", "Normal", {"mu": "mu", "sigma": "tau"}, shape=(8,), dims=("school",),
                  reparam="noncentered")
        mean = "theta"
    ir = B.rv(ir, "y", "Normal", {"mu": mean, "sigma": "sigma_y"}, dims=("school",))
    return B.obs(ir, "y_obs", "y", Y)


@pytest.fixture(scope="module")
def runs():
    return {pooled: Sampler.sample_chains(_schools(pooled), 4, num_samples=250, num_warmup=250, seed=11,
                                          parallel=False, log_likelihood=True)
            for pooled in (False, True)}


def _group(data, name):
    """A group as an xarray Dataset, for InferenceData and DataTree alike."""
    group = data[name]
    return group.to_dataset() if hasattr(group, "to_dataset") else group


def test_the_installed_generation_gets_its_own_type(runs):
    data = runs[False].to_inference_data()
    if BACKEND == "legacy":
        assert isinstance(data, az.InferenceData)
    else:
        assert isinstance(data, xr.DataTree)
    assert isinstance(runs[False].to_arviz(), type(data))


def test_groups_dims_and_coords(runs):
    chains = runs[False]
    data = chains.to_inference_data(prior=100, posterior_predictive=True, seed=3)
    posterior = _group(data, "posterior")
    assert posterior["theta"].dims == ("chain", "draw", "school")
    assert list(posterior["school"].values) == SCHOOLS
    assert posterior["theta"].shape == (4, 250, 8)
    stats_group = _group(data, "sample_stats")
    for name in ("diverging", "energy", "lp", "tree_depth", "n_steps", "step_size", "acceptance_rate"):
        assert name in stats_group, name
    assert stats_group["diverging"].dtype == bool
    np.testing.assert_array_equal(_group(data, "observed_data")["y"].values, Y)
    assert _group(data, "observed_data")["y"].dims == ("school",)
    np.testing.assert_array_equal(_group(data, "constant_data")["sigma_y"].values, SIGMA)
    assert _group(data, "log_likelihood")["y"].dims == ("chain", "draw", "school")
    prior = _group(data, "prior")
    assert set(prior.data_vars) == {"mu", "tau", "theta"} and prior["theta"].shape == (1, 100, 8)
    assert set(_group(data, "prior_predictive").data_vars) == {"y"}
    ppc = _group(data, "posterior_predictive")["y"]
    assert ppc.shape == (4, 250, 8) and ppc.dims == ("chain", "draw", "school")


def test_log_likelihood_is_computed_with_the_draws_and_equals_scipy(runs):
    chains = runs[False]
    for trace in chains:
        expected = stats.norm.logpdf(Y, trace["theta"], SIGMA)
        np.testing.assert_allclose(trace.log_likelihood["y"], expected, rtol=1e-12)


def test_log_likelihood_crosses_the_process_pool():
    chains = Sampler.sample_chains(_schools(True), 2, num_samples=50, num_warmup=50, seed=2, log_likelihood=True)
    for trace in chains:
        np.testing.assert_allclose(trace.log_likelihood["y"],
                                   stats.norm.logpdf(Y, trace["mu"][:, None], SIGMA), rtol=1e-12)


def test_loo_waic_and_compare_on_two_models(runs):
    hierarchical, pooled = (runs[False].to_inference_data(), runs[True].to_inference_data())
    loo = az.loo(hierarchical)
    elpd = float(getattr(loo, "elpd_loo", getattr(loo, "elpd", np.nan)))
    # Eight schools: elpd_loo is about -30.7 for both models (Vehtari, Gelman & Gabry 2017).
    assert -33.0 < elpd < -29.0
    if hasattr(az, "waic"):
        waic = az.waic(pooled)
        assert -33.0 < float(getattr(waic, "elpd_waic", getattr(waic, "elpd", np.nan))) < -29.0
    table = az.compare({"hierarchical": hierarchical, "pooled": pooled})
    assert set(table.index) == {"hierarchical", "pooled"}
    assert table["rank"].min() == 0


def test_summary_and_plots_accept_the_export(runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = runs[False].to_inference_data(posterior_predictive=True, seed=1)
    table = az.summary(data, var_names=["mu", "tau"])
    assert len(table) == 2
    if BACKEND == "legacy":
        plots = [lambda: az.plot_trace(data, var_names=["mu"]), lambda: az.plot_rank(data, var_names=["mu"]),
                 lambda: az.plot_pair(data, var_names=["mu", "tau"]), lambda: az.plot_energy(data),
                 lambda: az.plot_posterior(data, var_names=["mu"]), lambda: az.plot_forest(data, var_names=["theta"]),
                 lambda: az.plot_ppc(data, num_pp_samples=20), lambda: az.plot_loo_pit(data, y="y"),
                 lambda: az.plot_khat(az.loo(data, pointwise=True)), lambda: az.plot_ess(data, var_names=["mu"]),
                 lambda: az.plot_autocorr(data, var_names=["mu"]), lambda: az.plot_violin(data, var_names=["mu"])]
    else:
        plots = [lambda: az.plot_trace(data, var_names=["mu"]), lambda: az.plot_rank(data, var_names=["mu"]),
                 lambda: az.plot_energy(data), lambda: az.plot_dist(data, var_names=["mu"]),
                 lambda: az.plot_forest(data, var_names=["theta"]), lambda: az.plot_ppc_dist(data, num_samples=20),
                 lambda: az.plot_ess(data, var_names=["mu"]), lambda: az.plot_trace_dist(data, var_names=["mu"])]
    for plot in plots:
        plot()
        plt.close("all")


def test_netcdf_round_trip(runs, tmp_path):
    chains = runs[False]
    path = tmp_path / "schools.nc"
    chains.save(path, prior=50, seed=4)
    back = exmc.load(path)
    assert len(back) == 4 and back[0].num_samples == 250
    for a, b in zip(chains, back):
        np.testing.assert_array_equal(a["theta"], b["theta"])
        np.testing.assert_array_equal(a.stats["divergent"], b.stats["divergent"])
        np.testing.assert_array_equal(a.log_likelihood["y"], b.log_likelihood["y"])
        assert b.info["step_size"] == a.info["step_size"]
    assert back.dims["theta"] == ("school",) and back.coords["school"] == tuple(SCHOOLS)
    assert set(back.groups) >= {"observed_data", "constant_data", "prior", "prior_predictive"}
    assert back.summary()["mu"]["mean"] == pytest.approx(chains.summary()["mu"]["mean"])
    again = back.to_inference_data()
    assert _group(again, "posterior")["theta"].dims == ("chain", "draw", "school")
    assert _group(again, "prior")["mu"].shape == (1, 50)


def test_log_likelihood_needs_an_ir_with_observations():
    free_only = B.rv(B.new_ir(), "x", "Normal", {"mu": 0.0, "sigma": 1.0})
    with pytest.raises(ValueError, match="observes no rv"):
        Sampler.sample_chains(free_only, 1, num_samples=5, num_warmup=5, log_likelihood=True, parallel=False)
    chains = Sampler.sample_chains(free_only, 1, num_samples=5, num_warmup=5, parallel=False)
    with pytest.raises(ValueError, match="log_likelihood=True"):
        chains.to_inference_data(log_likelihood=True)


def test_event_and_censored_likelihoods_are_pointwise():
    ir = B.rv(B.new_ir(), "mu", "Normal", {"mu": 0.0, "sigma": 1.0})
    ir = B.det(ir, "mu2", "stack", ["mu", "mu"])
    ir = B.rv(ir, "v", "MvNormal", {"mu": "mu2", "cov": np.eye(2)})
    values = np.array([[0.1, 0.2], [0.5, -0.3], [1.0, 1.0]])
    ir = B.obs(ir, "v_obs", "v", values)
    ir = B.rv(ir, "c", "Normal", {"mu": "mu", "sigma": 1.0})
    ir = B.obs(ir, "c_obs", "c", [0.0, 2.0, -1.5], censored=(-1.0, 1.5))
    trace = Sampler.sample(ir, num_samples=20, num_warmup=20, seed=0, log_likelihood=True)
    mu = trace["mu"]
    ll = trace.log_likelihood
    assert ll["v"].shape == (20, 3)
    expected = np.stack([stats.multivariate_normal(np.array([m, m]), np.eye(2)).logpdf(values) for m in mu])
    np.testing.assert_allclose(ll["v"], expected, rtol=1e-10)
    expected_c = np.stack([[stats.norm.logpdf(0.0, m), stats.norm.logsf(1.5, m), stats.norm.logcdf(-1.0, m)]
                           for m in mu])
    np.testing.assert_allclose(ll["c"], expected_c, rtol=1e-10)
