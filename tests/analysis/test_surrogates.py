"""Surrogate null: FDR by hand, surrogate invariants, a calibrated null, a detected plant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import false_discovery_control

from synergy_lens.analysis import SurrogateTest, benjamini_hochberg, surrogate_test
from synergy_lens.analysis.surrogates import _check_dense_size, circular_shift, phase_randomize
from synergy_lens.phiid import STREAM_ABOVE_UNITS

from .planted import CORE, FakeActivity, planted_core_system, simulate


def test_benjamini_hochberg_hand_example() -> None:
    # m = 5 finite p-values; sorted .005 .01 .029 .039 .2 against i q / m = .01 .02 .03 .04 .05:
    # the first four pass. Adjusted p_(i) m / i = .025 .025 .04833 .04875 .2 (already monotone).
    p = [0.01, 0.039, 0.029, 0.20, 0.005, math.nan]
    reject, adj = benjamini_hochberg(p, q=0.05)
    assert reject.tolist() == [True, True, True, False, True, False]
    np.testing.assert_allclose(adj[:5], [0.025, 0.04875, 0.029 * 5 / 3, 0.2, 0.025], rtol=1e-12)
    assert math.isnan(adj[5])


def test_benjamini_hochberg_is_step_up() -> None:
    # m = 4, thresholds .0125 .025 .0375 .05: .02 and .03 fail their own thresholds but .035
    # passes its one, so all three are rejected (adjusted .04667 each).
    reject, adj = benjamini_hochberg(torch.tensor([0.02, 0.03, 0.035, 0.9]), q=0.05)
    assert isinstance(reject, torch.Tensor) and reject.tolist() == [True, True, True, False]
    torch.testing.assert_close(adj[:3], torch.full((3,), 0.035 * 4 / 3, dtype=torch.float64))


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(0).uniform(size=(7, 9)) ** 3
    _, adj = benjamini_hochberg(p)
    np.testing.assert_allclose(
        adj, false_discovery_control(p.ravel(), method="bh").reshape(7, 9), rtol=1e-12
    )


def test_surrogates_keep_each_unit_and_scramble_alignment() -> None:
    x = simulate(np.diag([0.9, 0.5, 0.2]), np.eye(3), 1, 64, seed=0)[0]
    rng = np.random.default_rng(0)
    shifted = circular_shift(x, rng, n=5, min_shift=6)
    assert shifted.shape == (5, 3, 64)
    for s in range(5):
        for u in range(3):
            k = [k for k in range(64) if torch.equal(torch.roll(x[u], k), shifted[s, u])]
            assert len(k) == 1 and 6 <= k[0] <= 58  # a rotation by an allowed offset
    common = circular_shift(x, rng, n=4, min_shift=6, common=True)
    for s in range(4):
        k = next(k for k in range(64) if torch.equal(torch.roll(x, k, dims=-1), common[s]))
        assert 6 <= k <= 58  # every unit rotated by the same offset
    phased = phase_randomize(x, rng, n=3)
    torch.testing.assert_close(
        torch.fft.rfft(phased, dim=-1).abs(), torch.fft.rfft(x, dim=-1).abs().expand(3, -1, -1)
    )
    assert not torch.allclose(phased[0], x)
    aligned = phase_randomize(x, rng, n=1, common=True)[0]
    cross = lambda v: torch.fft.rfft(v[0]) * torch.fft.rfft(v[1]).conj()  # noqa: E731
    torch.testing.assert_close(cross(aligned), cross(x))  # common phases keep cross-spectra


@pytest.fixture(scope="module")
def null_test() -> SurrogateTest:
    """Independent AR(1) units whose autocorrelation grows with layer (0.2, 0.5, 0.7, 0.9):
    mean sts grows with it, but nothing couples the units."""
    a = np.repeat([0.2, 0.5, 0.7, 0.9], 4)
    x = simulate(np.diag(a), np.eye(16), n_prompts=3, n_time=150, seed=1)
    return surrogate_test(FakeActivity.from_series(x, 4, 4), n_surrogates=99, seed=0)


def test_null_system_nothing_significant(null_test: SurrogateTest) -> None:
    """At FDR 0.05 at most 1 of 16 heads may be called (seeded; BH keeps the chance of any
    false call under the complete null at <= 0.05), and per-pair p-values are calibrated:
    at most 10% of the 120 pairs below 0.05 (expected 5%)."""
    obs = null_test.observed[0].mean(-1)
    assert obs[3] > 5 * obs[0]  # the autocorrelation confound is there...
    for score in null_test.scores:
        assert int(null_test.significant(score).sum()) <= 1, score  # ...and the test is not fooled
    upper = torch.triu(torch.ones(16, 16, dtype=torch.bool), 1)
    for k in range(2):
        p = null_test.p_pair[k][upper]
        assert float((p < 0.05).double().mean()) <= 0.10
        assert 0.3 < float(p.mean()) < 0.7
    assert int(null_test.significant_pairs("sts").sum()) <= 2


def test_empirical_pvalues_follow_the_formula(null_test: SurrogateTest) -> None:
    n = null_test.n_surrogates
    expected = (1 + (null_test.null >= null_test.aligned).sum(0)) / (1 + n)
    torch.testing.assert_close(null_test.p_head, expected.double())
    assert null_test.p_head.min() >= 1 / (1 + n)
    for k in range(len(null_test.scores)):
        _, adj = benjamini_hochberg(null_test.p_head[k].flatten())
        torch.testing.assert_close(null_test.q_head[k].flatten(), adj)


def test_planted_synergy_is_detected() -> None:
    """The planted core (layers 2-3, difference-coupled) is significantly synergistic
    (mean sts above the circular-shift null at FDR 0.05); the uncoupled-by-synergy outer
    layers 0 and 5 are not. 1 prompt x 600 steps, 99 surrogates, seed 0."""
    amat, q = planted_core_system()
    x = simulate(amat, q, n_prompts=1, n_time=600, seed=0)
    res = surrogate_test(FakeActivity.from_series(x, 6, 4), n_surrogates=99, seed=0, batch=20)
    sig = res.significant("mean_sts").flatten()
    assert bool(sig[CORE].all())
    assert not bool(sig[[0, 1, 2, 3, 20, 21, 22, 23]].any())


def test_batch_size_does_not_change_results_and_round_trip(tmp_path) -> None:
    x = simulate(np.diag([0.3, 0.6, 0.8, 0.5]), np.eye(4), n_prompts=2, n_time=60, seed=2)
    act = FakeActivity.from_series(x, 2, 2, lengths=[60, 45])
    a = surrogate_test(act, n_surrogates=9, batch=2, seed=5)
    b = surrogate_test(act, n_surrogates=9, batch=9, seed=5)
    torch.testing.assert_close(a.null, b.null, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(a.p_pair, b.p_pair, rtol=0, atol=0, equal_nan=True)
    g = surrogate_test(act, n_surrogates=9, seed=5, pvalue="gaussian", method="phase")
    assert g.method == "phase" and bool(((g.p_head >= 0) & (g.p_head <= 1)).all())
    a.save(tmp_path / "s.pt")
    back = SurrogateTest.load(tmp_path / "s.pt")
    assert torch.equal(back.p_head, a.p_head) and back.scores == a.scores and back.meta == a.meta
    assert list(a.to_dataframe().columns)[:4] == ["label", "layer", "head", "mean_sts"]
    tensor_in = surrogate_test(
        x, n_surrogates=9, seed=5, n_layers=2, n_heads=2
    )  # raw [prompt, unit, time]
    assert tensor_in.labels == ["L0H0", "L0H1", "L1H0", "L1H1"]


def test_bad_arguments() -> None:
    x = torch.randn(4, 50)
    with pytest.raises(ValueError, match="method"):
        surrogate_test(x, method="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_surrogates"):
        surrogate_test(x, n_surrogates=1)
    with pytest.raises(ValueError, match="n_layers"):
        surrogate_test(x, n_layers=3, n_heads=3)


def test_dense_null_refused_above_the_streaming_threshold() -> None:
    """Above STREAM_ABOVE_UNITS (where decompose streams) the dense null would hold
    [16, unit, unit] float64 per prompt (10.9 GB at 9,216 MLP neurons): a clear error, raised
    before any decomposition, naming the size and what to do."""
    x = torch.randn(STREAM_ABOVE_UNITS + 1, 12, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"0\.5 GB per prompt for 2049 units.*STREAM_ABOVE_UNITS"):
        surrogate_test(x, n_surrogates=2)
    _check_dense_size(STREAM_ABOVE_UNITS)  # the threshold itself is still dense
