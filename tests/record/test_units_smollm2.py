"""Units beyond heads on the real SmolLM2-135M-Instruct: record, decompose, score, ablate, report."""

from __future__ import annotations

import pytest
import torch

import synergy_lens as sl
from synergy_lens import hooks as H
from synergy_lens.models import adapt
from synergy_lens.record import teacher_forced_signals
from synergy_lens.record.kinds import resolve_units
from synergy_lens.units import parse_unit

pytestmark = pytest.mark.slow

FAST = dict(max_new_tokens=16, n_boot=50, n_surrogates=2, robustness=(), ablation=True, ablation_prompts=2,
            ablation_tokens=8, ablation_steps=2, ablation_seeds=1, progress=False)


@pytest.mark.parametrize("units,layers", [("mlp", None), ("mlp_neurons", "15")])
def test_a_whole_run_on_other_units(smol, units, layers):
    from synergy_lens.view.report import build_report

    prompts = sl.default_prompts()[::20]  # three categories
    run = sl.analyse(smol, prompts, units=units, layers=layers, **FAST)
    act, scores = run.activity, run.scores
    a = adapt(smol)
    want_rows = [15] if layers else list(range(30))
    assert act.unit_kind == units and act.model_layers == want_rows
    assert act.n_heads == (1 if units == "mlp" else int(a.cfg.d_mlp))
    # recorded during cached generation = one teacher-forced pass (float32, 30 layers: rounding)
    spec = resolve_units(a, units, layers=layers)
    tf = teacher_forced_signals(a, act.prompt_ids[:2], act.generated_ids[:2], spec, n_steps=16)
    torch.testing.assert_close(act.values[:2], tf, atol=2e-3, rtol=1e-3, equal_nan=True)
    assert run.phiid.labels == act.unit_labels() and scores.labels == act.unit_labels()
    assert list(run.layer_summary.index) == want_rows
    top = run.core.labels_of("abstract")[0]
    assert parse_unit(top).kind == units and parse_unit(top).layer in want_rows
    # every order of the curve ends with every unit ablated: the same model, the same divergence
    ends = [float(c[-1]) for c in run.ablation.curves.values()] + [float(v) for v in run.ablation.random[:, -1]]
    assert max(ends) - min(ends) < 1e-4 and ends[0] > 0
    html = build_report(run).to_html()
    assert top in html and f"L{want_rows[-1]}" in html


def test_all_mlp_writes_zeroed_equals_a_hand_written_hook(smol):
    a = adapt(smol)
    ids = torch.tensor([a.tokenize("The capital of France is")], device=a.device)

    def zero(t, *, hook):
        return torch.zeros_like(t)

    with torch.inference_mode():
        want = a.forward(ids, fwd_hooks=[(H.hook_mlp_out(layer), zero) for layer in (3, 17)])
        with sl.ablate_units(smol, ["L3.mlp", "L17.mlp"]):
            got = a.forward(ids)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
