"""A chain's ``print()`` comes home: output of a sampled Custom function, written in a pool
worker process on a compute node, is written on the caller's ``sys.stdout``/``sys.stderr``, in
order, before the sampling returns (worker → pool → the call's group leader). Real exmc nodes
(LocalCluster); ``session.sample``, a run over two nodes, and the ``%%remote`` magic."""
from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import cloudpickle
import pytest
from recording import recording

import exmc
from exmc.builder import Builder
from exmc.dist import Dist
from livebook_client import attach
from pynode import Node
from pynode.testing import LocalCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the nodes do not have this module

A = "exmc@127.0.5.25"
B = "exmc@127.0.5.26"
CLIENT = "output_test@127.0.5.24"
SIZES = dict(num_samples=20, num_warmup=20)
EVERY = 7  # a line every 7th gradient call, every 3rd of those also on stderr


def printing_normal():
    """A 1-d standard normal whose gradient prints numbered lines (on stdout, some on stderr)."""
    import numpy as np

    calls = [0]

    def grad(value):
        import os

        calls[0] += 1
        if calls[0] % EVERY == 0:
            print(f"[{os.getpid()}] grad call", calls[0])
            if calls[0] % (3 * EVERY) == 0:
                print(f"[{os.getpid()}] also on stderr", calls[0], file=sys.stderr)
        return -np.asarray(value, dtype=float)

    ir = Builder.new_ir()
    return Builder.rv(ir, "x", Dist.Custom, {"logp": lambda v: -0.5 * np.square(v), "grad": grad,
                                             "support": "real"})


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([A, B], preload=["exmc"]) as cluster:
        Node.start(CLIENT, cookie=cluster.cookie, hidden=True)
        try:
            yield cluster
        finally:
            Node.stop()


LINE = re.compile(r"\[(\d+)\] (grad call|also on stderr) (\d+)\n")


def check_lines(recorded: list[tuple[str, str]]) -> dict[int, list[int]]:
    """Every write is whole lines of the model's; per worker, the numbers come in the order the
    gradient printed them (stdout and stderr interleaved as written). Returns pid -> numbers."""
    per_worker: dict[int, list[tuple[str, int]]] = {}
    for stream, text in recorded:
        assert text.endswith("\n"), (stream, text)
        for line in text.splitlines(keepends=True):
            match = LINE.fullmatch(line)
            assert match, line
            assert stream == ("out" if match[2] == "grad call" else "err")
            per_worker.setdefault(int(match[1]), []).append((match[2], int(match[3])))
    numbers = {}
    for pid, lines in per_worker.items():
        expected = []
        for kind, n in lines:
            if kind == "grad call":
                expected.append(n)
        assert expected == sorted(expected) and len(set(expected)) == len(expected)
        # each stderr line directly follows the stdout line of the same call
        for (kind, n), (previous_kind, previous) in zip(lines[1:], lines):
            if kind == "also on stderr":
                assert previous_kind == "grad call" and previous == n
        numbers[pid] = expected
    return numbers


def test_prints_of_a_sampled_custom_function_come_home_in_order(cluster):
    session = attach(A)
    with recording() as recorded:
        chains = session.sample(printing_normal(), chains=2, seed=3, progress=False, **SIZES)
    numbers = check_lines(recorded)
    assert set(numbers) == {trace.info["worker"] for trace in chains}  # both workers' lines arrived
    assert all(len(lines) > 5 for lines in numbers.values())
    assert any(stream == "err" for stream, _ in recorded)
    assert "grad call" not in cluster.stdout(A) and "also on stderr" not in cluster.stderr(A)


def test_prints_come_home_from_every_node_of_a_run_over_nodes(cluster):
    session = attach(A)
    Node.connect(B)
    with recording() as recorded:
        chains = session.sample(printing_normal(), chains=4, seed=3, nodes=[A, B], progress=False, **SIZES)
    numbers = check_lines(recorded)
    assert {t.info["node"] for t in chains} == {A, B}
    assert set(numbers) == {trace.info["worker"] for trace in chains}
    for node in (A, B):
        assert "grad call" not in cluster.stdout(node)


def test_a_remote_cell_that_samples_prints_under_the_cell(cluster, ipython_shell, capsys):
    shell = ipython_shell
    shell.extension_manager.load_extension("livebook_client")
    shell.run_line_magic("attach", A)
    shell.user_ns["ir"] = printing_normal()
    value = shell.run_cell_magic("remote", "", (
        "import exmc\nchains = exmc.NUTS.Sampler.sample_chains(ir, 1, num_samples=20, num_warmup=20)\n"
        "print('cell done')\nchains[0].info['worker']"))
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[-1] == "cell done" and len(lines) > 5
    check_lines([("out", line + "\n") for line in lines[:-1] if "grad call" in line])
    assert {int(LINE.fullmatch(line + "\n")[1]) for line in lines[:-1]} == {value}
    assert "also on stderr" in captured.err


def test_the_nodes_own_chain_output_stays_on_the_node_when_nobody_captures(cluster):
    from pynode import erpc

    def sample_there(ir):
        import exmc as remote_exmc

        remote_exmc.NUTS.Sampler.sample_chains(ir, 1, num_samples=20, num_warmup=20)

    with recording() as recorded:
        erpc.call(A, sample_there, printing_normal(), timeout=60, capture_output=False)
    assert recorded == []
    from pynode.testing import wait_until

    assert wait_until(lambda: "grad call" in cluster.stdout(A), timeout=10)


def test_prints_of_a_streamed_run_come_home_and_a_detached_jobs_stay(cluster):
    from pynode.testing import wait_until

    session = attach(A)
    before = len(cluster.stdout(A))  # what earlier tests left there

    def written_on_the_node() -> str:
        return cluster.stdout(A)[before:]

    with recording() as recorded:
        batches = list(session.sample(printing_normal(), chains=2, seed=5, stream=True, **SIZES))
        assert batches
        assert wait_until(lambda: any("grad call" in text for _, text in recorded), timeout=10)
    numbers = check_lines(recorded)
    assert len(numbers) == 2 and all(len(lines) > 5 for lines in numbers.values())
    assert "grad call" not in written_on_the_node()

    with recording() as recorded:
        job = session.start(printing_normal(), chains=1, seed=6, name="prints-stay", **SIZES)
        job.result(60)
    assert not any("grad call" in text for _, text in recorded)
    assert wait_until(lambda: "grad call" in written_on_the_node(), timeout=10)


def waiting_normal(gate: str):
    """A 1-d standard normal whose first gradient call prints an unfinished line, flushes it,
    and waits (at most 20 s) until the file ``gate`` exists."""
    import numpy as np

    calls = [0]

    def grad(value):
        import os
        import time

        calls[0] += 1
        if calls[0] == 1:
            print("waiting for the gate...", end="", flush=True)
            deadline = time.monotonic() + 20
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.01)
            print(" open")
        return -np.asarray(value, dtype=float)

    ir = Builder.new_ir()
    return Builder.rv(ir, "x", Dist.Custom, {"logp": lambda v: -0.5 * np.square(v), "grad": grad,
                                             "support": "real"})


def test_a_chain_that_flushes_an_unfinished_line_shows_it_at_once(cluster, tmp_path):
    # print(..., end="", flush=True) in a worker: the caller sees it while the chain runs, as
    # it would from a chain run in the calling thread, not only once a newline or the end comes.
    from pynode import erpc
    from pynode.testing import wait_until

    gate = tmp_path / "gate"

    def sample_there(ir):
        import exmc as remote_exmc

        return len(remote_exmc.NUTS.Sampler.sample_chains(ir, 1, num_samples=5, num_warmup=5))

    with recording() as recorded:
        request = erpc.send_request(A, sample_there, waiting_normal(str(gate)))
        try:
            shown = wait_until(lambda: "waiting for the gate..." in "".join(t for _, t in recorded), timeout=10)
        finally:
            gate.touch()
        assert erpc.receive_response(request, timeout=60) == 1
    assert shown, recorded
    assert "".join(text for _, text in recorded) == "waiting for the gate... open\n"
