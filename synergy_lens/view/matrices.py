"""Figures of the PhiID result and the head scores: pair matrices, head grid, layer profile.

What each figure shows
----------------------
- :func:`plot_matrices`: persistent synergy ``sts[i, j]`` and persistent redundancy
  ``rtr[i, j]`` of every pair of heads, units ordered by layer then head (unit =
  layer * n_heads + head), thin lines between layers. Paper (B) (arXiv 2601.06851, Fig. 2)
  reads these as two networks: synergy spread across middle layers, redundancy in blocks.
- :func:`plot_head_grid`: one cell per head (layer x head) coloured by a per-head score;
  blue = redundancy-dominated, red = synergy-dominated. Core heads can be outlined.
- :func:`plot_score_scatter`: mean sts against mean rtr per head, coloured by depth. When
  the points lie on a rising line (Spearman near 1) the rank gradient can cancel a real
  layer profile (docs/science.md, "Pitfalls"): read the synergy fraction too.
- :func:`plot_layer_profile`: mean score per layer against normalised depth, with the
  bootstrap band over prompts, and optionally a control's profile overlaid in grey. An
  inverted U (middle layers high) is the signature of the synergistic core.
- :func:`plot_energy`: per-layer "energy" (``analysis.energy``) with its standard error.

All functions return a ``plotly.graph_objects.Figure`` and never display it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from synergy_lens.units import label_layers, parse_unit
from synergy_lens.view import style as S

__all__ = [
    "plot_control_comparison",
    "plot_energy",
    "plot_head_grid",
    "plot_layer_profile",
    "plot_matrices",
    "plot_score_scatter",
]

_SCORE_TITLES = {
    "rank_gradient": "rank(mean sts) − rank(mean rtr)",
    "syn_minus_red": "rank of mean (sts − rtr)",
    "synergy_fraction": "synergy fraction sts / (|sts| + |rtr|)",
    "mean_sts": "mean persistent synergy (nats)",
    "mean_rtr": "mean persistent redundancy (nats)",
}


def plot_matrices(result: Any, atoms: tuple[str, ...] = ("sts", "rtr"), *, title: str | None = None) -> go.Figure:
    """Heatmaps of pair atoms (default persistent synergy and redundancy), units ordered by layer.

    Args:
        result: a :class:`~synergy_lens.phiid.PhiIDResult` (``atom(name)`` ``[unit, unit]``,
            ``labels``, ``n_layers``, ``n_heads``).
        atoms: atom names, one panel each (``"sts"``, ``"rtr"`` or any of the 16).

    Returns:
        One heatmap per atom; trace ``k`` has ``z = result.atom(atoms[k])`` (diagonal NaN,
        drawn blank), ``x = y = result.labels``. Colour: white -> red for sts, white -> blue
        for rtr, each with its own colour bar in nats; the colour range runs from
        ``min(0, 1st percentile)`` to the 99th percentile (a few extreme pairs would
        otherwise wash out the rest; hover shows the exact value).
    """
    n_layers, n_heads = int(result.n_layers), int(result.n_heads)
    labels = list(result.labels)
    fig = make_subplots(rows=1, cols=len(atoms), subplot_titles=[_atom_title(a) for a in atoms],
                        horizontal_spacing=0.16)
    ticks, texts = S.tick_every_layer(n_layers, n_heads)
    ticks = [labels[t] for t in ticks]
    for k, atom in enumerate(atoms):
        z = S.as_array(result.atom(atom))
        domain = fig.layout["xaxis" if k == 0 else f"xaxis{k + 1}"].domain
        finite = z[np.isfinite(z)]
        lo = min(0.0, float(np.percentile(finite, 1))) if finite.size else 0.0
        hi = float(np.percentile(finite, 99)) if finite.size else 1.0
        hi = hi if hi > lo else lo + 1.0
        fig.add_trace(
            go.Heatmap(
                z=z, x=labels, y=labels, colorscale=S.atom_scale(atom), name=atom, zmin=lo, zmax=hi,
                hovertemplate="%{y} – %{x}<br>" + atom + " = %{z:.4g} nats<extra></extra>",
                colorbar={"title": {"text": f"{atom} (nats)<br><sup>capped at 99th pct</sup>"}, "x": domain[1] + 0.01, "len": 0.8, "thickness": 12},
            ),
            row=1, col=k + 1,
        )
        xref = "x" if k == 0 else f"x{k + 1}"
        yref = "y" if k == 0 else f"y{k + 1}"
        for shape in S.layer_lines(n_layers, n_heads, xref=xref, yref=yref):
            fig.add_shape(shape)
        fig.update_xaxes(tickvals=ticks, ticktext=texts, showgrid=False, row=1, col=k + 1, title_text="head (by layer)")
        fig.update_yaxes(tickvals=ticks, ticktext=texts, showgrid=False, autorange="reversed", row=1, col=k + 1,
                         scaleanchor=xref, title_text="head (by layer)" if k == 0 else None)
    S.style_figure(fig, title=title or "Pairwise PhiID: persistent synergy vs persistent redundancy",
                   subtitle="every pair of heads; lines separate layers; hover for the pair", height=560)
    fig.update_layout(margin={"t": 110})
    return fig


def _atom_title(atom: str) -> str:
    return {"sts": "persistent synergy (sts)", "rtr": "persistent redundancy (rtr)"}.get(atom, atom)


def plot_head_grid(
    scores: Any,
    field: str | None = None,
    *,
    core: Any = None,
    title: str | None = None,
) -> go.Figure:
    """Layer x head grid coloured by a per-head score.

    Args:
        scores: :class:`~synergy_lens.analysis.HeadScores`.
        field: which score to colour by: ``None`` for ``scores.values`` (the chosen score),
            or ``"rank_gradient"``, ``"syn_minus_red"``, ``"synergy_fraction"``, ``"mean_sts"``,
            ``"mean_rtr"``.
        core: an optional :class:`~synergy_lens.analysis.Core`; its abstract heads get a
            red outline marker and its memory heads a blue one.

    Heads marked unstable in ``scores.unstable`` (``analysis.stability``) get a black cross.

    Returns:
        A figure whose first trace is a heatmap with ``z[layer][head]`` the score, ``x`` the
        head index and ``y`` the layer index (layer 0 at the top). Diverging scores use
        ``zmid`` as the centre above; mean sts / rtr use their sequential colours.
    """
    name = field or scores.score
    values = S.as_array(scores.values if field is None else getattr(scores, field))
    n_layers, n_heads = values.shape
    labels = np.array(scores.labels, dtype=object).reshape(n_layers, n_heads)
    diverging = name not in ("mean_sts", "mean_rtr")
    heat: dict[str, Any] = {"colorscale": S.DIVERGING if diverging else S.atom_scale(name.removeprefix("mean_"))}
    subtitle = "darker = larger"
    if diverging:
        finite = values[np.isfinite(values)]
        centre = 0.0 if name == "rank_gradient" or not finite.size else float(np.median(finite))
        span = float(np.max(np.abs(finite - centre))) if finite.size else 1.0
        span = span if span > 0 else 1.0
        heat.update(zmid=centre, zmin=centre - span, zmax=centre + span)
        subtitle = ("red = synergy-dominated, blue = redundancy-dominated" if centre == 0.0 else
                    f"centred on the median head ({centre:.3g}): red = more synergy-dominated than it, blue = less")
    fig = go.Figure(
        go.Heatmap(
            z=values, x=list(range(n_heads)), y=list(range(n_layers)), customdata=labels, name=name,
            hovertemplate="%{customdata}<br>" + name + " = %{z:.4g}<extra></extra>",
            colorbar={"title": {"text": name}, "thickness": 12}, xgap=1, ygap=1, **heat,
        )
    )
    if core is not None:
        for group, color, symbol in (("abstract", S.ABSTRACT, "square-open"), ("memory", S.MEMORY, "circle-open")):
            pairs = core.pairs(group)
            fig.add_trace(go.Scatter(
                x=[h for _, h in pairs], y=[layer for layer, _ in pairs], mode="markers", name=f"{group} heads",
                marker={"symbol": symbol, "size": 14, "color": color, "line": {"width": 2.5, "color": color}},
                text=[labels[layer, h] for layer, h in pairs], hovertemplate="%{text}: " + group + "<extra></extra>",
            ))
    unstable = getattr(scores, "unstable", None)
    if unstable is not None and bool(unstable.any()):
        cells = [(u // n_heads, u % n_heads) for u, bad in enumerate(S.as_array(unstable).ravel().tolist()) if bad]
        fig.add_trace(go.Scatter(
            x=[h for _, h in cells], y=[layer for layer, _ in cells], mode="markers", name="unstable heads",
            marker={"symbol": "x-thin-open", "size": 12, "color": "#000000", "line": {"width": 2, "color": "#000000"}},
            text=[labels[layer, h] for layer, h in cells],
            hovertemplate="%{text}: series too coarse to estimate (unstable)<extra></extra>",
        ))
    fig.update_yaxes(range=[n_layers - 0.5, -0.5], showgrid=False, dtick=max(1, n_layers // 15))
    model_layers = label_layers(list(labels.ravel()), n_heads)
    if model_layers != list(range(n_layers)):  # a subset of layers: name the model's layer of each row
        fig.update_yaxes(tickvals=list(range(n_layers)), ticktext=[str(v) for v in model_layers], dtick=None)
    fig.update_xaxes(range=[-0.5, n_heads - 0.5], showgrid=False, dtick=1 if n_heads <= 64 else None)
    kind = parse_unit(str(labels.flat[0])).kind
    units, unit = ("Heads", "head") if kind == "heads" else ("Units", f"unit of the layer ({kind})")
    S.style_figure(
        fig, title=title or f"{units} coloured by {_SCORE_TITLES.get(name, name)}",
        subtitle=subtitle, xaxis_title=unit, yaxis_title="layer", height=max(360, 22 * n_layers + 140),
    )
    fig.update_layout(legend={"orientation": "h", "y": -0.12})
    return fig


def plot_score_scatter(scores: Any, *, title: str | None = None) -> go.Figure:
    """Mean persistent synergy against mean persistent redundancy, one point per head.

    Points are coloured by layer. The title reports the Spearman correlation of the two
    (``scores.spearman``): near 1 means both track a head's overall information flow and
    the rank gradient may cancel a real profile (docs/science.md, "Pitfalls").

    Returns:
        One scatter trace with ``x = mean_rtr``, ``y = mean_sts`` (flattened layer-major, so
        point ``u`` is unit ``u``), ``text = labels``.
    """
    x, y = S.as_array(scores.mean_rtr).ravel(), S.as_array(scores.mean_sts).ravel()
    n_layers, n_heads = S.as_array(scores.values).shape
    layer = np.repeat(np.arange(n_layers), n_heads)
    fig = go.Figure(go.Scatter(
        x=x, y=y, mode="markers", text=list(scores.labels), name="heads",
        marker={"color": layer, "colorscale": S.LAYER_SCALE, "size": 8, "line": {"width": 0.5, "color": "white"},
                "colorbar": {"title": {"text": "layer"}, "thickness": 12}},
        hovertemplate="%{text}<br>mean rtr %{x:.4g}<br>mean sts %{y:.4g}<extra></extra>",
    ))
    rho = scores.spearman
    note = "" if not math.isfinite(rho) else f"Spearman ρ = {rho:.2f}" + (
        " — high: read the synergy fraction too" if rho > 0.8 else "")
    S.style_figure(fig, title=title or "Per-head synergy vs redundancy", subtitle=note or None,
                   xaxis_title="mean persistent redundancy rtr (nats)",
                   yaxis_title="mean persistent synergy sts (nats)", height=440)
    return fig


def _profile_traces(fig: go.Figure, profile: Any, name: str, color: str, *, dash: str | None = None) -> None:
    depth, values = S.as_array(profile.depth), S.as_array(profile.values)
    if profile.low is not None and profile.high is not None:
        level = round(100 * (1 - profile.alpha))
        fig.add_trace(go.Scatter(x=depth, y=S.as_array(profile.high), mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip", name=f"{name} {level}% band (high)", legendgroup=name))
        fig.add_trace(go.Scatter(x=depth, y=S.as_array(profile.low), mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=S.rgba(color, 0.18), name=f"{name} {level}% band (low)",
                                 hoverinfo="skip", showlegend=False, legendgroup=name))
    layers = list(range(len(values)))
    fig.add_trace(go.Scatter(
        x=depth, y=values, mode="lines+markers", name=name, legendgroup=name, customdata=layers,
        line={"color": color, "width": 2.5, "dash": dash}, marker={"size": 6, "color": color},
        hovertemplate="layer %{customdata} (depth %{x:.2f})<br>%{y:.3f}<extra>" + name + "</extra>",
    ))


def _index_text(profile: Any) -> str:
    ci = profile.inverted_u_ci
    text = f"inverted-U index {profile.inverted_u:.2f}"
    if ci is not None:
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def plot_layer_profile(
    profile: Any,
    control: Any = None,
    *,
    name: str = "trained",
    control_name: str = "control",
    title: str | None = None,
) -> go.Figure:
    """Mean head score per layer against normalised depth, with its bootstrap band.

    Args:
        profile: a :class:`~synergy_lens.analysis.LayerProfile`.
        control: another ``LayerProfile`` (e.g. the randomised network's) drawn in grey,
            dashed, with its own band. Both should be profiles of the same score.
        name, control_name: legend names.

    Returns:
        A figure whose traces, per profile, are the band's upper edge (``y = high``), lower
        edge (``y = low``, filled to the upper one) when the profile has a band, then the
        profile line (``y = values``, ``x = depth``). The subtitle gives the inverted-U index
        (middle third minus outer thirds; positive = inverted U) with its CI.
    """
    fig = go.Figure()
    _profile_traces(fig, profile, name, S.SYNERGY)
    sub = f"{name}: {_index_text(profile)}"
    if control is not None:
        _profile_traces(fig, control, control_name, S.CONTROL, dash="dash")
        sub += f"; {control_name}: {_index_text(control)}"
    scaled = "min-max scaled " if getattr(profile, "minmax", False) else ""
    S.style_figure(
        fig, title=title or f"Layer profile of {_SCORE_TITLES.get(profile.score, profile.score)}",
        subtitle=sub, xaxis_title="normalised depth (layer / (n_layers − 1))",
        yaxis_title=f"{scaled}mean {profile.score} per layer", height=420,
    )
    fig.update_xaxes(range=[-0.02, 1.02])
    return fig


def plot_control_comparison(comparison: Any, score: str | None = None, *, title: str | None = None) -> go.Figure:
    """Trained vs control layer profile from a :class:`~synergy_lens.analysis.ControlComparison`.

    ``score`` picks one of ``comparison.scores`` (default: the first). The subtitle adds the
    trained - control difference of the unscaled inverted-U index with its paired CI.
    """
    score = score or comparison.scores[0]
    if score not in comparison.scores:
        raise ValueError(f"score {score!r} not in this comparison; it has {comparison.scores}")
    trained, control = comparison.profiles["trained"][score], comparison.profiles["control"][score]
    fig = plot_layer_profile(trained, control, control_name=f"control ({comparison.control})", title=title)
    diff, ci = comparison.difference(score)
    if math.isfinite(diff):
        extra = f"trained − control (raw index) {diff:.3g}" + ("" if ci is None else f" [{ci[0]:.3g}, {ci[1]:.3g}]")
        fig.update_layout(title={"text": fig.layout.title.text + f"<br><sup>{extra}</sup>"})
    return fig


def plot_energy(energy: Any, *, title: str | None = None) -> go.Figure:
    """Per-layer energy (``analysis.layer_energy``) with ± 1 standard error over prompts.

    Returns:
        One bar trace, ``x = layer``, ``y = energy.values``, error bars the standard error.
    """
    frame = energy.to_dataframe()
    fig = go.Figure(go.Bar(
        x=frame["layer"], y=frame["energy"], name=energy.definition, marker_color=S.PALETTE[2],
        error_y={"type": "data", "array": frame["sem"].fillna(0.0), "visible": True, "color": "#555555"},
        hovertemplate="layer %{x}<br>%{y:.4g}<extra></extra>",
    ))
    S.style_figure(fig, title=title or f"Layer energy ({energy.definition})",
                   subtitle="head activity spent per generated token; bars ± 1 s.e. over prompts",
                   xaxis_title="layer", yaxis_title="energy", height=380)
    return fig
