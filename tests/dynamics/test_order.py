"""Order parameters against planted truth: known clusters, known distributions, analytic
values and a planted logistic transition."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from synergy_lens.dynamics import order

N_HEADS = 270  # SmolLM2-135M: 30 layers x 9 heads

# ----------------------------------------------------------------------------- clusters


def two_groups(delta: float, seed: int = 0, p: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Two isotropic unit-variance Gaussian groups whose means differ by delta along axis 0."""
    rng = np.random.default_rng(seed)
    labels = np.arange(N_HEADS) % 2
    x = rng.normal(size=(N_HEADS, p))
    x[:, 0] += delta * labels
    return x, labels


def test_two_means_recovers_planted_groups() -> None:
    x, truth = two_groups(8.0)
    labels, centroids = order.two_means(x, seed=0)
    assert labels[0] == 0  # canonical labelling
    assert np.array_equal(labels, truth)  # 8 sd apart: no head misassigned
    np.testing.assert_allclose(centroids[1, 0] - centroids[0, 0], 8.0, atol=0.3)


def test_separation_high_for_separated_groups_low_for_one_blob() -> None:
    # Planted: d ~ delta once groups are well separated (within-group sd = 1).
    for delta in (6.0, 8.0):
        d = order.cluster_separation(two_groups(delta, seed=1)[0])
        assert abs(d - delta) < 0.1 * delta, (delta, d)
    # One Gaussian blob: 2-means still cuts it, giving about the 1-D null 2.65.
    rng = np.random.default_rng(2)
    for p in (1, 4):
        d_null = order.cluster_separation(rng.normal(size=(N_HEADS, p)))
        assert d_null < 3.3, (p, d_null)
        assert d_null > 2.3
    # Silhouette, the alternative metric, orders them the same way.
    assert order.cluster_separation(two_groups(8.0)[0], metric="silhouette") > 0.6
    assert order.cluster_separation(rng.normal(size=(N_HEADS, 4)), metric="silhouette") < 0.3


def test_separation_null_matches_analytic_value() -> None:
    x = np.random.default_rng(3).normal(size=5000)
    assert abs(order.NULL_SEPARATION_1D - 2.6472) < 1e-4
    assert order.cluster_separation(x, n_init=2) == pytest.approx(order.NULL_SEPARATION_1D, abs=0.1)


def test_separation_grows_with_planted_distance() -> None:
    ds = [order.cluster_separation(two_groups(delta, seed=4)[0]) for delta in (0.0, 3.0, 5.0, 7.0, 9.0)]
    assert all(b > a for a, b in itertools.pairwise(ds)), ds


def test_separation_deterministic_and_invariant() -> None:
    x, _ = two_groups(3.0, seed=5)
    d = order.cluster_separation(x, seed=7)
    assert order.cluster_separation(x, seed=7) == d
    assert order.cluster_separation(torch.tensor(x, dtype=torch.float32), seed=7) == pytest.approx(
        d, rel=1e-5
    )
    assert order.cluster_separation(10.0 * x + 3.0, seed=7) == pytest.approx(d, rel=1e-9)
    scales = np.array([1.0, 1e3, 1e-2, 5.0])
    assert order.cluster_separation(x * scales, standardize=True) == pytest.approx(
        order.cluster_separation(x, standardize=True), rel=1e-9
    )
    assert order.cluster_separation(np.ones((10, 3))) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        order.cluster_separation(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match=">= 4 heads"):
        order.cluster_separation(np.zeros((3, 2)))


# ----------------------------------------------------------------------------- bimodality


def test_bimodality_hand_computed_value() -> None:
    # Two equal point masses, n = 6: g1 = 0, g2 = -2, G2 = ((7)(-2) + 6)(5)/(4*3) = -10/3,
    # correction 3 * 25 / 12 = 25/4, so BC = 1 / (25/4 - 10/3) = 12/35.
    assert order.bimodality([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]) == pytest.approx(12 / 35, abs=1e-12)


def test_bimodality_matches_scipy_bias_corrected_moments() -> None:
    x = np.random.default_rng(0).gamma(2.0, size=57)
    n = x.size
    expected = (stats.skew(x, bias=False) ** 2 + 1) / (
        stats.kurtosis(x, bias=False) + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))
    )
    assert order.bimodality(torch.tensor(x)) == pytest.approx(expected, rel=1e-10)


def test_bimodality_of_known_distributions() -> None:
    rng = np.random.default_rng(1)
    # Mixture of N(-3, 1) and N(3, 1): kurtosis 138/100, so BC = 1/1.38 = 0.725.
    mixture = np.concatenate([rng.normal(-3, 1, 1000), rng.normal(3, 1, 1000)])
    assert order.bimodality(mixture) > order.BIMODALITY_THRESHOLD
    assert order.bimodality(mixture) == pytest.approx(1 / 1.38, abs=0.03)
    normal = rng.normal(size=2000)
    assert order.bimodality(normal) < order.BIMODALITY_THRESHOLD
    assert order.bimodality(normal) == pytest.approx(1 / 3, abs=0.03)  # population value 1/3
    # Uniform is the threshold itself: 1 / (3 - 1.2) = 5/9.
    assert order.bimodality(rng.uniform(size=20000)) == pytest.approx(5 / 9, abs=0.01)
    assert math.isnan(order.bimodality(np.ones(10)))
    with pytest.raises(ValueError, match="at least 4"):
        order.bimodality([1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------- inverted U


def test_inverted_u_index_analytic() -> None:
    depth = np.linspace(0, 1, 7)  # middle third: 2/6, 3/6, 4/6
    profile = np.array([0.0, 1.0, 3.0, 4.0, 3.0, 1.0, 0.0])
    # middle mean 10/3, outer mean 2/4 -> 17/6
    assert order.inverted_u_index(profile, depth) == pytest.approx(17 / 6, abs=1e-12)
    assert order.inverted_u_index(profile) == pytest.approx(17 / 6, abs=1e-12)  # default depth
    assert order.inverted_u_index(profile, depth, minmax=True) == pytest.approx(17 / 24, abs=1e-12)
    assert order.inverted_u_index(-profile, depth) == pytest.approx(-17 / 6, abs=1e-12)  # a U
    assert order.inverted_u_index(depth, depth) == pytest.approx(0.0, abs=1e-12)  # monotone
    assert order.inverted_u_index(torch.ones(7), minmax=True) == 0.0
    # TypeError: what jaxtyping's runtime shape check raises when it is switched on.
    with pytest.raises((ValueError, TypeError), match=r"same length|layer"):
        order.inverted_u_index(profile, depth[:-1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        order.inverted_u_index(profile, depth * 2)


def test_bootstrap_ci_covers_known_mean() -> None:
    rng = np.random.default_rng(0)
    covered, widths = 0, []
    for rep in range(40):
        sample = rng.normal(2.0, 1.0, size=60)
        low, high = order.bootstrap_ci(np.mean, sample, n_boot=300, seed=rep)
        covered += low <= 2.0 <= high
        widths.append(high - low)
    assert 34 <= covered <= 40  # nominal 95%: 38 of 40 expected
    # Mean width ~ 2 * 1.96 / sqrt(60) = 0.506 (a 90% interval would be 0.425).
    assert np.mean(widths) == pytest.approx(2 * 1.96 / math.sqrt(60), rel=0.06)


def test_bootstrap_ci_of_inverted_u_over_prompts() -> None:
    rng = np.random.default_rng(1)
    profile = np.array([0.0, 1.0, 3.0, 4.0, 3.0, 1.0, 0.0])
    per_prompt = profile + rng.normal(0, 1.0, size=(40, 7))  # rows = prompts

    def stat(rows: np.ndarray | torch.Tensor) -> float:
        return order.inverted_u_index(rows.mean(0))

    low, high = order.bootstrap_ci(stat, per_prompt, n_boot=500, seed=0)
    assert low < 17 / 6 < high
    assert order.bootstrap_ci(stat, per_prompt, n_boot=500, seed=0) == (low, high)  # seeded
    low_t, high_t = order.bootstrap_ci(stat, torch.tensor(per_prompt), n_boot=500, seed=0)
    assert (low_t, high_t) == pytest.approx((low, high), rel=1e-12)
    low_l, _ = order.bootstrap_ci(lambda rows: float(np.mean(rows)), list(per_prompt[:, 0]), n_boot=50)
    assert np.isfinite(low_l)


# ----------------------------------------------------------------------------- transition

LEVELS = np.arange(1, 9, dtype=float)


def logistic(x: np.ndarray, low: float, high: float, mid: float, slope: float) -> np.ndarray:
    return low + (high - low) / (1 + np.exp(-slope * (x - mid)))


@pytest.mark.parametrize(
    ("low", "high", "mid", "slope"), [(0.2, 0.8, 4.3, 2.0), (0.9, 0.1, 5.6, 1.5)]
)
def test_transition_point_recovers_planted_midpoint(
    low: float, high: float, mid: float, slope: float
) -> None:
    rng = np.random.default_rng(0)
    clean = logistic(LEVELS, low, high, mid, slope)
    values = clean + rng.normal(0, 0.02, LEVELS.size)
    boots = values + rng.normal(0, 0.02, (100, LEVELS.size))
    tp = order.transition_point(LEVELS, values, boots)
    assert tp.method == "logistic"
    assert tp.estimate == pytest.approx(mid, abs=0.25)
    assert tp.params is not None and tp.params[:2] == pytest.approx((low, high), abs=0.05)
    assert tp.ci is not None and tp.ci[0] < mid < tp.ci[1]
    assert tp.ci[1] - tp.ci[0] < 1.0
    # Noise-free data: the fit is exact.
    assert order.transition_point(LEVELS, clean).estimate == pytest.approx(mid, abs=1e-4)


def test_transition_point_step_and_fallbacks() -> None:
    step = (LEVELS >= 5).astype(float)  # jump between levels 4 and 5
    assert 4.0 <= order.transition_point(LEVELS, step).estimate <= 5.0
    jump = order.transition_point(LEVELS, step, method="jump")
    assert (jump.estimate, jump.method, jump.params) == (4.5, "largest_jump", None)
    few = order.transition_point([1, 2, 3], [0.1, 0.2, 0.9])  # < 4 levels: no logistic fit
    assert (few.estimate, few.method) == (2.5, "largest_jump")
    boots = np.tile(step, (20, 1))
    boots[:10, 4] = 0.0  # half the replicates jump one level later (5 -> 6)
    assert order.transition_point(LEVELS, step, boots, method="jump").ci == pytest.approx((4.5, 5.5))
    with pytest.raises(ValueError, match="strictly increasing"):
        order.transition_point([1, 1, 2, 3], [0.0, 0.0, 1.0, 1.0])
    with pytest.raises((ValueError, TypeError), match=r"\[boot, level\]|level"):
        order.transition_point(LEVELS, step, np.zeros((5, 3)))
