"""Units beyond heads: every kind records what its hook point holds, labelled by kind.

Ground truth: one unpadded forward pass per sequence with a hook that keeps the raw
activation; the unit values are computed from it by hand (norms, neuron values, an encoder)
and compared with the recorder's values, which come from cached generation, left padding
and the kind's reducer.
"""

from __future__ import annotations

import functools

import pytest
import torch

import synergy_lens as sl
from synergy_lens import hooks as H
from synergy_lens.models import adapt
from synergy_lens.record import HeadActivity, hook_units, record_activity, sae_units, spread_layers
from synergy_lens.record.kinds import parse_layers, resolve_units

PROMPTS = ["hello there", "hi", "a somewhat longer prompt to pad against"]
STEPS = 8
ATOL = 1e-5


def _raw(model, act: HeadActivity, hook_name: str) -> list[torch.Tensor]:
    """The activation at ``hook_name`` for each prompt's recorded positions, from one
    unpadded pass per sequence: ``[time, ...]`` with time = generated steps."""
    a = adapt(model)
    out = []
    for p in range(act.n_prompts):
        seq = act.full_ids(p)[:-1]
        kept: dict[str, torch.Tensor] = {}
        with torch.inference_mode():
            a.forward(torch.tensor([seq], device=a.device), fwd_hooks=[(hook_name, functools.partial(_keep, kept))])
        start = len(act.prompt_ids[p]) - 1
        out.append(kept["x"][0, start : start + int(act.lengths[p])].float().cpu())
    return out


def _keep(kept, t, *, hook):
    kept["x"] = t.detach()


def _record(model, units, layers=None):
    return record_activity(model, PROMPTS, units=units, layers=layers, max_new_tokens=STEPS, batch_size=2,
                           progress=False)


@pytest.mark.parametrize("units,hook", [("attn", H.hook_attn_out), ("mlp", H.hook_mlp_out)])
def test_sub_layer_units_are_the_norm_of_their_residual_write(tiny, units, hook):
    act = _record(tiny, units)
    assert act.unit_kind == units and act.values.shape[2:] == (2, 1) and act.layers is None
    assert act.unit_labels() == [f"L0.{units}", f"L1.{units}"]
    for layer in range(2):
        for p, raw in enumerate(_raw(tiny, act, hook(layer))):
            want = torch.linalg.vector_norm(raw, dim=-1)
            torch.testing.assert_close(act.values[p, : len(want), layer, 0], want, atol=ATOL, rtol=1e-5)


def test_mlp_neurons_are_hook_post_on_the_chosen_layers(tiny):
    act = _record(tiny, "mlp_neurons", layers=[1])
    d_mlp = int(adapt(tiny).cfg.d_mlp)
    assert act.values.shape[2:] == (1, d_mlp) and act.layers == [1] and act.model_layers == [1]
    assert act.unit_labels()[:2] == ["L1N0", "L1N1"] and act.unit_labels()[-1] == f"L1N{d_mlp - 1}"
    for p, raw in enumerate(_raw(tiny, act, H.hook_mlp_post(1))):
        torch.testing.assert_close(act.values[p, : raw.shape[0], 0], raw, atol=ATOL, rtol=1e-5)
    frame = act.to_dataframe()
    assert set(frame["layer"]) == {1} and frame["label"].iloc[0] == "L1N0"


def test_every_kind_recorded_in_generation_equals_a_teacher_forced_pass(tiny):
    """The cached-generation hooks and the teacher-forced pass agree for every built-in kind."""
    from synergy_lens.record import teacher_forced_signals

    a = adapt(tiny)
    for units, layers in [("heads", [1]), ("attn", None), ("mlp", None), ("mlp_neurons", [0, 1])]:
        act = _record(tiny, units, layers)
        tf = teacher_forced_signals(a, act.prompt_ids, act.generated_ids, resolve_units(a, units, layers=layers),
                                    n_steps=STEPS)
        torch.testing.assert_close(act.values, tf, atol=ATOL, rtol=1e-5, equal_nan=True)


def test_own_reducer_and_sae_latents(tiny):
    torch.manual_seed(0)
    d = adapt(tiny).d_model
    w, b = torch.randn(d, 12), torch.randn(12)

    def encoder(x):
        return torch.relu(x.float() @ w + b)

    sae = _record(tiny, sae_units("blocks.1.hook_resid_post", encoder, n_latents=12))
    own = _record(tiny, hook_units("blocks.{layer}.hook_resid_mid", lambda x, layer: x[..., :3] * (layer + 1),
                                   size=3, layers=[0, 1]))
    assert sae.unit_kind == "sae" and sae.unit_labels()[:2] == ["L1F0", "L1F1"] and sae.layers == [1]
    assert own.unit_kind == "custom" and own.unit_labels()[3] == "L1U0"
    for p, raw in enumerate(_raw(tiny, sae, "blocks.1.hook_resid_post")):
        # the encoder sums 64 products: padded vs unpadded rounding grows to ~1e-4 relative
        torch.testing.assert_close(sae.values[p, : raw.shape[0], 0], encoder(raw), atol=1e-4, rtol=1e-4)
    for layer in range(2):
        for p, raw in enumerate(_raw(tiny, own, H.hook_resid_mid(layer))):
            torch.testing.assert_close(own.values[p, : raw.shape[0], layer], raw[:, :3] * (layer + 1),
                                       atol=5 * ATOL, rtol=1e-4)  # residual values: padded vs unpadded rounding
    assert sae.settings["units"]["hook"] == "blocks.1.hook_resid_post"


def test_unit_recordings_save_load_and_select(tiny, tmp_path):
    act = _record(tiny, "mlp_neurons", layers=[1])
    act.save(tmp_path / "a.safetensors")
    back = HeadActivity.load(tmp_path / "a.safetensors")
    assert back.unit_kind == "mlp_neurons" and back.layers == [1]
    assert torch.equal(back.values.nan_to_num(-1), act.values.nan_to_num(-1))
    assert back.unit_labels() == act.unit_labels()
    assert act.select([2, 0]).unit_labels() == act.unit_labels()
    assert HeadActivity.from_dict(act.to_dict()).layers == [1]


def test_phiid_scores_and_tables_carry_the_unit_labels(tiny):
    act = _record(tiny, "mlp_neurons", layers=[1])
    small = HeadActivity(values=act.values[..., :6], lengths=act.lengths, unit_kind="mlp_neurons", layers=[1])
    result = sl.decompose(small, progress=False)
    assert result.labels == [f"L1N{i}" for i in range(6)]
    scores = sl.synergy_scores(result)
    core = sl.find_core(scores, q=0.34)
    best = int(torch.argmax(torch.nan_to_num(scores.values.flatten(), nan=-1e9)))
    assert core.labels_of("abstract")[0] == f"L1N{best}"
    from synergy_lens.analysis.tables import layer_summary

    assert list(layer_summary(scores).index) == [1]
    assert layer_summary(scores)["top_head"].iloc[0] == f"L1N{best}"


def test_spread_and_parsed_layers():
    assert spread_layers(30, 6) == [0, 6, 12, 17, 23, 29]
    assert spread_layers(2, 2) == [0, 1] and spread_layers(5, 1) == [0]
    assert parse_layers("0, 6,12", 30) == [0, 6, 12] and parse_layers(None, 3) is None
    with pytest.raises(ValueError, match="spread"):
        parse_layers("every other", 30)
    with pytest.raises(ValueError, match="cannot pick"):
        spread_layers(3, 4)


def test_bad_units_are_named(tiny):
    a = adapt(tiny)
    with pytest.raises(ValueError, match="unknown units 'neurons'"):
        _record(tiny, "neurons")
    with pytest.raises(ValueError, match=r"0\.\.1"):
        _record(tiny, "mlp_neurons", layers=[5])
    with pytest.raises(ValueError, match="units='mlp'"):
        resolve_units(a, "experts")
    bad = hook_units("blocks.0.hook_resid_post", lambda x, layer: x, size=3)
    with pytest.raises(ValueError, match=r"reducer must map \[batch, pos, \.\.\.\] to \[batch, pos, 3\]"):
        _record(tiny, bad)
    with pytest.raises(ValueError, match="layers="):
        hook_units("blocks.{layer}.hook_resid_post", lambda x, layer: x, size=3)
    with pytest.raises(ValueError, match="unknown unit_kind"):
        HeadActivity(values=torch.zeros(1, 8, 1, 1), unit_kind="neuron")


def test_mlp_neurons_on_a_mixture_of_experts_model_say_what_to_use():
    moe = sl.tiny_model(arch="mixtral")
    with pytest.raises(ValueError, match="units='experts'"):
        resolve_units(adapt(moe), "mlp_neurons")


def test_expert_units_record_and_label():
    moe = sl.tiny_model(arch="olmoe")
    act = record_activity(moe, PROMPTS, units="experts", max_new_tokens=STEPS, progress=False)
    n_exp = act.n_heads
    assert act.unit_kind == "experts" and act.unit_labels()[:2] == ["L0E0", "L0E1"]
    routed = (act.values[:, :, :, :] > 0).sum(-1)  # experts per token and layer
    valid = ~act.values[..., 0, 0].isnan()
    k = int(getattr(adapt(moe).cfg, "experts_per_token", 0) or 2)
    assert bool((routed[valid] == k).all()) and n_exp > k


def test_record_head_activity_is_the_heads_case(tiny):
    heads = sl.record_head_activity(tiny, PROMPTS, max_new_tokens=STEPS, batch_size=2, progress=False)
    same = functools.partial(record_activity, tiny, PROMPTS, max_new_tokens=STEPS, batch_size=2, progress=False)
    assert torch.equal(same().values.nan_to_num(-1), heads.values.nan_to_num(-1))
    assert "units" not in heads.settings  # earlier checkpoints keep resuming
    sub = same(layers=[1])
    torch.testing.assert_close(sub.values[:, :, 0], heads.values[:, :, 1], atol=ATOL, rtol=0, equal_nan=True)
    assert sub.unit_labels() == [f"L1H{h}" for h in range(4)] and sub.settings["units"]["layers"] == [1]
