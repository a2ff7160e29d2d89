"""erpc benchmark: pynode against raw rpyc + cloudpickle, and BEAM's erpc when ``erl`` exists.

Three measurements, each taken for every contender in the same run on loopback:

1. latency of a trivial call (p50 and p99 over many sequential round trips), in two kinds: a
   *closure* shipped by value (``lambda: None``; for BEAM a fun, ``fun() -> node() end``, which
   the caller's shell evaluator ships with its code) and a function named *by reference*
   (``"builtins:int"``; for raw rpyc ``int``, which cloudpickle pickles by name; for BEAM the MFA
   ``erlang:node()``). Like is compared with like: shipping code costs what it costs in each
   system;
2. throughput with 8 concurrent callers sharing one connection;
3. the wall time of one call whose argument is a 100 MiB numpy array (a binary for BEAM; the
   median of a few calls after an untimed first one), next to the time of one in-memory copy of it.

and printed as ratios against the targets of issue 2: p50 <= 0.8x raw rpyc and <= 1.5x BEAM (each
for both kinds of call), 100 MiB <= 1.2x BEAM. With ``--tls``, pynode is measured a second time
with every connection inside TLS 1.3 (certificates from ``pynode.tls.init`` in a temporary
directory), and the TLS ratios are printed against issue 11's targets: p50 <= 2x plaintext pynode
and the 100 MiB argument <= 2x plaintext, each ratio taken within a round.

Contenders: pynode (``erpc.call`` of a closure to a ``LocalCluster`` node); raw rpyc (an rpyc
``ThreadedServer`` in another process whose one exposed method unpickles a cloudpickled
``(fn, args)``, runs it and returns the cloudpickled result: what you would write without pynode);
BEAM (two ``erl -name`` nodes on loopback, ``erpc:call(Node, fun() -> node() end)``,
``erpc:call(Node, erlang, node, [])`` and ``erpc:call(Node, erlang, byte_size, [Bin])``).

With ``--baseline-tree DIR`` (a checkout of an earlier commit with its own ``make install``ed
``.venv``, e.g. ``git worktree add /tmp/old 9be5200 && make -C /tmp/old install``), pynode is
measured as two contenders, ``pynode`` (this tree) and ``pynode-base`` (the tree in ``DIR``, run
by ``DIR/.venv/bin/python``, so that the caller and its target node both run that tree's pynode),
each in a fresh process, alternately, so that "within 10 % of
the old figures" is judged on ratios taken within a round (issue 10). ``--only pynode`` skips
the other contenders.

Usage: ``python bench/erpc_bench.py [--quick] [--tls] [--rounds N] [--json FILE] [--check]
[--baseline-tree DIR] [--only pynode]``. Every
contender is measured ``N`` times (default 3), the contenders interleaved round by round, and the
ratios are the medians of the rounds' ratios (a loopback round trip on a shared machine drifts by
tens of percent within minutes). ``--quick`` (CI's smoke mode) uses few iterations, a 16 MiB
payload and one round; ``--check`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cloudpickle
import numpy as np

from pynode.testing import free_port

MIB = 1 << 20
CONCURRENT_CALLERS = 8  # issue 2: "throughput with 8 concurrent callers"
TARGETS = {  # issue 2's targets: (metric, baseline) -> maximal ratio pynode / baseline
    ("p50_us", "rpyc"): 0.8,
    ("p50_ref_us", "rpyc"): 0.8,
    ("p50_us", "beam"): 1.5,
    ("p50_ref_us", "beam"): 1.5,
    ("big_ms", "beam"): 1.2,
}
TLS_TARGETS = {"p50_us": 2.0, "p50_ref_us": 2.0, "big_ms": 2.0}  # issue 11: pynode-tls / pynode
HOST_PYNODE = "127.0.0.51"
HOST_RPYC = "127.0.0.52"
HOST_BEAM_CALLER = "127.0.0.53"
HOST_BEAM_TARGET = "127.0.0.54"
COOKIE = "erpc-bench"


@dataclass
class Mode:
    latency_calls: int
    warmup_calls: int
    calls_per_caller: int
    big_bytes: int
    big_reps: int


FULL = Mode(latency_calls=5000, warmup_calls=500, calls_per_caller=500, big_bytes=100 * MIB, big_reps=5)
QUICK = Mode(latency_calls=300, warmup_calls=50, calls_per_caller=50, big_bytes=16 * MIB, big_reps=2)


@dataclass
class Result:
    p50_us: float  # a closure shipped by value
    p99_us: float
    p50_ref_us: float  # a function named by reference
    p99_ref_us: float
    calls_per_s: float
    big_ms: float


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latencies(call: Callable[[], object], mode: Mode) -> tuple[float, float]:
    """p50 and p99 (microseconds) of ``call()`` over ``mode.latency_calls`` sequential calls."""
    for _ in range(mode.warmup_calls):
        call()
    samples = []
    for _ in range(mode.latency_calls):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return percentile(samples, 0.50) * 1e6, percentile(samples, 0.99) * 1e6


def measure(call: Callable[[], object], call_ref: Callable[[], object], big_call: Callable[[np.ndarray], int],
            mode: Mode) -> Result:
    """Latency (closure, by reference), throughput (closure) and big-argument timings of one
    contender's call functions."""
    p50, p99 = latencies(call, mode)
    p50_ref, p99_ref = latencies(call_ref, mode)

    barrier = threading.Barrier(CONCURRENT_CALLERS + 1)

    def caller() -> None:
        barrier.wait()
        for _ in range(mode.calls_per_caller):
            call()

    threads = [threading.Thread(target=caller) for _ in range(CONCURRENT_CALLERS)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0

    big = np.ones(mode.big_bytes // 8)
    big_call(big)  # untimed: the first large transfer also pays one-time costs (fresh mappings)
    big_times = []
    for _ in range(mode.big_reps):
        t0 = time.perf_counter()
        assert big_call(big) == big.nbytes
        big_times.append(time.perf_counter() - t0)
    return Result(
        p50_us=p50,
        p99_us=p99,
        p50_ref_us=p50_ref,
        p99_ref_us=p99_ref,
        calls_per_s=CONCURRENT_CALLERS * mode.calls_per_caller / elapsed,
        big_ms=statistics.median(big_times) * 1e3,
    )


def memcpy_ms(nbytes: int, reps: int = 5) -> float:
    """Median time of ``arr.copy()``: one copy into freshly allocated memory, page faults included
    (what every extra copy on the wire path costs)."""
    src = np.ones(nbytes // 8)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        dst = src.copy()
        times.append(time.perf_counter() - t0)
        del dst
    return statistics.median(times) * 1e3


# --- pynode ---------------------------------------------------------------------------------------


def bench_pynode(mode: Mode, tls_dir: Path | None = None) -> Result:
    """pynode's figures; inside TLS with the certificates in ``tls_dir`` (see :func:`make_certs`)."""
    from pynode import Node, erpc
    from pynode.testing import LocalCluster

    target = f"benchtarget@{HOST_PYNODE}"
    tls: dict[str, object] = {}
    env: dict[str, str] = {}
    if tls_dir is not None:
        from pynode import tls as tls_config  # not in a baseline tree older than TLS

        node_tls = tls_config.TLS.in_directory(tls_dir, "node")
        tls, env = {"tls": node_tls}, tls_config.env_for(node_tls)
    with LocalCluster([target], cookie=COOKIE, epmd_port=0, env=env) as cluster:
        os.environ["PYNODE_EPMD_PORT"] = str(cluster.epmd_port)
        Node.start(f"bench@{HOST_PYNODE}", cookie=COOKIE, hidden=True, **tls)
        try:
            return measure(
                lambda: erpc.call(target, lambda: None, timeout=30),
                lambda: erpc.call(target, "builtins:int", timeout=30),
                lambda arr: erpc.call(target, lambda a: a.nbytes, arr, timeout=120),
                mode,
            )
        finally:
            Node.stop()


def bench_pynode_in(tree: Path | None, mode: Mode) -> Result:
    """:func:`bench_pynode` in a fresh process: of ``tree``'s own ``.venv`` interpreter, whose
    ``pynode`` is that tree's (None: this interpreter and this tree)."""
    python = sys.executable if tree is None else str(tree / ".venv" / "bin" / "python")
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import erpc_bench as b, pynode; "
        "r = b.bench_pynode(b.QUICK if sys.argv[2] == 'quick' else b.FULL); "
        "print('RESULT', pynode.__file__, json.dumps(b.asdict(r)))"
    )
    mode_name = "quick" if mode == QUICK else "full"
    out = subprocess.run([python, "-c", script, str(Path(__file__).parent), mode_name], capture_output=True,
                         text=True, timeout=900, stdin=subprocess.DEVNULL,
                         cwd=tree or Path(__file__).parent.parent)  # -c puts the cwd first on sys.path
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"pynode bench in {tree or 'this tree'} failed (exit {out.returncode}): {out.stdout}{out.stderr}")
    _, where, figures = line.split(" ", 2)
    expected = Path(tree if tree is not None else Path(__file__).parent.parent).resolve()
    if not Path(where).resolve().is_relative_to(expected):
        raise RuntimeError(f"the pynode measured came from {where}, not from {expected}")
    return Result(**json.loads(figures))


def make_certs() -> Path:
    """A throwaway CA and one node certificate in a fresh temporary directory."""
    from pynode import tls as tls_config

    directory = Path(tempfile.mkdtemp(prefix="erpc-bench-tls-"))
    tls_config.init(directory, ["node"])
    return directory


# --- raw rpyc + cloudpickle -----------------------------------------------------------------------

RPYC_SERVER = """
import sys, cloudpickle, rpyc
from rpyc.utils.server import ThreadedServer

class Run(rpyc.Service):
    def exposed_run(self, blob):
        fn, args = cloudpickle.loads(blob)
        return cloudpickle.dumps(fn(*args))

server = ThreadedServer(Run, hostname=sys.argv[1], port=int(sys.argv[2]),
                        protocol_config={"sync_request_timeout": 300})
print("ready", flush=True)  # bound; it listens once start() runs
server.start()
"""


def _connect_with_retry(connect: Callable[[], object], timeout: float = 30.0) -> object:
    """rpyc's server binds in its constructor but listens only in start(): retry until it does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect()
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def bench_rpyc(mode: Mode) -> Result:
    import rpyc

    port = free_port(HOST_RPYC)
    server = subprocess.Popen(
        [sys.executable, "-c", RPYC_SERVER, HOST_RPYC, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        conn = _connect_with_retry(lambda: rpyc.connect(HOST_RPYC, port, config={"sync_request_timeout": 300}))
        run = conn.root.run

        def call(fn: Callable[..., object], *args: object) -> object:
            return cloudpickle.loads(run(cloudpickle.dumps((fn, args))))

        try:
            return measure(lambda: call(lambda: None), lambda: call(int), lambda arr: call(lambda a: a.nbytes, arr), mode)
        finally:
            conn.close()
    finally:
        server.kill()
        server.wait()


# --- BEAM -----------------------------------------------------------------------------------------

BEAM_CALLER = """
Target = list_to_atom(os:getenv("BENCH_TARGET")),
N = list_to_integer(os:getenv("BENCH_N")),
W = list_to_integer(os:getenv("BENCH_WARMUP")),
K = list_to_integer(os:getenv("BENCH_PER_CALLER")),
Bytes = list_to_integer(os:getenv("BENCH_BYTES")),
Reps = list_to_integer(os:getenv("BENCH_REPS")),
Connect = fun Retry(0) -> erlang:halt(2);
              Retry(I) -> case net_kernel:connect_node(Target) of
                              true -> ok;
                              _ -> timer:sleep(50), Retry(I - 1)
                          end
          end,
Connect(200),
Call = fun() -> erpc:call(Target, erlang, node, []) end,
CallFun = fun() -> erpc:call(Target, fun() -> node() end) end,
Latency = fun(F) ->
    [F() || _ <- lists:seq(1, W)],
    Lat = [begin T0 = erlang:monotonic_time(nanosecond), F(),
                 erlang:monotonic_time(nanosecond) - T0 end || _ <- lists:seq(1, N)],
    Sorted = lists:sort(Lat),
    {lists:nth(max(1, N div 2), Sorted), lists:nth(max(1, (N * 99) div 100), Sorted)}
end,
{P50, P99} = Latency(CallFun),
{P50Ref, P99Ref} = Latency(Call),
Self = self(),
T1 = erlang:monotonic_time(nanosecond),
Pids = [spawn(fun() -> [CallFun() || _ <- lists:seq(1, K)], Self ! done end) || _ <- lists:seq(1, 8)],
[receive done -> ok end || _ <- Pids],
Tput = 8 * K / ((erlang:monotonic_time(nanosecond) - T1) / 1.0e9),
Bin = binary:copy(<<1>>, Bytes),
Bytes = erpc:call(Target, erlang, byte_size, [Bin], 300000),
Big = [begin T0 = erlang:monotonic_time(nanosecond),
             Bytes = erpc:call(Target, erlang, byte_size, [Bin], 300000),
             erlang:monotonic_time(nanosecond) - T0 end || _ <- lists:seq(1, Reps)],
BigMed = lists:nth((Reps + 1) div 2, lists:sort(Big)),
io:format("beam p50_ns=~p p99_ns=~p p50_ref_ns=~p p99_ref_ns=~p tput=~.3f big_ns=~p~n",
          [P50, P99, P50Ref, P99Ref, Tput, BigMed]),
erpc:cast(Target, erlang, halt, []),
erlang:halt(0).
"""


def bench_beam(mode: Mode) -> Result:
    """BEAM's figures (``erl`` must be on PATH: the caller checks)."""
    erl = shutil.which("erl")
    if erl is None:
        raise RuntimeError("erl is not installed")
    epmd_port = free_port("127.0.0.1")
    target = f"benchtarget@{HOST_BEAM_TARGET}"
    env = {**os.environ, "ERL_EPMD_PORT": str(epmd_port)}

    def node_args(name: str, host: str) -> list[str]:
        ip = "{" + host.replace(".", ",") + "}"
        return [erl, "-name", name, "-setcookie", COOKIE, "-noshell", "-kernel",
                "inet_dist_use_interface", ip]

    home = tempfile.mkdtemp(prefix="erpc-bench-erl-")  # erl writes ~/.erlang.cookie otherwise
    env["HOME"] = home
    target_proc = subprocess.Popen(node_args(target, HOST_BEAM_TARGET), env=env, stdin=subprocess.DEVNULL)
    try:
        out = subprocess.run(
            node_args(f"benchcaller@{HOST_BEAM_CALLER}", HOST_BEAM_CALLER) + ["-eval", BEAM_CALLER],
            env={
                **env,
                "BENCH_TARGET": target,
                "BENCH_N": str(mode.latency_calls),
                "BENCH_WARMUP": str(mode.warmup_calls),
                "BENCH_PER_CALLER": str(mode.calls_per_caller),
                "BENCH_BYTES": str(mode.big_bytes),
                "BENCH_REPS": str(mode.big_reps),
            },
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )
        match = re.search(
            r"beam p50_ns=(\d+) p99_ns=(\d+) p50_ref_ns=(\d+) p99_ref_ns=(\d+) tput=([\d.]+) big_ns=(\d+)", out.stdout
        )
        if match is None:
            raise RuntimeError(f"BEAM caller failed (exit {out.returncode}): {out.stdout}{out.stderr}")
        p50, p99, p50_ref, p99_ref, tput, big = match.groups()
        return Result(p50_us=int(p50) / 1e3, p99_us=int(p99) / 1e3, p50_ref_us=int(p50_ref) / 1e3,
                      p99_ref_us=int(p99_ref) / 1e3, calls_per_s=float(tput), big_ms=int(big) / 1e6)
    finally:
        target_proc.kill()
        target_proc.wait()
        epmd = shutil.which("epmd")
        if epmd:
            subprocess.run([epmd, "-port", str(epmd_port), "-kill"], capture_output=True, timeout=10)
        shutil.rmtree(home, ignore_errors=True)


# --- report ---------------------------------------------------------------------------------------


def median_result(rounds: list[Result]) -> Result:
    """Each figure's median over the rounds."""
    return Result(**{key: statistics.median(getattr(r, key) for r in rounds) for key in asdict(rounds[0])})


def ratio(pynode: Result, base: Result, key: str) -> float:
    """pynode / baseline (for throughput baseline / pynode): lower is better for pynode."""
    a, b = getattr(pynode, key), getattr(base, key)
    return b / a if key == "calls_per_s" else a / b


def report(rounds: dict[str, list[Result]], mode: Mode, copy_ms: float) -> list[str]:
    """Print the table (medians over rounds) and the ratios (median of the rounds' ratios, with
    their range); return the missed targets."""
    names = list(rounds)
    medians = {n: median_result(rs) for n, rs in rounds.items()}
    count = len(rounds["pynode"])
    size = f"{mode.big_bytes // MIB} MiB"
    rows = [
        ("p50 latency, closure (us)", "p50_us", "{:.1f}"),
        ("p99 latency, closure (us)", "p99_us", "{:.1f}"),
        ("p50 latency, by reference (us)", "p50_ref_us", "{:.1f}"),
        ("p99 latency, by reference (us)", "p99_ref_us", "{:.1f}"),
        (f"throughput, {CONCURRENT_CALLERS} callers (calls/s)", "calls_per_s", "{:.0f}"),
        (f"{size} argument (ms)", "big_ms", "{:.1f}"),
    ]
    print(f"\nmedians over {count} interleaved round(s)")
    print(f"{'':40}" + "".join(f"{n:>12}" for n in names))
    for label, key, fmt in rows:
        print(f"{label:40}" + "".join(f"{fmt.format(getattr(medians[n], key)):>12}" for n in names))
    print(f"{'memory copy of the ' + size + ' array (ms)':40}{copy_ms:>12.1f}")

    def ratios(baseline: str, key: str) -> list[float]:
        return sorted(ratio(p, b, key) for p, b in zip(rounds["pynode"], rounds[baseline]))

    print("\nratios pynode / baseline, median [range] of the rounds (lower is better; throughput: baseline / pynode):")
    for baseline in [n for n in names if n not in ("pynode", "pynode-tls")]:
        for label, key, _ in rows:
            rs = ratios(baseline, key)
            print(f"  {label:40} vs {baseline:6}: {statistics.median(rs):6.2f}x [{rs[0]:.2f}-{rs[-1]:.2f}]")
    print(f"  {size} argument / memory copy: {medians['pynode'].big_ms / copy_ms:6.2f}x")
    missed = []
    if "pynode-tls" in rounds:
        print("\nTLS: ratios pynode-tls / pynode (plaintext), median [range] of the rounds (issue 11's targets):")
        for label, key, _ in rows:
            rs = sorted(ratio(t, p, key) for t, p in zip(rounds["pynode-tls"], rounds["pynode"]))
            limit = TLS_TARGETS.get(key)
            verdict = "" if limit is None else (f" <= {limit}x: met" if statistics.median(rs) <= limit
                                                 else f" <= {limit}x: MISSED")
            print(f"  {label:40}: {statistics.median(rs):6.2f}x [{rs[0]:.2f}-{rs[-1]:.2f}]{verdict}")
            if limit is not None and statistics.median(rs) > limit:
                missed.append(f"{key} pynode-tls vs pynode: {statistics.median(rs):.2f}x > {limit}x")
    print("\ntargets (issue 2), on the median ratio:")
    for (key, baseline), limit in TARGETS.items():
        if baseline not in rounds:
            print(f"  {key} <= {limit}x {baseline}: not measured (no {baseline} figures in this run)")
            continue
        rs = ratios(baseline, key)
        value = statistics.median(rs)
        ok = value <= limit
        print(f"  {key} <= {limit}x {baseline}: {value:.2f}x [{rs[0]:.2f}-{rs[-1]:.2f}] {'met' if ok else 'MISSED'}")
        if not ok:
            missed.append(f"{key} vs {baseline}: {value:.2f}x > {limit}x")
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: few iterations, 16 MiB, one round")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of every contender (default 3, quick 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--no-beam", action="store_true", help="skip BEAM even if erl is installed")
    parser.add_argument("--tls", action="store_true", help="also measure pynode inside TLS; print the TLS ratios")
    parser.add_argument("--baseline-tree", type=Path,
                        help="also measure the pynode of this source tree (pynode-base), each in its own process")
    parser.add_argument("--only", choices=["pynode"], help="measure only pynode (and pynode-base, pynode-tls)")
    args = parser.parse_args(argv)
    if args.baseline_tree is not None and not (args.baseline_tree / ".venv" / "bin" / "python").is_file():
        parser.error(f"--baseline-tree {args.baseline_tree}: no .venv/bin/python there (run make install in it)")
    mode = QUICK if args.quick else FULL
    count = args.rounds or (1 if args.quick else 3)
    if count < 1:
        parser.error(f"--rounds must be positive, got {count}")
    contenders: list[tuple[str, Callable[[Mode], Result]]] = [("pynode", bench_pynode)]
    if args.baseline_tree is not None:
        base = args.baseline_tree.resolve()
        contenders = [("pynode", lambda m: bench_pynode_in(None, m)), ("pynode-base", lambda m: bench_pynode_in(base, m))]
    if args.tls:
        certs = make_certs()
        contenders.append(("pynode-tls", lambda m: bench_pynode(m, certs)))
    if args.only is None:
        contenders.append(("rpyc", bench_rpyc))
    if not args.no_beam and args.only is None:
        if shutil.which("erl") is None:
            print("  beam: not available (install erlang-base for erl)", flush=True)
        else:
            contenders.append(("beam", bench_beam))
    rounds: dict[str, list[Result]] = {name: [] for name, _ in contenders}
    for index in range(count):
        order = contenders if index % 2 == 0 else contenders[::-1]  # neither always goes first
        for name, bench in order:
            print(f"round {index + 1}/{count}: measuring {name} ...", flush=True)
            rounds[name].append(bench(mode))
    copy_ms = memcpy_ms(mode.big_bytes)
    missed = report(rounds, mode, copy_ms)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "mode": asdict(mode),
            "memcpy_ms": copy_ms,
            "results": {k: asdict(median_result(v)) for k, v in rounds.items()},
            "rounds": {k: [asdict(r) for r in v] for k, v in rounds.items()},
            "missed_targets": missed,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
