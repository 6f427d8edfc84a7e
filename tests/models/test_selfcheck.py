"""The guards against broken generation: the cached-decoding self-check and the
degenerate-recording stop (issue: transformers 5.24 silently broke the bridge's KV cache)."""

from __future__ import annotations

import dataclasses
from importlib import metadata

import pytest
import torch

import synergy_lens as sl
from synergy_lens import hooks as H
from synergy_lens.models.adapter import adapt
from synergy_lens.models.selfcheck import (
    ENV_SWITCH,
    CachedDecodingError,
    check_cached_decoding,
)
from synergy_lens.record.degenerate import (
    MIN_LAG_PAIRS,
    DegenerateRecordingError,
    degenerate_mask,
)

PROMPTS = ["the cat sat on", "a b c"]


def _fresh_tiny(backend: str):
    # a new object each time: the check is remembered per model object
    return sl.tiny_model(backend, n_layers=2, n_heads=4, n_kv_heads=2, d_head=8, seed=0)


def _attend_to_self_when_decoding(pattern: torch.Tensor, *, hook) -> torch.Tensor | None:
    """What an ignored KV cache does: a decoding step (one query) sees only its own key."""
    if pattern.shape[-2] != 1:
        return None
    out = torch.zeros_like(pattern)
    out[..., -1] = 1.0
    return out


def _broken_cache_hooks(n_layers: int):
    return [(H.hook_pattern(layer), _attend_to_self_when_decoding) for layer in range(n_layers)]


def test_healthy_model_passes_with_float32_agreement(tiny) -> None:
    result = check_cached_decoding(tiny, force=True)
    assert result is not None and result.ok
    assert result.n_steps == 4
    assert result.max_rel_diff < 1e-5  # float32 rounding only; the tolerance is 1e-3


def test_check_runs_once_per_model_object(tiny) -> None:
    check_cached_decoding(tiny)
    calls = []

    def count(x: torch.Tensor, *, hook) -> None:
        calls.append(1)

    with tiny.hooks(fwd_hooks=[(H.hook_resid_post(1), count)]):
        check_cached_decoding(tiny)
    assert calls == []  # remembered: no forward pass
    with tiny.hooks(fwd_hooks=[(H.hook_resid_post(1), count)]):
        check_cached_decoding(tiny, force=True)
    assert len(calls) >= 4 + 2  # 4 cached steps + one uncached pass per prompt


def test_guard_fires_on_broken_cache_and_names_versions(backend: str) -> None:
    model = _fresh_tiny(backend)
    with model.hooks(fwd_hooks=_broken_cache_hooks(2)):
        failed = check_cached_decoding(model, raise_error=False)
        assert failed is not None and not failed.ok
        assert failed.max_rel_diff > 100 * failed.tolerance
        with pytest.raises(CachedDecodingError) as err:
            sl.record_head_activity(model, PROMPTS, max_new_tokens=8, progress=False)
    text = str(err.value)
    assert f"transformers {metadata.version('transformers')}" in text
    assert f"transformer-lens {metadata.version('transformer-lens')}" in text
    assert "make env" in text and "locks/lock-tl4.txt" in text


def test_guard_fires_before_any_generation_in_generate(backend: str) -> None:
    model = _fresh_tiny(backend)
    adapter = adapt(model)
    with model.hooks(fwd_hooks=_broken_cache_hooks(2)), pytest.raises(CachedDecodingError):
        adapter.generate([adapter.tokenize("hello")], max_new_tokens=4)


def test_switch_turns_the_check_off(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _fresh_tiny(backend)
    monkeypatch.setenv(ENV_SWITCH, "0")
    with model.hooks(fwd_hooks=_broken_cache_hooks(2)):
        assert check_cached_decoding(model) is None


def _constant_z(z: torch.Tensor, *, hook) -> torch.Tensor:
    return torch.ones_like(z)


def test_all_degenerate_recording_stops_with_the_recording_attached(tiny) -> None:
    hooks = [(H.hook_z(layer), _constant_z) for layer in range(2)]
    with tiny.hooks(fwd_hooks=hooks), pytest.raises(DegenerateRecordingError) as err:
        sl.record_head_activity(
            tiny, PROMPTS, max_new_tokens=10, stop_at_eos=False, progress=False
        )
    assert "points at generation" in str(err.value)
    activity = err.value.activity
    assert activity.n_prompts == 2 and activity.n_units == 8
    assert bool(degenerate_mask(activity).all())


def test_partly_degenerate_recording_passes_and_mask_finds_the_planted_units(tiny) -> None:
    zero_layer0 = [(H.hook_z(0), _constant_z)]
    with tiny.hooks(fwd_hooks=zero_layer0):
        act = sl.record_head_activity(
            tiny, PROMPTS, max_new_tokens=10, stop_at_eos=False, progress=False
        )
    mask = degenerate_mask(act)
    assert mask[:, :4].all()  # layer 0: units 0-3
    assert not mask[:, 4:].any()


def test_mask_catches_the_ignored_cache_pattern_and_short_series(tiny) -> None:
    act = sl.record_head_activity(tiny, PROMPTS, max_new_tokens=10, stop_at_eos=False, progress=False)
    values = act.values.clone()  # [prompt, time, layer, head]
    # an ignored cache: the first steps differ, then every unit repeats one value; no unit
    # is constant on its own (3 distinct values each), yet only 3 distinct lag rows remain
    values[0, 3:] = values[0, 2]
    # prompt 1: L0H0 repeats from step 1 on (its future is constant)
    values[1, 1:, 0, 0] = values[1, 1, 0, 0]
    # too short: MIN_LAG_PAIRS lag pairs need MIN_LAG_PAIRS + 1 steps
    values[1, MIN_LAG_PAIRS:, 1, 2] = float("nan")
    values[1, MIN_LAG_PAIRS + 1 :, 1, 3] = float("nan")
    mask = degenerate_mask(dataclasses.replace(act, values=values))
    expected = torch.zeros_like(mask)
    expected[0] = True  # every unit of prompt 0
    expected[1, 0] = True  # L0H0 in prompt 1
    expected[1, 4 + 2] = True  # L1H2 in prompt 1: 4 lag pairs
    assert torch.equal(mask, expected)  # L1H3 (5 lag pairs) is fine


@pytest.mark.slow
def test_smollm2_passes_the_check(smol) -> None:
    result = check_cached_decoding(smol, force=True)
    assert result is not None and result.ok and result.max_rel_diff < 1e-4
