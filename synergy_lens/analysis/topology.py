"""Graphs of heads: the synergy network vs the redundancy network.

What and why
------------
Papers (A) and (B) read the pairwise sts and rtr matrices as weighted undirected graphs
of heads and report that the synergy graph is better *integrated* (higher global
efficiency) while the redundancy graph is more *segregated* (higher modularity), as in
human brain networks (Luppi et al. 2022). Paper (B) shows the top 10% of edges.

Construction (:func:`head_graphs`)
----------------------------------
Nodes are all heads (attributes ``layer``, ``head``, ``label``). The matrix is
symmetrised, ``(m[i, j] + m[j, i]) / 2``, and the ``k = ceil(density * n_pairs)`` pairs
with the largest weight are kept (ties by pair order); kept pairs with weight <= 0 or
NaN are dropped, since strengths and modularity need positive weights. Both graphs have
the same edge budget, so their topologies are compared at equal density.

Metrics (:func:`graph_metrics`)
-------------------------------
- ``global_efficiency``: networkx's ``global_efficiency``, the mean over ordered node pairs
  of 1 / (hop distance), 0 for disconnected pairs (Latora & Marchiori 2001). It is
  unweighted (edges are present or not).
- ``weighted_efficiency``: the same with edge length ``1 / w``, ``w`` being the weight
  divided by its mean over the graph's edges (so sts and rtr graphs, in different nat
  ranges, are comparable).
- ``modularity``: Newman's weighted modularity of the Louvain partition
  (``networkx.community.louvain_communities``, seeded; ``community="greedy"`` uses
  ``greedy_modularity_communities``), with ``n_communities``.
- ``mean_degree``, ``mean_strength`` (sum of incident weights), ``mean_clustering``
  (unweighted average clustering).
- ``n_isolated`` (heads without a kept edge; each is its own community) and
  ``largest_component`` (fraction of heads in the largest connected component): a graph
  whose top edges concentrate on a few hub heads has low efficiency for that reason.
- ``participation``: Guimerà & Amaral's (2005) participation coefficient of each head with
  respect to the detected communities, ``P_i = 1 - sum_c (s_ic / s_i)^2`` (strength-
  weighted; NaN for isolated heads), averaged over heads (per layer in
  :func:`layer_topology`).
- ``cross_layer_fraction``: share of edge weight that joins heads of different layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from synergy_lens.analysis.scores import symmetrize
from synergy_lens.units import unit_label

if TYPE_CHECKING:
    import networkx as nx
    import pandas as pd

__all__ = [
    "GRAPH_ATOMS",
    "graph_metrics",
    "head_graphs",
    "head_topology",
    "layer_topology",
    "participation_coefficients",
    "threshold_graph",
    "topology_table",
]

GRAPH_ATOMS: dict[str, str] = {"synergy": "sts", "redundancy": "rtr"}
"""Graph name -> PhiID atom its edge weights come from."""

Community = Literal["louvain", "greedy"]


def threshold_graph(
    matrix: Float[Tensor, "unit unit"],
    *,
    density: float = 0.10,
    n_heads: int | None = None,
    labels: Sequence[str] | None = None,
) -> nx.Graph:
    """Weighted undirected graph keeping the top ``density`` fraction of pairs by weight.

    Args:
        matrix: ``[unit, unit]`` pair weights (symmetrised here; diagonal ignored).
        density: fraction of the ``unit (unit - 1) / 2`` pairs kept, in (0, 1].
        n_heads: heads per layer, for the ``layer``/``head`` node attributes (default: all
            units in one layer).
        labels: node labels (default ``L{layer}H{head}``).
    """
    import networkx as nx

    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    m = symmetrize(torch.as_tensor(matrix, dtype=torch.float64)).cpu()
    u = m.shape[0]
    heads = n_heads or u
    graph = nx.Graph()
    for i in range(u):
        label = labels[i] if labels is not None else unit_label(i // heads, i % heads)
        graph.add_node(i, layer=i // heads, head=i % heads, label=label)
    iu, ju = np.triu_indices(u, k=1)
    w = m.numpy()[iu, ju]
    k = math.ceil(density * len(w) - 1e-9)
    order = np.argsort(-np.nan_to_num(w, nan=-np.inf), kind="stable")[:k]
    for idx in order:
        if np.isfinite(w[idx]) and w[idx] > 0:
            graph.add_edge(int(iu[idx]), int(ju[idx]), weight=float(w[idx]))
    return graph


def head_graphs(result: Any, *, density: float = 0.10) -> dict[str, nx.Graph]:
    """``{"synergy": graph of sts, "redundancy": graph of rtr}`` of a ``PhiIDResult``, top ``density`` edges."""
    return {
        name: threshold_graph(
            getattr(result, atom),
            density=density,
            n_heads=int(result.n_heads),
            labels=list(result.labels),
        )
        for name, atom in GRAPH_ATOMS.items()
    }


def _communities(graph: nx.Graph, community: str, seed: int, resolution: float) -> list[set[int]]:
    import networkx as nx

    if graph.number_of_edges() == 0:
        return [{n} for n in graph.nodes]
    if community == "louvain":
        return [
            set(c)
            for c in nx.community.louvain_communities(
                graph, weight="weight", resolution=resolution, seed=seed
            )
        ]
    if community == "greedy":
        return [
            set(c)
            for c in nx.community.greedy_modularity_communities(
                graph, weight="weight", resolution=resolution
            )
        ]
    raise ValueError(f"community must be 'louvain' or 'greedy', got {community!r}")


def participation_coefficients(
    graph: nx.Graph, communities: Sequence[set[int]]
) -> dict[int, float]:
    """``P_i = 1 - sum_c (s_ic / s_i)^2`` per node (strength-weighted; NaN if isolated)."""
    member = {n: c for c, nodes in enumerate(communities) for n in nodes}
    out = {}
    for n in graph.nodes:
        per: dict[int, float] = {}
        for _, nb, w in graph.edges(n, data="weight"):
            per[member[nb]] = per.get(member[nb], 0.0) + w
        s = sum(per.values())
        out[n] = 1.0 - sum((v / s) ** 2 for v in per.values()) if s > 0 else math.nan
    return out


def _weighted_efficiency(graph: nx.Graph) -> float:
    import networkx as nx

    n = graph.number_of_nodes()
    if n < 2 or graph.number_of_edges() == 0:
        return 0.0
    mean_w = float(np.mean([w for _, _, w in graph.edges(data="weight")]))
    h = nx.Graph()
    h.add_nodes_from(graph.nodes)
    h.add_edges_from((a, b, {"length": mean_w / w}) for a, b, w in graph.edges(data="weight"))
    total = 0.0
    for src, dist in nx.all_pairs_dijkstra_path_length(h, weight="length"):
        total += sum(1.0 / d for dst, d in dist.items() if dst != src and d > 0)
    return total / (n * (n - 1))


def _cross_layer_fraction(graph: nx.Graph, nodes: Sequence[int] | None = None) -> float:
    edges = graph.edges(nodes, data="weight") if nodes is not None else graph.edges(data="weight")
    total = cross = 0.0
    for a, b, w in edges:
        total += w
        if graph.nodes[a]["layer"] != graph.nodes[b]["layer"]:
            cross += w
    return cross / total if total > 0 else math.nan


def graph_metrics(
    graph: nx.Graph, *, seed: int = 0, community: Community = "louvain", resolution: float = 1.0
) -> dict[str, float]:
    """Integration and segregation numbers of one head graph (see the module docstring)."""
    import networkx as nx

    communities = _communities(graph, community, seed, resolution)
    n = graph.number_of_nodes()
    part = [v for v in participation_coefficients(graph, communities).values() if not math.isnan(v)]
    has_edges = graph.number_of_edges() > 0
    return {
        "n_edges": float(graph.number_of_edges()),
        "density": nx.density(graph),
        "global_efficiency": nx.global_efficiency(graph),
        "weighted_efficiency": _weighted_efficiency(graph),
        "modularity": nx.community.modularity(graph, communities, weight="weight")
        if has_edges
        else math.nan,
        "n_communities": float(len(communities)),
        "mean_clustering": nx.average_clustering(graph),
        "mean_degree": 2 * graph.number_of_edges() / n if n else math.nan,
        "mean_strength": sum(w for _, _, w in graph.edges(data="weight")) * 2 / n
        if n
        else math.nan,
        "mean_participation": float(np.mean(part)) if part else math.nan,
        "n_isolated": float(nx.number_of_isolates(graph)),
        "largest_component": max((len(c) for c in nx.connected_components(graph)), default=0) / n
        if n
        else math.nan,
        "cross_layer_fraction": _cross_layer_fraction(graph),
    }


_EXPECTED = {
    "global_efficiency": "synergy",
    "weighted_efficiency": "synergy",
    "modularity": "redundancy",
}


def topology_table(
    result: Any,
    *,
    density: float = 0.10,
    seed: int = 0,
    community: Community = "louvain",
    resolution: float = 1.0,
) -> pd.DataFrame:
    """The synergy-graph vs redundancy-graph comparison of papers (A) and (B) as one table.

    Rows are metrics (:func:`graph_metrics`); columns ``synergy``, ``redundancy``,
    ``higher`` (which graph has the larger value) and ``papers_expect`` (the graph the
    papers report higher: synergy for efficiency, redundancy for modularity).
    """
    import pandas as pd

    graphs = head_graphs(result, density=density)
    metrics = {
        name: graph_metrics(g, seed=seed, community=community, resolution=resolution)
        for name, g in graphs.items()
    }
    table = pd.DataFrame(metrics)
    syn, red = table["synergy"], table["redundancy"]
    table["higher"] = np.where(syn > red, "synergy", np.where(red > syn, "redundancy", "equal"))
    table["papers_expect"] = [_EXPECTED.get(m, "") for m in table.index]
    table.index.name = "metric"
    return table


def head_topology(
    result: Any,
    *,
    density: float = 0.10,
    seed: int = 0,
    community: Community = "louvain",
    resolution: float = 1.0,
) -> pd.DataFrame:
    """Per head: degree, strength and participation coefficient in the synergy and redundancy graphs."""
    import pandas as pd

    graphs = head_graphs(result, density=density)
    first = graphs["synergy"]
    frame: dict[str, Any] = {
        "label": [first.nodes[n]["label"] for n in first.nodes],
        "layer": [first.nodes[n]["layer"] for n in first.nodes],
        "head": [first.nodes[n]["head"] for n in first.nodes],
    }
    for name, g in graphs.items():
        part = participation_coefficients(g, _communities(g, community, seed, resolution))
        frame[f"degree_{name}"] = [g.degree(n) for n in g.nodes]
        frame[f"strength_{name}"] = [g.degree(n, weight="weight") for n in g.nodes]
        frame[f"participation_{name}"] = [part[n] for n in g.nodes]
    return pd.DataFrame(frame)


def layer_topology(
    result: Any,
    *,
    density: float = 0.10,
    seed: int = 0,
    community: Community = "louvain",
    resolution: float = 1.0,
) -> pd.DataFrame:
    """Per layer and graph: mean participation coefficient of its heads, cross-layer edge-weight share, strength."""
    import pandas as pd

    heads = head_topology(
        result, density=density, seed=seed, community=community, resolution=resolution
    )
    graphs = head_graphs(result, density=density)
    rows = []
    for layer, group in heads.groupby("layer"):
        row: dict[str, Any] = {"layer": int(layer)}
        for name, g in graphs.items():
            row[f"participation_{name}"] = (
                float(np.nanmean(group[f"participation_{name}"]))
                if group[f"participation_{name}"].notna().any()
                else math.nan
            )
            row[f"cross_layer_fraction_{name}"] = _cross_layer_fraction(
                g, [n for n in g.nodes if g.nodes[n]["layer"] == layer]
            )
            row[f"strength_{name}"] = float(group[f"strength_{name}"].mean())
        rows.append(row)
    return pd.DataFrame(rows)
