"""Figures of the other causal tests and of the difficulty study, on hand-made result objects."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from synergy_lens.dynamics.flow import FLOW_METRICS, ResidualFlow
from synergy_lens.dynamics.order import TransitionPoint
from synergy_lens.dynamics.study import DifficultyStudy
from synergy_lens.intervene import AccuracyResult, IGResult, LayerSkipResult
from synergy_lens.view import style as S
from synergy_lens.view.causal import (
    causal_figures,
    plot_accuracy,
    plot_integrated_gradients,
    plot_layer_skip,
)
from synergy_lens.view.dynamics import (
    dynamics_figures,
    level_colors,
    plot_accuracy_levels,
    plot_embedding,
    plot_order_parameter,
    plot_residual_flow,
)
from synergy_lens.view.results import RunResults

LEVELS = [1, 2, 3]
g = torch.Generator().manual_seed(0)


def a(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def make_flow(n_layers: int = 3, shift: float = 0.0) -> ResidualFlow:
    per = torch.rand(len(FLOW_METRICS), 4, n_layers, generator=g, dtype=torch.float64) + shift
    return ResidualFlow(per_prompt=per, counts=torch.ones(per.shape, dtype=torch.long),
                        n_undefined=torch.zeros(len(FLOW_METRICS), n_layers, dtype=torch.long))


@pytest.fixture(scope="module")
def study() -> DifficultyStudy:
    order = pd.DataFrame([{"level": lv, "name": n, "value": v, "ci_low": v - 0.1, "ci_high": v + 0.2}
                          for n in ("separation", "bimodality", "inverted_u") for lv, v in zip(LEVELS, (0.1, 0.5, 0.9))])
    acc = pd.DataFrame([{"family": f, "level": lv, "n": 10, "n_correct": k, "accuracy": k / 10,
                         "ci_low": max(0, k / 10 - 0.2), "ci_high": min(1, k / 10 + 0.2)}
                        for f in ("arithmetic", "all") for lv, k in zip(LEVELS, (9, 6, 2))])
    labels = [f"L{u // 4}H{u % 4}" for u in range(12)]
    return DifficultyStudy(
        levels=LEVELS, accuracy=acc, order=order, order_boot={},
        transitions={"separation": TransitionPoint(1.6, "logistic"), "bimodality": None,
                     "inverted_u": TransitionPoint(math.nan, "largest_jump"), "accuracy": TransitionPoint(2.5, "largest_jump")},
        level_table=pd.DataFrame({"level": LEVELS}),
        embeddings={lv: torch.randn(12, 2, generator=g, dtype=torch.float64) for lv in LEVELS[:2]},
        scores=torch.randn(3, 3, 4, generator=g, dtype=torch.float64), profile_embedding=None,
        flows={lv: make_flow(shift=lv) for lv in LEVELS}, labels=labels, settings={"model_name": "x"},
    )


def test_order_parameter_band_and_transition(study):
    fig = plot_order_parameter(study)
    assert isinstance(fig, go.Figure) and len(fig.data) == 3 * 4
    sep = study.order[study.order.name == "separation"]
    high, low, line = fig.data[:3]
    np.testing.assert_array_equal(a(high.y), sep.ci_high.to_numpy())
    np.testing.assert_array_equal(a(low.y), sep.ci_low.to_numpy())
    np.testing.assert_array_equal(a(line.y), sep.value.to_numpy())
    assert list(line.x) == LEVELS
    np.testing.assert_array_equal(a(fig.data[-1].y), [0.9, 0.6, 0.2])  # accuracy over all families
    vlines = [s.x0 for s in fig.layout.shapes]
    assert vlines == [1.6, 2.5]  # finite transitions only


def test_embedding_panels(study):
    fig = plot_embedding(study, "score")
    assert [t.name for t in fig.data] == ["level 1", "level 2"]
    table = study.embedding_table()
    d = table[table.level == 2]
    np.testing.assert_array_equal(a(fig.data[1].x), study.embeddings[2][:, 0].numpy())
    np.testing.assert_array_equal(a(fig.data[1].marker.color), d.score.to_numpy())
    assert list(fig.data[0].text) == study.labels
    assert plot_embedding(study, "layer", levels=[2]).data[0].marker.cmax == 2
    with pytest.raises(ValueError, match="color must be"):
        plot_embedding(study, "depth")
    with pytest.raises(ValueError, match="no functional embedding"):
        plot_embedding(study, levels=[3])


def test_accuracy_levels(study):
    fig = plot_accuracy_levels(study)
    assert [t.name for t in fig.data] == ["arithmetic", "all"]
    np.testing.assert_allclose(a(fig.data[1].y), [0.9, 0.6, 0.2])


def test_residual_flow_single_and_per_level(study):
    flow = study.flows[1]
    fig = plot_residual_flow(flow)
    assert len(fig.data) == 3
    np.testing.assert_allclose(a(fig.data[0].y), flow.mean("attn_cos").numpy())
    np.testing.assert_allclose(a(fig.data[0].x), flow.depth.numpy())
    fig = plot_residual_flow(study, metrics=("attn_cos", "mlp_cos"))
    assert len(fig.data) == 2 * len(LEVELS)
    for k, lv in enumerate(LEVELS):
        np.testing.assert_allclose(a(fig.data[k].y), study.flows[lv].mean("attn_cos").numpy())
        np.testing.assert_allclose(a(fig.data[len(LEVELS) + k].y), study.flows[lv].mean("mlp_cos").numpy())
    assert fig.data[0].line.color == level_colors(3)[0] == S.REDUNDANCY.upper()
    assert fig.data[2].line.color == S.SYNERGY.upper()


def test_accuracy_under_ablation_bars():
    correct = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 0], [1, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    res = AccuracyResult(conditions=["clean", "synergistic", "redundant", "random", "random"], seeds=[-1, 0, 0, 0, 1],
                         correct=correct, heads=[[], ["L1H0"], ["L0H0"], ["L2H1"], ["L0H3"]],
                         completions=[["x"] * 4] * 5, answers=["1"] * 4, meta={"method": "noise", "std": 0.5,
                                                                                 "n_ablated": 1})
    fig = plot_accuracy(res)
    summary = res.summary()
    assert list(fig.data[0].x) == ["clean", "synergistic", "redundant", "random"]
    np.testing.assert_allclose(a(fig.data[0].y), summary.accuracy.to_numpy())
    np.testing.assert_allclose(a(fig.data[0].error_y.array), (summary.ci_high - summary.accuracy).to_numpy())
    assert fig.data[0].marker.color[1] == S.SYNERGY and fig.data[0].marker.color[2] == S.REDUNDANCY


def test_layer_skip_panels():
    res = LayerSkipResult(layers=torch.arange(3), divergence=torch.tensor([0.5, 2.0, 0.3]),
                          divergence_per_prompt=torch.rand(3, 2), correct=torch.tensor([[1, 0], [0, 0], [1, 1]]).bool(),
                          clean_correct=torch.tensor([1, 1]).bool(), meta={"n_layers": 3})
    fig = plot_layer_skip(res)
    bars, acc, clean = fig.data
    np.testing.assert_allclose(a(bars.y), [0.5, 2.0, 0.3])
    np.testing.assert_allclose(a(acc.y), [0.5, 0.0, 1.0])
    assert list(clean.y) == [1.0, 1.0]
    only_div = LayerSkipResult(layers=torch.arange(3), divergence=torch.tensor([0.5, 2.0, 0.3]),
                               divergence_per_prompt=torch.rand(3, 2), correct=torch.empty(0, 0, dtype=torch.bool),
                               clean_correct=torch.empty(0, dtype=torch.bool))
    assert len(plot_layer_skip(only_div).data) == 1


def _ig(point: str, attributions: torch.Tensor, components: dict) -> IGResult:
    n = attributions.shape[0]
    return IGResult(attributions=attributions, per_position=attributions[..., None], components=components,
                    f_input=torch.zeros(n, dtype=torch.float64), f_baseline=torch.ones(n, 1, dtype=torch.float64),
                    completeness_error=torch.full((n, 1), 1e-6, dtype=torch.float64), point=point,
                    method="gauss_legendre", steps=16)


def test_integrated_gradients_per_layer_and_per_head():
    attn, mlp = torch.rand(3, 4, generator=g, dtype=torch.float64), torch.rand(3, 4, generator=g, dtype=torch.float64)
    fig = plot_integrated_gradients(_ig("writes", attn + mlp, {"attn_out": attn, "mlp_out": mlp}))
    assert [t.name for t in fig.data] == ["attn_out", "mlp_out"] and fig.layout.barmode == "relative"
    np.testing.assert_allclose(a(fig.data[0].y), attn.mean(0).numpy())
    np.testing.assert_allclose(a(fig.data[1].error_y.array), (mlp.std(0) / 3**0.5).numpy())
    heads = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    fig = plot_integrated_gradients(_ig("z", heads, {}))
    np.testing.assert_allclose(a(fig.data[0].z), heads.mean(0).numpy())
    assert "1.0e-06" in fig.layout.title.text


def test_figures_for_a_run(study):
    run = RunResults().add("difficulty", study, file="difficulty").add("flow", study.flows[1])
    assert len(dynamics_figures(run)) == 5
    assert causal_figures(RunResults()) == []
