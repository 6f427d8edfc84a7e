"""Behaviour divergence and cumulative ablation curves (paper (B), ablation 1)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from synergy_lens.intervene import (
    AblationCurve,
    ablate_heads,
    ablation_curve,
    behaviour_divergence,
    score_orders,
    teacher_forced_sequences,
)
from synergy_lens.models import adapt


def manual_divergence(model, prompt, gen, heads):
    """KL(p_clean || p_ablated) averaged over the positions that predict generated tokens."""
    a = adapt(model)
    ids = torch.tensor([prompt + gen])
    with torch.no_grad():
        clean = a.forward(ids).log_softmax(-1)[0]
        with ablate_heads(model, heads):
            abl = a.forward(ids).log_softmax(-1)[0]
    pos = range(len(prompt) - 1, len(prompt) + len(gen) - 1)
    kls = [float((clean[t].exp() * (clean[t] - abl[t])).sum()) for t in pos]
    return sum(kls) / len(kls)


def test_divergence_matches_the_definition(tiny3, clean_run):
    heads = ["L0H1", "L2H2"]
    d = behaviour_divergence(tiny3, clean_run, heads)
    assert d.shape == (len(clean_run),)
    for i, (prompt, gen) in enumerate(clean_run):
        assert math.isclose(float(d[i]), manual_divergence(tiny3, prompt, gen, heads), rel_tol=1e-4, abs_tol=1e-6)
    assert torch.equal(behaviour_divergence(tiny3, clean_run, []), torch.zeros(len(clean_run), dtype=torch.float64))


@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_batched_equals_loop(tiny3, clean_run, mode):
    a = adapt(tiny3)
    masks = torch.rand(6, a.n_layers, a.n_heads, generator=torch.Generator().manual_seed(1)) > 0.6
    ref = [[256, *range(1, 30)]] if mode != "zero" else None
    batched = behaviour_divergence(tiny3, clean_run, masks, mode=mode, reference=ref, batch_size=4)
    loop = behaviour_divergence(tiny3, clean_run, masks, mode=mode, reference=ref, batched=False)
    assert batched.shape == (6, len(clean_run))
    assert_close(batched, loop, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 3, 5, 64])
def test_packing_across_prompts_of_different_lengths(tiny3, batch_size):
    """Rows of several prompts share a pass (right padding): same numbers as one by one."""
    from synergy_lens.intervene.divergence import _plan

    a = adapt(tiny3)
    prompts = [[256, 72, 101], [256, 49, 43, 50, 61, 62, 63, 64, 65], [256, 7], [256, 90, 91, 92, 93]]
    gens = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [18]]  # 1..7 generated tokens
    run = list(zip(prompts, gens))
    masks = torch.rand(7, a.n_layers, a.n_heads, generator=torch.Generator().manual_seed(3)) > 0.5
    masks[2] = False  # the no-ablation condition: exactly 0
    packed = behaviour_divergence(tiny3, run, masks, batch_size=batch_size)
    for c in range(7):
        for i, (prompt, gen) in enumerate(run):
            want = manual_divergence(tiny3, prompt, gen, masks[c]) if masks[c].any() else 0.0
            assert math.isclose(float(packed[c, i]), want, rel_tol=1e-4, abs_tol=1e-6), (c, i)
    seqs = teacher_forced_sequences(run)
    plan = _plan(seqs, list(range(6)), batched=True, batch_size=batch_size, per_prompt=False)
    rows = [r for chunk in plan for r in chunk]
    assert sorted(rows) == [(p, c) for p in range(4) for c in range(6)]  # each once
    assert max(map(len, plan)) <= batch_size
    assert len(plan) == math.ceil(24 / batch_size)  # as few passes as the batch size allows
    per_prompt = _plan(seqs, list(range(6)), batched=True, batch_size=batch_size, per_prompt=True)
    assert all(len({p for p, _ in chunk}) == 1 for chunk in per_prompt)


def test_curve_structure_and_roundtrip(tiny3, clean_run, tmp_path):
    a = adapt(tiny3)
    scores = torch.arange(a.n_units, dtype=torch.float64).view(a.n_layers, a.n_heads)
    curve = ablation_curve(tiny3, clean_run, scores, step=5, n_random=3, seed=7, progress=False)
    assert curve.steps.tolist() == [0, 5, 10, 12]
    assert set(curve.curves) == {"synergy-first", "redundancy-first"}
    assert curve.random.shape == (3, 4) and curve.random_per_prompt.shape == (3, 4, 2)
    for v in (*curve.curves.values(), curve.random_mean):
        assert float(v[0]) == 0.0
    full = [float(v[-1]) for v in curve.curves.values()] + curve.random[:, -1].tolist()
    assert max(full) - min(full) < 1e-5  # all heads ablated: the same condition for every order
    assert curve.orders["synergy-first"][0] == "L2H3" and curve.orders["redundancy-first"][0] == "L0H0"
    assert (curve.random_min <= curve.random_mean).all() and (curve.random_mean <= curve.random_max).all()
    assert curve.random_quantile(0.5).shape == (4,)
    df = curve.to_dataframe()
    assert len(df) == 4 * (2 + 3) and set(df.columns) == {"order", "seed", "n_ablated", "divergence"}
    assert list(curve.summary().columns)[:3] == ["n_ablated", "synergy-first", "redundancy-first"]
    assert set(curve.auc()) == {"synergy-first", "redundancy-first", "random"}
    curve.save(tmp_path / "c.pt")
    back = AblationCurve.load(tmp_path / "c.pt")
    assert torch.equal(back.random, curve.random) and back.orders == curve.orders
    assert torch.equal(back.curves["synergy-first"], curve.curves["synergy-first"])
    # an explicit order agrees with the score-derived one
    explicit = ablation_curve(
        tiny3, clean_run, {"mine": curve.orders["synergy-first"]}, step=5, n_random=0, progress=False
    )
    assert_close(explicit.curves["mine"], curve.curves["synergy-first"], atol=1e-6, rtol=1e-5)


def test_score_orders_nan_last_and_headscores_like():
    s = torch.tensor([[0.5, float("nan")], [2.0, -1.0]])
    orders = score_orders(s)
    assert orders["synergy-first"] == [(1, 0), (0, 0), (1, 1), (0, 1)]
    assert orders["redundancy-first"] == [(1, 1), (0, 0), (1, 0), (0, 1)]
    assert score_orders(SimpleNamespace(values=s)) == orders
    with pytest.raises(ValueError, match=r"\[layer, head\]"):
        score_orders(torch.zeros(4), 2, 2)


def test_curve_on_a_real_recording(tiny3):
    from synergy_lens.record import record_head_activity

    act = record_head_activity(tiny3, ["hello there", "one two"], max_new_tokens=8, progress=False)
    seqs = teacher_forced_sequences(act)
    assert [s.n_gen for s in seqs] == [len(g) for g in act.generated_ids]
    curve = ablation_curve(tiny3, act, ["L1H0", "L1H1", "L0H2"], step=1, n_random=1, progress=False)
    assert curve.steps.tolist() == [0, 1, 2, 3] and (curve.curves["given"][1:] > 0).all()


def test_bad_inputs(tiny3, clean_run):
    with pytest.raises(ValueError, match="no prompt has generated"):
        teacher_forced_sequences([([1, 2], [])])
    with pytest.raises(TypeError, match="HeadActivity"):
        teacher_forced_sequences(42)
    with pytest.raises(ValueError, match="step"):
        ablation_curve(tiny3, clean_run, ["L0H0"], step=0, progress=False)
    with pytest.raises(TypeError, match="ablation order"):
        ablation_curve(tiny3, clean_run, 3.0, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        ablation_curve(tiny3, clean_run, ["L9H0"], progress=False)
