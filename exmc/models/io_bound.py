"""A model whose gradient waits like I/O: for measuring distribution, not arithmetic.

``io_bound_normal(delay)`` is a standard normal in ``dim`` dimensions written as a ``Custom``
density whose gradient sleeps ``delay`` seconds per evaluation (releasing the CPU, as a call
into a simulator, a database or a GPU would). On a 2-core box this is how the concurrency of a
run over several nodes can be measured: the chains' wall time is their sleeping, so 6 workers
on 3 nodes can overlap 6 chains although the machine has 2 cores. Used by
``bench/cluster_bench.py`` and the cluster-sampling tests.

``failing_normal(after)`` raises ``ZeroDivisionError`` from its gradient once it has been called
``after`` times in a process: a domain error, so a rejected point (a divergence) inside a
trajectory. ``buggy_normal(after)`` raises ``KeyError`` instead: a bug in a user's Custom logp,
which stops the run as :class:`exmc.nuts.ModelError`.
"""
from __future__ import annotations

import time

import numpy as np

from exmc.builder import Builder
from exmc.dist import Dist

#: The benchmark's delay per gradient evaluation (1 ms).
DEFAULT_DELAY = 0.001


def _logp(value):
    return -0.5 * np.square(value)


def _sleepy_grad(delay):
    def grad(value):
        time.sleep(delay)
        return -np.asarray(value, dtype=float)

    return grad


def io_bound_normal(delay: float = DEFAULT_DELAY, dim: int = 2):
    """The IR of a ``dim``-dimensional standard normal whose gradient sleeps ``delay`` s."""
    ir = Builder.new_ir()
    return Builder.rv(ir, "x", Dist.Custom, {"logp": _logp, "grad": _sleepy_grad(delay), "support": "real"},
                      shape=(dim,))


def _failing_grad(after, error=ZeroDivisionError):
    calls = [0]

    def grad(value):
        calls[0] += 1
        if calls[0] > after:
            raise error(f"bug in a custom gradient (call {calls[0]})")
        return -np.asarray(value, dtype=float)

    return grad


def failing_normal(after: int = 50):
    """A 1-dimensional standard normal whose gradient raises after ``after`` calls per process."""
    ir = Builder.new_ir()
    return Builder.rv(ir, "x", Dist.Custom, {"logp": _logp, "grad": _failing_grad(after), "support": "real"})


def buggy_normal(after: int = 50):
    """:func:`failing_normal` whose gradient raises ``KeyError`` (not a domain error) instead."""
    ir = Builder.new_ir()
    return Builder.rv(ir, "x", Dist.Custom, {"logp": _logp, "grad": _failing_grad(after, KeyError), "support": "real"})
