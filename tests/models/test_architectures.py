"""The architecture matrix: every family users bring, on every backend of this TransformerLens.

One tiny random model per family (``synergy_lens.models.tiny.ARCHS``: GPT-2, Pythia/GPT-NeoX,
Llama, Qwen3, Gemma 3, Mixtral, Qwen3-MoE, OLMoE), 3 layers, built from its transformers
config with seeded weights. On each (architecture, backend) cell:

(a) recording during cached, left-padded generation equals a teacher-forced pass over the
    generated tokens and uncached step-by-step decoding;
(b) ``ablate_heads`` equals a hand-written hook on ``hook_z`` and, independently of
    TransformerLens, the transformers model with those heads' output-projection weights
    zeroed;
(c) ``skip_layers`` equals the transformers model with that decoder layer deleted;
(d) every intervention (zero/mean ablation, layer skipping, weight noise) leaves outputs and
    ``state_dict`` bit-identical after its ``with`` block, also when the block raises; weight
    noise on ``W_O`` equals the same noise added to the transformers weights.

A cell TransformerLens cannot build raises ``ModelLoadError`` naming the architecture, the
backend and the backend to use instead (:data:`EXPECTED_ERRORS`). The README's "Supported
architectures" table is this module's outcome: ``python benchmarks/arch_matrix.py``.

Tolerances (float32): recordings and logits are compared with ``atol=1e-4, rtol=1e-4``.
The largest difference observed over all cells is 4e-6 (logits of magnitude up to 5,
signals up to 5): different orders of the same float32 operations. A wrong head, window,
norm or scale gives differences of order 0.1 to 10 (a Gemma 3 window of 100 instead of 4,
or a score scale of sqrt(d_head), fail every comparison with transformers).
"""

from __future__ import annotations

import copy
import functools
import warnings

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import synergy_lens as sl
from synergy_lens import hooks as H
from synergy_lens.intervene import ablate_heads, noise_heads, skip_layers
from synergy_lens.models import ModelLoadError, adapt, available_backends
from synergy_lens.models.tiny import ARCHS, TinyConfig, _hf_tiny, tiny_model
from synergy_lens.record.recorder import teacher_forced_signals
from synergy_lens.record.signals import get_signal
from tests.record._reference import uncached_recording

BACKENDS = available_backends()
SIZES = {"n_layers": 3, "n_heads": 4, "d_head": 8}
SEED = 3
ATOL = RTOL = 1e-4
PROMPTS = ["hello there", "hi", "a longer prompt, past the window"]
STEPS = 8
IDS = [256, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]  # longer than Gemma 3's window (4)
HEADS = [(0, 1), (1, 3), (2, 0)]

EXPECTED_ERRORS: dict[tuple[str, str], str] = {
    ("qwen3_moe", "hooked"): "no HookedTransformer conversion",
}
"""Cells that raise ``ModelLoadError``, with a phrase of the reason; every other cell runs."""

CELLS = [(arch, backend) for arch in ARCHS for backend in BACKENDS]
SUPPORTED = [c for c in CELLS if c not in EXPECTED_ERRORS]
UNSUPPORTED = [c for c in CELLS if c in EXPECTED_ERRORS]

pytestmark = pytest.mark.usefixtures("one_thread")


def _id(cell: tuple[str, str]) -> str:
    return f"{cell[0]}-{cell[1]}"


@pytest.fixture(scope="module", params=SUPPORTED, ids=_id)
def cell(request: pytest.FixtureRequest):
    """``(arch, backend, TransformerLens model, transformers model)``, the same weights."""
    arch, backend = request.param
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tiny_model(backend, arch=arch, seed=SEED, **SIZES)
    hf = _hf_tiny(TinyConfig(arch=arch, **SIZES), seed=SEED)
    return arch, backend, model, hf


# ------------------------------------------------------------------ transformers by hand


def hf_layers(hf) -> nn.ModuleList:
    """The decoder layers of a transformers causal LM of any family here."""
    for path in ("model.layers", "transformer.h", "gpt_neox.layers"):
        obj = hf
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise AssertionError(f"no decoder layers found in {type(hf).__name__}")


def hf_head_out(hf, layer: int, head: int, d_head: int) -> torch.Tensor:
    """A writable view of the output-projection weights that read ``head``'s output,
    laid out ``[d_head, d_model]`` (TransformerLens's ``W_O[head]``)."""
    block = hf_layers(hf)[layer]
    sl_ = slice(head * d_head, (head + 1) * d_head)
    if hasattr(block, "self_attn"):  # Llama, Qwen3, Gemma 3, Mixtral, Qwen3-MoE, OLMoE
        return block.self_attn.o_proj.weight.data[:, sl_].T
    if hasattr(block, "attention"):  # GPT-NeoX
        return block.attention.dense.weight.data[:, sl_].T
    return block.attn.c_proj.weight.data[sl_, :]  # GPT-2: Conv1D stores [in, out]


def hf_head_q(hf, layer: int, head: int, d_head: int) -> torch.Tensor:
    """A writable view of the weights that make ``head``'s queries, laid out
    ``[d_model, d_head]`` (TransformerLens's ``W_Q[head]``)."""
    block = hf_layers(hf)[layer]
    sl_ = slice(head * d_head, (head + 1) * d_head)
    if hasattr(block, "self_attn"):
        return block.self_attn.q_proj.weight.data[sl_, :].T
    if hasattr(block, "attention"):  # GPT-NeoX: fused rows ordered (head, q/k/v, d_head)
        w = block.attention.query_key_value.weight.data
        return w.view(-1, 3, d_head, w.shape[-1])[head, 0].T
    return block.attn.c_attn.weight.data[:, sl_]  # GPT-2: Conv1D [in, 3 * out], q first


def hf_without(hf, layers: set[int]):
    """A deep copy with decoder layers deleted (and their entries of ``layer_types``, which
    transformers reads by position to pick each layer's mask and rotary embedding)."""
    pruned = copy.deepcopy(hf)
    kept = [i for i in range(len(hf_layers(hf))) if i not in layers]
    mods = hf_layers(pruned)
    new = nn.ModuleList([mods[i] for i in kept])
    for path in ("model.layers", "transformer.h", "gpt_neox.layers"):
        head, _, last = path.rpartition(".")
        owner = getattr(pruned, head, None)
        if owner is not None and hasattr(owner, last):
            setattr(owner, last, new)
    cfg = pruned.config
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = [cfg.layer_types[i] for i in kept]
    for name in ("num_hidden_layers", "n_layer"):
        if hasattr(cfg, name):
            setattr(cfg, name, len(kept))
    return pruned


def hf_logits(hf, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([ids]), use_cache=False).logits


def tl_logits(model, ids: list[int] = IDS, fwd=()) -> torch.Tensor:
    with torch.no_grad():
        return adapt(model).forward(torch.tensor([ids]), fwd_hooks=fwd)


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    changed = [k for k in before if not torch.equal(after[k], before[k])]
    assert not changed, f"parameters changed after the intervention: {changed[:5]}"


# ------------------------------------------------------------------------------ the cells


def test_model_equals_transformers(cell):
    """The premise of every comparison below: same network, same logits."""
    arch, _, model, hf = cell
    a = adapt(model)
    assert (a.n_layers, a.n_heads, a.d_head) == (3, 4, 8)
    assert a.n_kv_heads == (4 if arch in ("gpt2", "neox") else 2)
    assert_close(tl_logits(model), hf_logits(hf, IDS), atol=ATOL, rtol=RTOL)
    for layer in range(3):  # W_O (read by the "l2_out" signal) is transformers' weight
        for head in range(4):
            assert torch.equal(a.W_O(layer)[head], hf_head_out(hf, layer, head, 8))


def test_recording_equals_teacher_forced_and_uncached(cell):
    """(a) hook_z signals during cached, left-padded generation == teacher-forced pass ==
    uncached step-by-step decoding."""
    _, _, model, _ = cell
    a = adapt(model)
    act = sl.record_head_activity(
        model, PROMPTS, max_new_tokens=STEPS, batch_size=3, stop_at_eos=False, progress=False
    )
    assert act.values.shape == (3, STEPS, 3, 4) and not act.values.isnan().any()
    forced = teacher_forced_signals(a, act.prompt_ids, act.generated_ids, get_signal("l2"), n_steps=STEPS)
    assert_close(act.values, forced, atol=ATOL, rtol=RTOL)
    for p in range(len(PROMPTS)):
        gen, ref = uncached_recording(a, act.prompt_ids[p], STEPS)
        n = len(gen)  # uncached decoding stops after an EOS; the recording went on
        assert act.generated_ids[p][:n] == gen
        assert_close(act.values[p, :n], ref["l2"], atol=ATOL, rtol=RTOL)
    assert float(act.values.std()) > 1e-3  # heads do vary: the comparison has content


def _zero_heads(z, *, hook, heads):
    z = z.clone()
    z[:, :, heads] = 0.0
    return z


def test_head_ablation_equals_hand_written_hook_and_weights(cell):
    """(b) ablate_heads == zeroing z by hand == zeroing W_O's head columns in transformers."""
    _, _, model, hf = cell
    clean = tl_logits(model)
    with ablate_heads(model, HEADS):
        ablated = tl_logits(model)
    by_layer: dict[int, list[int]] = {}
    for layer, head in HEADS:
        by_layer.setdefault(layer, []).append(head)
    hand = [(H.hook_z(layer), functools.partial(_zero_heads, heads=hs)) for layer, hs in by_layer.items()]
    assert_close(ablated, tl_logits(model, fwd=hand), atol=ATOL, rtol=RTOL)
    surgery = copy.deepcopy(hf)
    for layer, head in HEADS:
        hf_head_out(surgery, layer, head, 8).zero_()
    assert_close(ablated, hf_logits(surgery, IDS), atol=ATOL, rtol=RTOL)
    assert float((ablated - clean).abs().max()) > 1e-2  # the heads mattered


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_skip_equals_deleted_layer(cell, layer):
    """(c) skip_layers(model, [l]) == the transformers model without decoder layer l."""
    _, _, model, hf = cell
    with skip_layers(model, [layer]):
        skipped = tl_logits(model)
    assert_close(skipped, hf_logits(hf_without(hf, {layer}), IDS), atol=ATOL, rtol=RTOL)
    assert float((skipped - tl_logits(model)).abs().max()) > 1e-2


@pytest.mark.parametrize("weights", [("W_Q",), ("W_O",), ("W_Q", "W_O")])
def test_weight_noise_equals_transformers_weights(cell, weights):
    """noise_heads == the same noise added to the transformers weights, so each per-head
    weight view is the weight the forward pass reads, on every layout (fused QKV, Conv1D)."""
    _, _, model, hf = cell
    noisy_hf = copy.deepcopy(hf)
    gen = torch.Generator().manual_seed(7)
    views = {"W_Q": hf_head_q, "W_O": hf_head_out}
    for layer, head in HEADS:  # noise_heads draws per head, in unit order, in TL layout
        for name in weights:
            view = views[name](noisy_hf, layer, head, 8)
            view.add_(torch.randn(tuple(view.shape), generator=gen) * 0.5)
    with noise_heads(model, HEADS, std=0.5, seed=7, weights=weights):
        noisy = tl_logits(model)
    assert_close(noisy, hf_logits(noisy_hf, IDS), atol=ATOL, rtol=RTOL)
    assert float((noisy - tl_logits(model)).abs().max()) > 1e-2


def test_interventions_restore_bit_identically(cell):
    """(d) after each intervention (and after one that raised) outputs and weights are
    bit-identical to before."""
    _, _, model, _ = cell
    a = adapt(model)
    batch = torch.tensor([IDS, IDS[::-1]])
    before_state = state(model)
    with torch.no_grad():
        before = a.forward(batch)
    prompt = [IDS[:5]]
    before_gen = a.generate(prompt, max_new_tokens=4, stop_at_eos=False)
    interventions = {
        "zero": lambda: ablate_heads(model, HEADS),
        "mean": lambda: ablate_heads(model, HEADS, mode="mean", reference=[IDS]),
        "skip": lambda: skip_layers(model, [1]),
        "noise": lambda: noise_heads(model, HEADS, std=0.5, seed=1),
    }
    for name, make in interventions.items():
        with make():
            with torch.no_grad():
                inside = a.forward(batch)
            a.generate(prompt, max_new_tokens=4, stop_at_eos=False)
        assert not torch.equal(inside, before), f"{name} changed nothing"
        with pytest.raises(RuntimeError, match="inside"), make():
            raise RuntimeError("inside")
        with torch.no_grad():
            after = a.forward(batch)
        assert torch.equal(after, before), f"outputs differ after {name}"
        assert_same_state(model, before_state)
    assert a.generate(prompt, max_new_tokens=4, stop_at_eos=False) == before_gen


@pytest.mark.parametrize("cell_id", UNSUPPORTED, ids=_id)
def test_unsupported_cells_raise_a_clear_error(cell_id, record_property):
    """A cell TransformerLens cannot build names the architecture, the backend, the fix."""
    arch, backend = cell_id
    with pytest.raises(ModelLoadError) as info:
        tiny_model(backend, arch=arch, seed=SEED, **SIZES)
    msg = str(info.value)
    hf_arch = type(_hf_tiny(TinyConfig(arch=arch, **SIZES), seed=SEED)).__name__
    assert hf_arch in msg and f"'{backend}'" in msg
    assert EXPECTED_ERRORS[cell_id] in msg
    assert "backend='bridge'" in msg
    record_property("reason", EXPECTED_ERRORS[cell_id])


@pytest.mark.skipif("hooked" not in BACKENDS, reason="HookedTransformer needs TransformerLens <= 3.9")
def test_load_model_names_a_hub_architecture_hooked_cannot_build(monkeypatch):
    """load_model(name, backend="hooked") turns TransformerLens's NotImplementedError into
    the same clear error (the hub is not reached: TransformerLens's loader is replaced)."""
    from transformer_lens import HookedTransformer

    def refuse(name, **kwargs):
        raise NotImplementedError("Qwen3MoeForCausalLM is not currently supported.")

    monkeypatch.setattr(HookedTransformer, "from_pretrained_no_processing", refuse)
    with pytest.raises(ModelLoadError, match=r"model 'Qwen/Qwen3-30B-A3B' is not supported on the 'hooked'") as info:
        sl.load_model("Qwen/Qwen3-30B-A3B", backend="hooked")
    assert "Qwen3MoeForCausalLM" in str(info.value) and "backend='bridge'" in str(info.value)

    def unlisted(name, **kwargs):
        raise ValueError(f"{name} not found. Valid official model names (excl aliases): [...]")

    monkeypatch.setattr(HookedTransformer, "from_pretrained_no_processing", unlisted)
    with pytest.raises(ModelLoadError, match=r"not in the list .* Use backend='bridge'"):
        sl.load_model("someone/unlisted-model", backend="hooked")


def test_readme_table_lists_what_this_module_expects():
    """README's support table (written by benchmarks/arch_matrix.py) has a row per family and
    states the expectations above: regenerate it when they change."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = text.split("<!-- arch-matrix:start -->")[1].split("<!-- arch-matrix:end -->")[0]
    rows = {line.split("`")[1]: line for line in table.splitlines() if line.startswith("| `")}
    assert list(rows) == list(ARCHS)
    header = table.strip().splitlines()[0]
    assert "bridge" in header and "hooked" in header
    for arch, line in rows.items():
        cells = [c.strip() for c in line.strip("|").split("|")[1:]]
        hooked = [c for c, name in zip(cells, header.strip("|").split("|")[1:]) if "hooked" in name]
        expected_error = (arch, "hooked") in EXPECTED_ERRORS
        assert all(c.startswith("clear error") == expected_error for c in hooked), line
        assert all(c == "pass" for c in cells if c not in hooked), line
