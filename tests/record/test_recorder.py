"""record_head_activity on tiny models: exact, batching-invariant, EOS-aware, side-effect free."""

from __future__ import annotations

import pytest
import torch

import synergy_lens as sl
from synergy_lens.models import adapt, tiny_model
from synergy_lens.record import Prompt, batch_plan
from tests.record._reference import uncached_recording

PROMPTS = ["hello there", "hi", "a somewhat longer prompt to pad against", "xyz"]
ATOL = 1e-5  # float32: the cached/uncached and padded/unpadded passes differ by rounding only


def _record(model, prompts=PROMPTS, **kw):
    kw.setdefault("max_new_tokens", 10)
    kw.setdefault("progress", False)
    return sl.record_head_activity(model, prompts, **kw)


def test_values_equal_uncached_step_by_step_hooks(tiny):
    """Batched KV-cache generation + one teacher-forced pass == hooks during uncached steps."""
    prompts, steps = PROMPTS[:3], 8
    acts = {
        s: _record(tiny, prompts, max_new_tokens=steps, batch_size=3, signal=s)
        for s in ("l2", "l2_out")
    }
    a = adapt(tiny)
    for p in range(len(prompts)):
        gen, ref = uncached_recording(a, acts["l2"].prompt_ids[p], steps, ("l2", "l2_out"))
        n = len(gen)
        for s, act in acts.items():
            assert act.generated_ids[p] == gen
            torch.testing.assert_close(act.values[p, :n], ref[s], atol=ATOL, rtol=0)
            assert act.values[p, n:].isnan().all()


def test_shapes_labels_and_metadata(tiny, backend):
    act = _record(tiny, batch_size=2)
    a = adapt(tiny)
    assert act.values.shape == (4, 10, a.n_layers, a.n_heads)
    assert act.values.dtype == torch.float32
    assert act.model_config["n_kv_heads"] == 2 < act.model_config["n_heads"] == 4  # GQA
    assert act.model_config["backend"] == backend
    assert act.settings == {
        "signal": "l2",
        "max_new_tokens": 10,
        "chat_template": False,
        "do_sample": False,
        "seed": 0,
        "batch_size": 2,
        "prepend_bos": a.prepend_bos,
    }
    assert act.prompts == PROMPTS and act.categories is None
    assert act.prompt_ids == [a.tokenize(p) for p in PROMPTS]
    assert act.lengths.tolist() == [len(g) for g in act.generated_ids]
    assert act.full_ids(1) == act.prompt_ids[1] + act.generated_ids[1]
    assert act.completions[0] == a.tokenizer.decode(act.generated_ids[0], skip_special_tokens=True)
    assert act.unit_labels()[:5] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0"]
    assert torch.isfinite(act.values[act.values == act.values]).all()


def test_batch_size_and_padding_do_not_change_values(tiny):
    one = _record(tiny, max_new_tokens=8, batch_size=1)  # no padding at all
    for bs in (4,):
        other = _record(tiny, max_new_tokens=8, batch_size=bs)
        assert other.generated_ids == one.generated_ids
        torch.testing.assert_close(other.values, one.values, atol=ATOL, rtol=0, equal_nan=True)
    # a prompt's values do not depend on which prompts share its batch
    alone = _record(tiny, prompts=[PROMPTS[2]], max_new_tokens=8, batch_size=1)
    torch.testing.assert_close(alone.values[0], one.values[2], atol=ATOL, rtol=0, equal_nan=True)


def test_batches_group_similar_lengths_and_output_keeps_prompt_order():
    ids = [[1] * n for n in (3, 9, 1, 7, 5)]
    assert batch_plan(ids, 2) == [[1, 3], [4, 0], [2]]
    assert sorted(i for b in batch_plan(ids, 3) for i in b) == list(range(5))


def _with_stop_token(backend, prompts, steps):
    """A fresh tiny model whose EOS is a token greedy decoding emits early for prompts[0]."""
    model = tiny_model(backend, seed=0)
    a = adapt(model)
    free = a.generate([a.tokenize(p) for p in prompts], max_new_tokens=steps)
    stop = free[0][3]  # emitted at step <= 3 of prompt 0
    tok = model.tokenizer
    tok.eos_token = tok.convert_ids_to_tokens(stop)
    assert a.eos_token_id == stop
    expected = [g.index(stop) + 1 if stop in g else steps for g in free]
    return model, stop, expected


def test_eos_ends_the_series_and_counts_as_a_step(backend):
    prompts = PROMPTS
    model, stop, expected = _with_stop_token(backend, prompts, 12)
    assert min(expected) <= 4 and max(expected) > min(expected)  # mixed lengths in one batch
    act = _record(model, prompts, max_new_tokens=12, batch_size=4)
    assert act.lengths.tolist() == expected
    a = adapt(model)
    for p, n in enumerate(expected):
        gen = act.generated_ids[p]
        assert len(gen) == n
        assert stop not in gen[:-1] and (n == 12 or gen[-1] == stop)
        assert torch.isfinite(act.values[p, :n]).all() and act.values[p, n:].isnan().all()
    for p in (0, expected.index(max(expected))):  # one stopped early, one ran longest
        ref_gen, ref = uncached_recording(a, act.prompt_ids[p], 12)
        assert ref_gen == act.generated_ids[p]
        torch.testing.assert_close(act.values[p, : len(ref_gen)], ref["l2"], atol=ATOL, rtol=0)


def test_categories_are_kept_from_labelled_prompts(tiny):
    prompts = [Prompt("hello", "numerical_reasoning"), Prompt("abc", "pos_tagging"), "raw"]
    act = _record(tiny, prompts, max_new_tokens=8)
    assert act.categories == ["numerical_reasoning", "pos_tagging", ""]
    assert act.prompts == ["hello", "abc", "raw"]


def test_model_is_left_as_it_was(tiny):
    a = adapt(tiny)
    ids = torch.tensor([a.tokenize("check")])
    with torch.inference_mode():
        before = a.forward(ids)
    tiny.train()
    _record(tiny, max_new_tokens=8)
    assert tiny.training  # mode restored (recorded in eval mode)
    tiny.eval()
    with torch.inference_mode():
        after = a.forward(ids)
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert all(not hp._forward_hooks for hp in tiny.hook_dict.values())  # no hook left behind


def test_sampling_is_seeded_and_resumable_per_batch(tiny):
    kw = dict(max_new_tokens=8, batch_size=1, do_sample=True)
    a1, a2 = _record(tiny, PROMPTS[:2], seed=3, **kw), _record(tiny, PROMPTS[:2], seed=3, **kw)
    assert a1.generated_ids == a2.generated_ids
    torch.testing.assert_close(a1.values, a2.values, atol=0, rtol=0, equal_nan=True)
    greedy = _record(tiny, PROMPTS[:2], max_new_tokens=8, batch_size=1)
    assert a1.generated_ids != greedy.generated_ids


def test_chat_template_is_not_applied_without_one(tiny):
    act = _record(tiny, max_new_tokens=8, chat_template=None)
    assert act.settings["chat_template"] is False
    with pytest.raises(ValueError, match="no chat template"):
        _record(tiny, max_new_tokens=8, chat_template=True)


def test_stop_at_eos_false_gives_full_length_series(backend):
    model, stop, expected = _with_stop_token(backend, PROMPTS, 12)
    stopped = _record(model, PROMPTS, max_new_tokens=12, batch_size=4)
    full = _record(model, PROMPTS, max_new_tokens=12, batch_size=4, stop_at_eos=False)
    assert full.lengths.tolist() == [12] * len(PROMPTS)
    assert torch.isfinite(full.values).all()
    assert stop in full.generated_ids[0][:-1]  # generation went on past the EOS
    assert full.settings["stop_at_eos"] is False and "stop_at_eos" not in stopped.settings
    for p, n in enumerate(expected):  # causal: the steps up to the EOS are the same
        assert full.generated_ids[p][:n] == stopped.generated_ids[p]
        torch.testing.assert_close(full.values[p, :n], stopped.values[p, :n], atol=ATOL, rtol=0)


@pytest.mark.parametrize("signal", ["l2", "l2_out"])
def test_recording_during_generation_equals_a_teacher_forced_pass(tiny, signal):
    """docs/science.md, "Recording during generation": hooks inside cached generation and one
    teacher-forced pass over the finished sequences give the same per-token head signals (attention is causal)."""
    from synergy_lens.record import teacher_forced_signals
    from synergy_lens.record.signals import SIGNALS

    act = _record(tiny, PROMPTS, max_new_tokens=10, batch_size=3, signal=signal)
    a = adapt(tiny)
    tf = teacher_forced_signals(a, act.prompt_ids, act.generated_ids, SIGNALS[signal], n_steps=10)
    torch.testing.assert_close(act.values, tf, atol=ATOL, rtol=0, equal_nan=True)
    assert torch.isfinite(act.values).all()
