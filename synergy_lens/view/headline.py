"""Figures of the tested headline: scores side by side against their null, robustness, rank spread.

- :func:`plot_score_profiles`: the layer profile of each headline score (rank_gradient,
  syn_minus_red, synergy_fraction) in its own panel, with the bootstrap band over prompts
  and the mean profile of the autocorrelation-preserving surrogate null (grey, dashed). A
  profile that the null reproduces is a profile of the heads' own dynamics, not of how
  they combine information (``analysis.headline``).
- :func:`plot_robustness`: small multiples, one row per score and one column per analysis
  choice (``analysis.robustness``), each with the observed profile and the null's mean.
- :func:`plot_rank_uncertainty`: the most synergistic heads with the bootstrap interval of
  their rank, coloured by how often they fall in the core (``analysis.uncertainty``);
  unstable heads (``analysis.stability``) are drawn as crosses.

All return a ``plotly.graph_objects.Figure`` and never display it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from synergy_lens.units import normalised_depth
from synergy_lens.view import style as S

__all__ = ["plot_rank_uncertainty", "plot_robustness", "plot_score_profiles"]


def _depth(n: int) -> np.ndarray:
    return normalised_depth(n).numpy()


def _panel(fig: go.Figure, row: int, col: int, profile: np.ndarray, null: np.ndarray, *,
           low: np.ndarray | None = None, high: np.ndarray | None = None, legend: bool = False) -> None:
    depth = _depth(len(profile))
    if low is not None and high is not None and np.isfinite(low).any():
        fig.add_trace(go.Scatter(x=depth, y=high, mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip", name="band (high)"), row=row, col=col)
        fig.add_trace(go.Scatter(x=depth, y=low, mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=S.rgba(S.SYNERGY, 0.18), showlegend=False, hoverinfo="skip",
                                 name="band (low)"), row=row, col=col)
    fig.add_trace(go.Scatter(x=depth, y=null, mode="lines", name="surrogate null (mean)", legendgroup="null",
                             showlegend=legend, line={"color": S.CONTROL, "dash": "dash", "width": 2}),
                  row=row, col=col)
    fig.add_trace(go.Scatter(x=depth, y=profile, mode="lines+markers", name="observed", legendgroup="obs",
                             showlegend=legend, line={"color": S.SYNERGY, "width": 2.5},
                             marker={"size": 5, "color": S.SYNERGY}), row=row, col=col)


def _verdict(index: float, p: float, alpha: float) -> str:
    if not math.isfinite(index):
        return "skipped"
    mark = "above null" if math.isfinite(p) and p <= alpha else "not above null"
    return f"U {index:.2f}, p = {p:.2g} ({mark})"


def plot_score_profiles(headline: Any, *, title: str | None = None) -> go.Figure:
    """One panel per score: observed scaled profile with its band, and the null's mean profile.

    Args:
        headline: an :class:`~synergy_lens.analysis.headline.Headline`.

    Returns:
        A 1 x n_scores figure; per panel the traces are the band (when there is one), the
        null's mean profile, then the observed profile (``x`` = normalised depth). Panel
        titles give the inverted-U index and its p-value against the null.
    """
    scores = list(headline.scores)
    titles = [f"{s}<br><sup>{_verdict(float(headline.index[k]), float(headline.p[k]), headline.alpha)}</sup>"
              for k, s in enumerate(scores)]
    fig = make_subplots(rows=1, cols=len(scores), subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.05)
    for k in range(len(scores)):
        _panel(fig, 1, k + 1, S.as_array(headline.profile[k]), S.as_array(headline.null_profile_mean[k]),
               low=S.as_array(headline.low[k]), high=S.as_array(headline.high[k]), legend=k == 0)
    S.style_figure(fig, title=title or "Layer profile of each score against the autocorrelation null",
                   subtitle=f"min-max scaled; band: {round(100 * (1 - headline.alpha))}% bootstrap over prompts; "
                            f"dashed: mean of {headline.n_surrogates} circular-shift surrogates",
                   height=440)
    fig.update_xaxes(title_text="normalised depth", range=[-0.02, 1.02])
    fig.update_yaxes(title_text="scaled mean score per layer", row=1, col=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.32}, margin={"t": 120, "b": 110})
    return fig


def plot_robustness(rob: Any, *, title: str | None = None) -> go.Figure:
    """Small multiples of the layer profile: rows = scores, columns = analysis choices.

    Args:
        rob: a :class:`~synergy_lens.analysis.robustness.Robustness`.

    Returns:
        A n_scores x n_variants figure; each panel has the null's mean profile (grey,
        dashed) and the observed profile; its title gives the index and p-value. A
        skipped choice leaves its column empty (its title says so).
    """
    variants, scores = list(rob.variants), list(rob.scores)
    titles = []
    for s, score in enumerate(scores):
        for v, name in enumerate(variants):
            head = f"{name}<br>" if s == 0 else ""
            titles.append(f"{head}<sup>{score}: {_verdict(float(rob.index[v, s]), float(rob.p[v, s]), rob.alpha)}</sup>")
    fig = make_subplots(rows=len(scores), cols=len(variants), subplot_titles=titles, shared_xaxes=True,
                        shared_yaxes=True, vertical_spacing=0.09, horizontal_spacing=0.03)
    for s in range(len(scores)):
        for v in range(len(variants)):
            prof = S.as_array(rob.profile[v, s])
            if not np.isfinite(prof).any():
                continue
            _panel(fig, s + 1, v + 1, prof, S.as_array(rob.null_profile[v, s]), legend=(s == 0 and v == 0))
    S.style_figure(fig, title=title or "Robustness: the layer profile under each analysis choice",
                   subtitle=f"rows: scores; columns: choices; dashed: mean of {rob.n_surrogates} surrogates",
                   height=max(420, 240 * len(scores) + 60))
    for v in range(len(variants)):
        fig.update_xaxes(title_text="depth", row=len(scores), col=v + 1)
    fig.update_layout(legend={"orientation": "h", "y": -0.08}, margin={"t": 130})
    return fig


def plot_rank_uncertainty(ranks: Any, *, top: int = 40, unstable: Any = None, title: str | None = None) -> go.Figure:
    """The ``top`` heads by observed rank with their bootstrap rank interval.

    Args:
        ranks: a :class:`~synergy_lens.analysis.uncertainty.RankUncertainty`.
        top: how many heads to show (the most synergistic first).
        unstable: a ``[layer, head]`` mask (or ``UnitStability``) of heads drawn as crosses.

    Returns:
        One scatter trace with ``x`` = observed rank, horizontal error bars to the rank
        interval, ``y`` = head labels, marker colour = core frequency (0..1).
    """
    df = ranks.to_dataframe()
    df = df[np.isfinite(df["rank"])].head(top)
    mask = getattr(unstable, "unstable", unstable)
    flagged = set()
    if mask is not None:
        flagged = {lab for lab, bad in zip(ranks.labels, S.as_array(mask).ravel().tolist()) if bad}
    symbols = ["x" if lab in flagged else ("square" if core else "circle")
               for lab, core in zip(df["label"], df["in_core"])]
    fig = go.Figure(go.Scatter(
        x=df["rank"], y=df["label"], mode="markers", name="heads",
        error_x={"type": "data", "symmetric": False, "array": df["rank_high"] - df["rank"],
                 "arrayminus": df["rank"] - df["rank_low"], "color": S.CONTROL, "thickness": 1.2},
        marker={"color": df["core_frequency"], "cmin": 0, "cmax": 1, "colorscale": "Viridis", "size": 9,
                "symbol": symbols, "colorbar": {"title": {"text": "in core"}, "thickness": 12}},
        customdata=np.stack([df["rank_low"], df["rank_high"], df["core_frequency"]], axis=-1),
        hovertemplate="%{y}: rank %{x:.0f} [%{customdata[0]:.0f}, %{customdata[1]:.0f}], "
                      "in the core in %{customdata[2]:.0%} of resamples<extra></extra>",
    ))
    S.style_figure(fig, title=title or f"Rank uncertainty of the top {len(df)} heads ({ranks.score})",
                   subtitle=f"bars: {round(100 * (1 - ranks.alpha))}% bootstrap interval over prompts "
                            f"({ranks.n_boot} resamples); colour: fraction of resamples in the top "
                            f"{100 * ranks.q:.0f}%; squares: core, crosses: unstable heads",
                   xaxis_title="rank (1 = most synergistic)", yaxis_title="", height=max(380, 16 * len(df) + 140))
    fig.update_yaxes(autorange="reversed", type="category")
    return fig
