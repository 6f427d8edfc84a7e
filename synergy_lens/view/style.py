"""One visual language for every synergy-lens figure.

What and why
------------
A reader should learn the colours once: **synergy is always vermillion, redundancy always
blue**, a control or a random baseline always grey. Abstract heads (the synergistic core,
paper (A)) take the synergy colour and memory heads the redundancy colour. Scores that run
from redundancy-dominated to synergy-dominated (the rank gradient, the synergy fraction)
use a diverging scale from blue through white to vermillion, centred on the neutral value.
The palette is Okabe & Ito's (2008) colour-blind-safe set.

Nothing here changes global state: :data:`TEMPLATE` is a plain ``go.layout.Template``
applied figure by figure with :func:`style_figure` (``plotly.io.templates`` is never
touched), so importing synergy-lens leaves the user's own plots alone.

>>> import plotly.graph_objects as go
>>> fig = style_figure(go.Figure(), title="demo")
>>> fig.layout.template.layout.colorway[0] == SYNERGY
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

__all__ = [
    "ABSTRACT",
    "CONTROL",
    "DIVERGING",
    "FONT",
    "MEMORY",
    "NEUTRAL",
    "PALETTE",
    "PLOTLY_CONFIG",
    "RANDOM",
    "REDUNDANCY",
    "REDUNDANCY_SCALE",
    "SYNERGY",
    "SYNERGY_SCALE",
    "TEMPLATE",
    "LAYER_SCALE",
    "as_array",
    "atom_color",
    "atom_scale",
    "rgba",
    "style_figure",
]

# Okabe-Ito colour-blind-safe palette.
SYNERGY = "#D55E00"
"""Vermillion: persistent synergy (sts), synergy graphs, abstract heads, the trained model."""
REDUNDANCY = "#0072B2"
"""Blue: persistent redundancy (rtr), redundancy graphs, memory heads."""
CONTROL = "#7F7F7F"
"""Grey: randomised controls and baselines."""
RANDOM = "#A0A0A0"
"""Light grey: random-order / random-head baselines (curves with a spread band)."""
NEUTRAL = "#E8E8E8"
ABSTRACT = SYNERGY
MEMORY = REDUNDANCY

PALETTE: tuple[str, ...] = (
    SYNERGY,
    REDUNDANCY,
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",
)
"""Trace colours in order (``layout.colorway``): synergy and redundancy come first."""

SYNERGY_SCALE: list[list[Any]] = [[0.0, "#FFFFFF"], [0.5, "#F4A582"], [1.0, "#B2182B"]]
"""Sequential white -> vermillion/red scale for sts-like quantities."""
REDUNDANCY_SCALE: list[list[Any]] = [[0.0, "#FFFFFF"], [0.5, "#92C5DE"], [1.0, "#08519C"]]
"""Sequential white -> blue scale for rtr-like quantities."""
DIVERGING: list[list[Any]] = [
    [0.0, "#08519C"],
    [0.25, "#6BAED6"],
    [0.5, "#F7F7F7"],
    [0.75, "#F4A582"],
    [1.0, "#B2182B"],
]
"""Blue (redundancy-dominated) -> white (neutral) -> red (synergy-dominated)."""
LAYER_SCALE = "Viridis"
"""Sequential scale for depth (layer index) on nodes and points."""

FONT = "Inter, 'Helvetica Neue', Arial, sans-serif"

PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}
"""Plotly config for HTML output: no logo link to plotly.com (the report is offline)."""

TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font={"family": FONT, "size": 13, "color": "#222222"},
        title={"x": 0.02, "xanchor": "left", "font": {"size": 16}},
        paper_bgcolor="white",
        plot_bgcolor="white",
        colorway=list(PALETTE),
        margin={"l": 60, "r": 30, "t": 60, "b": 55},
        xaxis={"showgrid": True, "gridcolor": "#EEEEEE", "zeroline": False, "linecolor": "#888888",
               "ticks": "outside", "showline": True},
        yaxis={"showgrid": True, "gridcolor": "#EEEEEE", "zeroline": False, "linecolor": "#888888",
               "ticks": "outside", "showline": True},
        legend={"bgcolor": "rgba(255,255,255,0.8)", "borderwidth": 0},
        hoverlabel={"font": {"family": FONT}},
        colorscale={"sequential": SYNERGY_SCALE, "diverging": DIVERGING},
    )
)
"""The synergy-lens Plotly template (applied per figure, never registered globally)."""

_ATOM_COLORS = {"sts": SYNERGY, "synergy": SYNERGY, "rtr": REDUNDANCY, "redundancy": REDUNDANCY}


def atom_color(atom: str) -> str:
    """The line/marker colour of an atom or graph: sts/synergy vermillion, rtr/redundancy blue,
    anything else the third palette colour."""
    return _ATOM_COLORS.get(atom, PALETTE[2])


def atom_scale(atom: str) -> list[list[Any]] | str:
    """The heatmap colour scale of an atom: sts white->red, rtr white->blue, others diverging."""
    if atom in ("sts", "synergy"):
        return SYNERGY_SCALE
    if atom in ("rtr", "redundancy"):
        return REDUNDANCY_SCALE
    return DIVERGING


def rgba(color: str, alpha: float) -> str:
    """``"#RRGGBB"`` -> ``"rgba(r, g, b, alpha)"`` (for translucent confidence bands)."""
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"expected a #RRGGBB colour, got {color!r}")
    r, g, b = (int(c[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r}, {g}, {b}, {alpha})"


def style_figure(
    fig: go.Figure,
    *,
    title: str | None = None,
    subtitle: str | None = None,
    height: int | None = None,
    width: int | None = None,
    xaxis_title: str | None = None,
    yaxis_title: str | None = None,
) -> go.Figure:
    """Apply :data:`TEMPLATE` and the common title/size settings; returns ``fig`` (for chaining).

    ``subtitle`` is a short line under the title saying how to read the figure.
    """
    layout: dict[str, Any] = {"template": TEMPLATE}
    if title is not None:
        text = title if subtitle is None else f"{title}<br><sup>{subtitle}</sup>"
        layout["title"] = {"text": text}
    if height is not None:
        layout["height"] = height
    if width is not None:
        layout["width"] = width
    fig.update_layout(**layout)
    if xaxis_title is not None:
        fig.update_xaxes(title_text=xaxis_title)
    if yaxis_title is not None:
        fig.update_yaxes(title_text=yaxis_title)
    return fig


def layer_lines(n_layers: int, n_heads: int, *, xref: str = "x", yref: str = "y", both: bool = True) -> list[dict[str, Any]]:
    """Thin separator lines between layers on a ``[unit, unit]`` heatmap (units ordered by layer)."""
    shapes: list[dict[str, Any]] = []
    n_units = n_layers * n_heads
    line = {"color": "rgba(0,0,0,0.15)" if n_layers <= 12 else "rgba(0,0,0,0.07)", "width": 0.5}
    for layer in range(1, n_layers):
        pos = layer * n_heads - 0.5
        shapes.append({"type": "line", "xref": xref, "yref": yref, "x0": pos, "x1": pos,
                       "y0": -0.5, "y1": n_units - 0.5, "line": line})
        if both:
            shapes.append({"type": "line", "xref": xref, "yref": yref, "y0": pos, "y1": pos,
                           "x0": -0.5, "x1": n_units - 0.5, "line": line})
    return shapes


def tick_every_layer(n_layers: int, n_heads: int, step: int | None = None) -> tuple[list[int], list[str]]:
    """Tick positions and texts marking the first head of every ``step``-th layer (``"L{k}"``)."""
    step = step or max(1, n_layers // 10)
    vals = [layer * n_heads for layer in range(0, n_layers, step)]
    return vals, [f"L{v // n_heads}" for v in vals]


def as_list(x: Any) -> list[Any]:
    """A tensor/array/sequence as a plain Python list (for figure data)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    if hasattr(x, "tolist"):
        return list(x.tolist())
    if isinstance(x, Sequence):
        return list(x)
    raise TypeError(f"cannot turn {type(x).__name__} into a list")


def as_array(x: Any) -> np.ndarray:
    """A tensor/array/sequence as a float64 NumPy array on the CPU (for figure data)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)
