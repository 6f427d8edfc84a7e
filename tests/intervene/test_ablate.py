"""Head ablation through hooks: planted ground truth on tiny models, both backends."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.testing import assert_close

from synergy_lens import hooks as H
from synergy_lens.intervene import (
    ABLATIONS,
    ablate_heads,
    head_means,
    prepare_reference,
    register_ablation,
)
from synergy_lens.models import adapt

IDS = torch.tensor([[256, 10, 20, 30, 40, 50, 60, 70]])
REF = [[256, 5, 6, 7, 8, 9, 11, 12, 13, 14], [256, 99, 98, 97, 96, 95, 94, 93, 92]]


def run(model, ids=IDS, grab=(), fwd=()):
    """Logits, plus captured activations for the hook names in ``grab``."""
    store = {}

    def keep(t, *, hook, key):
        store[key] = t.detach().clone()

    hooks = [*fwd, *[(n, functools.partial(keep, key=n)) for n in grab]]
    with torch.no_grad():
        out = adapt(model).forward(ids, fwd_hooks=hooks)
    return out, store


@pytest.mark.parametrize(("layer", "head"), [(0, 0), (1, 3), (2, 1)])
def test_zero_ablation_changes_attn_out_by_exactly_z_WO(tiny3, layer, head):
    a = adapt(tiny3)
    names = [H.hook_z(layer), H.hook_attn_out(layer)]
    _, clean = run(tiny3, grab=names)
    with ablate_heads(tiny3, [(layer, head)]):
        _, abl = run(tiny3, grab=names)
    expected = clean[names[0]][:, :, head] @ a.W_O(layer)[head].detach()
    assert_close(clean[names[1]] - abl[names[1]], expected, atol=1e-5, rtol=1e-5)
    # a hook added later sees the replaced z: the head is 0, the other heads are untouched
    assert torch.equal(abl[names[0]][:, :, head], torch.zeros_like(abl[names[0]][:, :, head]))
    others = [h for h in range(a.n_heads) if h != head]
    assert_close(abl[names[0]][:, :, others], clean[names[0]][:, :, others])


def test_empty_mask_equals_clean_run_exactly(tiny3):
    clean, _ = run(tiny3)
    a = adapt(tiny3)
    with ablate_heads(tiny3, torch.zeros(a.n_layers, a.n_heads, dtype=torch.bool)):
        out, _ = run(tiny3)
    assert torch.equal(out, clean)
    with ablate_heads(tiny3, []):
        out, _ = run(tiny3)
    assert torch.equal(out, clean)


def test_batched_conditions_equal_separate_runs(tiny3):
    a = adapt(tiny3)
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(5, a.n_layers, a.n_heads, generator=gen) > 0.5
    masks[0] = False  # an all-False row is the clean run
    with ablate_heads(tiny3, masks):
        batched, _ = run(tiny3, ids=IDS.expand(5, -1))
    for i in range(5):
        with ablate_heads(tiny3, masks[i]):
            single, _ = run(tiny3)
        assert_close(batched[i], single[0], atol=1e-5, rtol=1e-5)
    clean, _ = run(tiny3)
    assert_close(batched[0], clean[0], atol=1e-5, rtol=1e-5)


def test_hooks_removed_on_exit_and_on_error(tiny3):
    clean, _ = run(tiny3)
    with ablate_heads(tiny3, ["L0H0", "L1H2"]):
        inside, _ = run(tiny3)
    assert not torch.equal(inside, clean)
    after, _ = run(tiny3)
    assert torch.equal(after, clean)
    with pytest.raises(RuntimeError, match="boom"), ablate_heads(tiny3, ["L0H0"]):
        raise RuntimeError("boom")
    after_error, _ = run(tiny3)
    assert torch.equal(after_error, clean)


def test_nested_hooks_keep_the_ablation(tiny3):
    with ablate_heads(tiny3, ["L2H0"]):
        plain, _ = run(tiny3)
        with_capture, store = run(tiny3, grab=[H.hook_z(0)])
    assert torch.equal(plain, with_capture) and H.hook_z(0) in store


def test_mean_ablation_uses_reference_means(tiny3):
    a = adapt(tiny3)
    means = head_means(tiny3, REF)
    assert means.shape == (a.n_layers, a.n_heads, a.d_head)
    # ground truth by hand: average hook_z of layer 1 over all valid reference positions
    zs = [run(tiny3, ids=torch.tensor([r]), grab=[H.hook_z(1)])[1][H.hook_z(1)][0] for r in REF]
    assert_close(means[1], torch.cat(zs).mean(0), atol=1e-5, rtol=1e-5)
    names = [H.hook_z(1), H.hook_attn_out(1)]
    _, clean = run(tiny3, grab=names)
    for ref in (means, REF):  # a tensor, or texts/ids to compute it from
        with ablate_heads(tiny3, [(1, 2)], mode="mean", reference=ref):
            _, abl = run(tiny3, grab=names)
        delta = (clean[names[0]][:, :, 2] - means[1, 2]) @ a.W_O(1)[2].detach()
        assert_close(clean[names[1]] - abl[names[1]], delta, atol=1e-5, rtol=1e-5)


def test_resample_ablation_takes_reference_activation(tiny3):
    a = adapt(tiny3)
    names = [H.hook_z(0), H.hook_attn_out(0)]
    _, clean = run(tiny3, grab=names)
    ref = REF[0]
    _, on_ref = run(tiny3, ids=torch.tensor([ref]), grab=names)
    with ablate_heads(tiny3, [(0, 3)], mode="resample", reference=[ref]):
        _, abl = run(tiny3, grab=names)
    n = IDS.shape[1]
    delta = (clean[names[0]][:, :, 3] - on_ref[names[0]][:, :n, 3]) @ a.W_O(0)[3].detach()
    assert_close(clean[names[1]] - abl[names[1]], delta, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="at least as long"), ablate_heads(
        tiny3, [(0, 3)], mode="resample", reference=[[256, 1, 2]]
    ):
        run(tiny3)


@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_hooks_apply_during_cached_generation(tiny3, mode):
    """Generation under ablation equals greedy decoding by teacher-forced ablated passes."""
    a = adapt(tiny3)
    prompt = [256, 10, 20, 30]
    ref = prepare_reference(tiny3, mode, [REF[0] + REF[1]]) if mode != "zero" else None
    heads = ["L0H1", "L1H0", "L2H3"]
    with ablate_heads(tiny3, heads, mode=mode, reference=ref):
        gen = a.generate([prompt], max_new_tokens=5, stop_at_eos=False)[0]
    seq = list(prompt)
    for _ in range(5):
        with ablate_heads(tiny3, heads, mode=mode, reference=ref):
            out, _ = run(tiny3, ids=torch.tensor([seq]))
        seq.append(int(out[0, -1].argmax()))
    assert gen == seq[len(prompt):]
    assert gen != a.generate([prompt], max_new_tokens=5, stop_at_eos=False)[0]


def test_user_registered_mode(tiny3):
    a = adapt(tiny3)

    @register_ablation("half_test", overwrite=True)
    def half(z, layer, state):
        return 0.5 * z

    try:
        names = [H.hook_z(2), H.hook_attn_out(2)]
        _, clean = run(tiny3, grab=names)
        with ablate_heads(tiny3, [(2, 1)], mode="half_test"):
            _, abl = run(tiny3, grab=names)
        delta = 0.5 * clean[names[0]][:, :, 1] @ a.W_O(2)[1].detach()
        assert_close(clean[names[1]] - abl[names[1]], delta, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="already registered"):
            register_ablation("half_test", half)
    finally:
        ABLATIONS.pop("half_test", None)


def test_ablation_errors(tiny3):
    with pytest.raises(ValueError, match="unknown ablation mode"), ablate_heads(tiny3, ["L0H0"], mode="nope"):
        pass
    with pytest.raises(ValueError, match="needs reference"), ablate_heads(tiny3, ["L0H0"], mode="mean"):
        pass
    with pytest.raises(ValueError, match=r"\[layer, head, d_head\]"), ablate_heads(
        tiny3, ["L0H0"], mode="mean", reference=torch.zeros(2, 2)
    ):
        pass
    masks = torch.ones(3, 3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="stack exactly one condition"), ablate_heads(tiny3, masks):
        run(tiny3, ids=IDS.expand(2, -1))
