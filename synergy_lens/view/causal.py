"""Figures of the causal tests: ablation curves, layer skipping, integrated gradients, accuracy.

What each figure shows
----------------------
- :func:`plot_ablation`: behaviour divergence (mean KL of the clean next-token distribution
  from the ablated one, nats) as heads are removed cumulatively: synergy-first (the core
  first, vermillion), redundancy-first (blue) and random orders (grey mean with the band
  between the lowest and highest random curve, or a quantile band). Paper (B): removing
  synergistic heads first changes behaviour much faster than random or redundant ones.
- :func:`plot_accuracy`: task accuracy with the top synergistic, the top redundant or
  random heads disrupted (paper (B), ablation 2), Wilson intervals.
- :func:`plot_layer_skip`: each layer skipped in turn (its block passes the residual
  stream through unchanged): divergence from the clean model, and accuracy against the
  clean accuracy. Paper (A): skipping middle layers hurts most.
- :func:`plot_integrated_gradients`: integrated-gradients attribution of the answer's
  log-probability to each layer (stacked attention / MLP writes when available) or to each
  head (layer x head grid), mean over prompts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from synergy_lens.view import style as S

__all__ = ["causal_figures", "plot_ablation", "plot_accuracy", "plot_integrated_gradients", "plot_layer_skip"]

_ORDER_COLORS = {"synergy-first": S.SYNERGY, "redundancy-first": S.REDUNDANCY}
_CONDITION_COLORS = {"clean": "#444444", "synergistic": S.SYNERGY, "redundant": S.REDUNDANCY, "random": S.RANDOM}


def plot_ablation(curve: Any, *, band: tuple[float, float] | None = None, title: str | None = None) -> go.Figure:
    """Cumulative ablation curves with the spread of the random orders.

    Args:
        curve: an :class:`~synergy_lens.intervene.AblationCurve`.
        band: ``None`` for the min-max band of the random orders, or quantiles such as
            ``(0.05, 0.95)`` (meaningful with many random seeds).

    Returns:
        Traces, in order: when there are random orders, the band's upper edge
        (``y = random_max`` or the upper quantile), its lower edge (``random_min`` / the lower
        quantile, filled up to the upper one) and the random mean (``y = random_mean``);
        then one line per named order (``y = curve.curves[name]``). ``x`` is always
        ``curve.steps`` (number of heads ablated).
    """
    x = S.as_array(curve.steps)
    fig = go.Figure()
    n_random = int(curve.random.shape[0]) if curve.random.numel() else 0
    if n_random:
        if band is None:
            hi, lo, what = S.as_array(curve.random_max), S.as_array(curve.random_min), f"min-max of {n_random} random orders"
        else:
            hi, lo = S.as_array(curve.random_quantile(band[1])), S.as_array(curve.random_quantile(band[0]))
            what = f"{band[0]:.0%}-{band[1]:.0%} of {n_random} random orders"
        fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip",
                                 name="random band (high)", legendgroup="random"))
        fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=S.rgba(S.RANDOM, 0.3), name=what, legendgroup="random"))
        fig.add_trace(go.Scatter(x=x, y=S.as_array(curve.random_mean), mode="lines+markers", name="random (mean)",
                                 line={"color": S.CONTROL, "dash": "dash", "width": 2}, legendgroup="random",
                                 hovertemplate="%{x} heads: %{y:.4g} nats<extra>random mean</extra>"))
    for k, (name, values) in enumerate(curve.curves.items()):
        color = _ORDER_COLORS.get(name, S.PALETTE[2 + k % (len(S.PALETTE) - 2)])
        fig.add_trace(go.Scatter(x=x, y=S.as_array(values), mode="lines+markers", name=name,
                                 line={"color": color, "width": 2.5}, marker={"size": 6},
                                 hovertemplate="%{x} heads: %{y:.4g} nats<extra>" + name + "</extra>"))
    mode = curve.meta.get("mode", "zero")
    n_prompts = curve.meta.get("n_prompts")
    S.style_figure(
        fig, title=title or "Behaviour divergence under cumulative head ablation",
        subtitle=f"heads {mode}-ablated in order; KL(clean ‖ ablated) on the clean generation"
                 + (f", {n_prompts} prompts" if n_prompts else ""),
        xaxis_title="heads ablated", yaxis_title="divergence (nats)", height=420,
    )
    return fig


def plot_accuracy(result: Any, *, title: str | None = None) -> go.Figure:
    """Accuracy per condition of :func:`~synergy_lens.intervene.accuracy_under_ablation`.

    Returns:
        One bar trace: ``x`` the conditions of ``result.summary()`` (random seeds pooled),
        ``y`` their accuracy, asymmetric error bars to the Wilson interval.
    """
    table = result.summary()
    acc = table["accuracy"].to_numpy(dtype=float)
    fig = go.Figure(go.Bar(
        x=list(table["condition"]), y=acc, name="accuracy",
        marker_color=[_CONDITION_COLORS.get(c, S.PALETTE[2]) for c in table["condition"]],
        error_y={"type": "data", "symmetric": False, "array": table["ci_high"].to_numpy(dtype=float) - acc,
                 "arrayminus": acc - table["ci_low"].to_numpy(dtype=float), "color": "#333333"},
        customdata=table["n"].to_numpy(), hovertemplate="%{x}: %{y:.2f} (n = %{customdata})<extra></extra>",
    ))
    meta = result.meta
    what = (f"Gaussian noise (std {meta.get('std')}) on W_Q rows and W_O columns" if meta.get("method") == "noise"
            else f"{meta.get('mode', 'zero')} ablation")
    S.style_figure(fig, title=title or "Task accuracy with groups of heads disrupted",
                   subtitle=f"{meta.get('n_ablated', '?')} heads per group, {what}; Wilson intervals",
                   xaxis_title="heads disrupted", yaxis_title="accuracy", height=400)
    fig.update_yaxes(range=[0, 1.05])
    return fig


def plot_layer_skip(result: Any, *, title: str | None = None) -> go.Figure:
    """Divergence and accuracy with each layer skipped (:func:`~synergy_lens.intervene.layer_skip_sweep`).

    Returns:
        A bar trace of ``result.divergence`` per skipped layer (when measured) and a line
        of ``result.accuracy`` with Wilson error bars plus a dashed clean-accuracy line
        (when measured), in two panels; ``x`` is ``result.layers``.
    """
    layers = S.as_array(result.layers)
    has_div = bool(np.isfinite(S.as_array(result.divergence)).any())
    has_acc = bool(result.correct.numel())
    panels = [p for p, ok in (("divergence", has_div), ("accuracy", has_acc)) if ok] or ["divergence"]
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.1,
                        subplot_titles=[{"divergence": "divergence from the clean model (nats)",
                                         "accuracy": "task accuracy"}[p] for p in panels])
    col = 1
    if "divergence" in panels:
        fig.add_trace(go.Bar(x=layers, y=S.as_array(result.divergence), name="divergence", marker_color=S.PALETTE[2],
                             hovertemplate="skip layer %{x}: %{y:.4g} nats<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="skipped layer", row=1, col=col)
        col += 1
    if "accuracy" in panels and has_acc:
        table = result.to_dataframe()
        acc = table["accuracy"].to_numpy(dtype=float)
        fig.add_trace(go.Scatter(
            x=layers, y=acc, mode="lines+markers", name="accuracy", line={"color": S.SYNERGY},
            error_y={"type": "data", "symmetric": False, "array": table["ci_high"].to_numpy(dtype=float) - acc,
                     "arrayminus": acc - table["ci_low"].to_numpy(dtype=float)},
        ), row=1, col=col)
        fig.add_trace(go.Scatter(x=[layers.min(), layers.max()], y=[result.clean_accuracy] * 2, mode="lines",
                                 name="clean", line={"color": S.CONTROL, "dash": "dash"}), row=1, col=col)
        fig.update_xaxes(title_text="skipped layer", row=1, col=col)
        fig.update_yaxes(range=[-0.03, 1.03], row=1, col=col)
    S.style_figure(fig, title=title or "Skipping one layer at a time",
                   subtitle="the skipped block passes the residual stream through unchanged", height=400)
    fig.update_layout(margin={"t": 100})
    return fig


def plot_integrated_gradients(ig: Any, *, title: str | None = None) -> go.Figure:
    """Integrated-gradients attributions (:func:`~synergy_lens.intervene.integrated_gradients`).

    Returns:
        ``point="z"``: a heatmap, ``z[layer][head]`` = attribution averaged over prompts.
        Otherwise bars per layer: one trace per component (``ig.components``, e.g. attention
        and MLP writes, stacked) or a single trace of ``ig.by_layer``; error bars are the
        standard error over prompts when there are several.
    """
    sub = f"{ig.point}, {ig.steps} {ig.method} steps; completeness error {ig.relative_error:.1e} of f(x) − f(baseline)"
    a = ig.attributions.detach().cpu().double()
    if a.ndim == 3:
        z = a.mean(0).numpy()
        span = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
        fig = go.Figure(go.Heatmap(z=z, x=list(range(z.shape[1])), y=list(range(z.shape[0])), colorscale=S.DIVERGING,
                                   zmid=0.0, zmin=-span, zmax=span, xgap=1, ygap=1, name="attribution",
                                   colorbar={"title": {"text": "attribution"}, "thickness": 12}))
        fig.update_yaxes(autorange="reversed", showgrid=False)
        fig.update_xaxes(showgrid=False, dtick=1)
        S.style_figure(fig, title=title or "Integrated gradients per head", subtitle=sub, xaxis_title="head",
                       yaxis_title="layer", height=max(360, 22 * z.shape[0] + 140))
        return fig
    fig = go.Figure()
    n = a.shape[0]
    parts = ig.components or {"layer": a}
    colors = {"attn_out": S.PALETTE[5], "mlp_out": S.PALETTE[4]}
    for k, (name, values) in enumerate(parts.items()):
        v = values.detach().cpu().double()
        err = (v.std(0) / n**0.5).numpy() if n > 1 else None
        fig.add_trace(go.Bar(x=list(range(v.shape[1])), y=v.mean(0).numpy(), name=name,
                             marker_color=colors.get(name, S.PALETTE[(2 + k) % len(S.PALETTE)]),
                             error_y={"type": "data", "array": err, "visible": err is not None}))
    fig.update_layout(barmode="relative")
    S.style_figure(fig, title=title or "Integrated gradients per layer", subtitle=sub, xaxis_title="layer",
                   yaxis_title="attribution (Δ log-prob)", height=400)
    return fig


def causal_figures(run: Any) -> list[tuple[go.Figure, str]]:
    """The causal figures a :class:`~synergy_lens.view.results.RunResults` has data for, with captions."""
    out: list[tuple[go.Figure, str]] = []
    curve = run.get("ablation")
    if curve is not None:
        auc = curve.auc()
        text = ", ".join(f"{k} {v:.3g}" for k, v in auc.items())
        out.append((plot_ablation(curve), "Removing the synergistic core first should change the model's "
                    f"behaviour faster than random heads. Area under each curve: {text}."))
    accuracy = run.get("accuracy")
    if accuracy is not None:
        out.append((plot_accuracy(accuracy), "Paper (B): disrupting the synergistic heads should hurt accuracy "
                    "more than the redundant or random ones."))
    skip = run.get("layer_skip")
    if skip is not None:
        out.append((plot_layer_skip(skip), "Which layers the model cannot do without."))
    ig = run.get("integrated_gradients")
    if ig is not None:
        out.append((plot_integrated_gradients(ig), "Where the answer's log-probability comes from."))
    return out
