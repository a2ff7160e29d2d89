"""The automatic metric (``dense_mass="auto"``, the default): Stan's diagonal metric unless a
warmup window's draws show strong correlations, then a diagonal metric with a low-rank correction.

Why: with a diagonal metric the leapfrog step size is limited by the posterior's narrowest
direction and a U-turn takes about ``sqrt(κ)`` steps, ``κ`` the condition number of the posterior
correlation matrix. Regressions on correlated or uncentred predictors (posteriordb's diamonds,
kilpisjarvi, earnings) have ``κ`` of 1e4-1e5: trees of 1000+ leapfrog steps where a metric that
knows the correlations needs tens. Well-conditioned posteriors gain nothing from a richer metric
and its estimate only adds noise, so for them nothing changes: Stan's Welford variance, Stan's
regularisation, the same draws bit for bit.

The rule, at the end of every slow window (Stan's schedule, :mod:`exmc.nuts.adaptation`):

1. Standardise the window's ``n`` draws by their own means and sds and take the eigenvalues ``λ``
   and eigenvectors of their correlation matrix ``R``. Under a diagonal metric the posterior looks
   like ``N(0, R)``: a ``λ`` far from 1 is a direction the metric gets wrong.
2. Keep only eigenvalues clearly outside what sampling noise gives for an uncorrelated posterior:
   above ``max(c, m (1 + √(d/n))²)`` or below ``min(1/c, (1 - √(d/n))² / m)`` — the
   Marchenko-Pastur edges of a ``d × d`` sample correlation of ``n`` independent draws, widened by
   the margin ``m`` (window draws are autocorrelated) — and ``c = 2`` as nutpie does (directions
   whose variance is within a factor 2 of the diagonal's are left alone; Seyboldt, Carlson and
   Carpenter's low-rank adaptation). With ``n ≤ d`` small eigenvalues are rank deficiency, not
   information, and only large ones are kept.
3. Switch to the corrected metric when the kept eigenvalues span a condition number of at least
   :data:`SWITCH_CONDITION` (100: a pair of parameters correlated at 0.99 gives 199, at 0.9 gives
   19), i.e. when the diagonal metric would take about 10× the leapfrog steps. Otherwise the
   window's metric is Stan's diagonal estimate.

The corrected metric is ``M⁻¹ = S (I + U (Λ' - I) Uᵀ) S`` (:class:`~exmc.nuts.metric.LowRankMetric`)
with ``S`` the window draws' own sds (the scale the correlations were measured in), ``U`` the kept eigenvectors and ``Λ'`` their eigenvalues
shrunk towards 1 in log scale with Stan's weight of 5 pseudo-draws (``λ^(n/(n+5))``). Each window decides afresh
from its own draws, so a chain can return to the diagonal metric. Everything depends only on the
chain's own draws: pool, sequential and vectorized runs of a seed choose alike.

Up to :data:`AUTO_MAX_DIM` coordinates (the window's draws are kept, ``n × d`` floats, and one
``d × d`` eigendecomposition is done per window); larger models keep Stan's diagonal metric.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from exmc.nuts.adaptation import REGULARIZATION_DRAWS, WelfordVariance
from exmc.nuts.metric import DiagonalMetric, LowRankMetric

#: Above this dimension the automatic choice keeps Stan's diagonal metric (memory n × d per
#: window, one d × d eigendecomposition per window end: ~0.1 s at d = 1000 here).
AUTO_MAX_DIM = 1000
#: Switch when the kept eigenvalues span at least this condition number (see the module notes).
SWITCH_CONDITION = 100.0
#: nutpie's eigenvalue band: directions whose variance is within this factor of 1 stay unchanged.
EIGEN_BAND = 2.0
#: Widening of the Marchenko-Pastur noise edges (autocorrelated window draws).
NOISE_MARGIN = 2.0
#: A window needs more draws than this multiple of the dimension for the estimate (below it the
#: two sample covariances are near singular and the window keeps Stan's diagonal estimate).
MIN_DRAWS_PER_DIM = 1.5
#: For a Gaussian the Fisher scale ``(sd(x) / sd(g))^½`` equals the posterior sd, and the draws'
#: own sd lies below it by the factor the chain has not yet explored (100 in a ridge barely
#: entered). A window whose scale and draws' sd differ by more than this factor in any coordinate
#: is not near-Gaussian there (a chain stuck where the gradient explodes: posteriordb's arma11
#: early in warmup had gradients of 1e105 and scales of 1e-55, a metric no step size fits), and
#: keeps Stan's regularised diagonal estimate.
MAX_SCALE_DISAGREEMENT = 1e4
#: Eigenvalues of the sample covariances are clipped at this fraction of the largest.
EIGEN_FLOOR = 1e-12
#: ... and never fewer draws than this.
MIN_DRAWS = 8
#: An early switch is considered after a transition of at least this many leapfrog steps (a tree
#: of depth 8: the diagonal metric is already costing hundreds of gradients per draw) ...
PROBE_MIN_STEPS = 256
#: ... from the latest ``PROBE_DRAWS_PER_DIM * dim + 1`` draws (at least ``MIN_DRAWS``) since the
#: last metric change: the early draws of a chain still on its way to the typical set are
#: forgotten, and a low-rank metric that still leaves trees this long is re-estimated.
PROBE_DRAWS_PER_DIM = 3.0
PROBE_MAX_DRAWS = 500


class WindowChoice(NamedTuple):
    """One metric decision (reported in ``Trace.info["metric_windows"]``).

    ``iteration``: the warmup iteration after which it was made; ``draws``: the draws it was
    estimated from; ``condition``: condition number of the kept eigenvalues (1.0 when none is
    kept); ``rank``: number of kept directions; ``kind``: the metric it produced, ``"diag"``
    (Stan's estimate), ``"lowrank"`` (at a window end) or ``"lowrank-early"`` (an early switch,
    see :meth:`AutoMetricEstimator.probe`), or ``"kept"`` (a window too short to estimate
    from kept the low-rank metric in use).
    """

    iteration: int
    draws: int
    condition: float
    rank: int
    kind: str


def _sqrt_and_inverse_sqrt(matrix: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """``(A^½, A^-½)`` of a symmetric positive semi-definite matrix, eigenvalues clipped at
    ``floor`` times the largest (a singular estimate stays invertible)."""
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    values = np.maximum(values, floor * max(float(values[-1]), np.finfo(float).tiny))
    root = np.sqrt(values)
    return (vectors * root) @ vectors.T, (vectors / root) @ vectors.T


def fisher_directions(draws: np.ndarray, grads: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(scale, values, vectors, condition)`` from a window's draws and the gradients there.

    ``scale`` is nutpie's diagonal ``(sd(x) / sd(g))^½``; in the coordinates ``x / scale`` the
    covariance estimate is the geometric mean ``A # B⁻¹`` of the draws' covariance ``A`` and the
    inverse of the gradients' covariance ``B`` (the metric minimising the Fisher divergence for a
    Gaussian target: for ``N(μ, Σ)`` the gradient is ``-Σ⁻¹(x - μ)``, so ``B = Σ⁻¹ A Σ⁻¹`` and
    ``A # B⁻¹ = Σ`` whatever the draws' spread — a chain that has barely moved in a narrow
    ridge still shows the ridge in its gradients). ``values`` and ``vectors`` are its eigenpairs
    clearly outside sampling noise (module notes, step 2), shrunk towards 1 (``λ^(n/(n+5))``);
    ``condition`` is the condition number they span with 1 (``1.0`` when none is kept).

    ``draws`` and ``grads`` are ``(n, d)`` with ``n > d``; a coordinate whose draws or gradients
    do not vary, or whose scale and draws' sd differ by more than :data:`MAX_SCALE_DISAGREEMENT`,
    gives no directions (and a unit scale)."""
    n, d = draws.shape
    x = draws - draws.mean(axis=0)
    g = grads - grads.mean(axis=0)
    var_x = np.einsum("ij,ij->j", x, x) / (n - 1.0)
    var_g = np.einsum("ij,ij->j", g, g) / (n - 1.0)
    if not (np.all(var_x > 0) and np.all(var_g > 0) and np.all(np.isfinite(var_x)) and np.all(np.isfinite(var_g))):
        return np.ones(d), np.zeros(0), np.zeros((d, 0)), 1.0
    scale = (var_x / var_g) ** 0.25
    disagreement = scale / np.sqrt(var_x)
    if not np.all((disagreement < MAX_SCALE_DISAGREEMENT) & (disagreement > 1.0 / MAX_SCALE_DISAGREEMENT)):
        return np.ones(d), np.zeros(0), np.zeros((d, 0)), 1.0
    x = x / scale
    g = g * scale
    a = (x.T @ x) / (n - 1.0)
    b = (g.T @ g) / (n - 1.0)
    a_half, a_inv_half = _sqrt_and_inverse_sqrt(a, EIGEN_FLOOR)
    _, c_inv_half = _sqrt_and_inverse_sqrt(a_half @ b @ a_half, EIGEN_FLOOR)
    sigma = a_half @ c_inv_half @ a_half  # A # B⁻¹
    values, vectors = np.linalg.eigh(0.5 * (sigma + sigma.T))
    ratio = math.sqrt(d / n)
    upper = max(EIGEN_BAND, NOISE_MARGIN * (1.0 + ratio) ** 2)
    lower = min(1.0 / EIGEN_BAND, (1.0 - ratio) ** 2 / NOISE_MARGIN)
    keep = ((values > upper) | (values < lower)) & (values > 0.0)
    if not np.any(keep):
        return scale, np.zeros(0), np.zeros((d, 0)), 1.0
    kept = np.exp((n / (n + REGULARIZATION_DRAWS)) * np.log(values[keep]))
    condition = max(float(kept.max()), 1.0) / min(float(kept.min()), 1.0)
    return scale, kept, vectors[:, keep], condition


class AutoMetricEstimator:
    """Stan's Welford variance plus the draws and gradients the automatic choice needs.

    Per warmup iteration: :meth:`add_recent` always, :meth:`add` for window draws (Stan's
    schedule), then at a window end :meth:`metric` and :meth:`restart`; between window ends
    :meth:`probe` may switch early. State, owned by one chain's warmup: ``_draws``/``_grads`` the
    current window's draws (cleared by ``restart``); ``_recent_*`` every warmup draw since the last
    metric change (cleared whenever a metric is produced); ``lowrank`` whether the metric in use is
    a low-rank one this estimator produced; ``decisions`` one :class:`WindowChoice` per metric
    produced.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.variance = WelfordVariance(dim)
        self.track = 2 <= dim <= AUTO_MAX_DIM
        self._draws: list[np.ndarray] = []
        self._grads: list[np.ndarray] = []
        self._recent_draws: list[np.ndarray] = []
        self._recent_grads: list[np.ndarray] = []
        self.lowrank = False
        self.decisions: list[WindowChoice] = []

    def restart(self) -> None:
        self.variance.restart()
        self._draws, self._grads = [], []

    def add(self, q: np.ndarray, grad: np.ndarray) -> None:
        """A window draw (Stan's schedule) and the gradient there."""
        self.variance.add(q)
        if self.track:
            self._draws.append(q)  # the sampler never writes into position or gradient arrays
            self._grads.append(grad)

    def add_recent(self, q: np.ndarray, grad: np.ndarray) -> None:
        """Every warmup draw (windows or not), for :meth:`probe`."""
        if self.track:
            self._recent_draws.append(q)
            self._recent_grads.append(grad)
            if len(self._recent_draws) > PROBE_MAX_DRAWS:
                del self._recent_draws[0], self._recent_grads[0]

    def regularized(self) -> np.ndarray:
        """Stan's regularised diagonal estimate (see :class:`WelfordVariance`)."""
        return self.variance.regularized()

    def _enough(self, n: int) -> bool:
        return self.track and n > MIN_DRAWS_PER_DIM * self.dim and n >= MIN_DRAWS

    def _lowrank(self, draws, grads, iteration: int, kind: str) -> tuple[LowRankMetric | None, WindowChoice]:
        scale, values, vectors, condition = fisher_directions(np.array(draws), np.array(grads))
        choice = WindowChoice(iteration, len(draws), condition, int(values.shape[0]), kind)
        if condition >= SWITCH_CONDITION:
            # The scale must be the one the directions were measured in: Stan's regularised
            # variance adds 1e-3 * 5/(n+5) to every variance, which for a coordinate of sd 0.01
            # correlated at 0.99999 (kilpisjarvi) would undo the correction it is combined with.
            return LowRankMetric(scale, vectors, values), choice
        return None, choice

    def _produced(self, metric, choice: WindowChoice):
        self.decisions.append(choice)
        self.lowrank = isinstance(metric, LowRankMetric)
        self._recent_draws, self._recent_grads = [], []
        return metric

    def probe(self, iteration: int, n_steps: int) -> LowRankMetric | None:
        """An early switch between window ends: when the last transition took at least
        :data:`PROBE_MIN_STEPS` leapfrog steps and the latest draws since the last metric change
        show strong correlations, the low-rank metric now (else ``None``; nothing changes, so a
        well-conditioned chain stays on Stan's path).

        Why: Stan's first metric comes after the 75-iteration initial buffer and a 25-draw window,
        all under the unit metric; on kilpisjarvi (``max_treedepth`` 15) those 100 iterations
        took 2¹⁵ steps each, 95 % of the chain's gradients. The gradients reveal the correlations
        long before the draws have explored them (see :func:`fisher_directions`)."""
        if n_steps < PROBE_MIN_STEPS:  # the common case, first: this runs every warmup iteration
            return None
        latest = max(MIN_DRAWS, int(PROBE_DRAWS_PER_DIM * self.dim) + 1)
        if len(self._recent_draws) < latest or not self._enough(latest):
            return None
        metric, choice = self._lowrank(self._recent_draws[-latest:], self._recent_grads[-latest:], iteration,
                                       "lowrank-early")
        return None if metric is None else self._produced(metric, choice)

    def metric(self, inv_diag: np.ndarray, current, iteration: int):
        """The metric at a window end, from Stan's diagonal estimate ``inv_diag`` and the window's
        draws (module notes). A window too short for the estimate keeps a low-rank metric in use
        (re-estimated from every draw since it was set, when there are enough) instead of
        falling back to the diagonal one."""
        n = len(self._draws)
        if self._enough(n):
            metric, choice = self._lowrank(self._draws, self._grads, iteration, "lowrank")
            if metric is not None:
                return self._produced(metric, choice)
            return self._produced(DiagonalMetric(inv_diag), choice._replace(kind="diag"))
        if self.lowrank:
            if self._enough(len(self._recent_draws)):
                metric, choice = self._lowrank(self._recent_draws, self._recent_grads, iteration, "lowrank")
                if metric is not None:
                    return self._produced(metric, choice)
            return self._produced(current, WindowChoice(iteration, n, float("nan"), current.rank, "kept"))
        return self._produced(DiagonalMetric(inv_diag), WindowChoice(iteration, n, 1.0, 0, "diag"))
