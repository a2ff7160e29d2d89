"""Windowed metric adaptation: Stan's ``windowed_adaptation``, ``var_adaptation`` and
``covar_adaptation``.

Warmup is split into an initial fast interval (step size only, ``init_buffer`` = 75 iterations),
a series of slow windows (25, 50, 100, ... iterations; the last one stretched to the end of the
slow phase) at whose end the metric is re-estimated from the window's draws, and a terminal fast
interval (``term_buffer`` = 50). When the three stages do not fit, they are rescaled to
15%/75%/10% of the warmup; below 20 warmup iterations the metric is never adapted.
"""
from __future__ import annotations

import numpy as np

# Stan's default buffers (CmdStan ``init_buffer``, ``term_buffer``, ``window``).
DEFAULT_INIT_BUFFER = 75
DEFAULT_TERM_BUFFER = 50
DEFAULT_BASE_WINDOW = 25
# Below this many warmup iterations Stan performs no metric estimation.
MIN_WARMUP_FOR_METRIC = 20
# Regularization: shrink towards 1e-3 * identity with the weight of 5 pseudo-draws
# (var_adaptation.hpp / covar_adaptation.hpp).
REGULARIZATION_DRAWS = 5.0
REGULARIZATION_SCALE = 1e-3


class WindowSchedule:
    """Stan's window bookkeeping: call :meth:`step` once per warmup iteration.

    Stan omits ``restart()`` in its 15/75/10 fallback branch, which leaves the first window end at
    ``UINT_MAX`` and so never updates the metric there; we restart in every branch so the rescaled
    stages documented by Stan actually take effect.
    """

    def __init__(
        self,
        num_warmup: int,
        init_buffer: int = DEFAULT_INIT_BUFFER,
        term_buffer: int = DEFAULT_TERM_BUFFER,
        base_window: int = DEFAULT_BASE_WINDOW,
    ) -> None:
        self.enabled = num_warmup >= MIN_WARMUP_FOR_METRIC
        if self.enabled and init_buffer + base_window + term_buffer > num_warmup:
            init_buffer = int(0.15 * num_warmup)
            term_buffer = int(0.10 * num_warmup)
            base_window = num_warmup - (init_buffer + term_buffer)
        self.num_warmup = num_warmup
        self.init_buffer = init_buffer
        self.term_buffer = term_buffer
        self.base_window = base_window
        self.counter = 0
        self.window_size = base_window
        self.next_window_end = init_buffer + base_window - 1

    def in_window(self) -> bool:
        """Whether the current iteration's draw feeds the metric estimate."""
        return (
            self.enabled
            and self.init_buffer <= self.counter < self.num_warmup - self.term_buffer
        )

    def at_window_end(self) -> bool:
        """Whether the metric is re-estimated after the current iteration."""
        return self.enabled and self.counter == self.next_window_end and self.counter != self.num_warmup

    def _compute_next_window(self) -> None:
        last = self.num_warmup - self.term_buffer - 1
        if self.next_window_end == last:
            return
        self.window_size *= 2
        self.next_window_end = self.counter + self.window_size
        if self.next_window_end == last:
            return
        # If the window after this one would overrun the slow phase, stretch this one to its end.
        if self.next_window_end + 2 * self.window_size >= self.num_warmup - self.term_buffer:
            self.next_window_end = last

    def step(self) -> tuple[bool, bool]:
        """Advance one iteration; returns ``(collect_draw, update_metric)`` for it."""
        collect = self.in_window()
        update = self.at_window_end()
        if update:
            self._compute_next_window()
        self.counter += 1
        return collect, update


def adaptation_windows(num_warmup: int, **buffers: int) -> list[tuple[int, int]]:
    """The slow windows ``[(first, last), ...]`` (inclusive iteration indices) of a warmup."""
    schedule = WindowSchedule(num_warmup, **buffers)
    windows, start = [], None
    for i in range(num_warmup):
        collect, update = schedule.step()
        if collect and start is None:
            start = i
        if update:
            windows.append((start, i))
            start = None
    return windows


class WelfordVariance:
    """Streaming mean and variance (Welford), Stan's ``welford_var_estimator``."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.restart()

    def restart(self) -> None:
        self.n = 0
        self.mean = np.zeros(self.dim)
        self.m2 = np.zeros(self.dim)

    def add(self, x: np.ndarray) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += (x - self.mean) * delta

    def variance(self) -> np.ndarray:
        """Unbiased sample variance; raises ``ValueError`` with fewer than 2 draws."""
        if self.n < 2:
            raise ValueError(f"variance needs at least 2 draws, got {self.n}")
        return self.m2 / (self.n - 1.0)

    def regularized(self) -> np.ndarray:
        """Stan's shrunk estimate ``n/(n+5)·var + 1e-3·5/(n+5)``."""
        n = float(self.n)
        return (n / (n + REGULARIZATION_DRAWS)) * self.variance() + REGULARIZATION_SCALE * (
            REGULARIZATION_DRAWS / (n + REGULARIZATION_DRAWS)
        )


class WelfordCovariance(WelfordVariance):
    """Streaming covariance, Stan's ``welford_covar_estimator``."""

    def restart(self) -> None:
        self.n = 0
        self.mean = np.zeros(self.dim)
        self.m2 = np.zeros((self.dim, self.dim))

    def add(self, x: np.ndarray) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += np.outer(x - self.mean, delta)

    def regularized(self) -> np.ndarray:
        """Stan's shrunk estimate ``n/(n+5)·cov + 1e-3·5/(n+5)·I``."""
        n = float(self.n)
        cov = (n / (n + REGULARIZATION_DRAWS)) * self.variance()
        shrink = REGULARIZATION_SCALE * (REGULARIZATION_DRAWS / (n + REGULARIZATION_DRAWS))
        cov[np.diag_indices(self.dim)] += shrink
        return 0.5 * (cov + cov.T)  # exact symmetry for the Cholesky factorization
