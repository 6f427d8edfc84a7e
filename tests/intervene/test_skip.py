"""Layer skipping equals the transformers model with that layer deleted.

Tolerance: atol 1e-5 on tiny float32 models (the two computations differ only in rounding
of the same operations), 1e-3 on SmolLM2's logits (30 layers, vocabulary 49152; observed
differences are ~1e-5).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from synergy_lens.intervene import skip_layers
from synergy_lens.models import adapt
from synergy_lens.models.tiny import TinyConfig, _hf_tiny

IDS = [256, 10, 20, 30, 40, 50, 60]


def hf_without(hf, layers: set[int]):
    """A copy of a transformers causal LM with the decoder layers in ``layers`` deleted.

    A deep copy: a shallow ``copy.copy`` of an ``nn.Module`` shares its ``_modules`` dict, so
    assigning a submodule on the copy would prune the original (a shared session fixture).
    """
    pruned = copy.deepcopy(hf)
    pruned.model.layers = nn.ModuleList(
        [block for i, block in enumerate(pruned.model.layers) if i not in layers]
    )
    return pruned


def hf_logits(hf, ids):
    with torch.no_grad():
        return hf(torch.tensor([ids]), use_cache=False).logits


def tl_logits(model, ids):
    with torch.no_grad():
        return adapt(model).forward(torch.tensor([ids]))


@pytest.mark.parametrize("layers", [{0}, {1}, {2}, {0, 2}])
def test_skip_equals_deleted_layer(tiny3, layers):
    hf = _hf_tiny(TinyConfig(n_layers=3, n_heads=4, n_kv_heads=2, d_head=8), seed=1)
    assert_close(tl_logits(tiny3, IDS), hf_logits(hf, IDS), atol=1e-5, rtol=1e-5)  # same network
    with skip_layers(tiny3, sorted(layers)):
        skipped = tl_logits(tiny3, IDS)
    assert_close(skipped, hf_logits(hf_without(hf, layers), IDS), atol=1e-5, rtol=1e-5)


def test_skip_restores_and_per_batch_mask(tiny3):
    clean = tl_logits(tiny3, IDS)
    with pytest.raises(RuntimeError), skip_layers(tiny3, 1):
        raise RuntimeError
    assert torch.equal(tl_logits(tiny3, IDS), clean)
    mask = torch.tensor([[False, False, False], [True, False, False], [False, True, True]])
    with torch.no_grad(), skip_layers(tiny3, mask):
        batched = adapt(tiny3).forward(torch.tensor([IDS] * 3))
    for row, layers in enumerate([[], [0], [1, 2]]):
        with skip_layers(tiny3, layers):
            assert_close(batched[row], tl_logits(tiny3, IDS)[0], atol=1e-5, rtol=1e-5)


def test_skip_errors(tiny3):
    with pytest.raises(ValueError, match="out of range"), skip_layers(tiny3, 3):
        pass
    with pytest.raises(TypeError, match="integers"), skip_layers(tiny3, ["1"]):
        pass


@pytest.mark.slow
def test_skip_on_smollm2_equals_deleted_layer(smol, smol_hf):
    hf, tok = smol_hf
    ids = tok("The capital of France is", add_special_tokens=False)["input_ids"]
    with skip_layers(smol, 11):
        skipped = tl_logits(smol, ids)
    expected = hf_logits(hf_without(hf, {11}), ids)
    assert_close(skipped, expected, atol=1e-3, rtol=1e-4)
    assert (skipped - tl_logits(smol, ids)).abs().max() > 0.1  # the layer mattered
