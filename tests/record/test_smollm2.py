"""The real SmolLM2-135M-Instruct (GQA: 9 query heads, 3 KV heads): shapes and exactness."""

from __future__ import annotations

import pytest
import torch

import synergy_lens as sl
from synergy_lens.models import adapt
from tests.record._reference import uncached_recording

pytestmark = pytest.mark.slow


def test_recording_is_exact_on_the_real_model(smol):
    prompts = sl.default_prompts()[::30]  # two categories
    act = sl.record_head_activity(smol, prompts, max_new_tokens=16, batch_size=2, progress=False)
    assert act.values.shape == (2, 16, 30, 9)  # units are the 9 query heads, not the 3 KV heads
    assert act.model_config["n_kv_heads"] == 3 and act.settings["chat_template"] is True
    assert act.categories == [p.category for p in prompts]
    a = adapt(smol)
    assert act.prompt_ids[0] == a.tokenize(a.apply_chat_template(prompts[0].text))
    assert act.prompt_texts[0].startswith("<|im_start|>")
    for p in range(2):
        gen, ref = uncached_recording(a, act.prompt_ids[p], 16)
        assert act.generated_ids[p] == gen
        # float32, 30 layers: cached + padded vs uncached + unpadded differ by rounding only
        torch.testing.assert_close(act.values[p, : len(gen)], ref["l2"], atol=1e-4, rtol=1e-5)
    assert act.lengths.tolist() == [len(g) for g in act.generated_ids]
    assert torch.isfinite(act.values[0, : int(act.lengths[0])]).all()
