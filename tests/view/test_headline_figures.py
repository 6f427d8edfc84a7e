"""Figures of the tested headline, the robustness table, rank uncertainty and unstable heads."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from synergy_lens.analysis import synergy_scores
from synergy_lens.view.headline import plot_rank_uncertainty, plot_robustness, plot_score_profiles
from synergy_lens.view.matrices import plot_head_grid


def _ys(fig: go.Figure, name: str) -> list[np.ndarray]:
    return [np.asarray(t.y, dtype=float) for t in fig.data if t.name == name]


def test_score_profiles_one_panel_per_score_with_the_null(run):
    hl = run["headline"]
    fig = plot_score_profiles(hl)
    observed, null = _ys(fig, "observed"), _ys(fig, "surrogate null (mean)")
    assert len(observed) == len(null) == len(hl.scores) == 3
    for k in range(3):
        np.testing.assert_allclose(observed[k], hl.profile[k].numpy())
        np.testing.assert_allclose(null[k], hl.null_profile_mean[k].numpy())
    titles = [a.text for a in fig.layout.annotations]
    assert all(f"p = {float(hl.p[k]):.2g}" in titles[k] for k in range(3))


def test_robustness_small_multiples(run):
    rob = run["robustness"]
    fig = plot_robustness(rob)
    observed = _ys(fig, "observed")
    finite = [(v, s) for v in range(len(rob.variants)) for s in range(len(rob.scores))
              if np.isfinite(rob.profile[v, s].numpy()).any()]
    assert len(observed) == len(finite)
    assert len(fig.layout.annotations) == len(rob.variants) * len(rob.scores)


def test_rank_uncertainty_error_bars_and_unstable_crosses(run):
    ranks = run["ranks"]
    mask = np.zeros(ranks.rank.shape, dtype=bool)
    top = ranks.to_dataframe().iloc[0]
    mask[int(top["layer"]), int(top["head"])] = True
    fig = plot_rank_uncertainty(ranks, top=5, unstable=mask)
    trace = fig.data[0]
    assert list(trace.y) == list(ranks.to_dataframe()["label"].head(5))
    np.testing.assert_allclose(np.asarray(trace.error_x.array) + np.asarray(trace.x),
                               ranks.to_dataframe()["rank_high"].head(5))
    assert trace.marker.symbol[0] == "x"


def test_head_grid_crosses_unstable_heads(result):
    marked = synergy_scores(result, unstable=["L0H1", "L2H3"])
    fig = plot_head_grid(marked)
    cross = [t for t in fig.data if t.name == "unstable heads"]
    assert len(cross) == 1 and list(cross[0].text) == ["L0H1", "L2H3"]
    assert list(cross[0].x) == [1, 3] and list(cross[0].y) == [0, 2]
    assert not [t for t in plot_head_grid(synergy_scores(result)).data if t.name == "unstable heads"]
