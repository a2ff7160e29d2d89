"""Idle CPU of a pynode cluster: what ticks, the watchdog and the reader threads cost at rest.

Starts three connected nodes on loopback (LocalCluster), lets them idle for ``--seconds``
(default 30) and prints the CPU seconds (user + system, from ``/proc/PID/stat``) each node
process used meanwhile, for the default ticktime and for ``--ticktime`` (default 2 s, the
tests' value; ticks every ticktime / 4). Baseline in the same run: a plain ``python -c`` process
sleeping for the same time.

Usage: ``python bench/idle_bench.py [--seconds S] [--ticktime T]`` (Linux only).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from pynode import Node, erpc
from pynode.testing import LocalCluster, this_node

NODES = ["idle_a@127.0.1.11", "idle_b@127.0.1.12", "idle_c@127.0.1.13"]
ME = "idle_bench@127.0.1.10"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def measure(seconds: float, ticktime: float | None) -> list[float]:
    with LocalCluster(NODES, ticktime=ticktime) as cluster:
        with this_node(ME, cookie=cluster.cookie, hidden=True):
            for a in NODES:  # a full mesh between the three, then leave them alone
                for b in NODES:
                    if a < b:
                        assert erpc.call(a, Node.connect, b, timeout=30)
            for node in NODES:
                assert len(erpc.call(node, Node.list, timeout=30)) == 2
            time.sleep(1.0)  # connection set-up done
            pids = [cluster.pid(n) for n in NODES]
            before = [cpu_seconds(p) for p in pids]
            time.sleep(seconds)
            return [cpu_seconds(p) - b for p, b in zip(pids, before)]


def baseline(seconds: float) -> float:
    proc = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds + 2})"])
    try:
        time.sleep(1.0)
        before = cpu_seconds(proc.pid)
        time.sleep(seconds)
        return cpu_seconds(proc.pid) - before
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--ticktime", type=float, default=2.0)
    args = parser.parse_args(argv)
    rows = [("sleeping python process (baseline)", [baseline(args.seconds)])]
    rows.append(("3 nodes, default ticktime (10 s)", measure(args.seconds, None)))
    rows.append((f"3 nodes, ticktime {args.ticktime:g} s", measure(args.seconds, args.ticktime)))
    print(f"\nCPU seconds used in {args.seconds:g} s idle (user + system, per process)")
    for label, values in rows:
        per = ", ".join(f"{v:.2f}" for v in values)
        share = 100.0 * sum(values) / len(values) / args.seconds
        print(f"  {label:40s} {per:>20s}   {share:.3f} % of a core per process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
