"""Head graphs: thresholding by hand, participation by hand, planted modular vs integrated graphs."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from synergy_lens.analysis import (
    graph_metrics,
    head_graphs,
    head_topology,
    layer_topology,
    topology_table,
)
from synergy_lens.analysis.topology import participation_coefficients, threshold_graph

from .planted import fake_result


def test_threshold_keeps_the_top_fraction_of_pairs() -> None:
    nan = math.nan
    m = torch.tensor(
        [[nan, 5.0, 1.0, 4.0], [5.0, nan, 3.0, -2.0], [1.0, 3.0, nan, 6.0], [4.0, -2.0, 6.0, nan]],
        dtype=torch.float64,
    )
    g = threshold_graph(m, density=0.5, n_heads=2)  # ceil(0.5 * 6) = 3 pairs: 6, 5, 4
    assert sorted((a, b, w) for a, b, w in g.edges(data="weight")) == [
        (0, 1, 5.0),
        (0, 3, 4.0),
        (2, 3, 6.0),
    ]
    assert g.number_of_nodes() == 4 and g.nodes[3] == {"layer": 1, "head": 1, "label": "L1H1"}
    full = threshold_graph(m, density=1.0)
    assert full.number_of_edges() == 5  # the negative pair is dropped
    with pytest.raises(ValueError, match="density"):
        threshold_graph(m, density=0.0)


def test_participation_and_cross_layer_by_hand() -> None:
    g = nx.Graph()
    g.add_nodes_from([(0, {"layer": 0}), (1, {"layer": 0}), (2, {"layer": 1}), (3, {"layer": 1})])
    g.add_weighted_edges_from([(0, 1, 3.0), (0, 2, 1.0), (2, 3, 2.0)])
    part = participation_coefficients(g, [{0, 1}, {2, 3}])
    assert part[0] == pytest.approx(1 - (3 / 4) ** 2 - (1 / 4) ** 2)
    assert part[1] == 0.0 and part[3] == 0.0
    assert part[2] == pytest.approx(1 - (1 / 3) ** 2 - (2 / 3) ** 2)
    metrics = graph_metrics(g)
    assert metrics["cross_layer_fraction"] == pytest.approx(1 / 6)
    assert metrics["mean_strength"] == pytest.approx(2 * 6 / 4)
    assert metrics["global_efficiency"] == pytest.approx(nx.global_efficiency(g))
    assert metrics["n_isolated"] == 0 and metrics["largest_component"] == 1.0
    g.add_node(4, layer=2)
    assert graph_metrics(g)["n_isolated"] == 1 and graph_metrics(g)["largest_component"] == 0.8


def planted_graphs(seed: int = 0, layers: int = 8, heads: int = 8):
    """rtr: four modules of 16 heads (strong within, weak between); sts: dense, random."""
    g = torch.Generator().manual_seed(seed)
    u = layers * heads
    module = torch.arange(u) // 16
    same = module[:, None] == module[None, :]
    rtr = torch.where(same, 1.0, 0.1) + 0.05 * torch.rand(u, u, generator=g)
    sts = torch.rand(u, u, generator=g)
    rtr, sts = (rtr + rtr.T) / 2, (sts + sts.T) / 2
    return fake_result(sts, rtr, layers, heads)


def test_planted_redundancy_modular_synergy_integrated() -> None:
    result = planted_graphs()
    table = topology_table(result, density=0.10, seed=0)
    assert (
        table.loc["n_edges", "synergy"]
        == table.loc["n_edges", "redundancy"]
        == math.ceil(0.1 * 64 * 63 / 2)
    )
    assert table.loc["modularity", "redundancy"] > table.loc["modularity", "synergy"] + 0.2
    assert (
        table.loc["global_efficiency", "synergy"]
        > table.loc["global_efficiency", "redundancy"] + 0.1
    )
    assert (
        table.loc["weighted_efficiency", "synergy"] > table.loc["weighted_efficiency", "redundancy"]
    )
    assert table.loc["n_communities", "redundancy"] == 4
    assert (
        table.loc["modularity", "higher"] == "redundancy"
        and table.loc["modularity", "papers_expect"] == "redundancy"
    )
    assert (
        table.loc["global_efficiency", "higher"]
        == table.loc["global_efficiency", "papers_expect"]
        == "synergy"
    )
    # seeded community detection: the same table twice
    assert topology_table(result, seed=0).equals(table)
    greedy = topology_table(result, community="greedy")
    assert greedy.loc["modularity", "redundancy"] > greedy.loc["modularity", "synergy"]


def test_per_head_and_per_layer_tables() -> None:
    result = planted_graphs()
    heads = head_topology(result)
    graphs = head_graphs(result)
    assert len(heads) == 64 and heads["label"][9] == "L1H1"
    assert heads["degree_synergy"].sum() == 2 * graphs["synergy"].number_of_edges()
    assert heads["strength_redundancy"].sum() == pytest.approx(
        2 * graphs["redundancy"].size(weight="weight")
    )
    layers = layer_topology(result)
    assert list(layers["layer"]) == list(range(8))
    # redundancy modules span layer pairs {0,1}, {2,3}, ...: their edges stay within modules
    assert layers["participation_redundancy"].max() < 0.05
    assert layers["participation_synergy"].mean() > 0.3
