"""Erlang interop benchmark: a call over Erlang's distribution protocol to and from a pynode node,
against BEAM calling BEAM in the same run.

::

    python bench/beam_bench.py [--calls N] [--rounds R]

Four p50 round trips (microseconds, ``N`` sequential calls each, ``R`` interleaved rounds, the
median round printed), all on loopback through one real ``epmd``:

- ``beam->beam``: ``erpc:call(T, erlang, node, [])`` between two ``erl`` nodes (the baseline);
- ``beam->pynode``: ``erpc:call(Py, operator, truth, [1])`` from ``erl`` to a pynode node (a
  SPAWN_REQUEST, a Python thread, the result as the monitor's DOWN reason);
- ``pynode->beam``: ``erpc.call(T, "erlang:node")`` from this process as a pynode node;
- ``pynode->pynode``: ``erpc.call(Py, "operator:truth", 1)`` over pynode's own protocol.

Ratios are against ``beam->beam``. Needs ``erl`` and ``epmd``; exits 0 with a note without them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

from pynode import Node, erpc, portmapper
from pynode.testing import free_port, wait_until

HOSTS = {"py": "127.0.4.35", "target": "127.0.4.36", "caller": "127.0.4.37", "me": "127.0.4.38"}
COOKIE = "beam-bench"

CALLER = """
Target = '{target}', Py = '{py}', N = {calls},
pong = net_adm:ping(Target), pong = net_adm:ping(Py),
P50 = fun(F) -> _ = [F() || _ <- lists:seq(1, 50)],
    Lat = lists:sort([begin T0 = erlang:monotonic_time(nanosecond), F(),
                            erlang:monotonic_time(nanosecond) - T0 end || _ <- lists:seq(1, N)]),
    lists:nth(N div 2, Lat) end,
B = P50(fun() -> erpc:call(Target, erlang, node, []) end),
P = P50(fun() -> true = erpc:call(Py, operator, truth, [1]) end),
io:format("beam_ns=~p pynode_ns=~p~n", [B, P]),
halt(0).
"""


def p50_us(fn, calls: int) -> float:
    for _ in range(50):
        fn()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    erl, epmd = shutil.which("erl"), shutil.which("epmd")
    if erl is None or epmd is None:
        print("beam_bench: erl/epmd not installed; nothing measured")
        return 0
    port = free_port()
    os.environ[portmapper.EPMD_PORT_ENV] = str(port)
    env = dict(os.environ, ERL_EPMD_PORT=str(port))
    names = {role: f"{role}@{host}" for role, host in HOSTS.items()}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([epmd, "-port", str(port), "-address", ",".join(["127.0.0.1", *HOSTS.values()])]))
        wait_until(lambda: portmapper.is_running(HOSTS["py"], port), 10)
        py = subprocess.Popen([sys.executable, "-m", "pynode", "start", names["py"], "--cookie", COOKIE],
                              stdout=subprocess.PIPE, env=env)
        procs.append(py)
        assert py.stdout is not None and b"ready" in py.stdout.readline()
        procs.append(subprocess.Popen([erl, "-noshell", "-noinput", "-name", names["target"], "-setcookie", COOKIE], env=env))
        Node.start(names["me"], cookie=COOKIE)
        wait_until(lambda: Node.ping(names["target"]) == "pong", 30, 0.2)
        rows: dict[str, list[float]] = {"beam->beam": [], "beam->pynode": [], "pynode->beam": [], "pynode->pynode": []}
        for _ in range(args.rounds):
            script = CALLER.format(target=names["target"], py=names["py"], calls=args.calls)
            out = subprocess.run([erl, "-noshell", "-name", names["caller"], "-setcookie", COOKIE, "-eval", script],
                                 env=env, capture_output=True, text=True, timeout=600).stdout
            found = re.search(r"beam_ns=(\d+) pynode_ns=(\d+)", out)
            if found is None:
                print(f"beam_bench: the erl caller failed: {out}")
                return 1
            rows["beam->beam"].append(int(found.group(1)) / 1000)
            rows["beam->pynode"].append(int(found.group(2)) / 1000)
            rows["pynode->beam"].append(p50_us(lambda: erpc.call(names["target"], "erlang:node"), args.calls))
            rows["pynode->pynode"].append(p50_us(lambda: erpc.call(names["py"], "operator:truth", 1), args.calls))
        base = statistics.median(rows["beam->beam"])
        print(f"{'call':16} {'p50 us':>8} {'x beam->beam':>13}   ({args.rounds} rounds of {args.calls} calls)")
        for name, values in rows.items():
            value = statistics.median(values)
            print(f"{name:16} {value:8.1f} {value / base:13.2f}")
        return 0
    finally:
        if Node.alive():
            Node.stop()
        for proc in reversed(procs):
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
