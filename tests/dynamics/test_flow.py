"""Residual flow: ground truth from captured activations, padding invariance, zero writes."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from synergy_lens import hooks as H
from synergy_lens.dynamics.flow import FLOW_METRICS, ResidualFlow, residual_flow
from synergy_lens.models import adapt
from synergy_lens.record import HeadActivity

KINDS = {"resid_pre": H.hook_resid_pre, "attn_out": H.hook_attn_out, "resid_mid": H.hook_resid_mid,
         "mlp_out": H.hook_mlp_out, "resid_post": H.hook_resid_post}
SEQS = [[5, 72, 101, 108, 108, 111, 32, 116, 104, 101, 114, 101], [5, 104, 105], [7, 8, 9, 10, 11]]


def _captured(adapter, seq, extra_hooks=()):
    """Every residual-flow activation of one unpadded sequence, float64 ``[pos, d_model]``."""
    got = {}

    def keep(x, *, hook, key):
        got[key] = x.detach()[0].to(torch.float64).clone()

    hooks = [*extra_hooks] + [(fn(layer), functools.partial(keep, key=(layer, kind)))
                              for layer in range(adapter.n_layers) for kind, fn in KINDS.items()]
    with torch.inference_mode():
        adapter.forward(torch.tensor([seq]), fwd_hooks=hooks)
    return got


def _reference(adapter, seq, lo, hi, metric, extra_hooks=()):
    """Direct per-layer mean of one metric over positions [lo, hi) of one sequence."""
    got = _captured(adapter, seq, extra_hooks)
    a_kind, b_kind, kind = FLOW_METRICS[metric]
    out = []
    for layer in range(adapter.n_layers):
        a, b = got[(layer, a_kind)][lo:hi], got[(layer, b_kind)][lo:hi]
        if kind == "cos":
            v = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=0.0)
        else:
            v = a.norm(dim=-1) / b.norm(dim=-1)
        out.append(float(v.mean()))
    return torch.tensor(out, dtype=torch.float64)


def test_matches_direct_computation_and_is_padding_invariant(tiny):
    a = adapt(tiny)
    batched = residual_flow(tiny, SEQS, batch_size=3)
    single = residual_flow(tiny, SEQS, batch_size=1)
    for metric in FLOW_METRICS:
        for p, seq in enumerate(SEQS):
            ref = _reference(a, seq, 0, len(seq), metric)
            torch.testing.assert_close(batched.prompt_means(metric)[p].double(), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched.prompt_means(metric), single.prompt_means(metric), atol=1e-5, rtol=1e-5)
    # the overall mean weighs every token the same
    n = torch.tensor([len(s) for s in SEQS], dtype=torch.float64)
    expect = (batched.prompt_means("attn_cos").double() * n[:, None]).sum(0) / n.sum()
    torch.testing.assert_close(batched.attn_cos, expect, atol=1e-6, rtol=0)
    assert batched.counts[0, :, 0].tolist() == [len(s) for s in SEQS]
    assert int(batched.n_undefined.sum()) == 0


def test_generated_positions_of_a_recording(tiny):
    a = adapt(tiny)
    prompts, gens = [[5, 6, 7, 8], [9, 10]], [[11, 12, 13], [14, 15, 16, 17, 18]]
    act = HeadActivity(values=torch.rand(2, 5, a.n_layers, a.n_heads), lengths=torch.tensor([3, 5]),
                       prompt_ids=prompts, generated_ids=gens)
    flow = residual_flow(tiny, act, positions="generated")
    every = residual_flow(tiny, act, positions="all")
    for p, (pr, g) in enumerate(zip(prompts, gens)):
        seq = [*pr, *g[:-1]]  # the last generated token is never fed
        ref = _reference(a, seq, len(pr) - 1, len(pr) - 1 + len(g), "mlp_cos")
        torch.testing.assert_close(flow.prompt_means("mlp_cos")[p].double(), ref, atol=1e-5, rtol=1e-5)
        assert int(flow.counts[0, p, 0]) == len(g)
        assert int(every.counts[0, p, 0]) == len(seq)


def test_zeroed_attention_gives_undefined_cosine_and_zero_ratio(tiny):
    """A sub-layer that writes nothing has no direction: its cosine is NaN (left out), its ratio 0."""
    a = adapt(tiny)
    zero = (H.hook_attn_out(0), lambda x, *, hook: torch.zeros_like(x))
    with a.hooks([zero]):
        flow = residual_flow(tiny, SEQS[:2], batch_size=2)
    assert math.isnan(float(flow.attn_cos[0])) and math.isfinite(float(flow.attn_cos[1]))
    assert float(flow.mean("attn_ratio")[0]) == 0.0
    k = flow.metrics.index("attn_cos")
    assert int(flow.n_undefined[k, 0]) == sum(len(s) for s in SEQS[:2])
    # the rest is still measured, and resid_mid == resid_pre makes mlp_cos a cosine with resid_pre
    ref = _reference(a, SEQS[0], 0, len(SEQS[0]), "mlp_cos", extra_hooks=[zero])
    torch.testing.assert_close(flow.prompt_means("mlp_cos")[0].double(), ref, atol=1e-5, rtol=1e-5)


def test_save_load_and_table(tiny, tmp_path):
    flow = residual_flow(tiny, ["hello there", "hi"])
    flow.save(tmp_path / "flow.pt")
    back = ResidualFlow.load(tmp_path / "flow.pt")
    torch.testing.assert_close(back.per_prompt, flow.per_prompt, equal_nan=True)
    assert back.metrics == flow.metrics and back.positions == "all"
    df = flow.to_dataframe()
    assert list(df.columns) == ["layer", "depth", *FLOW_METRICS] and len(df) == flow.n_layers


def test_bad_input(tiny):
    with pytest.raises(ValueError, match="needs a HeadActivity"):
        residual_flow(tiny, ["hi"], positions="generated")
    with pytest.raises(ValueError, match="positions"):
        residual_flow(tiny, ["hi"], positions="last")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no prompts"):
        residual_flow(tiny, [])
    with pytest.raises(ValueError, match="unknown flow metric"):
        residual_flow(tiny, ["hi"]).mean("nope")
