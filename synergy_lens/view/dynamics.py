"""Figures of the task-difficulty study and the residual flow (paper (A), arXiv 2603.29735).

What each figure shows
----------------------
- :func:`plot_order_parameter`: each order parameter of head organisation (cluster
  separation of the functional embedding, bimodality of the head score, inverted-U index
  of the layer profile) and the accuracy against difficulty level, with the bootstrap band
  over prompts and the estimated transition level (dashed). Paper (A): past a difficulty
  threshold the heads split abruptly into synergistic and redundant groups.
- :func:`plot_embedding`: the heads' 2-D functional embedding at each level, one panel per
  level, coloured by layer or by score. Intermixed points at easy levels and two clusters
  at hard ones is the differentiation the paper describes.
- :func:`plot_accuracy_levels`: accuracy per task family against level, Wilson intervals.
- :func:`plot_residual_flow`: per layer, the cosine of each sub-layer's write with the
  residual stream it is added to (``dynamics.flow``). Positive = the block enhances the
  stream, near 0 = it writes orthogonally (paper (A): the middle layers), negative =
  it erases. For a study, one line per level.

Inputs are a :class:`~synergy_lens.dynamics.study.DifficultyStudy` or a
:class:`~synergy_lens.dynamics.flow.ResidualFlow`; every function returns a
``plotly.graph_objects.Figure`` and never shows it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from synergy_lens.view import style as S

__all__ = [
    "dynamics_figures",
    "level_colors",
    "plot_accuracy_levels",
    "plot_embedding",
    "plot_order_parameter",
    "plot_residual_flow",
    "write_figures",
]

_ORDER_TITLES = {
    "separation": "cluster separation (Cohen's d)",
    "bimodality": "bimodality coefficient",
    "inverted_u": "inverted-U index",
    "accuracy": "accuracy",
}
_FLOW_TITLES = {
    "attn_cos": "cos(attention write, stream)",
    "mlp_cos": "cos(MLP write, stream)",
    "resid_cos": "cos(stream before, after block)",
    "attn_ratio": "|attention write| / |stream|",
    "mlp_ratio": "|MLP write| / |stream|",
}


def level_colors(n: int) -> list[str]:
    """``n`` colours from blue (easiest level) to vermillion (hardest)."""
    lo, hi = np.array([0x00, 0x72, 0xB2]), np.array([0xD5, 0x5E, 0x00])
    out = []
    for i in range(n):
        t = i / max(n - 1, 1)
        r, g, b = (lo + t * (hi - lo)).round().astype(int)
        out.append(f"#{r:02X}{g:02X}{b:02X}")
    return out


def _series(study: Any, name: str) -> tuple[list[float], list[float], list[float], list[float]]:
    if name == "accuracy":
        df = study.accuracy[study.accuracy.family == "all"].sort_values("level")
        return list(df.level), list(df.accuracy), list(df.ci_low), list(df.ci_high)
    df = study.order[study.order.name == name].sort_values("level")
    return list(df.level), list(df.value), list(df.ci_low), list(df.ci_high)


def plot_order_parameter(study: Any, names: Sequence[str] | None = None, *, title: str | None = None) -> go.Figure:
    """Order parameters (and accuracy) against difficulty level, one panel each.

    Args:
        study: a ``DifficultyStudy``.
        names: which quantities; default every order parameter in ``study.order`` then
            ``"accuracy"``.

    Returns:
        Per panel three traces: the band's upper edge (``y = ci_high``), its lower edge
        (``y = ci_low``, filled), the value line (``y = value``), all with ``x = level``;
        a dashed vertical line marks ``study.transitions[name].estimate`` when finite.
    """
    names = list(names) if names is not None else [*dict.fromkeys(study.order.name), "accuracy"]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[_ORDER_TITLES.get(n, n) for n in names],
                        horizontal_spacing=0.07)
    for j, name in enumerate(names, start=1):
        x, y, lo, hi = _series(study, name)
        color = "#000000" if name == "accuracy" else S.SYNERGY
        fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip",
                                 name=f"{name} (high)"), row=1, col=j)
        fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line={"width": 0}, fill="tonexty", showlegend=False,
                                 fillcolor=S.rgba(color, 0.18), hoverinfo="skip", name=f"{name} (low)"), row=1, col=j)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, showlegend=False,
                                 line={"color": color, "width": 2.5},
                                 hovertemplate="level %{x}: %{y:.3g}<extra>" + name + "</extra>"), row=1, col=j)
        tp = study.transitions.get(name)
        if tp is not None and math.isfinite(tp.estimate):
            fig.add_vline(x=tp.estimate, line={"dash": "dash", "color": S.CONTROL, "width": 1.5}, row=1, col=j)
        fig.update_xaxes(title_text="difficulty level", dtick=1, row=1, col=j)
    S.style_figure(fig, title=title or "Head organisation vs task difficulty",
                   subtitle="bands: 95% bootstrap over prompts (accuracy: Wilson); dashed: estimated transition",
                   height=400)
    fig.update_layout(margin={"t": 100})
    return fig


def plot_embedding(
    study: Any, color: str = "layer", *, levels: Sequence[int] | None = None, title: str | None = None
) -> go.Figure:
    """Functional embedding of the heads at each difficulty level (one panel per level).

    Args:
        study: a ``DifficultyStudy`` (``embedding_table()``: level, label, layer, x, y, score).
        color: ``"layer"`` (depth) or ``"score"`` (the study's head score, diverging colours).
        levels: which levels (default: every level with an embedding).

    Returns:
        One scatter trace per level, ``x``/``y`` the embedding coordinates and ``text`` the
        head labels, in the order of ``study.labels``.
    """
    if color not in ("layer", "score"):
        raise ValueError(f"color must be 'layer' or 'score', got {color!r}")
    table = study.embedding_table()
    chosen = [lv for lv in (levels if levels is not None else study.levels) if lv in study.embeddings]
    if not chosen:
        raise ValueError("this study has no functional embedding for the requested levels")
    fig = make_subplots(rows=1, cols=len(chosen), subplot_titles=[f"level {lv}" for lv in chosen],
                        horizontal_spacing=0.04)
    values = table[color].to_numpy(dtype=float)
    span = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    for j, lv in enumerate(chosen, start=1):
        d = table[table.level == lv]
        marker: dict[str, Any] = {"color": d[color].to_numpy(dtype=float), "size": 7,
                                  "line": {"width": 0.5, "color": "white"}, "showscale": j == len(chosen),
                                  "colorbar": {"title": {"text": color}, "thickness": 12}}
        if color == "layer":
            marker.update(colorscale=S.LAYER_SCALE, cmin=0, cmax=max(study.n_layers - 1, 1))
        else:
            marker.update(colorscale=S.DIVERGING, cmin=-span, cmax=span)
        fig.add_trace(go.Scatter(x=d.x.to_numpy(), y=d.y.to_numpy(), mode="markers", text=list(d.label),
                                 name=f"level {lv}", showlegend=False, marker=marker,
                                 hovertemplate="%{text}<br>" + color + " %{marker.color:.3g}<extra></extra>"),
                      row=1, col=j)
        fig.update_xaxes(showticklabels=False, title_text="dim 1", row=1, col=j)
        fig.update_yaxes(showticklabels=False, title_text="dim 2" if j == 1 else None, row=1, col=j)
    S.style_figure(fig, title=title or f"Functional embedding of the heads, coloured by {color}",
                   subtitle="one point per head; each level embedded on its own", height=400)
    fig.update_layout(margin={"t": 100})
    return fig


def plot_accuracy_levels(study: Any, *, title: str | None = None) -> go.Figure:
    """Accuracy against level for each task family and pooled (``"all"``, thick black).

    Returns:
        One trace per family (``y = accuracy``, asymmetric error bars to ``ci_low``/``ci_high``).
    """
    fig = go.Figure()
    for i, (family, df) in enumerate(study.accuracy.groupby("family", sort=False)):
        df = df.sort_values("level")
        pooled = family == "all"
        color = "#000000" if pooled else S.PALETTE[(i + 2) % len(S.PALETTE)]
        fig.add_trace(go.Scatter(
            x=df.level.to_numpy(), y=df.accuracy.to_numpy(), name=str(family), mode="lines+markers",
            line={"color": color, "width": 3 if pooled else 1.5},
            error_y={"type": "data", "symmetric": False, "array": (df.ci_high - df.accuracy).to_numpy(),
                     "arrayminus": (df.accuracy - df.ci_low).to_numpy(), "thickness": 1},
        ))
    S.style_figure(fig, title=title or "Accuracy vs task difficulty", subtitle="Wilson 95% intervals",
                   xaxis_title="difficulty level", yaxis_title="accuracy", height=380)
    fig.update_yaxes(range=[-0.03, 1.03])
    return fig


def plot_residual_flow(
    flow: Any, metrics: Sequence[str] = ("attn_cos", "mlp_cos", "resid_cos"), *, title: str | None = None
) -> go.Figure:
    """Residual-flow curves against normalised depth.

    Args:
        flow: a ``ResidualFlow`` (one line per metric, one panel), or a ``DifficultyStudy``
            / a mapping ``level -> ResidualFlow`` (one panel per metric, one line per level,
            blue = easiest to vermillion = hardest).
        metrics: metric names (``dynamics.flow.FLOW_METRICS``).

    Returns:
        Single flow: one trace per metric, ``y = flow.mean(metric)``, ``x = flow.depth``.
        Several: per metric panel, one trace per level in ascending level order.
    """
    flows = getattr(flow, "flows", flow)
    if isinstance(flows, Mapping):
        items = sorted(flows.items())
        fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[_FLOW_TITLES.get(m, m) for m in metrics],
                            horizontal_spacing=0.07)
        colors = level_colors(len(items))
        for j, metric in enumerate(metrics, start=1):
            for (level, f), c in zip(items, colors):
                fig.add_trace(go.Scatter(x=f.depth.numpy(), y=f.mean(metric).numpy(), mode="lines+markers",
                                         name=f"level {level}", legendgroup=str(level), showlegend=j == 1,
                                         line={"color": c}, marker={"size": 4}), row=1, col=j)
            fig.update_xaxes(title_text="normalised depth", row=1, col=j)
            fig.add_hline(y=0, line={"color": "#999999", "width": 1}, row=1, col=j)
        S.style_figure(fig, title=title or "Residual flow vs depth, per difficulty level",
                       subtitle="cosine of each write with the stream it joins; 0 = orthogonal", height=400)
        fig.update_layout(margin={"t": 100})
        return fig
    fig = go.Figure()
    for k, metric in enumerate(metrics):
        fig.add_trace(go.Scatter(x=flow.depth.numpy(), y=flow.mean(metric).numpy(), mode="lines+markers",
                                 name=_FLOW_TITLES.get(metric, metric), line={"color": S.PALETTE[k % len(S.PALETTE)]}))
    fig.add_hline(y=0, line={"color": "#999999", "width": 1})
    S.style_figure(fig, title=title or "Residual flow vs depth",
                   subtitle="> 0: the block enhances the stream; ≈ 0: writes orthogonally; < 0: erases",
                   xaxis_title="normalised depth", yaxis_title="cosine", height=400)
    return fig


def dynamics_figures(run: Any) -> list[tuple[go.Figure, str]]:
    """The dynamics figures a run has data for (``difficulty`` study, ``flow``, ``energy``), with captions."""
    from synergy_lens.view.matrices import plot_energy

    out: list[tuple[go.Figure, str]] = []
    study = run.get("difficulty")
    if study is not None:
        out.append((plot_order_parameter(study), "Do the heads split into synergistic and redundant groups as "
                    "tasks get harder? Dashed lines: estimated transition levels."))
        out.append((plot_accuracy_levels(study), "Task accuracy per family."))
        if study.embeddings:
            out.append((plot_embedding(study, "score"), "Each head placed by its PhiID profile; colour = score."))
        if study.flows:
            out.append((plot_residual_flow(study), "Residual flow at each difficulty level."))
    flow = run.get("flow")
    if flow is not None:
        out.append((plot_residual_flow(flow), "Residual flow of the recorded prompts."))
    energy = run.get("energy")
    if energy is not None:
        out.append((plot_energy(energy), f"Layer energy ({energy.definition})."))
    return out


def write_figures(study: Any, out: str | Path) -> list[Path]:
    """The study's figures as HTML files in ``out`` (the ``difficulty`` command writes them).

    Files: ``accuracy``, ``order_parameters``, ``residual_flow`` (when the study has flows)
    and ``embedding_layer`` / ``embedding_score`` (when it has embeddings). They share one
    ``plotly.min.js`` written beside them, so they open offline.
    """
    figs = {"accuracy": plot_accuracy_levels(study), "order_parameters": plot_order_parameter(study)}
    if study.flows:
        figs["residual_flow"] = plot_residual_flow(study)
    if study.embeddings:
        figs["embedding_layer"] = plot_embedding(study, "layer")
        figs["embedding_score"] = plot_embedding(study, "score")
    from plotly.offline import get_plotlyjs

    from synergy_lens._io import atomic_write_text

    paths = []
    for name, fig in figs.items():
        paths.append(atomic_write_text(Path(out) / f"{name}.html", fig.to_html(include_plotlyjs="directory")))
    bundle = Path(out) / "plotly.min.js"
    if paths and not bundle.exists():  # what fig.write_html(include_plotlyjs="directory") adds
        atomic_write_text(bundle, get_plotlyjs())
    return paths
