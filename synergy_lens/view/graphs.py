"""Synergy and redundancy networks of heads, side by side.

What the figure shows
---------------------
Papers (A) and (B) read the pairwise sts and rtr matrices as weighted graphs of heads and
keep the strongest 10% of pairs as edges (``analysis.topology.threshold_graph``). The
synergy graph is expected to be *integrated* (long-range edges across layers, high global
efficiency), the redundancy graph *segregated* (dense local blocks, high modularity), as
in human brain networks (Luppi et al. 2022).

Each node is a head, coloured by its layer (dark = early, yellow = late) and sized by its
strength (sum of kept edge weights); edges are drawn in the graph's colour (synergy
vermillion, redundancy blue). Layouts:

- ``"circle"`` (default): heads around a circle in layer order, so cross-layer edges are
  long chords and within-layer blocks short arcs; deterministic.
- ``"layers"``: x = layer, y = head; edges between layers run left to right.
- ``"spring"``: a seeded force-directed layout (networkx ``spring_layout``); communities
  appear as clumps.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from synergy_lens.view import style as S

__all__ = ["Layout", "graph_positions", "plot_graphs"]

Layout = Literal["circle", "layers", "spring"]


def graph_positions(graph: Any, layout: Layout = "circle", *, seed: int = 0) -> dict[int, tuple[float, float]]:
    """Node -> (x, y) for a head graph whose nodes carry ``layer`` and ``head`` attributes."""
    nodes = sorted(graph.nodes)
    if layout == "circle":
        n = max(len(nodes), 1)
        return {u: (math.cos(math.pi / 2 - 2 * math.pi * i / n), math.sin(math.pi / 2 - 2 * math.pi * i / n))
                for i, u in enumerate(nodes)}
    if layout == "layers":
        return {u: (float(graph.nodes[u]["layer"]), -float(graph.nodes[u]["head"])) for u in nodes}
    if layout == "spring":
        import networkx as nx

        pos = nx.spring_layout(graph, seed=seed, weight="weight")
        return {u: (float(p[0]), float(p[1])) for u, p in pos.items()}
    raise ValueError(f"layout must be 'circle', 'layers' or 'spring', got {layout!r}")


def plot_graphs(
    result: Any,
    *,
    density: float = 0.10,
    layout: Layout = "circle",
    seed: int = 0,
    metrics: Any = None,
    title: str | None = None,
) -> go.Figure:
    """The synergy graph (sts) and the redundancy graph (rtr) of a PhiID result.

    Args:
        result: a :class:`~synergy_lens.phiid.PhiIDResult`.
        density: fraction of pairs kept as edges (paper (B): the top 10%).
        layout: ``"circle"``, ``"layers"`` or ``"spring"`` (module docstring).
        seed: seed of the spring layout.
        metrics: optional ``analysis.topology_table(result)``; its global efficiency and
            modularity are written under each panel's title.

    Returns:
        Per graph (synergy first) two traces: the edges (one line trace, segments separated
        by ``None``; ``meta["n_edges"]`` is the edge count) and the nodes (one marker per
        head, ``text`` the labels).
    """
    from synergy_lens.analysis.topology import head_graphs

    graphs = head_graphs(result, density=density)
    titles = []
    for name in graphs:
        t = f"{name} graph (top {100 * density:.0f}% of pairs)"
        if metrics is not None and name in metrics:
            t += (f"<br><sup>efficiency {metrics.loc['global_efficiency', name]:.3f}, "
                  f"modularity {metrics.loc['modularity', name]:.3f}</sup>")
        titles.append(t)
    fig = make_subplots(rows=1, cols=len(graphs), subplot_titles=titles, horizontal_spacing=0.06)
    n_layers = int(result.n_layers)
    for k, (name, graph) in enumerate(graphs.items()):
        pos = graph_positions(graph, layout, seed=seed)
        ex: list[float | None] = []
        ey: list[float | None] = []
        for a, b in graph.edges():
            ex += [pos[a][0], pos[b][0], None]
            ey += [pos[a][1], pos[b][1], None]
        color = S.atom_color(name)
        n_edges = graph.number_of_edges()
        alpha = min(0.35, 8.0 / max(n_edges, 1) ** 0.5)  # thousands of edges: faint, so structure shows
        fig.add_trace(go.Scatter(
            x=ex, y=ey, mode="lines", name=f"{name} edges", hoverinfo="skip", showlegend=False,
            line={"color": S.rgba(color, round(alpha, 3)), "width": 1.0 if n_edges < 500 else 0.6},
            meta={"n_edges": n_edges},
        ), row=1, col=k + 1)
        nodes = sorted(graph.nodes)
        strength = np.array([graph.degree(u, weight="weight") for u in nodes], dtype=float)
        size = 5 + 12 * (strength / strength.max() if strength.max() > 0 else strength)
        fig.add_trace(go.Scatter(
            x=[pos[u][0] for u in nodes], y=[pos[u][1] for u in nodes], mode="markers", name=f"{name} heads",
            text=[graph.nodes[u]["label"] for u in nodes], customdata=strength, showlegend=False,
            marker={"size": size, "color": [graph.nodes[u]["layer"] for u in nodes], "colorscale": S.LAYER_SCALE,
                    "cmin": 0, "cmax": max(n_layers - 1, 1), "line": {"width": 0.8, "color": color},
                    "showscale": k == len(graphs) - 1,
                    "colorbar": {"title": {"text": "layer"}, "thickness": 12}},
            hovertemplate="%{text}<br>strength %{customdata:.3g}<extra>" + name + "</extra>",
        ), row=1, col=k + 1)
        fig.update_xaxes(visible=False, row=1, col=k + 1)
        fig.update_yaxes(visible=False, row=1, col=k + 1, scaleanchor="x" if k == 0 else f"x{k + 1}")
    S.style_figure(fig, title=title or "Synergy network vs redundancy network",
                   subtitle="nodes = heads coloured by layer, sized by strength", height=560)
    fig.update_layout(margin={"t": 120})
    return fig
