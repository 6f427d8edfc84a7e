"""ablate_units: every ablatable kind equals a hand-written hook, and the curve takes units."""

from __future__ import annotations

import pytest
import torch

import synergy_lens as sl
from synergy_lens import hooks as H
from synergy_lens.intervene import UnitGrid, ablate_units, ablation_curve, unit_grid
from synergy_lens.models import adapt
from synergy_lens.record import record_activity

SEQ = [[1, 5, 9, 13, 2, 7, 11], [1, 4, 8, 3, 6, 10, 12]]
ATOL = 1e-5


def _logits(model, fwd_hooks=()):
    a = adapt(model)
    with torch.inference_mode():
        return a.forward(torch.tensor(SEQ, device=a.device), fwd_hooks=list(fwd_hooks)).float()


def test_zeroing_a_sub_layer_equals_a_hand_written_hook(tiny):
    def zero(t, *, hook):
        return torch.zeros_like(t)

    want = _logits(tiny, [(H.hook_mlp_out(1), zero)])
    with ablate_units(tiny, ["L1.mlp"]) as mask:
        got = _logits(tiny)
    assert mask.tolist() == [[False], [True]]
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert not torch.allclose(got, _logits(tiny), atol=1e-3)  # the ablation changes the output
    torch.testing.assert_close(_logits(tiny), _logits(tiny), atol=0, rtol=0)  # hooks removed on exit


def test_zeroing_neurons_equals_a_hand_written_hook(tiny):
    def zero(t, *, hook):
        t = t.clone()
        t[..., [3, 5]] = 0
        return t

    want = _logits(tiny, [(H.hook_mlp_post(0), zero)])
    with ablate_units(tiny, ["L0N3", "L0N5"]):
        got = _logits(tiny)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_mean_ablation_of_neurons_takes_the_mean_over_reference_tokens(tiny):
    a = adapt(tiny)
    ref = [[1, 2, 3, 4], [1, 7, 8]]
    acts: list[torch.Tensor] = []

    def keep(t, *, hook):
        acts.append(t.detach()[0])

    for seq in ref:  # one unpadded pass per reference sequence
        a.forward(torch.tensor([seq], device=a.device), fwd_hooks=[(H.hook_mlp_post(1), keep)])
    mean = torch.cat(acts).mean(0)

    def replace(t, *, hook):
        t = t.clone()
        t[..., 7] = mean[7]
        return t

    want = _logits(tiny, [(H.hook_mlp_post(1), replace)])
    with ablate_units(tiny, ["L1N7"], mode="mean", reference=ref):
        got = _logits(tiny)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_resampling_from_the_same_sequences_changes_nothing(tiny):
    clean = _logits(tiny)
    with ablate_units(tiny, ["L0.attn", "L1.attn"], mode="resample", reference=SEQ):
        got = _logits(tiny)
    torch.testing.assert_close(got, clean, atol=ATOL, rtol=0)


def test_a_per_batch_mask_gives_each_row_its_own_units(tiny):
    grid = UnitGrid("mlp", (0, 1), 1)
    masks = torch.tensor([[[True], [False]], [[False], [True]]])
    with ablate_units(tiny, masks, grid=grid):
        both = _logits(tiny)
    for row, label in enumerate(["L0.mlp", "L1.mlp"]):
        with ablate_units(tiny, [label]):
            alone = _logits(tiny)
        torch.testing.assert_close(both[row], alone[row], atol=ATOL, rtol=0)


def test_head_labels_ablate_as_ablate_heads(tiny):
    with sl.ablate_heads(tiny, ["L1H2"]):
        want = _logits(tiny)
    with ablate_units(tiny, ["L1H2"]):
        got = _logits(tiny)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_ablation_curve_over_units(tiny):
    act = record_activity(tiny, ["hello there", "a longer prompt"], units="mlp_neurons", layers=[1],
                          max_new_tokens=8, progress=False)
    grid = unit_grid(act)
    assert grid == UnitGrid("mlp_neurons", (1,), act.n_heads)
    scores = torch.arange(act.n_heads, dtype=torch.float32)[None]  # unit order: L1N63 first
    kw = dict(step=16, n_random=2, progress=False)
    curve = ablation_curve(tiny, act, scores, **kw)
    loop = ablation_curve(tiny, act, scores, batched=False, **kw)
    assert curve.orders["synergy-first"][0] == f"L1N{act.n_heads - 1}"
    for name in curve.curves:
        torch.testing.assert_close(curve.curves[name], loop.curves[name], atol=1e-4, rtol=0)
    last = [float(c[-1]) for c in curve.curves.values()] + [float(v) for v in curve.random[:, -1]]
    assert max(last) - min(last) < 1e-4 and last[0] > 0  # every order ends with every neuron ablated
    assert float(curve.curves["synergy-first"][0]) == 0.0


def test_units_that_cannot_be_ablated_say_why(tiny):
    with pytest.raises(ValueError, match="several kinds"), ablate_units(tiny, ["L0.mlp", "L1H0"]):
        pass
    with pytest.raises(ValueError, match="own hook"), ablate_units(tiny, ["L1F0"], grid=UnitGrid("sae", (1,), 4)):
        pass
    with pytest.raises(ValueError, match="out of range"), ablate_units(tiny, ["L0N99999"]):
        pass
    with pytest.raises(ValueError, match="needs reference"), ablate_units(tiny, ["L0.mlp"], mode="mean"):
        pass
    with pytest.raises(ValueError, match="bad unit label"), ablate_units(tiny, ["layer 0 mlp"]):
        pass


def test_expert_units_ablate_through_the_same_call():
    moe = sl.tiny_model(arch="mixtral")
    a = adapt(moe)
    with ablate_units(moe, ["L0E1"]):
        got = _logits(moe)
    assert not torch.allclose(got, _logits(moe), atol=1e-4)
    with ablate_units(moe, [f"L0E{e}" for e in range(int(a.cfg.num_experts))]):
        all_off = _logits(moe)

    def zero(t, *, hook):
        return torch.zeros_like(t)

    torch.testing.assert_close(all_off, _logits(moe, [(H.hook_mlp_out(0), zero)]), atol=ATOL, rtol=0)


def test_accuracy_under_ablation_takes_unit_scores(tiny):
    from synergy_lens.intervene.accuracy import (
        _generate_answers,
        _prompt_ids,
        accuracy_under_ablation,
        default_tasks,
    )

    act = record_activity(tiny, ["hello there", "a longer prompt", "xyz"], units="mlp", max_new_tokens=10,
                          progress=False)
    scores = sl.synergy_scores(sl.decompose(act, progress=False))
    tasks = default_tasks(4)
    res = accuracy_under_ablation(tiny, scores, tasks, fraction=0.5, method="ablate", n_random=1,
                                  max_new_tokens=4, progress=False)
    top = scores.labels[int(torch.argmax(scores.values.flatten()))]
    assert res.conditions == ["clean", "synergistic", "redundant", "random"] and res.heads[1] == [top]
    a = adapt(tiny)
    ids = _prompt_ids(a, tasks, None)
    with ablate_units(tiny, [top]):  # the same condition by hand
        texts = _generate_answers(a, ids, max_new_tokens=4, batch_size=16)
    assert res.completions[1] == texts
    assert res.completions[0] == _generate_answers(a, ids, max_new_tokens=4, batch_size=16)
    with pytest.raises(ValueError, match="method='ablate'"):
        accuracy_under_ablation(tiny, scores, tasks, method="noise", progress=False)
