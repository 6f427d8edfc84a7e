"""Figures and a report page for checkpoint sweeps (:class:`~synergy_lens.sweep.SweepResult`).

- :func:`plot_sweep_index`: each score's inverted-U index over training, with its bootstrap
  CI; filled markers where the index is above the autocorrelation null (p <= 0.05).
- :func:`plot_sweep_profile`: the chosen score's min-max scaled layer profile as a
  layer x checkpoint heatmap (synergy colour scale).
- :func:`plot_sweep_stability`: the Spearman correlation of mean sts with mean rtr per
  checkpoint, the core's Jaccard similarity with the final core, and the rank correlation
  of all heads with their final ranks.
- :func:`plot_sweep_ranks`: the chosen score's rank of each head over training (the final
  core highlighted).
- :func:`sweep_report`: all four and the table on one self-contained page.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from synergy_lens.analysis.training import SweepResult
from synergy_lens.view import style as S
from synergy_lens.view.page import Report

__all__ = [
    "plot_sweep_index",
    "plot_sweep_profile",
    "plot_sweep_ranks",
    "plot_sweep_stability",
    "sweep_report",
]

_SCORE_COLORS = {"rank_gradient": S.SYNERGY, "syn_minus_red": "#CC79A7", "synergy_fraction": "#009E73"}


def _x(result: SweepResult) -> tuple[list[Any], str]:
    steps = result.steps.tolist()
    if all(math.isfinite(s) for s in steps):
        return steps, "training step"
    return [Path(c).name or c for c in result.checkpoints], "checkpoint"


def plot_sweep_index(result: SweepResult, alpha: float = 0.05) -> go.Figure:
    """Inverted-U index per score over checkpoints, CI bars, filled where above the null."""
    x, xtitle = _x(result)
    fig = go.Figure()
    for s, score in enumerate(result.scores):
        idx = result.index[:, s].tolist()
        lo, hi = result.ci_low[:, s].tolist(), result.ci_high[:, s].tolist()
        p = result.p[:, s].tolist()
        color = _SCORE_COLORS.get(score, S.CONTROL)
        fig.add_trace(go.Scatter(
            x=x, y=idx, name=score, mode="lines+markers",
            line={"color": color},
            marker={
                "size": 10, "color": [color if pv <= alpha else "white" for pv in p],
                "line": {"color": color, "width": 2},
            },
            error_y={"type": "data", "symmetric": False,
                     "array": [h - i for h, i in zip(hi, idx)],
                     "arrayminus": [i - lo_ for i, lo_ in zip(idx, lo)]},
            customdata=list(zip(p, lo, hi)),
            hovertemplate="index %{y:.3f} [%{customdata[1]:.3f}, %{customdata[2]:.3f}]"
                          "<br>null p = %{customdata[0]:.3f}<extra>" + score + "</extra>",
        ))
    fig.add_hline(y=0, line={"color": S.CONTROL, "dash": "dot"})
    return S.style_figure(
        fig, title="Inverted-U index over training",
        subtitle=f"bars: bootstrap CI over prompts; filled: above the autocorrelation null (p <= {alpha})",
        xaxis_title=xtitle, yaxis_title="inverted-U index", height=420,
    )


def plot_sweep_profile(result: SweepResult, score: str | None = None) -> go.Figure:
    """The scaled layer profile of ``score`` (default the sweep's) as layer x checkpoint."""
    score = score or result.score
    s = result.scores.index(score)
    x, xtitle = _x(result)
    z = result.profile[:, s, :].T.tolist()  # [layer, checkpoint]
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(v) for v in x], y=list(range(result.n_layers)), colorscale=S.SYNERGY_SCALE,
        zmin=0, zmax=1, colorbar={"title": "scaled"},
        hovertemplate="layer %{y}<br>%{x}<br>%{z:.2f}<extra></extra>",
    ))
    fig.update_xaxes(type="category")
    fig.update_yaxes(dtick=1)
    return S.style_figure(
        fig, title=f"Layer profile of {score} over training",
        subtitle="each column min-max scaled; an inverted U is bright in the middle rows",
        xaxis_title=xtitle, yaxis_title="layer", height=420,
    )


def plot_sweep_stability(result: SweepResult) -> go.Figure:
    """Syn/red rank correlation, core Jaccard with the final core, rank correlation with final."""
    x, xtitle = _x(result)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=result.synred_spearman.tolist(), name="Spearman(mean sts, mean rtr)",
                             mode="lines+markers", line={"color": S.REDUNDANCY}))
    fig.add_trace(go.Scatter(x=x, y=result.core_jaccard.tolist(), name="core Jaccard with final",
                             mode="lines+markers", line={"color": S.SYNERGY}))
    fig.add_trace(go.Scatter(x=x, y=result.rank_correlation_with_final().tolist(),
                             name=f"{result.score} ranks vs final (Spearman)", mode="lines+markers",
                             line={"color": S.CONTROL, "dash": "dash"}))
    return S.style_figure(
        fig, title="How settled the core is",
        subtitle="a syn/red correlation near 1 warns that rank differences may cancel",
        xaxis_title=xtitle, yaxis_title="correlation / similarity", height=400,
    )


def plot_sweep_ranks(result: SweepResult) -> go.Figure:
    """Each head's rank under the sweep's score over training; the final core in colour."""
    x, xtitle = _x(result)
    final = set(result.core[-1])
    fig = go.Figure()
    for u, label in enumerate(result.labels):
        core = label in final
        fig.add_trace(go.Scatter(
            x=x, y=result.ranks[:, u].tolist(), name=label, mode="lines",
            line={"color": S.SYNERGY if core else S.rgba(S.CONTROL, 0.35), "width": 2 if core else 1},
            showlegend=core, hovertemplate=f"{label}: rank %{{y}}<extra></extra>",
        ))
    return S.style_figure(
        fig, title=f"Head ranks by {result.score} over training",
        subtitle="coloured: the final checkpoint's core; higher = more synergistic",
        xaxis_title=xtitle, yaxis_title="rank", height=440,
    )


def sweep_report(result: SweepResult, path: str | Path | None = None) -> Report:
    """A self-contained page with the sweep's figures and table (saved when ``path`` is given)."""
    page = Report("synergy-lens checkpoint sweep",
                  subtitle=f"{len(result.checkpoints)} checkpoints, {result.n_layers} layers x "
                           f"{result.n_heads} heads, score {result.score}")
    frame = result.to_dataframe()
    last = frame[frame["checkpoint"] == result.checkpoints[-1]]
    summary = "; ".join(
        f"{r.score}: index {r.index:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}], null p = {r.p_null:.3f}"
        for r in last.itertuples()
    )
    page.section("Summary").text(f"Final checkpoint: {summary}.")
    page.section("Inverted U over training").figure(plot_sweep_index(result))
    page.figure(plot_sweep_profile(result))
    page.section("Core stability").figure(plot_sweep_stability(result)).figure(plot_sweep_ranks(result))
    page.section("Table").table(frame, index=False)
    page.settings(result.settings, "Sweep settings")
    if path is not None:
        page.save(path)
    return page
