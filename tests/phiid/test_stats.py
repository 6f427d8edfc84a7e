"""PhiIDStats: sums about the mean, exact merging, offsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synergy_lens.phiid import PhiIDStats, all_pairs, all_pairs_from_stats


def _direct(x: np.ndarray, tau: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n-1)-covariances of past/past, future/future, past/future windows, in NumPy."""
    past, future = x[:, :-tau], x[:, tau:]
    u = x.shape[0]
    c = np.cov(np.concatenate([past, future]))
    return c[:u, :u], c[u:, u:], c[:u, u:]


@pytest.mark.parametrize("tau", [1, 3])
def test_from_series_matches_numpy(tau: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 200)).cumsum(1) + 5.0
    stats = PhiIDStats.from_series(torch.from_numpy(x), tau)
    for got, want in zip(stats.covariance(ddof=1), _direct(x, tau)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.mean_past.numpy(), x[:, :-tau].mean(1), rtol=1e-14)
    np.testing.assert_allclose(stats.mean_future.numpy(), x[:, tau:].mean(1), rtol=1e-14)
    assert stats.n == 200 - tau and stats.n_units == 6


def test_merge_is_exact_and_no_lag_pair_crosses_pieces() -> None:
    rng = np.random.default_rng(1)
    a, b, c = (rng.standard_normal((4, t)) + rng.standard_normal((4, 1)) for t in (50, 80, 31))
    tau = 2
    merged = PhiIDStats.merge_all(
        PhiIDStats.from_series(torch.from_numpy(p), tau) for p in (a, b, c)
    )
    past = np.concatenate([p[:, :-tau] for p in (a, b, c)], 1)
    future = np.concatenate([p[:, tau:] for p in (a, b, c)], 1)
    want = np.cov(np.concatenate([past, future]))
    assert merged.n == past.shape[1]
    for got, w in zip(merged.covariance(), (want[:4, :4], want[4:, 4:], want[:4, 4:])):
        np.testing.assert_allclose(got.numpy(), w, rtol=1e-12, atol=1e-13)
    s_ab = PhiIDStats.from_series(torch.from_numpy(a), tau) + PhiIDStats.from_series(
        torch.from_numpy(b), tau
    )
    assert s_ab.n == 48 + 78


def test_merge_with_batch_dims_and_checks() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 40, generator=g, dtype=torch.float64)
    y = torch.randn(3, 5, 60, generator=g, dtype=torch.float64)
    merged = PhiIDStats.from_series(x) + PhiIDStats.from_series(y)
    for k in range(3):
        single = PhiIDStats.from_series(x[k]) + PhiIDStats.from_series(y[k])
        for name, value in single.tensors().items():
            torch.testing.assert_close(merged.select((k,)).tensors()[name], value)
    with pytest.raises(ValueError, match="tau"):
        PhiIDStats.from_series(x, 1) + PhiIDStats.from_series(y, 2)
    with pytest.raises(ValueError, match="shapes"):
        PhiIDStats.from_series(x) + PhiIDStats.from_series(y[:, :4])


def test_large_offset_does_not_lose_precision() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 500))
    base = PhiIDStats.from_series(torch.from_numpy(x)).correlation()
    shifted = PhiIDStats.from_series(torch.from_numpy(x + 1e6)).correlation()
    for a, b in zip(base, shifted):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_constant_units_and_dict_roundtrip() -> None:
    x = torch.randn(3, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[1] = 7.25
    stats = PhiIDStats.from_series(x)
    assert stats.constant_units().tolist() == [False, True, False]
    assert torch.isnan(stats.correlation()[0][1]).all()
    again = PhiIDStats.from_dict(stats.to_dict())
    assert again.n == stats.n and again.tau == stats.tau
    for name, value in stats.tensors().items():
        assert torch.equal(again.tensors()[name], value)


def test_from_series_rejects_bad_tau() -> None:
    with pytest.raises(ValueError, match="tau"):
        PhiIDStats.from_series(torch.zeros(2, 10), 0)
    with pytest.raises(ValueError, match="time > tau"):
        PhiIDStats.from_series(torch.zeros(2, 3), 3)


def test_atoms_from_merged_stats_equal_atoms_of_the_pooled_lag_pairs() -> None:
    g = torch.Generator().manual_seed(3)
    pieces = [torch.randn(4, n, generator=g, dtype=torch.float64).cumsum(-1) for n in (60, 45)]
    merged = PhiIDStats.merge_all(PhiIDStats.from_series(p) for p in pieces)
    atoms = all_pairs_from_stats(merged)
    single = all_pairs_from_stats(PhiIDStats.from_series(pieces[0]))
    torch.testing.assert_close(single, all_pairs(pieces[0]), rtol=0, atol=1e-12, equal_nan=True)
    assert atoms.shape == (16, 4, 4) and not torch.allclose(atoms, single, equal_nan=True)
    batched = PhiIDStats.from_series(torch.stack([pieces[0], pieces[0] * 2 + 1]))
    torch.testing.assert_close(
        all_pairs_from_stats(batched),
        torch.stack([single, single]),
        atol=1e-10,
        rtol=0,
        equal_nan=True,
    )
    with pytest.raises(ValueError, match="per-sample"):
        all_pairs_from_stats(merged, redundancy="CCS")
