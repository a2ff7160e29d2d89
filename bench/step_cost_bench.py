"""Per-step cost: CPU seconds per leapfrog step of one chain, exmc against PyMC and NumPyro.

``sampler_bench.py`` compares walls of 4 chains on 2 cores; on a machine shared with other jobs
those walls mostly measure which framework got more of the machine. This benchmark measures what
load changes least: one chain (``--warmup`` + ``--draws``, seed 1) in this process, its CPU time
(``time.process_time``: this process's own CPU, whichever core and however often it ran) and its
leapfrog steps, warmup included. Every framework is warm: exmc's model compiled and sampled once
briefly, PyMC's sampled once briefly (pytensor's C code compiled and cached), NumPyro's sampler
JIT-compiled by a first full warmup-and-run cycle of the same ``MCMC`` object. NumPyro runs with
XLA's CPU thread pool off (one intra-op thread), so its CPU time is not inflated by idle-spinning
helper threads; its timed cycle still re-traces and re-compiles part of the sampler (about 1-2 s of
CPU here, as every NumPyro ``run`` does), which its µs per step include: on models that sample in a
few seconds that, not the leapfrog step, dominates its figure.

Printed per model and framework: CPU seconds, leapfrog steps, µs per step and the min ESS-bulk of
this one chain (noisy: 1000 draws of one chain; sampler_bench's 4-chain "ESS per 1k gradients" is
the better statistical-efficiency figure), and per model each framework's µs per step over exmc's.
exmc is measured twice, through the generated function (the default) and through the closure
program (``Program.run``, :mod:`exmc.codegen`'s oracle), which shows what the generated code saves
per step; on a model whose terms have compiled gradient kernels (:mod:`exmc.accel`) a third time
with the numpy kernels (``EXMC_GRAD=numpy``), which shows what those save.

Usage::

    python bench/step_cost_bench.py --models radon,sv,logistic --frameworks exmc,pymc,numpyro
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

# One XLA intra-op thread, one device: set before JAX is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402
from arviz_stats.base import array_stats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_models  # noqa: E402

import exmc  # noqa: E402
from exmc import accel  # noqa: E402

#: Iterations of the untimed warm-up runs (exmc, PyMC).
WARM_ITERATIONS = 20


def min_ess(draws: dict[str, np.ndarray]) -> float:
    """Minimum ESS-bulk over every scalar of ``draws`` (one chain: arrays ``(draws,) + shape``)."""
    out = np.inf
    for value in draws.values():
        value = np.asarray(value, dtype=float)
        flat = value.reshape(1, value.shape[0], -1)
        out = min(out, float(np.min(array_stats.ess(flat, chain_axis=0, draw_axis=1, method="bulk"))))
    return out


def compile_exmc(model, grad: str | None = None):
    """The model compiled with the gradient kernels ``grad`` selects (``EXMC_GRAD``, :mod:`exmc.accel`;
    ``None``: the environment's choice)."""
    saved = os.environ.get(accel.GRAD_ENV)
    if grad is not None:
        os.environ[accel.GRAD_ENV] = grad
    try:
        return exmc.compile(model.exmc_ir())
    finally:
        if saved is None:
            os.environ.pop(accel.GRAD_ENV, None)
        else:
            os.environ[accel.GRAD_ENV] = saved


def run_exmc(model, args, closures: bool, grad: str | None = None) -> tuple[float, int, float]:
    compiled = compile_exmc(model, grad)
    if closures:
        compiled._single_run = compiled._single.run  # the closure program (exmc.codegen's oracle)
    sample = exmc.NUTS.Sampler.sample_chains
    sample(compiled, 1, num_samples=WARM_ITERATIONS, num_warmup=WARM_ITERATIONS, seed=2, parallel=False)
    start = time.process_time()
    trace = sample(compiled, 1, num_samples=args.draws, num_warmup=args.warmup, seed=args.seed, parallel=False,
                   keep_deterministics=False)[0]
    cpu = time.process_time() - start
    steps = int(trace.info["warmup_steps"] + trace.stats["n_steps"].sum())
    return cpu, steps, min_ess({name: trace[name] for name in model.params})


def run_pymc(model, args) -> tuple[float, int, float]:
    import pymc as pm

    pm_model = model.pymc()
    options = dict(chains=1, cores=1, progressbar=False, compute_convergence_checks=False, model=pm_model)
    pm.sample(WARM_ITERATIONS, tune=WARM_ITERATIONS, random_seed=2, **options)
    start = time.process_time()
    idata = pm.sample(args.draws, tune=args.warmup, random_seed=args.seed, discard_tuned_samples=False, **options)
    cpu = time.process_time() - start
    steps = int(idata.warmup_sample_stats["n_steps"].values.sum() + idata.sample_stats["n_steps"].values.sum())
    return cpu, steps, min_ess({name: idata.posterior[name].values[0] for name in model.params})


def run_numpyro(model, args) -> tuple[float, int, float]:
    import jax
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(model.numpyro()), num_warmup=args.warmup, num_samples=args.draws, num_chains=1,
                progress_bar=False)

    def cycle(seed: int) -> int:
        mcmc.warmup(jax.random.PRNGKey(seed), collect_warmup=True, extra_fields=("num_steps",))
        steps = int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())
        mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=("num_steps",))
        jax.block_until_ready(mcmc.get_samples())
        return steps + int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())

    cycle(args.seed + 1)  # compiles warmup and sampling for these shapes
    start = time.process_time()
    steps = cycle(args.seed)
    cpu = time.process_time() - start
    samples = mcmc.get_samples()
    return cpu, steps, min_ess({name: np.asarray(samples[name]) for name in model.params})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="radon,sv,logistic")
    parser.add_argument("--frameworks", default="exmc,pymc,numpyro")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)  # its per-run progress lines
    frameworks = args.frameworks.split(",")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print("| model | sampler | CPU s | steps | µs / step | ÷ exmc | min ESS-bulk (1 chain) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        model = bench_models.MODELS[name]
        runs = []
        if "exmc" in frameworks:
            runs.append(("exmc", run_exmc(model, args, closures=False)))
            runs.append(("exmc (closures)", run_exmc(model, args, closures=True)))
            if compile_exmc(model).grad_kernel == "numba":  # and what the compiled kernels save
                runs.append(("exmc (numpy gradient)", run_exmc(model, args, closures=False, grad="numpy")))
        if "pymc" in frameworks:
            runs.append(("pymc", run_pymc(model, args)))
        if "numpyro" in frameworks:
            runs.append(("numpyro", run_numpyro(model, args)))
        base = runs[0][1][0] / runs[0][1][1] if runs and runs[0][0] == "exmc" else np.nan
        for framework, (cpu, steps, ess) in runs:
            per_step = cpu / steps
            print(f"| {name} | {framework} | {cpu:.2f} | {steps} | {per_step * 1e6:.1f} | {per_step / base:.2f} | {ess:.0f} |",
                  flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
