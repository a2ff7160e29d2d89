"""A chain's prints in a pool worker show in the calling process (no pynode involved)."""
from __future__ import annotations

import re
import sys

import numpy as np

from exmc.builder import Builder
from exmc.dist import Dist
from exmc.nuts import Sampler
from exmc.nuts.worker import TaskOutput


def custom_normal(grad):
    """A 1-d standard normal with the given gradient function (which may print)."""
    ir = Builder.new_ir()
    return Builder.rv(ir, "x", Dist.Custom, {"logp": lambda v: -0.5 * np.square(v), "grad": grad,
                                             "support": "real"})


def chatty_normal():
    def grad(value):
        print("grad", end=" ")
        print("called", flush=True)
        sys.stderr.write("to stderr\n")
        return -np.asarray(value, dtype=float)

    return custom_normal(grad)


def test_a_workers_prints_are_written_by_the_calling_process(capsys):
    chains = Sampler.sample_chains(chatty_normal(), 2, num_samples=5, num_warmup=5, max_workers=2)
    captured = capsys.readouterr()  # sys.stdout of this process, not file descriptor 1
    calls = captured.out.count("grad called\n")
    assert calls == captured.err.count("to stderr\n") > 10
    assert captured.out == "grad called\n" * calls  # whole lines, nothing interleaved mid-line
    assert len(chains) == 2


class Pipe:
    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)


def test_task_output_sends_whole_lines_and_the_rest_on_flush():
    pipe = Pipe()
    out = TaskOutput(pipe, 1, sys.__stdout__)
    out.write("a")
    out.write("b\nc")
    out.write("d\ne\n")
    assert pipe.sent == [("output", 1, "ab\n"), ("output", 1, "cd\ne\n")]
    out.write("tail")
    out.flush()
    out.flush()
    assert pipe.sent[-1] == ("output", 1, "tail") and len(pipe.sent) == 3
    assert out.encoding == sys.__stdout__.encoding


def threaded_normal(threads=4, lines=50, width=20000):
    """A 1-d standard normal whose first gradient call prints from ``threads`` threads at once
    (long lines: each message spans several socket writes)."""
    calls = [0]

    def grad(value):
        import threading

        calls[0] += 1
        if calls[0] == 1:
            def chatter(k):
                for i in range(lines):
                    print(f"{k}:{i}:" + "x" * width)

            started = [threading.Thread(target=chatter, args=(k,)) for k in range(threads)]
            for thread in started:
                thread.start()
            for thread in started:
                thread.join()
        return -np.asarray(value, dtype=float)

    return custom_normal(grad)


def test_prints_from_a_chains_own_threads_arrive_whole(capsys):
    # Every thread of the worker writes to the one socket: frames must not interleave (they
    # did: UnpicklingError in the parent, naming no chain). Whole lines are not promised: a
    # print() writes its text and its newline apart, so threads mix lines as with any stdout.
    chains = Sampler.sample_chains(threaded_normal(), 1, num_samples=5, num_warmup=5, max_workers=1)
    out = capsys.readouterr().out
    assert out.count("\n") == 4 * 50 and out.count("x") == 4 * 50 * 20000
    assert sorted(re.findall(r"\d+:\d+:", out)) == sorted(f"{k}:{i}:" for k in range(4) for i in range(50))
    assert len(chains) == 1
