"""Order parameters: how strongly heads differentiate into synergistic vs redundant groups.

Paper (A) (Zhang et al. 2026, arXiv 2603.29735) describes a "difficulty phase
transition": as tasks get harder, attention heads split more sharply into an abstract
(synergistic) group and a memory (redundant) group, and the split appears abruptly at
some difficulty.  A phase transition needs an *order parameter*, a number that is small
in the undifferentiated phase and large in the differentiated one.  This module gives
several, as pure functions on arrays or tensors, plus the statistics to locate the jump:

* :func:`cluster_separation` of head feature vectors (e.g. per-head functional
  embeddings or ``(synergy, redundancy)`` scores): 2-means, then the standardised
  distance between the two clusters along the axis joining them.
* :func:`bimodality`: Sarle's bimodality coefficient of one score per head.
* :func:`inverted_u_index`: middle-layers-minus-outer-layers contrast of a layer profile
  (the inverted U of paper (B), Urbina-Rodriguez et al. 2026, arXiv 2601.06851).
* :func:`transition_point`: the difficulty at which an order parameter jumps, from a
  logistic fit, with a bootstrap CI; :func:`bootstrap_ci` resamples rows for any statistic.

All functions accept NumPy arrays or torch tensors and return Python floats (or small
dataclasses); computation is in float64 NumPy.  Randomness is explicit (``seed``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from jaxtyping import Float, Real
from scipy.optimize import OptimizeWarning, curve_fit

from synergy_lens.analysis.profile import _finite_array as _to_numpy
from synergy_lens.analysis.profile import inverted_u_index  # re-exported: an order parameter too

__all__ = [
    "BIMODALITY_THRESHOLD",
    "NULL_SEPARATION_1D",
    "TransitionPoint",
    "bimodality",
    "bootstrap_ci",
    "cluster_separation",
    "inverted_u_index",
    "transition_point",
    "two_means",
]

Array: TypeAlias = np.ndarray | torch.Tensor
Values: TypeAlias = Array | Sequence[float] | Sequence[int]
"""An array, a tensor or a plain sequence of floats."""

NULL_SEPARATION_1D = 2 * math.sqrt(2 / math.pi) / math.sqrt(1 - 2 / math.pi)
"""Large-sample :func:`cluster_separation` of one 1-D Gaussian (about 2.65).

2-means splits N(0, 1) at 0; the halves have means +-sqrt(2/pi) and standard deviation
sqrt(1 - 2/pi), so d = 2 sqrt(2/pi) / sqrt(1 - 2/pi).  Clustering always finds two
groups; separations near this value mean "one blob", not "two groups"."""

BIMODALITY_THRESHOLD = 5 / 9
"""Sarle's coefficient of the uniform distribution; larger values suggest bimodality."""


# ----------------------------------------------------------------------------- clustering


def two_means(
    features: Float[Array, "head feature"] | Float[Array, " head"],
    *,
    n_init: int = 10,
    seed: int = 0,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """2-means clustering (Lloyd's algorithm, k-means++ starts, best of ``n_init``).

    Args:
        features: one row per head.
        n_init: restarts; the run with the lowest within-cluster sum of squares wins.
        seed: seeds the k-means++ starts (``numpy.random.default_rng``), so deterministic.
        max_iter: Lloyd iterations per restart.

    Returns:
        ``(labels [head] in {0, 1}, centroids [2, feature])``.  Labels are canonical:
        cluster 0 holds the first head.
    """
    x = _to_numpy(features, "features")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be [head, feature] with >= 2 heads, got shape {x.shape}")
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(n_init):
        first = x[rng.integers(len(x))]
        d2 = ((x - first) ** 2).sum(1)
        second = x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else first
        centroids = np.stack([first, second])
        labels = np.zeros(len(x), dtype=np.int64)
        for it in range(max_iter):
            dist = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
            new = dist.argmin(1)
            if it > 0 and np.array_equal(new, labels):
                break
            labels = new
            for k in range(2):
                if np.any(labels == k):
                    centroids[k] = x[labels == k].mean(0)
        inertia = float(((x - centroids[labels]) ** 2).sum())
        if best is None or inertia < best[0] - 1e-12 * max(1.0, inertia):
            best = (inertia, labels.copy(), centroids.copy())
    assert best is not None
    _, labels, centroids = best
    if labels[0] == 1:
        labels, centroids = 1 - labels, centroids[::-1].copy()
    return labels, centroids


def cluster_separation(
    features: Float[Array, "head feature"] | Float[Array, " head"],
    *,
    metric: Literal["d", "silhouette"] = "d",
    standardize: bool = False,
    n_init: int = 10,
    seed: int = 0,
) -> float:
    """How well heads split into two groups (an order parameter of differentiation).

    Runs :func:`two_means`, then reports

    * ``metric="d"`` (default): the standardised separation along the axis joining the
      two centroids.  Project every head onto that unit vector; d = |difference of the
      two cluster means| / pooled within-cluster standard deviation (denominator
      ``n - 2``).  It is Cohen's d of the split, in units of within-group spread, and does
      not grow with the number of noise features.  Two Gaussian groups whose means differ
      by Delta standard deviations give d ~ Delta once they are well separated; one
      Gaussian gives about :data:`NULL_SEPARATION_1D` (2.65), because 2-means always cuts.
      With many features per head the one-blob value creeps up (about 2.75 for 270 heads
      x 4 features, 3.1 for x 16), so compare against the same statistic on a null
      (e.g. shuffled or Gaussian features of the same shape) rather than a fixed cut.
    * ``metric="silhouette"``: mean silhouette width (Rousseeuw 1987) in [-1, 1];
      about 0.5-0.6 for one 1-D Gaussian, near 1 for tight separated groups.

    Args:
        features: ``[head, feature]`` (a 1-D ``[head]`` is treated as one feature).
        standardize: z-score each feature first (use when features have different units).
        n_init, seed: passed to :func:`two_means`; the result is deterministic.

    Returns:
        The separation; ``inf`` if the clusters differ but have zero spread, 0.0 if all
        heads are identical.
    """
    x = _to_numpy(features, "features")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"features must be [head, feature] with >= 4 heads, got shape {x.shape}")
    if standardize:
        sd = x.std(0)
        x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
    labels, centroids = two_means(x, n_init=n_init, seed=seed)
    if metric == "d":
        axis = centroids[1] - centroids[0]
        norm = float(np.linalg.norm(axis))
        if norm == 0:
            return 0.0
        z = x @ (axis / norm)
        gaps = [z[labels == k] - z[labels == k].mean() for k in range(2)]
        pooled = math.sqrt(sum(float((g**2).sum()) for g in gaps) / (len(z) - 2))
        between = abs(float(z[labels == 1].mean() - z[labels == 0].mean()))
        return between / pooled if pooled > 0 else math.inf
    if metric == "silhouette":
        return _silhouette(x, labels)
    raise ValueError(f"unknown metric {metric!r}; use 'd' or 'silhouette'")


def _silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    dist = np.sqrt(((x[:, None, :] - x[None]) ** 2).sum(-1))
    widths = np.zeros(len(x))
    for i in range(len(x)):
        own = labels == labels[i]
        if own.sum() == 1:
            continue  # singleton: silhouette 0 by convention
        a = dist[i, own].sum() / (own.sum() - 1)
        b = dist[i, ~own].mean()
        widths[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return float(widths.mean())


# ----------------------------------------------------------------------------- bimodality


def bimodality(scores: Float[Array, " head"] | Sequence[float]) -> float:
    """Sarle's bimodality coefficient BC = (g^2 + 1) / (k + 3 (n-1)^2 / ((n-2)(n-3))).

    ``g`` is the bias-corrected sample skewness G1 = g1 sqrt(n(n-1)) / (n-2) and ``k``
    the bias-corrected sample excess kurtosis G2 = ((n+1) g2 + 6)(n-1) / ((n-2)(n-3)),
    with g1 = m3 / m2^1.5 and g2 = m4 / m2^2 - 3 from the biased central moments m_r
    (the adjusted Fisher-Pearson estimators; SAS, and ``scipy.stats.skew/kurtosis`` with
    ``bias=False``).  The correction term makes BC the large-sample (skew^2 + 1) /
    kurtosis.  Reference values: uniform 5/9 (:data:`BIMODALITY_THRESHOLD`), normal 1/3,
    two equal point masses 1; above 5/9 suggests two modes (or strong skew: BC is a
    screening statistic, confirm with :func:`cluster_separation`).

    Args:
        scores: one number per head, ``n >= 4``.

    Returns:
        BC, or NaN if all scores are equal.
    """
    x = _to_numpy(scores, "scores").ravel()
    n = x.size
    if n < 4:
        raise ValueError(f"bimodality needs at least 4 scores, got {n}")
    dev = x - x.mean()
    m2 = float((dev**2).mean())
    if m2 <= 1e-300:
        return math.nan
    g1 = float((dev**3).mean()) / m2**1.5
    g2 = float((dev**4).mean()) / m2**2 - 3.0
    skew = g1 * math.sqrt(n * (n - 1)) / (n - 2)
    excess = ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3))
    return (skew**2 + 1) / (excess + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


def bootstrap_ci(
    statistic_fn: Callable[[Any], float],
    samples: Array | Sequence[Any],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval, resampling rows (the first axis).

    Draws ``n_boot`` resamples of the rows of ``samples`` with replacement
    (``numpy.random.default_rng(seed)``), evaluates ``statistic_fn`` on each (it gets
    the same type: array, tensor or list), and returns the ``alpha/2`` and
    ``1 - alpha/2`` percentiles (Efron & Tibshirani 1993, ch. 13).  Rows should be the
    independent units, e.g. prompts: ``bootstrap_ci(lambda rows: inverted_u_index(
    rows.mean(0)), per_prompt_profiles)``.
    """
    n = len(samples)
    if n < 2:
        raise ValueError(f"bootstrap needs at least 2 rows, got {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        if isinstance(samples, torch.Tensor):
            resample: Any = samples[torch.from_numpy(idx)]
        elif isinstance(samples, np.ndarray):
            resample = samples[idx]
        else:
            resample = [samples[i] for i in idx]
        stats[b] = float(statistic_fn(resample))
    low, high = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


# ----------------------------------------------------------------------------- transition


@dataclass(frozen=True)
class TransitionPoint:
    """Where an order parameter jumps along the difficulty axis.

    Attributes:
        estimate: difficulty level of the jump (logistic midpoint, or the midpoint
            between the two consecutive levels with the largest change).
        method: ``"logistic"`` or ``"largest_jump"`` (the one that produced ``estimate``).
        ci: percentile bootstrap CI of the estimate, if bootstrap curves were given.
        params: logistic ``(low, high, midpoint, slope)`` when the fit was used.
    """

    estimate: float
    method: Literal["logistic", "largest_jump"]
    ci: tuple[float, float] | None = None
    params: tuple[float, float, float, float] | None = None


def _logistic(x: np.ndarray, low: float, high: float, mid: float, slope: float) -> np.ndarray:
    return low + (high - low) / (1.0 + np.exp(-slope * (x - mid)))


def _largest_jump(x: np.ndarray, y: np.ndarray) -> float:
    i = int(np.argmax(np.abs(np.diff(y))))
    return float((x[i] + x[i + 1]) / 2)


def _fit_transition(
    x: np.ndarray, y: np.ndarray, method: str
) -> tuple[float, Literal["logistic", "largest_jump"], tuple[float, float, float, float] | None]:
    if method != "jump" and x.size >= 4 and np.ptp(y) > 0:
        span = float(x[-1] - x[0])
        p0 = [float(y[0]), float(y[-1]), _largest_jump(x, y), 4.0 / span]
        bounds = (
            [-np.inf, -np.inf, float(x[0]), 1e-3 / span],
            [np.inf, np.inf, float(x[-1]), 1e3 / span],
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                params, _ = curve_fit(_logistic, x, y, p0=p0, bounds=bounds, maxfev=10_000)
            if np.all(np.isfinite(params)):
                low, high, mid, slope = (float(v) for v in params)
                return mid, "logistic", (low, high, mid, slope)
        except (RuntimeError, ValueError, OptimizeWarning):
            pass
        if method == "logistic":
            raise RuntimeError(
                "logistic fit failed; use method='auto' to fall back to the largest jump"
            )
    return _largest_jump(x, y), "largest_jump", None


def transition_point(
    levels: Real[Array, " level"] | Sequence[int] | Sequence[float],
    values: Float[Array, " level"] | Sequence[float],
    bootstrap_values: Float[Array, "boot level"] | None = None,
    *,
    method: Literal["auto", "logistic", "jump"] = "auto",
    alpha: float = 0.05,
) -> TransitionPoint:
    """Estimate the difficulty at which an order parameter (or accuracy) jumps.

    Paper (A) reports that head differentiation changes abruptly with difficulty; this
    locates the change.  With ``method="auto"`` it fits a logistic
    ``low + (high - low) / (1 + exp(-slope (level - midpoint)))`` by least squares
    (``scipy.optimize.curve_fit``; ``slope > 0``, ``midpoint`` within the level range,
    ``low > high`` for a drop) and reports the midpoint; when there are fewer than 4
    levels, the curve is flat, or the fit fails, it falls back to the midpoint between
    the two consecutive levels with the largest absolute change (``method="jump"``
    always uses that).

    Args:
        levels: difficulty levels, strictly increasing.
        values: the order parameter at each level.
        bootstrap_values: optional ``[boot, level]`` bootstrap replicates of ``values``
            (e.g. the order parameter recomputed on prompts resampled within each level);
            the same estimator on each replicate gives a percentile CI.
        method: ``"auto"``, ``"logistic"`` (raise if the fit fails) or ``"jump"``.
        alpha: CI level, 0.05 for a 95% interval.
    """
    x = _to_numpy(levels, "levels").ravel()
    y = _to_numpy(values, "values").ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"levels and values need the same length >= 2, got {x.size} and {y.size}")
    if np.any(np.diff(x) <= 0):
        raise ValueError("levels must be strictly increasing")
    if method not in ("auto", "logistic", "jump"):
        raise ValueError(f"unknown method {method!r}; use 'auto', 'logistic' or 'jump'")
    estimate, used, params = _fit_transition(x, y, method)
    ci = None
    if bootstrap_values is not None:
        boots = _to_numpy(bootstrap_values, "bootstrap_values")
        if boots.ndim != 2 or boots.shape[1] != x.size:
            raise ValueError(
                f"bootstrap_values must be [boot, level] with {x.size} levels, got {boots.shape}"
            )
        fit_method = "auto" if method == "logistic" else method
        estimates = np.array([_fit_transition(x, row, fit_method)[0] for row in boots])
        low, high = np.percentile(estimates, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        ci = (float(low), float(high))
    return TransitionPoint(estimate=estimate, method=used, ci=ci, params=params)
