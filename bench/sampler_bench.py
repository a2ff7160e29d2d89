"""Sampler benchmark: exmc's NUTS against PyMC, NumPyro and nutpie on the same models, in the same run.

For each model of :mod:`bench_models` and each framework, the benchmark runs ``--chains`` chains of
``--warmup`` + ``--draws`` iterations on ``--cores`` cores and prints the wall time of the sampling
call, the minimum ESS-bulk over every scalar free parameter (``arviz_stats``, the same estimator for
every framework), ESS per wall-second, divergences, the gradients spent while sampling (sum of the
leapfrog steps of the post-warmup iterations) with ESS per 1000 of them — a load-independent
measure of the sampler's statistical efficiency, separate from its speed — and ESS/s over PyMC's.

Fairness rules (so that only sampling is timed):

- exmc: the worker pool is started and warmed (one tiny run of the model) before timing; the timed
  call is ``exmc.NUTS.Sampler.sample_chains`` with ``parallel=True`` (pool, chain layout chosen
  automatically) and, with ``--modes``, the pool with single chains or lockstep pairs forced, or
  ``"vectorized"`` (all chains in one process, batched gradients); see :data:`EXMC_MODES`.
- PyMC: the model is built and sampled once briefly (compiling pytensor's C code into its on-disk
  cache and starting the worker processes) before timing; the timed call is ``pm.sample`` with
  ``cores``; the wall includes PyMC's per-call graph compilation, which every PyMC user pays.
- NumPyro: ``chain_method="parallel"`` over ``--chains`` virtual CPU devices sharing the cores; the
  model is run once before timing (JIT warm-up); the timed second run still re-traces the pmapped
  sampler, which NumPyro does on every ``run`` of a parallel MCMC.
- nutpie: the PyMC model compiled with ``nutpie.compile_pymc_model(model, backend="numba")``, then
  ``nutpie.sample`` with ``cores``; timed after an untimed short run.

*First run* (the user's "one new model" case: model to posterior, compilation included) is the
warm wall plus what the framework pays once per new model, measured in the same run as the wall
of a short cold run (``WARM_ITERATIONS`` + ``WARM_ITERATIONS``) minus the same run warm, plus
nutpie's ``compile_pymc_model``; for NumPyro it is the wall of the first full run (JIT included).
exmc's pool is running already (a node keeps it warm); PyMC's pytensor C code may already sit in
its on-disk cache from an earlier benchmark run, so its first-run figure is a lower bound.

*CPU s* is the CPU time of the timed call summed over every process and thread that did the work
(:func:`cpu_seconds`); on a shared machine ESS per CPU-second moves far less with the load than
ESS per wall-second does (a loaded run waits longer, it does not compute more).

For the logistic model the *sampler overhead* is also printed: one chain run in this process (best
of ``OVERHEAD_REPEATS``), its CPU seconds divided by the CPU seconds spent inside its
``logp_and_grad`` calls (issue 14's definition, "wall ÷ time inside the gradient"), and divided by
(its calls × one call's CPU seconds, timed separately in a tight loop at the chain's last draw, which
runs from warm caches and so reads higher). The chain is timed uninstrumented and the time inside the
gradient measured in a second run with the same seed (the same trajectory), less the timer's own cost
per call; the line names the tree kernel (``Trace.info["tree_kernel"]``). 1.0 means the sampler costs
nothing beyond its gradients. CPU time rather than wall time: on a shared machine a chain's wall time
also counts other processes' turns.

Usage::

    python bench/sampler_bench.py                      # all models, exmc pool + PyMC (+ NumPyro)
    python bench/sampler_bench.py --models seed,funnel --modes pool,pool-single,pool-pairs,vectorized
    python bench/sampler_bench.py --quick              # CI smoke: seed model, few draws, exmc only
    python bench/sampler_bench.py --profile logistic   # cProfile of one exmc chain in this process

Exit status 0 when every run completed, 1 when one raised (its traceback is logged, the other runs
go on); targets missed are reported, not failures.
"""
from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import logging
import os
import platform
import pstats
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

# NumPyro's parallel chains need one (virtual) device per chain; XLA reads this at JAX import.
DEFAULT_CHAINS = 4
if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEFAULT_CHAINS}"

import numpy as np  # noqa: E402
from arviz_stats.base import array_stats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_models  # noqa: E402

import exmc  # noqa: E402

logger = logging.getLogger("sampler_bench")

#: Issue 4's and 14's targets: exmc's ESS per wall-second at least this multiple of PyMC's on every model ...
TARGET_ESS_RATIO = 1.5
#: ... and a chain's time at most this multiple of the time spent inside its gradients (issue 14).
TARGET_OVERHEAD = 1.3
#: Iterations of the untimed warm-up runs (pool start, PyMC compile, JAX JIT).
WARM_ITERATIONS = 20
#: logp_and_grad calls timed per repetition, and repetitions (the minimum is kept, as timeit advises).
GRAD_CALLS, GRAD_REPEATS = 2000, 5
#: The model the sampler overhead is measured on (issue 4), and the chains run for it (best kept).
OVERHEAD_MODEL, OVERHEAD_REPEATS = "logistic", 3
#: ``--quick`` (CI smoke): model, chains and iterations.
QUICK_MODEL, QUICK_CHAINS, QUICK_ITERATIONS = "seed", 2, 100


@dataclass
class Result:
    """One (model, framework) run."""

    model: str
    framework: str
    wall: float
    min_ess: float
    divergences: int
    gradients: int  # leapfrog steps (one gradient each) over all chains' *sampling* iterations
    notes: list[str] = field(default_factory=list)
    first_run: float = float("nan")  # wall of model to posterior in a fresh state (see the module notes)
    cpu: float = float("nan")  # CPU seconds of the timed call, every process and thread (see cpu_seconds)

    @property
    def ess_per_cpu_second(self) -> float:
        """ESS per CPU-second of the timed call: what the load of a shared machine changes least."""
        return self.min_ess / self.cpu

    @property
    def ess_per_second(self) -> float:
        return self.min_ess / self.wall

    @property
    def first_run_ess_per_second(self) -> float:
        return self.min_ess / self.first_run

    @property
    def ess_per_kilo_gradient(self) -> float:
        """Load-independent sampling efficiency: min ESS-bulk per 1000 gradients while sampling."""
        return 1000.0 * self.min_ess / self.gradients


def installed(package: str) -> bool:
    """True when ``package`` can be imported (without importing it)."""
    return importlib.util.find_spec(package) is not None


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process (all threads: JAX's, nutpie's),
    its reaped children (PyMC's chain processes) and the live exmc pool workers (read from
    ``/proc``; they are reaped only at shutdown). Differences of it time a call's CPU."""
    import resource

    total = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total += children.ru_utime + children.ru_stime
    from exmc.nuts import pool

    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pool.get_pool().pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def min_ess_bulk(draws: dict[str, np.ndarray]) -> float:
    """Minimum ESS-bulk over every scalar element of ``draws`` (name -> ``(chains, draws, *shape)``)."""
    smallest = np.inf
    for name, value in draws.items():
        value = np.asarray(value, dtype=float)
        flat = value.reshape(value.shape[0], value.shape[1], -1)
        ess = array_stats.ess(flat, chain_axis=0, draw_axis=1, method="bulk")
        smallest = min(smallest, float(np.min(ess)))
    return smallest


# --------------------------------------------------------------------------------------- exmc
#: exmc's modes: ``--modes`` name -> (``parallel``, ``layout``) of ``sample_chains``. ``pool`` is
#: the default call (the layout chosen automatically, see exmc.nuts.layout); ``pool-single`` and
#: ``pool-pairs`` force single chains or lockstep pairs in the pool; ``vectorized`` runs every
#: chain in lockstep in this process (one core).
EXMC_MODES = {"pool": (True, "auto"), "pool-single": (True, "single"), "pool-pairs": (True, 2),
              "vectorized": ("vectorized", "auto")}


def run_exmc(model: bench_models.BenchModel, mode: str, args: argparse.Namespace) -> Result:
    """Time ``sample_chains`` in ``mode`` (a key of :data:`EXMC_MODES`)."""
    ir = model.exmc_ir()
    parallel, layout = EXMC_MODES[mode]
    # Only the free parameters come back, as from PyMC, NumPyro and nutpie (none of the bench
    # models declares a pm.Deterministic): a GLM's linear predictor over 20,000 rows for 4000 draws
    # would be 0.6 GB per det to compute, pickle and return.
    common = dict(parallel=parallel, seed=args.seed, keep_deterministics=False, layout=layout)
    if parallel is True:
        common["max_workers"] = args.cores

    def short():
        return exmc.NUTS.Sampler.sample_chains(ir, args.chains, num_samples=WARM_ITERATIONS,
                                               num_warmup=WARM_ITERATIONS, **common)
    once = cold_minus_warm(short)
    start, cpu0 = time.perf_counter(), cpu_seconds()
    chains = exmc.NUTS.Sampler.sample_chains(ir, args.chains, num_samples=args.draws, num_warmup=args.warmup, **common)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    draws = {name: chains.stacked(name) for name in model.params}
    divergences = sum(trace.divergences for trace in chains)
    gradients = sum(int(np.sum(trace.stats["n_steps"])) for trace in chains)
    metrics = sorted({trace.info.get("metric", "?") for trace in chains})
    layouts = sorted({f"{t.info.get('layout')}{len(t.info.get('lockstep_chains', [0]))}" for t in chains})
    return Result(model.name, f"exmc-{mode}", wall, min_ess_bulk(draws), divergences, gradients,
                  [f"metric {'/'.join(metrics)}", f"layout {'/'.join(layouts)}"], first_run=wall + once, cpu=cpu)


def warm_pool(args: argparse.Namespace) -> None:
    """Run a one-variable model (none of the benchmark's) through the pool, so the workers are up
    and have imported the compiler before the first benchmark model's cold run: a node keeps its
    pool warm, and the first run should measure the new model, not the pool's start."""
    ir = exmc.Builder.rv(exmc.Builder.new_ir(), "x", exmc.Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    exmc.NUTS.Sampler.sample_chains(ir, args.chains, num_samples=5, num_warmup=5, parallel=True,
                                    max_workers=args.cores)


def cold_minus_warm(run: Callable[[], object]) -> float:
    """Seconds a framework pays once per new model: a short run's cold wall minus its warm wall."""
    start = time.perf_counter()
    run()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    run()
    return max(0.0, cold - (time.perf_counter() - start))


class CountingModel:
    """A compiled model whose ``logp_and_grad`` counts its calls and the CPU seconds spent in them;
    every other attribute is the wrapped model's (the sampler accepts any object with the compiled
    model's interface)."""

    def __init__(self, model) -> None:
        self._model = model
        self.calls = 0
        self.cpu_seconds = 0.0

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def logp_and_grad(self, theta: np.ndarray):
        start = time.process_time()
        result = self._model.logp_and_grad(theta)
        self.cpu_seconds += time.process_time() - start
        self.calls += 1
        return result


def cpu_seconds_per_call(function: Callable[[np.ndarray], object], theta: np.ndarray) -> float:
    """CPU seconds per ``function(theta)`` call (best of the repeats, as timeit advises)."""
    function(theta)
    best = np.inf
    for _ in range(GRAD_REPEATS):
        start = time.process_time()
        for _ in range(GRAD_CALLS):
            function(theta)
        best = min(best, (time.process_time() - start) / GRAD_CALLS)
    return best


def numpyro_gradient(spec: bench_models.BenchModel) -> Callable[[np.ndarray], object] | None:
    """NumPyro's jitted potential and gradient on a flat unconstrained vector (blocking until
    the result is ready), or ``None`` without NumPyro."""
    if not (installed("numpyro") and installed("jax")):
        return None
    import jax
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import initialize_model

    init = initialize_model(jax.random.PRNGKey(0), spec.numpyro())
    flat, unravel = ravel_pytree(init.param_info.z)
    value_and_grad = jax.jit(jax.value_and_grad(lambda x: init.potential_fn(unravel(x))))

    def call(theta: np.ndarray):
        return jax.block_until_ready(value_and_grad(theta))
    return call


def gradient_table(names: Sequence[str]) -> str:
    """Markdown table: CPU µs of one log-density + gradient, exmc's ``logp_and_grad`` (single, and
    per chain of a 2-chain batch as a lockstep pair calls it) against PyMC's compiled
    ``logp_dlogp_function`` (C backend) and NumPyro's jitted ``value_and_grad`` of its potential,
    at one unconstrained point (CPU time of this process, all its threads)."""
    lines = ["| model | dim | exmc µs | exmc µs per chain, 2-chain batch | PyMC µs | NumPyro µs | exmc ÷ PyMC "
             "| exmc ÷ NumPyro |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        spec = bench_models.MODELS[name]
        compiled = exmc.compile(spec.exmc_ir())
        theta = np.random.default_rng(0).uniform(-0.5, 0.5, size=compiled.dim)
        pair = np.stack([theta, theta[::-1]])
        ours = cpu_seconds_per_call(compiled.logp_and_grad, theta)
        ours_pair = cpu_seconds_per_call(compiled.logp_and_grad, pair) / 2
        pymc = numpyro = float("nan")
        if installed("pymc"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pymc_function = spec.pymc().logp_dlogp_function(ravel_inputs=True)
            pymc_function.set_extra_values({})
            pymc = cpu_seconds_per_call(pymc_function, theta)
        jax_function = numpyro_gradient(spec)
        if jax_function is not None:
            numpyro = cpu_seconds_per_call(jax_function, theta)
        lines.append(f"| {name} | {compiled.dim} | {ours * 1e6:.1f} | {ours_pair * 1e6:.1f} | {pymc * 1e6:.1f} "
                     f"| {numpyro * 1e6:.1f} | {ours / pymc:.2f} | {ours / numpyro:.2f} |")
    return "\n".join(lines)


@dataclass
class Overhead:
    """One chain's cost against its gradients' cost, all in CPU seconds of this process."""

    gradients: int
    t_gradient: float
    chain_cpu: float
    inside_gradient_cpu: float
    tree_kernel: str

    @property
    def ratio(self) -> float:
        """Issue 4's measure: chain time / (gradient calls × separately timed gradient)."""
        return self.chain_cpu / (self.gradients * self.t_gradient)

    @property
    def ratio_inside(self) -> float:
        """Issue 14's measure: chain time / time actually spent inside ``logp_and_grad`` during the chain."""
        return self.chain_cpu / self.inside_gradient_cpu


def measure_overhead(model: bench_models.BenchModel, args: argparse.Namespace) -> Overhead:
    """Run one chain (warmup + draws) in this process and compare its CPU time with its gradients'.

    CPU time of this process, not wall time, because on a shared machine a chain's wall time also
    counts the time other processes held its core. ``t_gradient`` is timed afterwards at the chain's
    last draw."""
    compiled = exmc.compile(model.exmc_ir())

    def chain(target):
        start = time.process_time()
        trace = exmc.NUTS.Sampler.sample_chains(target, 1, num_samples=args.draws, num_warmup=args.warmup,
                                                seed=args.seed, parallel=False, keep_deterministics=False)[0]
        return time.process_time() - start, trace

    chain_cpu, trace = min((chain(compiled) for _ in range(OVERHEAD_REPEATS)), key=lambda run: run[0])
    inside = np.inf
    for _ in range(OVERHEAD_REPEATS):  # the same seed: the same trajectory, now with its gradients timed
        counting = CountingModel(compiled)
        chain(counting)
        inside = min(inside, counting.cpu_seconds - counting.calls * timer_cpu_seconds())
    t_gradient = cpu_seconds_per_call(compiled.logp_and_grad, np.asarray(trace.unconstrained[-1], dtype=float))
    return Overhead(counting.calls, t_gradient, chain_cpu, inside, trace.info["tree_kernel"])


def timer_cpu_seconds(calls: int = 20000) -> float:
    """What :class:`CountingModel` adds to one call's measured CPU time by itself: the CPU seconds
    between two ``time.process_time()`` readings with nothing in between (best of 5)."""
    best = np.inf
    for _ in range(5):
        total = 0.0
        for _ in range(calls):
            start = time.process_time()
            total += time.process_time() - start
        best = min(best, total / calls)
    return best


# --------------------------------------------------------------------------------------- PyMC
def run_pymc(model: bench_models.BenchModel, args: argparse.Namespace) -> Result:
    """Time ``pm.sample`` after an untimed short run that fills pytensor's compile cache."""
    import pymc as pm

    pm_model = model.pymc()
    options = dict(chains=args.chains, cores=args.cores, progressbar=False, compute_convergence_checks=False,
                   model=pm_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        once = cold_minus_warm(lambda: pm.sample(WARM_ITERATIONS, tune=WARM_ITERATIONS, random_seed=args.seed,
                                                 **options))
        start, cpu0 = time.perf_counter(), cpu_seconds()
        idata = pm.sample(args.draws, tune=args.warmup, random_seed=args.seed, **options)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    draws = {name: idata.posterior[name].values for name in model.params}
    divergences = int(idata.sample_stats["diverging"].values.sum())
    inner = float(idata.posterior.attrs.get("sampling_time", np.nan))
    gradients = int(idata.sample_stats["n_steps"].values.sum())
    return Result(model.name, "pymc", wall, min_ess_bulk(draws), divergences, gradients,
                  [f"PyMC's own sampling_time {inner:.2f}s"], first_run=wall + once, cpu=cpu)


# --------------------------------------------------------------------------------------- nutpie
def run_nutpie(model: bench_models.BenchModel, args: argparse.Namespace) -> Result:
    """Time ``nutpie.sample`` of the numba-compiled PyMC model after an untimed short run; the
    first run adds the compile time and the short run's cold-minus-warm wall."""
    import nutpie

    pm_model = model.pymc()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        compiled = nutpie.compile_pymc_model(pm_model, backend="numba")
        compile_seconds = time.perf_counter() - start
        options = dict(chains=args.chains, cores=args.cores, progress_bar=False)
        once = cold_minus_warm(lambda: nutpie.sample(compiled, draws=WARM_ITERATIONS, tune=WARM_ITERATIONS,
                                                     seed=args.seed, **options))
        start, cpu0 = time.perf_counter(), cpu_seconds()
        idata = nutpie.sample(compiled, draws=args.draws, tune=args.warmup, seed=args.seed, **options)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    draws = {name: idata.posterior[name].values for name in model.params}
    stats = idata.sample_stats
    divergences = int(stats["diverging"].values.sum()) if "diverging" in stats else -1
    gradients = int(stats["n_steps"].values.sum()) if "n_steps" in stats else 0
    return Result(model.name, "nutpie", wall, min_ess_bulk(draws), divergences, gradients,
                  [f"compile {compile_seconds:.2f}s"], first_run=wall + once + compile_seconds, cpu=cpu)


# --------------------------------------------------------------------------------------- NumPyro
def run_numpyro(model: bench_models.BenchModel, args: argparse.Namespace) -> Result:
    """Time the second ``MCMC.run`` of a parallel-chain NumPyro NUTS (the first compiles)."""
    import jax
    from numpyro.infer import MCMC, NUTS

    if jax.local_device_count() < args.chains:
        raise RuntimeError(f"NumPyro needs {args.chains} devices for parallel chains, JAX has "
                           f"{jax.local_device_count()} (XLA_FLAGS={os.environ.get('XLA_FLAGS')!r})")
    mcmc = MCMC(NUTS(model.numpyro()), num_warmup=args.warmup, num_samples=args.draws, num_chains=args.chains,
                chain_method="parallel", progress_bar=False)
    extra_fields = ("diverging", "num_steps")
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(args.seed + 1), extra_fields=extra_fields)
    jax.block_until_ready(mcmc.get_samples())
    first_run = time.perf_counter() - start
    start, cpu0 = time.perf_counter(), cpu_seconds()
    mcmc.run(jax.random.PRNGKey(args.seed), extra_fields=extra_fields)
    samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    draws = {name: np.asarray(samples[name]) for name in model.params}
    extra = mcmc.get_extra_fields(group_by_chain=True)
    divergences = int(np.asarray(extra["diverging"]).sum())
    gradients = int(np.asarray(extra["num_steps"]).sum())
    return Result(model.name, "numpyro", wall, min_ess_bulk(draws), divergences, gradients, first_run=first_run,
                  cpu=cpu)


# --------------------------------------------------------------------------------------- report
def format_table(results: Sequence[Result]) -> str:
    """A Markdown table; the ratio columns are warm ESS/s over PyMC's, NumPyro's and nutpie's on the
    same model, and first-run time over nutpie's first run (issue 14's targets: ≥ 1.5, ≥ 1.0, –, ≤ 1)."""
    def by(framework: str, attribute: str) -> dict[str, float]:
        return {r.model: getattr(r, attribute) for r in results if r.framework == framework}

    pymc, numpyro, nutpie = (by(f, "ess_per_second") for f in ("pymc", "numpyro", "nutpie"))
    nutpie_first = by("nutpie", "first_run")

    def ratio(value: float, base: float | None) -> str:
        return f"{value / base:.2f}" if base and np.isfinite(value) else "–"

    pymc_cpu, numpyro_cpu = (by(f, "ess_per_cpu_second") for f in ("pymc", "numpyro"))
    lines = ["| model | sampler | wall s | first run s | CPU s | min ESS-bulk | ESS/s | first-run ESS/s "
             "| ESS per CPU-s | divergences | gradients (draws) | ESS / 1k gradients | ESS/s ÷ PyMC | ÷ NumPyro "
             "| ÷ nutpie | first run ÷ nutpie's | ESS per CPU-s ÷ PyMC | ÷ NumPyro |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ess_k = f"{r.ess_per_kilo_gradient:.3g}" if r.gradients else "–"
        lines.append(f"| {r.model} | {r.framework} | {r.wall:.2f} | {r.first_run:.2f} | {r.cpu:.2f} | {r.min_ess:.0f} "
                     f"| {r.ess_per_second:.3g} | {r.first_run_ess_per_second:.3g} | {r.ess_per_cpu_second:.3g} "
                     f"| {r.divergences} | {r.gradients} "
                     f"| {ess_k} | {ratio(r.ess_per_second, pymc.get(r.model))} "
                     f"| {ratio(r.ess_per_second, numpyro.get(r.model))} | {ratio(r.ess_per_second, nutpie.get(r.model))} "
                     f"| {ratio(r.first_run, nutpie_first.get(r.model))} "
                     f"| {ratio(r.ess_per_cpu_second, pymc_cpu.get(r.model))} "
                     f"| {ratio(r.ess_per_cpu_second, numpyro_cpu.get(r.model))} |")
    return "\n".join(lines)


def machine_line(args: argparse.Namespace) -> str:
    versions = [f"exmc {exmc.__version__}", f"numpy {np.__version__}"]
    for name in ("pymc", "numpyro", "jax", "nutpie"):
        module = sys.modules.get(name)
        if module is not None:
            versions.append(f"{name} {module.__version__}")
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores visible, {args.cores} used, 1-min load average {args.load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end; Python {platform.python_version()}; "
            f"{', '.join(versions)}; {args.chains} chains × ({args.warmup} warmup + {args.draws} draws), seed {args.seed}")


def profile_chain(model: bench_models.BenchModel, args: argparse.Namespace, top: int = 30) -> str:
    """cProfile of one exmc chain run in this process (``sample``), sorted by internal time."""
    ir = model.exmc_ir()
    profiler = cProfile.Profile()
    profiler.enable()
    exmc.NUTS.Sampler.sample(ir, num_samples=args.draws, num_warmup=args.warmup, seed=args.seed)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(bench_models.MODELS),
                        help=f"comma-separated subset of {', '.join(bench_models.MODELS)}")
    parser.add_argument("--frameworks", default="exmc,pymc,numpyro,nutpie",
                        help="comma-separated subset of exmc, pymc, numpyro, nutpie (missing ones are skipped)")
    parser.add_argument("--modes", default="pool", help=f"exmc modes: comma-separated subset of {', '.join(EXMC_MODES)}")
    parser.add_argument("--chains", type=int, default=DEFAULT_CHAINS)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help=f"CI smoke: model {QUICK_MODEL}, {QUICK_CHAINS} chains × {QUICK_ITERATIONS}+"
                             f"{QUICK_ITERATIONS}, exmc pool only")
    parser.add_argument("--profile", metavar="MODEL", help="print a cProfile of one exmc chain of MODEL and exit")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.frameworks, args.modes = QUICK_MODEL, "exmc", "pool"
        args.chains, args.warmup, args.draws = QUICK_CHAINS, QUICK_ITERATIONS, QUICK_ITERATIONS
    args.models = args.models.split(",")
    unknown = [m for m in args.models + ([args.profile] if args.profile else []) if m not in bench_models.MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {list(bench_models.MODELS)}")
    args.frameworks = args.frameworks.split(",")
    args.modes = args.modes.split(",")
    bad_modes = [m for m in args.modes if m not in EXMC_MODES]
    if bad_modes:
        parser.error(f"unknown exmc mode(s) {bad_modes}; known: {', '.join(EXMC_MODES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    args = parse_args(argv)
    args.load_at_start = os.getloadavg()[0]  # other work on a shared machine skews wall times
    if args.profile:
        print(profile_chain(bench_models.MODELS[args.profile], args))
        return 0

    runners: list[tuple[str, Callable[[bench_models.BenchModel], Result]]] = []
    if "exmc" in args.frameworks:
        exmc.NUTS.Sampler.start_pool(args.cores)
        warm_pool(args)
        for mode in args.modes:
            runners.append((f"exmc-{mode}", lambda m, mode=mode: run_exmc(m, mode, args)))
    if "pymc" in args.frameworks:
        if installed("pymc"):
            runners.append(("pymc", lambda m: run_pymc(m, args)))
        else:
            print("PyMC not installed: skipped (pip install pymc)")
    if "numpyro" in args.frameworks:
        if installed("numpyro") and installed("jax"):
            runners.append(("numpyro", lambda m: run_numpyro(m, args)))
        else:
            print("NumPyro not installed: skipped (pip install numpyro jax)")
    if "nutpie" in args.frameworks:
        if installed("nutpie") and installed("pymc") and installed("numba"):
            runners.append(("nutpie", lambda m: run_nutpie(m, args)))
        else:
            print("nutpie not installed: skipped (pip install nutpie numba pymc)")

    results: list[Result] = []
    failures: list[str] = []
    for name in args.models:
        for label, runner in runners:
            print(f"... {name} / {label}", flush=True)
            try:
                result = runner(bench_models.MODELS[name])
            except Exception as exc:  # one framework failing on one model must not lose the others' rows
                logger.exception("%s / %s failed", name, label)
                failures.append(f"{name} / {label}: {type(exc).__name__}: {exc}")
                continue
            results.append(result)
            print(f"    wall {result.wall:.2f}s (first run {result.first_run:.2f}s, CPU {result.cpu:.2f}s), "
                  f"min ESS-bulk {result.min_ess:.0f}, "
                  f"{result.ess_per_second:.3g} ESS/s, {result.divergences} divergences "
                  + " ".join(result.notes), flush=True)

    print()
    print(machine_line(args))
    print()
    print(format_table(results))
    print()
    print(f"Targets: exmc warm ESS/s ≥ {TARGET_ESS_RATIO}× PyMC's and ≥ 1.0× NumPyro's on every model; first run "
          f"≤ nutpie's first run; sampler overhead (chain ÷ time inside the gradient) ≤ {TARGET_OVERHEAD}× on "
          f"logistic.")
    if "exmc" in args.frameworks and OVERHEAD_MODEL in args.models:
        o = measure_overhead(bench_models.MODELS[OVERHEAD_MODEL], args)
        print(f"Sampler overhead ({OVERHEAD_MODEL}, one chain in-process, CPU time, tree kernel {o.tree_kernel}): "
              f"chain {o.chain_cpu:.3f} s / {o.inside_gradient_cpu:.3f} s inside logp_and_grad → overhead "
              f"{o.ratio_inside:.2f}×; {o.gradients} gradients × {o.t_gradient * 1e6:.1f} µs timed apart = "
              f"{o.gradients * o.t_gradient:.3f} s → {o.ratio:.2f}×; per gradient: chain "
              f"{o.chain_cpu / o.gradients * 1e6:.1f} µs, inside {o.inside_gradient_cpu / o.gradients * 1e6:.1f} µs")
    if "exmc" in args.frameworks and ("pymc" in args.frameworks or "numpyro" in args.frameworks):
        print()
        print("One log-density + gradient, CPU time:")
        print()
        print(gradient_table(args.models))
    for failure in failures:
        print(f"FAILED {failure}")
    if "exmc" in args.frameworks:
        exmc.NUTS.Sampler.shutdown_pool()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
