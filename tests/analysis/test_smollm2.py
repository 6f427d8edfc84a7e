"""The analysis chain on the real SmolLM2 (slow: loads the model and generates)."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.slow


def test_chain_on_smollm2() -> None:
    """record -> decompose -> scores -> profile -> core -> topology -> energy, 3 prompts x 24 tokens."""
    import synergy_lens as sl
    from synergy_lens.analysis import (
        find_core,
        layer_energy,
        layer_profile,
        synergy_scores,
        topology_table,
        unit_stability,
    )
    from synergy_lens.record import default_prompts, record_head_activity

    model = sl.load_model()
    prompts = default_prompts()[::20]
    activity = record_head_activity(model, prompts, max_new_tokens=24, progress=False)
    result = sl.decompose(activity, progress=False, jitter=1e-2)
    scores = synergy_scores(result)
    assert scores.values.shape == (30, 9) and -1 <= scores.spearman <= 1
    assert sorted(scores.syn_minus_red.flatten().tolist()) == [float(r) for r in range(1, 271)]
    stability = unit_stability(activity, warn=False)
    assert stability.unstable.shape == (30, 9) and stability.dtype == "float32"
    for score in ("rank_gradient", "syn_minus_red", "synergy_fraction"):
        prof = layer_profile(result, score=score, n_boot=50)
        assert prof.values.shape == (30,) and math.isfinite(prof.inverted_u)
    core = find_core(result, q=0.25)
    assert len(core) == math.ceil(0.25 * 270) and len(core.to_hook_names()) <= 30
    table = topology_table(result)
    assert 0 < table.loc["n_edges", "synergy"] <= math.ceil(0.1 * 270 * 269 / 2)
    energy = layer_energy(activity)
    assert energy.values.shape == (30,) and bool(torch.isfinite(energy.values).all())
