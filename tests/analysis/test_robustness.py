"""Robustness table: every variant computed as specified, pooled resamples exact, skips explained."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synergy_lens.analysis import Robustness, headline, robustness
from synergy_lens.analysis.robustness import _Pooled, _variant_series
from synergy_lens.phiid import PhiIDStats, all_pairs_from_stats, atom_index, decompose

from .planted import N_HEADS, N_LAYERS, FakeActivity, planted_core_system, simulate


@pytest.fixture(scope="module")
def activity() -> FakeActivity:
    amat, q = planted_core_system()
    x = simulate(amat, q, n_prompts=5, n_time=80, seed=4)
    act = FakeActivity.from_series(x, N_LAYERS, N_HEADS, lengths=[80, 80, 60, 80, 30])
    act.unit_labels = lambda: [f"L{la}H{h}" for la in range(N_LAYERS) for h in range(N_HEADS)]  # type: ignore[method-assign]
    return act


def test_pooled_weighted_union_is_exact(activity) -> None:
    """Weights (2, 0, 1) over three prompts = merging the statistics of prompts 0, 0, 2; all
    ones = decompose(aggregate="pooled"), to 1e-9 nats."""
    series, _ = _variant_series(activity, detrend=False, min_length=6)
    prompts = [series.values[p, :, :n] for p, n in enumerate(series.lengths.tolist())]
    pooled = _Pooled(prompts, tau=1, redundancy="MMI")
    sts, rtr = pooled.atoms(pooled.parts[:3], [2.0, 0.0, 1.0])
    stats = PhiIDStats.merge_all(PhiIDStats.from_series(prompts[i], 1) for i in (0, 0, 2))
    ref = all_pairs_from_stats(stats)
    torch.testing.assert_close(sts, ref[atom_index("sts")], atol=1e-9, rtol=0, equal_nan=True)
    torch.testing.assert_close(rtr, ref[atom_index("rtr")], atol=1e-9, rtol=0, equal_nan=True)
    full = decompose(activity, aggregate="pooled", progress=False)
    sts_all, _ = pooled.atoms(pooled.parts, [1.0] * len(prompts))
    torch.testing.assert_close(sts_all, full.sts, atol=1e-9, rtol=0, equal_nan=True)


def test_detrended_series_are_first_differences(activity) -> None:
    series, keep = _variant_series(activity, detrend=True, min_length=6)
    raw = activity.unit_series().to(torch.float64)
    assert keep == [0, 1, 2, 3, 4] and series.lengths.tolist() == [79, 79, 59, 79, 29]
    torch.testing.assert_close(series.values[2, :, :59], raw[2, :, 1:60] - raw[2, :, :59])


def test_table_baseline_reuse_and_skips(activity, tmp_path) -> None:
    """The baseline row reuses the headline exactly; tau 10 drops the prompt too short for
    it (30 steps < 4 * 10 + 2); CCS from pooled statistics is impossible and says so."""
    result = decompose(activity, progress=False)
    hl, _ = headline(activity, result, n_surrogates=5, n_boot=30, seed=0)
    rob = robustness(activity, variants=("baseline", "detrended", "pooled", "tau10"), n_surrogates=5,
                     n_boot=20, seed=0, baseline=hl)
    df = rob.to_dataframe()
    assert len(df) == 4 * 3 and list(df["choice"].unique()) == ["baseline", "detrended", "pooled", "tau10"]
    base = df[df["choice"] == "baseline"]
    np.testing.assert_allclose(base["inverted_u"], hl.index.numpy())
    np.testing.assert_allclose(base["p"], hl.p.numpy())
    assert rob.settings["tau10"]["n_prompts"] == 4 and rob.settings["detrended"]["n_prompts"] == 5
    finite = df[df["choice"] != "baseline"]
    assert np.isfinite(finite["inverted_u"]).all() and ((finite["p"] >= 1 / 6) & (finite["p"] <= 1)).all()
    rob.save(tmp_path / "rob.pt")
    back = Robustness.load(tmp_path / "rob.pt")
    assert back.to_dataframe().equals(df)
    from synergy_lens.analysis.robustness import VARIANTS

    VARIANTS["pooled_ccs"] = {**VARIANTS["pooled"], "redundancy": "CCS", "label": "test only"}
    try:
        skip = robustness(activity, variants=("pooled_ccs",), n_surrogates=3, n_boot=0)
    finally:
        VARIANTS.pop("pooled_ccs")
    assert "only for MMI" in skip.settings["pooled_ccs"]["skipped"] and math.isnan(float(skip.index[0, 0]))
    with pytest.raises(ValueError, match="unknown robustness variant"):
        robustness(activity, variants=("tau99",))


def test_verdict_counts_scores_with_an_inverted_u_above_the_null() -> None:
    nan = float("nan")
    rob = Robustness(
        variants=["baseline", "detrended", "tau10"], scores=["a", "b"],
        settings={"baseline": {}, "detrended": {}, "tau10": {"skipped": "too short"}},
        index=torch.tensor([[0.4, 0.3], [-0.2, 0.1], [nan, nan]], dtype=torch.float64),
        ci_low=torch.zeros(3, 2), ci_high=torch.zeros(3, 2),
        p=torch.tensor([[0.05, 0.5], [0.05, 0.05], [nan, nan]], dtype=torch.float64),
        null_mean=torch.zeros(3, 2), profile=torch.zeros(3, 2, 4), null_profile=torch.zeros(3, 2, 4),
        alpha=0.05, n_surrogates=19, n_boot=10, seed=0,
    )
    assert rob.holds("baseline") == ["a"] and rob.holds("detrended") == ["b"]  # a: index < 0
    assert rob.verdict().endswith("baseline 1/2 (a); detrended 1/2 (b); tau10: skipped.")
