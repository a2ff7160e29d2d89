"""A chain's prints in a pool worker show in the calling process (no pynode involved)."""
from __future__ import annotations

import sys

import numpy as np

from exmc.builder import Builder
from exmc.dist import Dist
from exmc.nuts import Sampler
from exmc.nuts.worker import TaskOutput


def chatty_normal():
    def grad(value):
        print("grad", end=" ")
        print("called", flush=True)
        sys.stderr.write("to stderr\n")
        return -np.asarray(value, dtype=float)

    ir = Builder.new_ir()
    return Builder.rv(ir, "x", Dist.Custom, {"logp": lambda v: -0.5 * np.square(v), "grad": grad,
                                             "support": "real"})


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
