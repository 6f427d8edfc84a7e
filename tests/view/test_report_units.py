"""Every kind of unit goes through a whole run into the report, named by its own labels."""

from __future__ import annotations

import re

import pytest
import torch

import synergy_lens as sl
from synergy_lens.record import record_activity, sae_units
from synergy_lens.units import parse_unit
from synergy_lens.view.report import build_report
from synergy_lens.view.results import RunResults
from tests.view.test_report import strip_bundles

PROMPTS = ["hello there", "a longer prompt to talk about", "xyz", "count to ten"]
FAST = dict(max_new_tokens=12, n_boot=20, n_surrogates=2, robustness=(), ablation=True, ablation_prompts=2,
            ablation_tokens=6, ablation_steps=2, ablation_seeds=1, progress=False)


def _labels_in(html: str) -> set[str]:
    """Unit labels on the page outside the vendored JS bundles (whose code has look-alikes)."""
    return set(re.findall(r"\bL\d+(?:\.attn|\.mlp|[HNEUF]\d+)\b", strip_bundles(html)))


@pytest.mark.parametrize("arch,units,layers", [
    ("llama", "attn", None), ("llama", "mlp", None), ("llama", "mlp_neurons", "1"), ("mixtral", "experts", None),
])
def test_a_whole_run_of_any_unit_kind_reaches_the_report(arch, units, layers):
    model = sl.tiny_model(arch=arch, seed=1)
    run = sl.analyse(model, PROMPTS, units=units, layers=layers, **FAST)
    labels = run.activity.unit_labels()
    assert run.phiid.labels == labels and run.scores.labels == labels and run.core.labels == labels
    assert set(run.ablation.orders["synergy-first"]) == set(labels)  # the curve ablates these units
    html = build_report(run).to_html()
    shown = _labels_in(html)
    assert run.core.labels_of("abstract")[0] in shown
    assert {parse_unit(label).kind for label in shown} == {units}  # no head label of a non-head run


def test_sae_latents_reach_the_report():
    model = sl.tiny_model(seed=1)
    torch.manual_seed(0)
    w = torch.randn(32, 10)
    act = record_activity(model, PROMPTS, units=sae_units("blocks.1.hook_resid_post", lambda x: torch.relu(x @ w),
                                                          n_latents=10), max_new_tokens=12, progress=False)
    result = sl.decompose(act, progress=False)
    scores = sl.synergy_scores(result)
    run = RunResults(activity=act, phiid=result, scores=scores, core=sl.find_core(scores, q=0.2))
    html = build_report(run).to_html()
    assert run.core.labels_of("abstract")[0] in _labels_in(html)
    assert {parse_unit(label).kind for label in _labels_in(html)} == {"sae"}
