"""Expert units (``units="experts"``) on every MoE family and backend, against the model itself.

Ground truth from a real forward pass of tiny random Mixtral, OLMoE and Qwen3-MoE models
(3 layers, 4 experts, 2 per token; Qwen3-MoE on the bridge only, TransformerLens has no
HookedTransformer for it):

(a) the experts' weighted contributions, summed over experts, equal the MoE block's output
    ``blocks.{L}.hook_mlp_out`` (float32, atol 1e-5; observed at most 1.5e-6), and the unit
    values are their L2 norms;
(b) exactly ``top_k`` experts per token are non-zero, and they are the experts the model's
    own routing hook reports (``mlp.gate.hook_expert_indices`` on the TransformerLens 4 bridge,
    the top-k of the router logits at ``mlp.gate.hook_out`` on the 3.9 bridge,
    ``mlp.hook_expert_indices`` on HookedTransformer).

A wrong routing rule (OLMoE's weights renormalised, Mixtral's not), a missing routing weight
or a wrong hook make (a) fail by 0.1 or more.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch.testing import assert_close

from synergy_lens import hooks as H
from synergy_lens.models import adapt, available_backends
from synergy_lens.models.tiny import tiny_model
from synergy_lens.record.experts import expert_contributions, expert_norms, routed_experts
from synergy_lens.record.kinds import resolve_units

MOE_ARCHS = ("mixtral", "olmoe", "qwen3_moe")
CELLS = [(a, b) for a in MOE_ARCHS for b in available_backends() if (a, b) != ("qwen3_moe", "hooked")]
SIZES = {"n_layers": 3, "n_heads": 4, "d_head": 8, "n_experts": 4, "experts_per_token": 2}
IDS = torch.tensor([[256, 72, 101, 108, 108, 111, 32, 119], [256, 49, 43, 50, 61, 51, 10, 33]])

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=CELLS, ids=lambda c: f"{c[0]}-{c[1]}")
def moe(request: pytest.FixtureRequest):
    arch, backend = request.param
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return adapt(tiny_model(backend, arch=arch, seed=3, **SIZES))


def _routing_hook(adapter, layer: int) -> tuple[str, bool]:
    """The model's own routing hook: (name, whether it holds indices rather than logits)."""
    for name in (f"blocks.{layer}.mlp.gate.hook_expert_indices", f"blocks.{layer}.mlp.hook_expert_indices"):
        if name in adapter.model.hook_dict:
            return name, True
    return f"blocks.{layer}.mlp.gate.hook_out", False


def _run(adapter, spec):
    """Activations at the units' hook, the MoE outputs and the routing hooks, per layer."""
    got: dict[tuple[str, int], torch.Tensor] = {}

    def grab(t, *, hook, key):
        got[key] = t.detach().clone()

    fwd = []
    for layer in spec.layers:
        fwd.append((spec.hook(layer), functools.partial(grab, key=("in", layer))))
        fwd.append((H.hook_mlp_out(layer), functools.partial(grab, key=("out", layer))))
        fwd.append((_routing_hook(adapter, layer)[0], functools.partial(grab, key=("route", layer))))
    with torch.inference_mode():
        adapter.forward(IDS, fwd_hooks=fwd)
    return got


def test_spec_shape_and_labels(moe):
    spec = resolve_units(moe, "experts", layers=[0, 2])
    assert (spec.kind, spec.layers, spec.size, spec.n_model_layers) == ("experts", (0, 2), 4, 3)
    assert spec.labels() == [f"L{layer}E{e}" for layer in (0, 2) for e in range(4)]
    assert spec.describe["top_k"] == 2


@pytest.fixture(scope="module")
def every_layer(moe):
    """The spec of every layer's experts and one pass's activations (``_run``)."""
    spec = resolve_units(moe, "experts")
    return spec, _run(moe, spec)


def test_contributions_sum_to_moe_output(moe, every_layer):
    """(a): sum over experts of g_e(x) E_e(x) == blocks.L.hook_mlp_out; values are the norms."""
    spec, got = every_layer
    for layer in spec.layers:
        with torch.inference_mode():
            terms = expert_contributions(moe, layer, got[("in", layer)])
            values = spec.reduce(got[("in", layer)], layer)
        assert terms.shape == (2, IDS.shape[1], 4, moe.d_model)
        assert_close(terms.sum(-2), got[("out", layer)], atol=1e-5, rtol=0)
        assert_close(values, torch.linalg.vector_norm(terms, dim=-1), atol=1e-6, rtol=1e-6)
        assert float(got[("out", layer)].abs().max()) > 1.0  # a non-trivial output


def test_top_k_nonzero_match_router(moe, every_layer):
    """(b): exactly k experts per token are non-zero, those the model's routing hook reports."""
    spec, got = every_layer
    for layer in spec.layers:
        with torch.inference_mode():
            values = expert_norms(moe, layer, got[("in", layer)])
        route = got[("route", layer)]
        holds_indices = _routing_hook(moe, layer)[1]
        picked = route if holds_indices else route.topk(2, dim=-1).indices
        want = torch.zeros(picked.shape[0], 4, dtype=torch.bool).scatter_(1, picked, True)
        assert ((values > 0).sum(-1) == 2).all()
        assert torch.equal(values.reshape(-1, 4) > 0, want)
        indices, _ = routed_experts(moe, layer, got[("in", layer)])
        assert torch.equal(indices.reshape(-1, 2).sort(-1).values, picked.sort(-1).values)


def test_routing_weights_per_family(moe):
    """Mixtral and Qwen3-MoE (norm_topk_prob) renormalise the top-k weights, OLMoE does not."""
    spec = resolve_units(moe, "experts", layers=[1])
    got = _run(moe, spec)
    _, weights = routed_experts(moe, 1, got[("in", 1)])
    total = weights.sum(-1)
    if "olmoe" in moe.name:
        assert bool((total < 1 - 1e-3).all())
    else:
        assert_close(total, torch.ones_like(total), atol=1e-6, rtol=0)


def test_reduce_is_per_position(moe):
    """The recorder hands the reducer a subset of positions: values do not depend on the others."""
    spec = resolve_units(moe, "experts", layers=[1])
    act = _run(moe, spec)[("in", 1)]
    with torch.inference_mode():
        full = spec.reduce(act, 1)
        tail = spec.reduce(act[:, 5:], 1)
    assert_close(tail, full[:, 5:], atol=1e-6, rtol=0)


def test_dense_model_names_the_fix():
    model = adapt(tiny_model(available_backends()[0], n_layers=2, seed=0))
    with pytest.raises(ValueError, match=r"units='mlp'.*units='mlp_neurons'"):
        resolve_units(model, "experts")


def test_expert_out_of_range(moe):
    act = torch.zeros(1, 2, moe.d_model)
    with pytest.raises(ValueError, match="experts 0..3"):
        expert_contributions(moe, 0, act, experts=[4])


@pytest.mark.skipif("hooked" not in available_backends(), reason="HookedTransformer needs TransformerLens 3.9")
@pytest.mark.parametrize("arch", ["mixtral", "olmoe"])
def test_hooked_with_folded_layer_norm(arch):
    """HookedTransformer.from_pretrained folds ln2's weight into the MoE (ln2 becomes RMSNormPre):
    the units then read the MoE input directly, and (a) still holds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tiny_model("hooked", arch=arch, seed=3, **SIZES)
    model.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    assert type(model.blocks[0].ln2).__name__ == "RMSNormPre"
    adapter = adapt(model)
    spec = resolve_units(adapter, "experts")
    got = _run(adapter, spec)
    for layer in spec.layers:
        with torch.inference_mode():
            terms = expert_contributions(adapter, layer, got[("in", layer)])
        assert_close(terms.sum(-2), got[("out", layer)], atol=1e-5, rtol=0)
