"""Task accuracy under ablation and the layer-skip sweep."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from synergy_lens.intervene import (
    accuracy_under_ablation,
    behaviour_divergence,
    builtin_arithmetic,
    default_tasks,
    layer_skip_sweep,
    skip_layers,
    wilson_interval,
)
from synergy_lens.intervene.ablate import skip_hooks
from synergy_lens.intervene.accuracy import ArithmeticTask, _score_builtin
from synergy_lens.intervene.divergence import _divergences, teacher_forced_sequences
from synergy_lens.models import adapt


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert math.isclose(lo, 0.4901625, abs_tol=1e-6) and math.isclose(hi, 0.9433178, abs_tol=1e-6)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_builtin_tasks_and_scorer():
    tasks = builtin_arithmetic(5, seed=1)
    assert tasks == builtin_arithmetic(5, seed=1) and len(tasks) == 5
    t = ArithmeticTask("What is 3 + 4?", "7")
    assert _score_builtin(t, "The answer is 7.") and not _score_builtin(t, "17") and not _score_builtin(t, "")
    assert len(default_tasks(4)) == 4


def test_accuracy_conditions_and_restore(tiny3):
    before = {k: v.clone() for k, v in tiny3.state_dict().items()}
    tasks = builtin_arithmetic(6)
    scores = torch.arange(12, dtype=torch.float64).view(3, 4)
    # a scorer with a known answer: "correct" when the completion is non-empty
    res = accuracy_under_ablation(
        tiny3, scores, tasks, n_random=2, max_new_tokens=3, scorer=lambda t, c: len(c) > 0, progress=False,
    )
    assert res.conditions == ["clean", "synergistic", "redundant", "random", "random"]
    assert res.seeds == [-1, -1, -1, 0, 1]
    assert res.heads[1] == ["L2H3", "L2H2", "L2H1"] and res.heads[2] == ["L0H0", "L0H1", "L0H2"]
    assert res.correct.shape == (5, 6)
    df = res.to_dataframe()
    assert list(df["n_heads"]) == [0, 3, 3, 3, 3]
    assert (df["ci_low"] <= df["accuracy"]).all() and (df["accuracy"] <= df["ci_high"]).all()
    summary = res.summary()
    assert list(summary["condition"]) == ["clean", "synergistic", "redundant", "random"]
    assert int(summary["n"].iloc[-1]) == 12  # two random seeds pooled
    assert all(torch.equal(v, before[k]) for k, v in tiny3.state_dict().items())
    # noise changes what the model says
    assert res.completions[1] != res.completions[0] or res.completions[2] != res.completions[0]


def test_accuracy_with_head_ablation(tiny3):
    tasks = builtin_arithmetic(4)
    res = accuracy_under_ablation(
        tiny3, torch.randn(3, 4), tasks, method="ablate", mode="zero", n_random=1,
        max_new_tokens=3, progress=False,
    )
    assert res.meta["method"] == "ablate" and res.correct.shape == (4, 4)
    with pytest.raises(ValueError, match="unknown method"):
        accuracy_under_ablation(tiny3, torch.randn(3, 4), tasks, method="dropout", progress=False)
    with pytest.raises(ValueError, match="fraction"):
        accuracy_under_ablation(tiny3, torch.randn(3, 4), tasks, fraction=0, progress=False)


def test_layer_skip_sweep(tiny3, clean_run):
    tasks = builtin_arithmetic(3)
    sweep = layer_skip_sweep(tiny3, clean_run, tasks, max_new_tokens=2, progress=False)
    assert sweep.layers.tolist() == [0, 1, 2]
    assert sweep.correct.shape == (3, 3) and sweep.clean_correct.shape == (3,)
    for layer in range(3):
        with skip_layers(tiny3, layer):
            ref = behaviour_divergence(tiny3, clean_run, [])  # hooks of skip active: still 0 vs itself
        assert float(ref.sum()) == 0.0
    seqs = teacher_forced_sequences(clean_run)
    a = adapt(tiny3)
    eye = torch.eye(3, dtype=torch.bool)
    loop = _divergences(a, seqs, eye, lambda rows: skip_hooks(a, rows), batched=False, batch_size=1, progress=False)
    assert_close(sweep.divergence_per_prompt.double(), loop, atol=1e-5, rtol=1e-4)
    assert (sweep.divergence > 0).all()
    # the last layer, by hand on full logits (the engine unembeds only generated positions)
    prompt, gen = clean_run[0]
    ids = torch.tensor([prompt + gen])
    with torch.no_grad():
        clean = a.forward(ids).log_softmax(-1)[0]
        with skip_layers(tiny3, 2):
            skipped = a.forward(ids).log_softmax(-1)[0]
    pos = slice(len(prompt) - 1, len(prompt) + len(gen) - 1)
    kl = (clean[pos].exp() * (clean[pos] - skipped[pos])).sum(-1).mean()
    assert abs(float(kl) - float(sweep.divergence_per_prompt[2, 0])) < 1e-5
    df = sweep.to_dataframe()
    assert list(df.columns) == ["layer", "depth", "divergence", "n_tasks", "accuracy", "ci_low", "ci_high"]
    only_div = layer_skip_sweep(tiny3, clean_run, layers=[1], accuracy=False, progress=False)
    assert only_div.correct.numel() == 0 and math.isnan(float(only_div.accuracy[0]))
    with pytest.raises(ValueError, match="out of range"):
        layer_skip_sweep(tiny3, clean_run, layers=[5], progress=False)


def test_results_save_and_load(tiny3, clean_run, tmp_path):
    import pandas as pd

    from synergy_lens.intervene import AccuracyResult, LayerSkipResult

    tasks = builtin_arithmetic(4)
    res = accuracy_under_ablation(tiny3, torch.randn(3, 4), tasks, n_random=1, max_new_tokens=2, progress=False)
    res.save(tmp_path / "acc.pt")
    back = AccuracyResult.load(tmp_path / "acc.pt")
    assert torch.equal(back.correct, res.correct) and back.completions == res.completions
    assert back.conditions == res.conditions and back.heads == res.heads and back.meta == res.meta
    pd.testing.assert_frame_equal(back.summary(), res.summary())
    sweep = layer_skip_sweep(tiny3, clean_run, tasks, max_new_tokens=2, progress=False)
    sweep.save(tmp_path / "skip.pt")
    again = LayerSkipResult.load(tmp_path / "skip.pt")
    assert torch.equal(again.divergence_per_prompt, sweep.divergence_per_prompt)
    pd.testing.assert_frame_equal(again.to_dataframe(), sweep.to_dataframe())
    with pytest.raises(ValueError, match="expected 'synergy_lens.AccuracyResult/1'"):
        AccuracyResult.load(tmp_path / "skip.pt")
