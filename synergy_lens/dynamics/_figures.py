"""Plain Plotly figures of the difficulty study (for ``synergy-lens difficulty``).

Interim home: the view stage (``synergy_lens.view.dynamics``) is meant to own these. Each
function takes a :class:`~synergy_lens.dynamics.study.DifficultyStudy` and returns a
``plotly.graph_objects.Figure`` (never shown). Colours follow ``synergy_lens.view.style``.
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["accuracy_figure", "embedding_figure", "flow_figure", "order_figure", "study_figures"]


def _style() -> Any:
    from synergy_lens.view import style

    return style


def accuracy_figure(study: Any) -> go.Figure:
    """Accuracy vs level per family (and over all families), Wilson 95% CIs as error bars."""
    st = _style()
    fig = go.Figure()
    for i, (family, df) in enumerate(study.accuracy.groupby("family", sort=False)):
        df = df.sort_values("level")
        color = "#000000" if family == "all" else st.PALETTE[(i + 2) % len(st.PALETTE)]
        fig.add_trace(go.Scatter(
            x=df.level, y=df.accuracy, name=family, mode="lines+markers",
            line={"color": color, "width": 3 if family == "all" else 1.5},
            error_y={"type": "data", "symmetric": False, "array": df.ci_high - df.accuracy,
                     "arrayminus": df.accuracy - df.ci_low, "thickness": 1},
        ))
    return st.style_figure(fig, title="Accuracy vs task difficulty", xaxis_title="difficulty level",
                           yaxis_title="accuracy", subtitle="Wilson 95% intervals; 'all' pools the families")


def order_figure(study: Any) -> go.Figure:
    """Each order parameter vs level with its bootstrap band and transition estimate."""
    from synergy_lens.dynamics.study_level import ORDER_PARAMETERS

    st = _style()
    names = [*ORDER_PARAMETERS, "accuracy"]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.06)
    acc = study.accuracy[study.accuracy.family == "all"].sort_values("level")
    for j, name in enumerate(names, start=1):
        if name == "accuracy":
            x, y, lo, hi = acc.level, acc.accuracy, acc.ci_low, acc.ci_high
        else:
            df = study.order[study.order.name == name].sort_values("level")
            x, y, lo, hi = df.level, df.value, df.ci_low, df.ci_high
        color = st.SYNERGY if name != "accuracy" else "#000000"
        fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(hi) + list(lo)[::-1], fill="toself",
                                 fillcolor=st.rgba(color, 0.15), line={"width": 0}, hoverinfo="skip",
                                 showlegend=False), row=1, col=j)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", line={"color": color}, name=name,
                                 showlegend=False), row=1, col=j)
        tp = study.transitions.get(name)
        if tp is not None and math.isfinite(tp.estimate):
            fig.add_vline(x=tp.estimate, line={"dash": "dash", "color": st.CONTROL}, row=1, col=j)
        fig.update_xaxes(title_text="level", row=1, col=j)
    return st.style_figure(fig, title="Order parameters vs difficulty", height=380, width=320 * len(names),
                           subtitle="bands: 95% bootstrap over prompts (accuracy: Wilson); dashed: transition")


def embedding_figure(study: Any, color: str = "layer") -> go.Figure:
    """Functional embedding of the heads at each level, coloured by ``"layer"`` or ``"score"``."""
    st = _style()
    df = study.embedding_table()
    levels = [lv for lv in study.levels if lv in study.embeddings]
    fig = make_subplots(rows=1, cols=max(1, len(levels)), subplot_titles=[f"level {lv}" for lv in levels],
                        horizontal_spacing=0.04)
    for j, lv in enumerate(levels, start=1):
        d = df[df.level == lv]
        values = d.layer if color == "layer" else d.score
        fig.add_trace(go.Scatter(
            x=d.x, y=d.y, mode="markers", text=d.label, showlegend=False,
            marker={"color": values, "colorscale": st.LAYER_SCALE if color == "layer" else st.DIVERGING,
                    "size": 6, "showscale": j == len(levels),
                    "colorbar": {"title": color} if j == len(levels) else None},
            hovertemplate="%{text}<br>" + color + " %{marker.color}<extra></extra>",
        ), row=1, col=j)
    fig.update_xaxes(title_text="PC1")
    fig.update_yaxes(title_text="PC2", col=1)
    return st.style_figure(fig, title=f"Functional embedding of heads, coloured by {color}",
                           height=380, width=max(420, 300 * len(levels)),
                           subtitle="one point per head; each level embedded on its own")


def flow_figure(study: Any) -> go.Figure:
    """Residual-flow depth curves, one line per level, one panel per metric."""
    st = _style()
    metrics = ["attn_cos", "mlp_cos", "resid_cos"]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics, horizontal_spacing=0.06)
    n = len(study.flows)
    for i, (lv, flow) in enumerate(sorted(study.flows.items())):
        shade = i / max(n - 1, 1)
        color = f"rgb({int(213 * shade)}, {int(94 * shade + 114 * (1 - shade))}, {int(178 * (1 - shade))})"
        for j, m in enumerate(metrics, start=1):
            fig.add_trace(go.Scatter(x=flow.depth.tolist(), y=flow.mean(m).tolist(), mode="lines+markers",
                                     name=f"level {lv}", legendgroup=str(lv), showlegend=j == 1,
                                     line={"color": color}, marker={"size": 4}), row=1, col=j)
            fig.update_xaxes(title_text="normalised depth", row=1, col=j)
    return st.style_figure(fig, title="Residual flow vs depth", height=380, width=1100,
                           subtitle="cosine of each sub-layer's write with the stream it writes into; "
                                    "resid_cos: residual before vs after the block")


def study_figures(study: Any) -> dict[str, go.Figure]:
    """All figures by file stem."""
    figs = {"accuracy": accuracy_figure(study), "order_parameters": order_figure(study),
            "residual_flow": flow_figure(study)}
    if study.embeddings:
        figs["embedding_layer"] = embedding_figure(study, "layer")
        figs["embedding_score"] = embedding_figure(study, "score")
    return figs
