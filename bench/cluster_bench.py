"""Chains over several nodes: concurrency and the per-chain cost of going remote.

On a 2-core box CPU scaling cannot be shown, so the model is ``exmc.models.io_bound``'s standard
normal whose gradient sleeps 1 ms per evaluation (I/O-like: it releases the CPU). Three real exmc
nodes run here (``LocalCluster``, exmc preloaded, 2 chain workers each); this process is the
coordinating hidden node. In one run:

1. **Concurrency** — 12 chains × (200 warmup + 200 draws) with ``nodes=[one node]`` and with
   ``nodes=[three nodes]``; target: three nodes ≤ 0.4 × one node's wall time (6 workers against
   2 at once: 0.33 is the ideal).
2. **Per-chain overhead of going remote** — a CPU model (the seed model, no sleeping), 2 chains
   at a time × (500 + 500): in this process's own warm pool vs on one remote node through
   ``nodes=[...]`` (shipping the IR, streaming progress and traces through the mailbox, the
   share's response), both with a progress callback; the difference divided by the chain count,
   and the size of one trace.
3. **Shared warmup** — the same 12 chains × (200 + 200) on the three nodes with
   ``warmup="own"`` (every chain adapts) and ``warmup="shared"`` (one warmup chain adapts, then
   every chain only samples, :mod:`exmc.nuts.shared_warmup`), timed in pairs; wall time and
   ESS per second (bulk ESS of the worst coordinate over all chains, divided by the wall time).
   ESS of one seed is noisy (one shared adaptation), so the same 12 chains also run with and
   without shared warmup for ``ESS_SEEDS`` seeds in this process's pool (gradient without
   sleep: the draws do not depend on where chains run), and the median ESS ratio is printed.
4. **Fixed cost of a run** — 12 chains of one draw and no warmup (no sampling to speak of): the
   local pool, one node, three nodes. What remains is dispatch: worker-count queries, one erpc
   request per share, one mailbox message per chain; the floor below which spreading a run does
   not pay.

Every configuration runs once untimed (warm pools, imported model modules), then ``--repeat``
times; medians are printed. The local/remote comparison runs in pairs (local, remote, local, …)
and reports the median of the pairwise differences, which a drifting machine load affects least. ``--quick``: tiny sizes (CI smoke; the ratio means little there).

Usage: ``python bench/cluster_bench.py [--repeat 3] [--quick]``
"""
from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import time

import exmc
from exmc.models.io_bound import DEFAULT_DELAY, io_bound_normal
from livebook_client.demo import seed_model
from pynode import Node, portmapper
from pynode.testing import LocalCluster

# The benchmark's own loopback addresses (p13's range), away from the tests' .1-.3 and .10.
NODES = ["exmc_bench@127.0.5.21", "exmc_bench@127.0.5.22", "exmc_bench@127.0.5.23"]
CLIENT = "bench_coordinator@127.0.5.21"  # on a node's host: its port mapper, which the cluster stops

# Seeds of the shared-warmup ESS comparison (section 3).
ESS_SEEDS = 10

TARGET_RATIO = 0.4  # issue 13: 3 nodes × 2 workers ≤ 0.4 × the wall time on 1 node


def timed(repeat: int, run) -> tuple[float, object]:
    run()  # untimed: warm pools, imports
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def paired(repeat: int, first, second) -> tuple[float, float, float, object, object]:
    """Medians of ``first`` and ``second`` timed in turn (A B A B …, one untimed pair first), the
    median of their pairwise differences (on a shared machine whose speed drifts, the pairs see
    the same load), and the last result of each."""
    first()
    second()
    a, b, diffs, results = [], [], [], (None, None)
    for _ in range(repeat):
        started = time.perf_counter()
        one = first()
        middle = time.perf_counter()
        results = (one, second())
        ended = time.perf_counter()
        a.append(middle - started)
        b.append(ended - middle)
        diffs.append(b[-1] - a[-1])
    return statistics.median(a), statistics.median(b), statistics.median(diffs), *results


def worst_ess(chains) -> float:
    """Bulk ESS of the worst coordinate of ``x`` over all chains."""
    from arviz_stats.base import array_stats

    draws = chains.stacked("x")  # (chains, draws, dim)
    return float(min(array_stats.ess(draws[:, :, i], method="bulk") for i in range(draws.shape[2])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (CI smoke)")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    chains, warmup, draws = (6, 20, 20) if args.quick else (12, 200, 200)
    cpu_chains, cpu_sizes = (2, 50) if args.quick else (2, 500)
    sleepy = io_bound_normal(DEFAULT_DELAY)

    # Its own port mappers (killed when the cluster stops), found by this process through the env.
    with LocalCluster(NODES, preload=["exmc"], epmd_port=0) as cluster:
        os.environ[portmapper.EPMD_PORT_ENV] = str(cluster.epmd_port)
        Node.start(CLIENT, cookie=cluster.cookie, hidden=True)
        try:
            def on(nodes, ir, n, w, d, progress=None, warmup="own"):
                return lambda: exmc.NUTS.Sampler.sample_chains(ir, n, num_warmup=w, num_samples=d, seed=5,
                                                               nodes=nodes, progress=progress, warmup=warmup)

            events: list = []

            one, single = timed(repeat, on(NODES[:1], sleepy, chains, warmup, draws))
            three, spread = timed(repeat, on(NODES, sleepy, chains, warmup, draws))
            same = all((a["x"] == b["x"]).all() for a, b in zip(single, spread))
            workers = {t.info["node"]: set() for t in spread}
            for t in spread:
                workers[t.info["node"]].add(t.info["worker"])

            cpu = seed_model()
            # Both with a progress callback, so the remote side streams its progress as a notebook's would.
            local, remote, difference, _, traces = paired(
                repeat,
                lambda: exmc.NUTS.Sampler.sample_chains(cpu, cpu_chains, num_warmup=cpu_sizes, num_samples=cpu_sizes,
                                                        seed=5, max_workers=cpu_chains, progress=events.append),
                on(NODES[:1], cpu, cpu_chains, cpu_sizes, cpu_sizes, events.append))
            trace_bytes = len(pickle.dumps(traces[0]))

            own, shared, _, own_chains, shared_chains = paired(
                repeat, on(NODES, sleepy, chains, warmup, draws), on(NODES, sleepy, chains, warmup, draws,
                                                                     warmup="shared"))
            sharing = {"own": (own, own_chains), "shared": (shared, shared_chains)}
            ess_ratios = []
            for seed in range(2 if args.quick else ESS_SEEDS):
                pair = [worst_ess(exmc.NUTS.Sampler.sample_chains(io_bound_normal(0.0), chains, seed=seed,
                                                                  num_warmup=warmup, num_samples=draws, warmup=kind))
                        for kind in ("own", "shared")]
                ess_ratios.append(pair[1] / pair[0])

            floor = {"this process's warm pool": timed(repeat, lambda: exmc.NUTS.Sampler.sample_chains(
                cpu, 12, num_warmup=0, num_samples=1, seed=5, max_workers=2))[0]}
            floor["1 node"] = timed(repeat, on(NODES[:1], cpu, 12, 0, 1))[0]
            floor["3 nodes"] = timed(repeat, on(NODES, cpu, 12, 0, 1))[0]
        finally:
            Node.stop()

    ratio = three / one
    print(f"## Chains over nodes (io-bound model: gradient sleeps {DEFAULT_DELAY * 1e3:g} ms; "
          f"{chains} chains × ({warmup} + {draws}); median of {repeat})")
    print()
    print("| configuration | wall s | vs 1 node |")
    print("| --- | ---: | ---: |")
    print(f"| 1 node × 2 workers | {one:.2f} | 1.00 |")
    print(f"| 3 nodes × 2 workers | {three:.2f} | {ratio:.2f} |")
    print()
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"3 nodes / 1 node = {ratio:.2f} ({verdict} the ≤ {TARGET_RATIO} target; 0.33 is ideal); "
          f"draws identical to the 1-node run: {same}; workers used per node: "
          f"{ {node: len(pids) for node, pids in workers.items()} }")
    print()
    per_chain = difference / cpu_chains
    print(f"## Going remote, per chain (seed model, {cpu_chains} chains × ({cpu_sizes} + {cpu_sizes}), "
          f"2 workers, progress on; median of {repeat})")
    print()
    print("| where | wall s |")
    print("| --- | ---: |")
    print(f"| this process's warm pool | {local:.3f} |")
    print(f"| one remote node (nodes=[...]) | {remote:.3f} |")
    print()
    print(f"overhead of going remote (median of the paired differences / chains): {per_chain * 1e3:+.1f} ms per "
          f"chain ({difference / local * 100:+.1f} % of the local wall time); one trace is "
          f"{trace_bytes / 1024:.1f} KiB pickled")
    print()
    print(f"## Shared warmup (io-bound model, {chains} chains × ({warmup} + {draws}) on 3 nodes × 2 workers; "
          f"in pairs, median of {repeat})")
    print()
    print("| warmup | wall s | vs own | worst bulk ESS | ESS/s | step size |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for kind, (seconds, result) in sharing.items():
        ess = worst_ess(result)
        sizes = sorted({round(t.info["step_size"], 2) for t in result})
        shown = f"{sizes[0]:.2f}" if len(sizes) == 1 else f"{sizes[0]:.2f}–{sizes[-1]:.2f}"
        print(f"| {kind} | {seconds:.2f} | {seconds / own:.2f} | {ess:.0f} | {ess / seconds:.0f} | {shown} |")
    print()
    ess_ratio = statistics.median(ess_ratios)
    print(f"over {len(ess_ratios)} seeds, worst bulk ESS shared / own: median {ess_ratio:.2f} (range "
          f"{min(ess_ratios):.2f}–{max(ess_ratios):.2f}); with the wall-time ratio above, ESS/s shared / own ≈ "
          f"{ess_ratio / (shared / own):.2f}")
    print()
    print(f"## Fixed cost of a run (12 chains × (0 + 1 draw), seed model; median of {repeat})")
    print()
    print("| where | wall ms | per chain ms |")
    print("| --- | ---: | ---: |")
    for where, seconds in floor.items():
        print(f"| {where} | {seconds * 1e3:.1f} | {seconds * 1e3 / 12:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
