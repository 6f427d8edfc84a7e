"""Expert ablation (``synergy_lens.intervene.experts``) against hand-written ground truth.

On tiny random Mixtral, OLMoE and Qwen3-MoE models (3 layers, 4 experts, 2 per token), every
backend TransformerLens builds them on:

- "zero" on expert e of layer L makes ``blocks.{L}.hook_mlp_out`` the clean output minus e's
  weighted contribution, and the logits equal those of the transformers model (same weights,
  no TransformerLens) with e's down-projection zeroed; the weights are restored after;
- "mean" adds ``mean_e - c_e`` at every token, with the mean over all tokens of reference
  sequences each run alone (no padding); "resample" adds ``c_e(reference row b % n_ref) - c_e``;
- a mask that selects nothing adds no hooks and changes nothing bit for bit; a per-batch
  mask gives each row the result of its own single-condition pass.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch.testing import assert_close

from synergy_lens import hooks as H
from synergy_lens.intervene.experts import expert_ablation_hooks, prepare_expert_reference
from synergy_lens.models import adapt, available_backends
from synergy_lens.models.tiny import TinyConfig, _hf_tiny, tiny_model
from synergy_lens.record.experts import expert_contributions
from synergy_lens.record.kinds import resolve_units

MOE_ARCHS = ("mixtral", "olmoe", "qwen3_moe")
CELLS = [(a, b) for a in MOE_ARCHS for b in available_backends() if (a, b) != ("qwen3_moe", "hooked")]
SIZES = {"n_layers": 3, "n_heads": 4, "d_head": 8, "n_experts": 4, "experts_per_token": 2}
SEED = 5
IDS = torch.tensor([
    [256, 72, 101, 108, 108, 111, 32, 119, 111],
    [256, 49, 43, 50, 61, 51, 10, 33, 90],
    [256, 84, 104, 101, 32, 99, 97, 116, 46],
])
REF = [[256, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74], [256, 100, 101, 102, 103, 104, 105, 106, 107, 108]]


@pytest.fixture(scope="module", params=CELLS, ids=lambda c: f"{c[0]}-{c[1]}")
def cell(request: pytest.FixtureRequest):
    """``(arch, adapter, the transformers model with the same weights)``."""
    arch, backend = request.param
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tiny_model(backend, arch=arch, seed=SEED, **SIZES)
    return arch, adapt(model), _hf_tiny(TinyConfig(arch=arch, **SIZES), seed=SEED)


def _mask(spec, cells, batch: int = 1) -> torch.Tensor:
    """``[batch, rows, experts]`` from one list of (layer, expert) per batch row (or one for all)."""
    per_row = cells if batch > 1 else [cells]
    mask = torch.zeros(len(per_row), spec.n_rows, spec.size, dtype=torch.bool)
    for b, chosen in enumerate(per_row):
        for layer, expert in chosen:
            mask[b, spec.layers.index(layer), expert] = True
    return mask


def _capture(adapter, ids, spec, layer, fwd=()):
    """Logits, the units' hook activation and hook_mlp_out at ``layer`` (after ``fwd``)."""
    got = {}

    def grab(t, *, hook, key):
        got[key] = t.detach().clone()

    hooks = [*fwd, (spec.hook(layer), functools.partial(grab, key="in")),
             (H.hook_mlp_out(layer), functools.partial(grab, key="out"))]
    with torch.inference_mode():
        logits = adapter.forward(ids, fwd_hooks=hooks)
    return logits, got["in"], got["out"]


def test_zero_equals_output_minus_contribution(cell):
    _, a, _ = cell
    spec = resolve_units(a, "experts")
    _, act, clean = _capture(a, IDS, spec, 1)
    for expert in range(spec.size):
        fwd = expert_ablation_hooks(a, spec, _mask(spec, [(1, expert)]))
        _, act2, ablated = _capture(a, IDS, spec, 1, fwd)
        assert torch.equal(act2, act)  # the ablated layer's input is unchanged
        with torch.inference_mode():
            term = expert_contributions(a, 1, act, [expert])[..., 0, :]
        assert float(term.abs().max()) > 0.1  # the expert is routed somewhere in the batch
        assert_close(ablated, clean - term, atol=1e-6, rtol=0)


def _hf_down_proj(hf, layer: int, expert: int) -> torch.Tensor:
    """A writable view of the transformers model's down-projection of one expert."""
    return hf.model.layers[layer].mlp.experts.down_proj.data[expert]


@pytest.mark.parametrize("layer", [0, 2])
def test_zero_equals_zeroed_down_projection(cell, layer):
    """Downstream: the logits equal the transformers model with that expert's output weights 0."""
    _, a, hf = cell
    spec = resolve_units(a, "experts", layers=[0, 2])
    _, act, _ = _capture(a, IDS, spec, layer)
    with torch.inference_mode():  # the expert that writes most in this batch
        expert = int(spec.reduce(act, layer).sum((0, 1)).argmax())
    with torch.inference_mode():
        clean = a.forward(IDS)
        assert_close(clean, hf(IDS).logits, atol=1e-4, rtol=1e-4)  # same network
        ablated = a.forward(IDS, fwd_hooks=expert_ablation_hooks(a, spec, _mask(spec, [(layer, expert)])))
    down = _hf_down_proj(hf, layer, expert)
    saved = down.clone()
    try:
        down.zero_()
        with torch.inference_mode():
            want = hf(IDS).logits
    finally:
        down.copy_(saved)
    assert torch.equal(_hf_down_proj(hf, layer, expert), saved)
    assert float((ablated - clean).abs().max()) > 1e-2  # the ablation does something
    assert_close(ablated, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_nothing_ablated_is_bit_identical(cell, mode):
    _, a, _ = cell
    spec = resolve_units(a, "experts")
    state = prepare_expert_reference(a, spec, mode, REF)
    empty = torch.zeros(IDS.shape[0], spec.n_rows, spec.size, dtype=torch.bool)
    assert expert_ablation_hooks(a, spec, empty, mode=mode, state=state) == []
    with torch.inference_mode():
        clean = a.forward(IDS)
        # hooks present (row 0 ablates an expert), rows 1 and 2 select nothing
        one = empty.clone()
        one[0, 1, 2] = True
        mixed = a.forward(IDS, fwd_hooks=expert_ablation_hooks(a, spec, one, mode=mode, state=state))
    assert float((mixed[0] - clean[0]).abs().max()) > 0  # row 0 did change
    _, _, out_clean = _capture(a, IDS, spec, 1)
    _, _, out_mixed = _capture(a, IDS, spec, 1, expert_ablation_hooks(a, spec, one, mode=mode, state=state))
    assert torch.equal(out_mixed[1:], out_clean[1:])  # untouched rows: the block output, bit for bit


@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_per_batch_mask_equals_single_conditions(cell, mode):
    """Row b of one batched pass equals the pass over row b alone with row b's experts."""
    _, a, _ = cell
    spec = resolve_units(a, "experts", layers=[0, 1])
    state = prepare_expert_reference(a, spec, mode, REF)
    conditions = [[], [(0, 1)], [(0, 2), (1, 0), (1, 3)]]
    batched_mask = _mask(spec, conditions, batch=3)
    with torch.inference_mode():
        batched = a.forward(IDS, fwd_hooks=expert_ablation_hooks(a, spec, batched_mask, mode=mode, state=state))
        for b, chosen in enumerate(conditions):
            # resample: row b of the batch takes reference row b % 2; alone it would take row 0
            ref_state = state
            if mode == "resample":
                ref_state = prepare_expert_reference(a, spec, mode, [REF[b % len(REF)]])
            single = a.forward(IDS[b : b + 1], fwd_hooks=expert_ablation_hooks(
                a, spec, _mask(spec, chosen), mode=mode, state=ref_state))
            assert_close(batched[b : b + 1], single, atol=1e-5, rtol=1e-5)
        clean = a.forward(IDS)
    assert float((batched[2] - clean[2]).abs().max()) > 1e-2


def _reference_terms(a, spec, layer, seqs):
    """Every expert's contribution on each reference sequence, each run alone: [tokens, expert, d]."""
    rows = []
    for seq in seqs:
        _, act, _ = _capture(a, torch.tensor([seq]), spec, layer)
        with torch.inference_mode():
            rows.append(expert_contributions(a, layer, act)[0])
    return rows


def test_mean_replaces_by_reference_mean(cell):
    _, a, _ = cell
    spec = resolve_units(a, "experts", layers=[1, 2])
    state = prepare_expert_reference(a, spec, "mean", REF)
    terms = torch.cat(_reference_terms(a, spec, 2, REF))  # 21 tokens, padding never counted
    mean = terms.mean(0)  # non-routed tokens count as 0
    assert_close(state.means[1], mean, atol=1e-6, rtol=1e-5)
    _, act, clean = _capture(a, IDS, spec, 2)
    _, _, ablated = _capture(a, IDS, spec, 2, expert_ablation_hooks(a, spec, _mask(spec, [(2, 3)]),
                                                                     mode="mean", state=state))
    with torch.inference_mode():
        term = expert_contributions(a, 2, act, [3])[..., 0, :]
    assert_close(ablated, clean - term + mean[3], atol=1e-5, rtol=0)


def test_resample_takes_reference_row_b_mod_n(cell):
    _, a, _ = cell
    spec = resolve_units(a, "experts", layers=[0])
    state = prepare_expert_reference(a, spec, "resample", REF)
    ref_terms = _reference_terms(a, spec, 0, REF)
    _, act, clean = _capture(a, IDS, spec, 0)
    mask = _mask(spec, [(0, 0), (0, 2)])  # two experts, same for every row
    _, _, ablated = _capture(a, IDS, spec, 0, expert_ablation_hooks(a, spec, mask, mode="resample", state=state))
    with torch.inference_mode():
        terms = expert_contributions(a, 0, act, [0, 2])
    pos = IDS.shape[1]
    for b in range(IDS.shape[0]):
        new = ref_terms[b % 2][:pos, [0, 2]]
        assert_close(ablated[b], clean[b] + (new - terms[b]).sum(-2), atol=1e-5, rtol=0)


@pytest.mark.wrong_shapes
def test_errors(cell):
    _, a, _ = cell
    spec = resolve_units(a, "experts", layers=[0, 1])
    mask = _mask(spec, [(0, 1)])
    with pytest.raises(ValueError, match=r"expected \[batch or 1, 2, 4\]"):
        expert_ablation_hooks(a, spec, torch.zeros(1, 3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool tensor"):
        expert_ablation_hooks(a, spec, mask.int())
    with pytest.raises(ValueError, match="needs state=prepare_expert_reference"):
        expert_ablation_hooks(a, spec, mask, mode="mean")
    with pytest.raises(ValueError, match="unknown expert ablation mode"):
        expert_ablation_hooks(a, spec, mask, mode="noise")
    state = prepare_expert_reference(a, spec, "mean", REF)
    with pytest.raises(ValueError, match="prepare it again"):
        expert_ablation_hooks(a, spec, mask, mode="resample", state=state)
    with pytest.raises(ValueError, match="units='experts' spec"):
        expert_ablation_hooks(a, resolve_units(a, "mlp"), mask)
    with pytest.raises(ValueError, match="per-batch expert mask has 2 rows"), torch.inference_mode():
        a.forward(IDS, fwd_hooks=expert_ablation_hooks(a, spec, mask.expand(2, -1, -1).clone()))
    short = prepare_expert_reference(a, spec, "resample", [[256, 1, 2]])
    with pytest.raises(ValueError, match="at least as long as the input"), torch.inference_mode():
        a.forward(IDS, fwd_hooks=expert_ablation_hooks(a, spec, mask, mode="resample", state=short))
