"""The real default model, loaded offline, matches the transformers model it comes from."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from synergy_lens import hooks as H
from synergy_lens.models import adapt

pytestmark = pytest.mark.slow

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "In 1905 Albert Einstein published four papers that",
]


def test_log_probs_match_transformers(smol, smol_hf):
    hf, tok = smol_hf
    for text in PROMPTS:
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.inference_mode():
            ours = smol(ids).log_softmax(-1)
            ref = hf(ids).logits.log_softmax(-1)
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_greedy_generation_knows_paris(smol):
    a = adapt(smol)
    assert not a.prepend_bos  # SmolLM2 was trained without BOS; the GGUF tokenizer adds none
    out = a.generate([a.tokenize("The capital of France is")], max_new_tokens=8)[0]
    assert "Paris" in a.tokenizer.decode(out)


def test_hook_z_shape_and_head_decomposition(smol):
    """hook_z is [batch, pos, 9, 64]; zeroing head h moves hook_attn_out by z_h @ W_O[h]."""
    a = adapt(smol)
    layer, head = 7, 4
    ids, _ = a.pad([a.tokenize(p) for p in PROMPTS[:2]], side="right")
    seen: dict[str, torch.Tensor] = {}

    def keep(t, *, hook, key):
        seen[key] = t.detach().clone()

    def zero(z, *, hook, h):
        z = z.clone()
        z[:, :, h] = 0.0
        return z

    with torch.inference_mode():
        a.forward(ids, fwd_hooks=[(H.hook_z(layer), partial(keep, key="z")),
                                  (H.hook_attn_out(layer), partial(keep, key="out"))])
        a.forward(ids, fwd_hooks=[(H.hook_z(layer), partial(zero, h=head)),
                                  (H.hook_attn_out(layer), partial(keep, key="out_ablated"))])
    assert tuple(seen["z"].shape) == (2, ids.shape[1], 9, 64)
    w_o = a.W_O(layer)  # [head, d_head, d_model]
    expected = seen["z"][:, :, head] @ w_o[head]
    torch.testing.assert_close(seen["out"] - seen["out_ablated"], expected, atol=1e-5, rtol=0)
