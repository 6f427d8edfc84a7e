"""record_head_activity refuses bad input with a message that says what to do."""

from __future__ import annotations

import pytest
import torch

import synergy_lens as sl
from synergy_lens.models import adapt


def _rec(model, prompts, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("max_new_tokens", 8)
    return sl.record_head_activity(model, prompts, **kw)


def test_not_a_transformer_lens_model():
    with pytest.raises(TypeError, match="expected a TransformerLens model"):
        _rec(torch.nn.Linear(2, 2), ["hi"])


def test_no_prompts_and_empty_prompts(tiny):
    with pytest.raises(ValueError, match="no prompts"):
        _rec(tiny, [])
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        _rec(tiny, ["fine", "   "])
    with pytest.raises(TypeError, match="prompt 0 is a int"):
        _rec(tiny, [3])


def test_too_few_new_tokens(tiny):
    with pytest.raises(ValueError, match="max_new_tokens=7 is too small: use at least 8"):
        _rec(tiny, ["hi"], max_new_tokens=7)
    with pytest.raises(TypeError, match="max_new_tokens must be an int"):
        _rec(tiny, ["hi"], max_new_tokens=8.0)
    with pytest.raises(ValueError, match="batch_size=0"):
        _rec(tiny, ["hi"], batch_size=0)


def test_prompt_longer_than_the_context_window(tiny):
    n_ctx = adapt(tiny).n_ctx
    with pytest.raises(ValueError, match="longer than the model's context window"):
        _rec(tiny, ["a" * (n_ctx + 5)])
    with pytest.raises(ValueError, match="does not fit in the model's context window"):
        _rec(tiny, ["a" * (n_ctx - 4)], max_new_tokens=8)


def test_unknown_signal(tiny):
    with pytest.raises(ValueError, match="unknown signal 'l9'"):
        _rec(tiny, ["hi"], signal="l9")
