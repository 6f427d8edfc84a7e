"""Unstable heads (planted coarse series) and the bootstrap of ranks and core membership."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from synergy_lens.analysis import (
    RankUncertainty,
    UnitStability,
    find_core,
    rank_uncertainty,
    synergy_scores,
    unit_stability,
)
from synergy_lens.analysis.uncertainty import descending_ranks
from synergy_lens.phiid import decompose

from .planted import CORE, N_HEADS, N_LAYERS, FakeActivity, planted_core_system, simulate


def coarse_activity() -> FakeActivity:
    """4 x 3 heads, 4 prompts x 100 steps of float32 AR noise around 1, except: unit 4
    takes only 12 distinct values (quantised), unit 7 sits at 0.849 with a spread of about
    100 float32 ulp (like SmolLM2's L18H8), unit 10 is constant."""
    g = torch.Generator().manual_seed(0)
    x = 1.0 + 0.1 * torch.randn(4, 12, 100, generator=g, dtype=torch.float64)
    x[:, 4] = torch.round(x[:, 4] * 40) / 40  # ~12 levels
    eps = float(torch.finfo(torch.float32).eps)
    x[:, 7] = 0.849 * (1 + 100 * eps * torch.randn(4, 100, generator=g, dtype=torch.float64))
    x[:, 10] = 0.5
    act = FakeActivity.from_series(x, 4, 3)
    act.model_config = {"dtype": "float32"}
    return act


def test_planted_coarse_heads_are_flagged_named_once_and_saved(tmp_path) -> None:
    act = coarse_activity()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stab = unit_stability(act)
    assert stab.unstable_labels() == ["L1H1", "L2H1", "L3H1"]  # units 4, 7, 10
    messages = [str(w.message) for w in caught if "too coarse" in str(w.message)]
    assert len(messages) == 1 and all(lab in messages[0] for lab in ("L1H1", "L2H1", "L3H1"))
    assert stab.distinct.flatten()[4] < 0.2 and stab.distinct.flatten()[0] == 1.0
    assert 30 < stab.spread_ulp.flatten()[7] < 300  # ~100 ulp as planted
    assert "ulp" in stab.reasons()["L2H1"] and "distinct" in stab.reasons()["L1H1"]
    assert stab.eps == pytest.approx(float(torch.finfo(torch.float32).eps))
    stab.save(tmp_path / "s.pt")
    back = UnitStability.load(tmp_path / "s.pt")
    assert back.unstable_labels() == stab.unstable_labels() and back.dtype == "float32"
    assert list(stab.to_dataframe().columns) == ["label", "layer", "head", "distinct", "spread_ulp", "unstable"]


def test_bfloat16_recordings_use_its_epsilon() -> None:
    act = coarse_activity()
    stab = unit_stability(act, dtype="bfloat16", warn=False)
    assert stab.eps == pytest.approx(2.0**-7)
    assert bool(stab.unstable.flatten()[0])  # 10% spread is ~13 bfloat16 steps: too coarse
    with pytest.raises(ValueError, match="unknown dtype"):
        unit_stability(act, dtype="float77")


def test_scores_mark_and_exclude_the_flagged_heads() -> None:
    act = coarse_activity()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = decompose(act, progress=False)
        stab = unit_stability(act, warn=False)
    marked = synergy_scores(result, unstable=stab)
    assert marked.unstable_labels() == stab.unstable_labels()
    assert marked.to_dataframe()["unstable"].sum() == 3
    out = synergy_scores(result, unstable=stab, exclude=True)
    assert torch.isnan(out.values.flatten()[[4, 7, 10]]).all()
    assert torch.isfinite(out.values.flatten()[[0, 1, 2, 3, 5]]).all()


@pytest.fixture(scope="module")
def planted_result():
    amat, q = planted_core_system()
    x = simulate(amat, q, n_prompts=10, n_time=300, seed=0)
    return decompose(FakeActivity.from_series(x, N_LAYERS, N_HEADS), progress=False)


def test_descending_ranks() -> None:
    r = descending_ranks(torch.tensor([[0.2, 0.9, math.nan, 0.2], [1.0, 2.0, 3.0, 4.0]]))
    assert r[0, [0, 1, 3]].tolist() == [2.0, 1.0, 3.0] and math.isnan(r[0, 2])
    assert r[1].tolist() == [4.0, 3.0, 2.0, 1.0]


def test_rank_uncertainty_on_a_planted_core(planted_result, tmp_path) -> None:
    """The planted core (8 heads, q = 1/3) is in the synergy-fraction core in >= 98% of 200
    prompt resamples (seeded; 10 prompts x 300 steps); observed ranks lie inside their
    intervals; frequencies are fractions of resamples summing to the core size; the
    observed core equals find_core's."""
    ru = rank_uncertainty(planted_result, score="synergy_fraction", q=8 / 24, n_boot=200, seed=0)
    freq = ru.core_frequency.flatten()
    assert bool((freq[CORE] >= 0.98).all())
    assert bool(((freq * 200).round() == freq * 200).all()) and float(freq.sum()) == pytest.approx(8.0)
    rank = ru.rank.flatten()
    assert bool(((ru.rank_low.flatten() <= rank) & (rank <= ru.rank_high.flatten())).all())
    core = find_core(synergy_scores(planted_result, score="synergy_fraction"), q=8 / 24)
    assert torch.equal(ru.in_core, core.abstract)
    ru.save(tmp_path / "r.pt")
    back = RankUncertainty.load(tmp_path / "r.pt")
    assert torch.equal(back.core_frequency, ru.core_frequency) and back.score == "synergy_fraction"
    df = ru.to_dataframe()
    assert df["rank"].iloc[0] == 1 and bool(df["in_core"].iloc[:8].all())


def test_rank_uncertainty_needs_per_prompt_atoms(planted_result) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="per-prompt"):
        rank_uncertainty(replace(planted_result, per_prompt_sts=None, per_prompt_rtr=None))
    with pytest.raises(ValueError, match="q must be"):
        rank_uncertainty(planted_result, q=0.9)
    assert np.isfinite(rank_uncertainty(planted_result, n_boot=5).rank_low.numpy()).all()
