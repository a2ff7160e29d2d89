"""Small models with the compiled-model interface, so the sampler is tested without exmc.model.

Registered with cloudpickle by value: pool workers cannot import this test module.
"""
from __future__ import annotations

import os
import sys

import cloudpickle
import numpy as np

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Gaussian:
    """``N(mean, cov)`` on R^d; free variable ``x`` of shape ``(d,)``; also a det ``x_sq = x**2``."""

    def __init__(self, mean, cov) -> None:
        self.mean = np.asarray(mean, dtype=float)
        self.cov = np.asarray(cov, dtype=float)
        self.precision = np.linalg.inv(self.cov)
        self.dim = self.mean.size
        self.free_names = [("x", (self.dim,))]
        self.calls = 0

    def logp_and_grad(self, theta):
        self.calls += 1
        d = theta - self.mean
        g = -(d @ self.precision)
        lp = 0.5 * np.einsum("...i,...i->...", d, g)
        return (float(lp) if np.ndim(lp) == 0 else lp), g

    def to_constrained(self, theta):
        theta = np.asarray(theta)
        return {"x": theta.copy(), "x_sq": theta**2}

    def to_unconstrained(self, values):
        return np.asarray(values["x"], dtype=float).reshape(self.dim)


class LogGamma:
    """``theta = log(x)``, ``x ~ Gamma(shape, 1)``: a skewed target, ``E[theta] = digamma(shape)``,
    ``Var[theta] = trigamma(shape)``. Vector of ``dim`` independent copies."""

    def __init__(self, shape: float = 2.5, dim: int = 2) -> None:
        self.shape = shape
        self.dim = dim
        self.free_names = [("theta", (dim,))]

    def logp_and_grad(self, theta):
        e = np.exp(theta)
        lp = np.sum(self.shape * theta - e, axis=-1)
        return (float(lp) if np.ndim(lp) == 0 else lp), self.shape - e

    def to_constrained(self, theta):
        return {"theta": np.asarray(theta).copy()}

    def to_unconstrained(self, values):
        return np.asarray(values["theta"], dtype=float).reshape(self.dim)


def isotropic(dim: int = 3) -> Gaussian:
    return Gaussian(np.arange(dim, dtype=float), np.eye(dim))


class Failing(Gaussian):
    """A Gaussian whose log-density raises where ``x[0] > threshold`` (sampler must see divergences)."""

    def __init__(self, threshold: float = 1.0) -> None:
        super().__init__([0.0], [[1.0]])
        self.threshold = threshold

    def logp_and_grad(self, theta):
        if np.any(np.asarray(theta)[..., 0] > self.threshold):
            raise FloatingPointError("boom")
        return super().logp_and_grad(theta)


class Dying(Gaussian):
    """Kills its own process (as a crashing C extension would) on the chain started with ``x[0]``
    initialised beyond ``threshold`` is not controllable, so it dies after ``after`` evaluations
    in processes other than ``parent_pid``."""

    def __init__(self, parent_pid: int, after: int = 50) -> None:
        super().__init__([0.0], [[1.0]])
        self.parent_pid = parent_pid
        self.after = after

    def logp_and_grad(self, theta):
        if os.getpid() != self.parent_pid and self.calls >= self.after:
            os._exit(13)
        return super().logp_and_grad(theta)
