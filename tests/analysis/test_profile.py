"""Layer profile: the vectorised bootstrap equals a direct loop; planted inverted U is found."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synergy_lens.analysis import LayerProfile, layer_profile, synergy_scores
from synergy_lens.analysis.profile import minmax_scale
from synergy_lens.dynamics.order import inverted_u_index
from synergy_lens.phiid import decompose

from .planted import N_HEADS, N_LAYERS, FakeActivity, fake_result, planted_core_system, simulate


def random_per_prompt(n_prompts: int, n_units: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        m = torch.rand(n_prompts, n_units, n_units, generator=g)
        m = m + m.transpose(1, 2)
        m[:, torch.arange(n_units), torch.arange(n_units)] = math.nan
        out.append(m)
    out[0][1, 0, 3] = out[0][1, 3, 0] = math.nan  # a pair undefined in one prompt
    out[1][1, 0, 3] = out[1][1, 3, 0] = math.nan
    return out[0], out[1]


def mean_where_defined(m: torch.Tensor) -> torch.Tensor:
    defined = torch.isfinite(m)
    return torch.where(defined, m, 0).sum(0) / defined.sum(0)


def per_prompt_result(n_prompts: int, layers: int, heads: int, seed: int):
    ps, pr = random_per_prompt(n_prompts, layers * heads, seed)
    return fake_result(
        mean_where_defined(ps.double()), mean_where_defined(pr.double()), layers, heads, ps, pr
    )


@pytest.mark.parametrize("score", ["rank_gradient", "synergy_fraction"])
def test_vectorised_bootstrap_equals_direct_loop(score: str) -> None:
    """Replicate b recomputes the scores from the prompts of resample b, by a plain loop."""
    layers, heads, n_prompts, n_boot = 4, 3, 7, 25
    result = per_prompt_result(n_prompts, layers, heads, seed=0)
    prof = layer_profile(result, score=score, n_boot=n_boot, seed=11)
    idx = np.random.default_rng(11).integers(0, n_prompts, size=(n_boot, n_prompts))
    for b in range(n_boot):
        sel = torch.from_numpy(idx[b])
        sts = mean_where_defined(result.per_prompt_sts[sel].double())
        rtr = mean_where_defined(result.per_prompt_rtr[sel].double())
        s = synergy_scores(fake_result(sts, rtr, layers, heads), score=score)
        expected = minmax_scale(torch.nanmean(s.values, -1))
        torch.testing.assert_close(prof.boot[b], expected, atol=1e-6, rtol=0)
        assert prof.boot_inverted_u[b].item() == pytest.approx(
            inverted_u_index(expected.numpy(), prof.depth.numpy()), abs=1e-6
        )
        raw = torch.nanmean(s.values, -1).numpy()
        assert prof.boot_inverted_u_raw[b].item() == pytest.approx(
            inverted_u_index(raw, prof.depth.numpy()), abs=1e-5
        )


def test_point_profile_definitions() -> None:
    result = per_prompt_result(5, 5, 3, seed=1)
    prof = layer_profile(result, n_boot=50)
    scores = synergy_scores(result)
    raw = scores.values.mean(-1)
    torch.testing.assert_close(prof.raw, raw)
    torch.testing.assert_close(
        prof.depth, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    )
    assert prof.values.min().item() == 0.0 and prof.values.max().item() == 1.0
    assert prof.inverted_u == pytest.approx(
        inverted_u_index(prof.values.numpy(), prof.depth.numpy())
    )
    assert prof.inverted_u_raw == pytest.approx(inverted_u_index(raw.numpy(), prof.depth.numpy()))
    assert prof.low.shape == (5,) and bool((prof.low <= prof.high).all())
    assert prof.spearman == pytest.approx(scores.spearman)
    unscaled = layer_profile(result, n_boot=0, minmax=False)
    torch.testing.assert_close(unscaled.values, raw)
    assert unscaled.low is None and unscaled.inverted_u_ci is None


def test_same_seed_same_resamples_different_seed_different() -> None:
    result = per_prompt_result(6, 4, 2, seed=2)
    a = layer_profile(result, n_boot=40, seed=3)
    b = layer_profile(result, n_boot=40, seed=3)
    c = layer_profile(result, n_boot=40, seed=4)
    assert torch.equal(a.boot, b.boot) and not torch.equal(a.boot, c.boot)


def test_planted_inverted_u_with_ci() -> None:
    """Planted core in layers 2-3 of 6, memory heads in layers 0 and 5: the synergy-fraction
    profile is an inverted U whose 95% CI excludes 0 (8 prompts x 400 steps, seed 1)."""
    amat, q = planted_core_system()
    x = simulate(amat, q, n_prompts=8, n_time=400, seed=1)
    result = decompose(FakeActivity.from_series(x, N_LAYERS, N_HEADS), progress=False)
    prof = layer_profile(result, score="synergy_fraction", n_boot=300, seed=0)
    assert prof.inverted_u > 0.4
    assert prof.inverted_u_ci[0] > 0.3
    assert int(prof.values.argmax()) in (2, 3) and int(prof.values.argmin()) in (0, 5)


def test_flat_null_profile_ci_covers_zero() -> None:
    """Heads whose per-prompt atoms are exchangeable across layers: no inverted U."""
    result = per_prompt_result(30, 6, 4, seed=5)
    prof = layer_profile(result, score="synergy_fraction", n_boot=300)
    lo, hi = prof.inverted_u_ci
    assert lo < 0 < hi


def test_head_scores_input_and_pooled_warning(tmp_path) -> None:
    result = per_prompt_result(4, 3, 2, seed=6)
    scores = synergy_scores(result, score="synergy_fraction")
    prof = layer_profile(scores)
    assert prof.score == "synergy_fraction" and prof.boot is None
    with pytest.raises(ValueError, match="hold score"):
        layer_profile(scores, score="rank_gradient")
    pooled = fake_result(result.sts, result.rtr, 3, 2)
    with pytest.warns(RuntimeWarning, match="pooled"):
        assert layer_profile(pooled, n_boot=10).low is None


def test_streamed_summaries_profile_without_band_and_say_why() -> None:
    """Streamed PairSummaries: the point profile equals the dense result's, and asking for a
    bootstrap band warns that streaming (not pooling) is why there is none."""
    amat, q = planted_core_system()
    x = simulate(amat, q, n_prompts=3, n_time=200, seed=2)
    act = FakeActivity.from_series(x, N_LAYERS, N_HEADS)
    dense = decompose(act, progress=False, stream=False)
    streamed = decompose(act, progress=False, stream=True)
    with pytest.warns(RuntimeWarning, match="streamed PairSummaries") as record:
        prof = layer_profile(streamed, score="syn_minus_red", n_boot=10)
    assert not any("pooled" in str(w.message) for w in record)
    assert prof.low is None and prof.inverted_u_ci is None
    expected = layer_profile(dense, score="syn_minus_red", n_boot=0)
    torch.testing.assert_close(prof.values, expected.values, rtol=0, atol=1e-12)


def test_save_load_round_trip(tmp_path) -> None:
    prof = layer_profile(per_prompt_result(5, 4, 2, seed=7), n_boot=20)
    prof.save(tmp_path / "p.pt")
    back = LayerProfile.load(tmp_path / "p.pt")
    for f in (
        "depth",
        "raw",
        "values",
        "low",
        "high",
        "boot",
        "boot_inverted_u",
        "boot_inverted_u_raw",
    ):
        assert torch.equal(getattr(back, f), getattr(prof, f))
    assert back.inverted_u == prof.inverted_u and back.inverted_u_ci == prof.inverted_u_ci
    assert (
        back.inverted_u_raw == prof.inverted_u_raw
        and back.inverted_u_raw_ci == prof.inverted_u_raw_ci
    )
    assert list(prof.to_dataframe().columns) == ["layer", "depth", "raw", "value", "low", "high"]
