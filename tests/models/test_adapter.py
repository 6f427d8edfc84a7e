"""The adapter gives the same view of both backends (tiny random models, fast)."""

from __future__ import annotations

import pytest
import torch

from synergy_lens import hooks as H
from synergy_lens.models import TinyConfig, adapt, tiny_model


def test_rejects_non_transformer_lens_objects():
    with pytest.raises(TypeError, match="TransformerLens model"):
        adapt(torch.nn.Linear(2, 2))


def test_sizes_and_labels(tiny):
    a = adapt(tiny)
    assert (a.n_layers, a.n_heads, a.n_kv_heads, a.d_head) == (2, 4, 2, 8)
    assert a.unit_labels()[:5] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0"]
    assert adapt(a) is a


@pytest.mark.parametrize("policy,expect_bos", [("always", True), ("never", False)])
def test_bos_policy_is_explicit(tiny, policy, expect_bos):
    a = adapt(tiny, bos=policy)
    ids = a.tokenize("hi")
    bos = a.tokenizer.bos_token_id
    assert (ids[0] == bos) is expect_bos
    assert ids.count(bos) == int(expect_bos)  # added exactly once, never twice
    assert ids[-2:] == [ord("h"), ord("i")]  # byte-level: 'h', 'i'


def test_unknown_bos_policy(tiny):
    with pytest.raises(ValueError, match="bos policy"):
        adapt(tiny, bos="sometimes")  # type: ignore[arg-type]


def test_padding_sides(tiny):
    a = adapt(tiny)
    ids, mask = a.pad([[1, 2, 3], [4]], side="left")
    assert ids.tolist()[1][-1] == 4 and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = a.pad([[1, 2, 3], [4]], side="right")
    assert ids.tolist()[1][0] == 4 and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def _greedy_uncached(a, prompt, n):
    ids = torch.tensor([prompt])
    for _ in range(n):
        nxt = a.forward(ids)[:, -1].argmax(-1)
        ids = torch.cat([ids, nxt[:, None]], 1)
    return ids[0, len(prompt):].tolist()


def test_batched_cached_generation_equals_uncached(tiny):
    """Left padding and the KV cache change nothing: same tokens as one-by-one decoding."""
    a = adapt(tiny, bos="never")
    prompts = [a.tokenize(t) for t in ["hello there", "a", "a much longer prompt than the others"]]
    batched = a.generate(prompts, max_new_tokens=6, stop_at_eos=False)
    for p, got in zip(prompts, batched):
        assert got == _greedy_uncached(a, p, 6)


def test_sampling_is_seeded(tiny):
    a = adapt(tiny, bos="never")
    p = [a.tokenize("seed")]
    s1 = a.generate(p, max_new_tokens=8, do_sample=True, seed=3, stop_at_eos=False)
    s2 = a.generate(p, max_new_tokens=8, do_sample=True, seed=3, stop_at_eos=False)
    s3 = a.generate(p, max_new_tokens=8, do_sample=True, seed=4, stop_at_eos=False)
    assert s1 == s2 and s1 != s3


def test_head_weight_views_are_the_head_that_hook_z_names(tiny):
    """Zeroing a head's W_O view equals zeroing that head's hook_z (same head, same layout)."""
    a = adapt(tiny, bos="never")
    tokens = torch.tensor([a.tokenize("which head is this")])
    layer, head = 1, 2

    def zero_head(z, *, hook, h):
        z = z.clone()
        z[:, :, h] = 0.0
        return z

    from functools import partial

    by_hook = a.forward(tokens, fwd_hooks=[(H.hook_z(layer), partial(zero_head, h=head))])
    view = a.head_weight_views(layer, head)["W_O"]
    saved = view.clone()
    try:
        view.zero_()
        by_weight = a.forward(tokens)
    finally:
        view.copy_(saved)
    torch.testing.assert_close(by_weight, by_hook, atol=1e-5, rtol=0)
    with pytest.raises(IndexError, match="out of range"):
        a.head_weight_views(5, 0)


def test_tiny_model_is_deterministic_per_seed(backend):
    m1 = tiny_model(backend, TinyConfig(n_layers=1), seed=1)
    m2 = tiny_model(backend, TinyConfig(n_layers=1), seed=1)
    m3 = tiny_model(backend, TinyConfig(n_layers=1), seed=2)
    p1, p2, p3 = (next(iter(m.parameters())) for m in (m1, m2, m3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
