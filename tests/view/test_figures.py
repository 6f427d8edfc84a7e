"""Figures: each returns a go.Figure whose data are the inputs (checked value by value), never shown."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from synergy_lens.analysis import ControlComparison, layer_energy, layer_profile
from synergy_lens.phiid import decompose
from synergy_lens.view import style as S
from synergy_lens.view.causal import plot_ablation
from synergy_lens.view.graphs import graph_positions, plot_graphs
from synergy_lens.view.matrices import (
    plot_control_comparison,
    plot_energy,
    plot_head_grid,
    plot_layer_profile,
    plot_matrices,
    plot_score_scatter,
)

from .conftest import N_HEADS, N_LAYERS, make_activity


def a(x) -> np.ndarray:
    """Figure data (tuple, list or numpy) as a float array."""
    return np.asarray(x, dtype=float)


@pytest.fixture(autouse=True)
def no_show(monkeypatch):
    """Views return figures and never display them."""
    def boom(*args, **kwargs):
        raise AssertionError("a view called .show()")

    monkeypatch.setattr(go.Figure, "show", boom)


def test_matrices_are_sts_and_rtr_ordered_by_layer(result):
    fig = plot_matrices(result)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["sts", "rtr"]
    for trace, atom in zip(fig.data, ("sts", "rtr")):
        np.testing.assert_array_equal(a(trace.z), result.atom(atom).numpy())  # NaN diagonal included
        assert list(trace.x) == list(trace.y) == result.labels == [f"L{u // N_HEADS}H{u % N_HEADS}" for u in range(12)]
    # a separator between consecutive layers, both directions, on each panel
    assert len(fig.layout.shapes) == 2 * 2 * (N_LAYERS - 1)
    sts = result.sts.numpy()
    assert fig.data[0].zmax == pytest.approx(np.percentile(sts[np.isfinite(sts)], 99))
    assert fig.data[0].colorscale[-1][1] == S.SYNERGY_SCALE[-1][1]
    assert fig.data[1].colorscale[-1][1] == S.REDUNDANCY_SCALE[-1][1]


def test_matrices_any_atom(result):
    fig = plot_matrices(result, atoms=("xty",))
    np.testing.assert_array_equal(a(fig.data[0].z), result.atom("xty").numpy())


def test_head_grid_values_and_core_outline(scores, core):
    fig = plot_head_grid(scores, core=core)
    np.testing.assert_array_equal(a(fig.data[0].z), scores.values.numpy())
    assert list(fig.data[0].x) == list(range(N_HEADS)) and list(fig.data[0].y) == list(range(N_LAYERS))
    assert fig.data[0].zmid == 0 and fig.data[0].zmax == -fig.data[0].zmin  # diverging, centred
    abstract, memory = fig.data[1], fig.data[2]
    assert list(zip(abstract.y, abstract.x)) == core.pairs("abstract")
    assert list(zip(memory.y, memory.x)) == core.pairs("memory")
    assert abstract.marker.color == S.ABSTRACT and memory.marker.color == S.MEMORY


@pytest.mark.parametrize("field", ["synergy_fraction", "mean_sts", "mean_rtr"])
def test_head_grid_other_fields(scores, field):
    fig = plot_head_grid(scores, field)
    np.testing.assert_array_equal(a(fig.data[0].z), getattr(scores, field).numpy())
    assert len(fig.data) == 1
    if field == "synergy_fraction":  # centred on the median head, not on 0
        assert fig.data[0].zmid == pytest.approx(float(np.median(getattr(scores, field).numpy())))


def test_score_scatter(scores):
    fig = plot_score_scatter(scores)
    np.testing.assert_array_equal(a(fig.data[0].x), scores.mean_rtr.flatten().numpy())
    np.testing.assert_array_equal(a(fig.data[0].y), scores.mean_sts.flatten().numpy())
    assert list(fig.data[0].text) == scores.labels
    assert f"{scores.spearman:.2f}" in fig.layout.title.text


def test_layer_profile_band_equals_ci(profile):
    fig = plot_layer_profile(profile)
    high, low, line = fig.data
    np.testing.assert_array_equal(a(high.y), profile.high.numpy())
    np.testing.assert_array_equal(a(low.y), profile.low.numpy())
    assert low.fill == "tonexty"
    np.testing.assert_array_equal(a(line.y), profile.values.numpy())
    np.testing.assert_array_equal(a(line.x), profile.depth.numpy())
    assert line.line.color == S.SYNERGY
    assert f"{profile.inverted_u:.2f}" in fig.layout.title.text


def test_layer_profile_control_overlay(result, profile):
    control = layer_profile(decompose(make_activity(seed=3), progress=False), n_boot=0)
    fig = plot_layer_profile(profile, control)
    assert len(fig.data) == 4  # trained band (2) + line, control line (no band without bootstrap)
    np.testing.assert_array_equal(a(fig.data[3].y), control.values.numpy())
    assert fig.data[3].line.color == S.CONTROL and fig.data[3].line.dash == "dash"


def test_control_comparison(result):
    other = decompose(make_activity(seed=5), progress=False)
    comp = ControlComparison.from_results(result, other, n_boot=30, control_name="perturb")
    fig = plot_control_comparison(comp, "synergy_fraction")
    trained = comp.profiles["trained"]["synergy_fraction"]
    control = comp.profiles["control"]["synergy_fraction"]
    np.testing.assert_array_equal(a(fig.data[2].y), trained.values.numpy())
    np.testing.assert_array_equal(a(fig.data[4].y), control.low.numpy())
    np.testing.assert_array_equal(a(fig.data[5].y), control.values.numpy())
    assert "trained − control" in fig.layout.title.text
    with pytest.raises(ValueError, match="not in this comparison"):
        plot_control_comparison(comp, "mean_sts")


def test_energy(activity):
    energy = layer_energy(activity)
    fig = plot_energy(energy)
    np.testing.assert_allclose(a(fig.data[0].y), energy.values.numpy())
    assert list(fig.data[0].x) == list(range(N_LAYERS))


@pytest.mark.parametrize("layout", ["circle", "layers", "spring"])
def test_graphs_edges_and_nodes(result, layout):
    from synergy_lens.analysis import head_graphs, topology_table

    graphs = head_graphs(result, density=0.2)
    fig = plot_graphs(result, density=0.2, layout=layout, metrics=topology_table(result, density=0.2))
    assert [t.name for t in fig.data] == ["synergy edges", "synergy heads", "redundancy edges", "redundancy heads"]
    for k, name in enumerate(("synergy", "redundancy")):
        edges, nodes = fig.data[2 * k], fig.data[2 * k + 1]
        assert edges.meta["n_edges"] == graphs[name].number_of_edges()
        assert len(edges.x) == 3 * graphs[name].number_of_edges()  # two ends and a gap per edge
        assert list(nodes.text) == result.labels
        assert list(nodes.marker.color) == [u // N_HEADS for u in range(N_LAYERS * N_HEADS)]
    assert "modularity" in fig.layout.annotations[0].text


def test_graph_positions_errors(result):
    from synergy_lens.analysis import head_graphs

    with pytest.raises(ValueError, match="layout must be"):
        graph_positions(head_graphs(result)["synergy"], "hexagon")  # type: ignore[arg-type]


def test_ablation_curve_with_random_spread(curve):
    fig = plot_ablation(curve)
    high, low, mean, syn, red = fig.data
    for t in fig.data:
        np.testing.assert_array_equal(a(t.x), curve.steps.numpy())
    np.testing.assert_array_equal(a(high.y), curve.random_max.numpy())
    np.testing.assert_array_equal(a(low.y), curve.random_min.numpy())
    np.testing.assert_allclose(a(mean.y), curve.random_mean.numpy())
    np.testing.assert_array_equal(a(syn.y), curve.curves["synergy-first"].numpy())
    np.testing.assert_array_equal(a(red.y), curve.curves["redundancy-first"].numpy())
    assert syn.line.color == S.SYNERGY and red.line.color == S.REDUNDANCY and mean.line.color == S.CONTROL


def test_ablation_quantile_band(curve):
    fig = plot_ablation(curve, band=(0.1, 0.9))
    np.testing.assert_allclose(a(fig.data[0].y), curve.random_quantile(0.9).numpy())
    np.testing.assert_allclose(a(fig.data[1].y), curve.random_quantile(0.1).numpy())


def test_ablation_without_random_orders(curve):
    from dataclasses import replace

    bare = replace(curve, random=torch.zeros(0, 4), random_per_prompt=torch.zeros(0, 4, 2))
    fig = plot_ablation(bare)
    assert [t.name for t in fig.data] == ["synergy-first", "redundancy-first"]


def test_one_style_everywhere(result, scores, profile, curve):
    figs = [plot_matrices(result), plot_head_grid(scores), plot_score_scatter(scores), plot_layer_profile(profile),
            plot_graphs(result), plot_ablation(curve)]
    for fig in figs:
        assert fig.layout.template.layout.colorway == S.TEMPLATE.layout.colorway
        assert fig.layout.template.layout.font.family == S.FONT
        assert fig.layout.title.text


def test_rgba_and_colors():
    assert S.rgba("#D55E00", 0.5) == "rgba(213, 94, 0, 0.5)"
    with pytest.raises(ValueError):
        S.rgba("red", 0.5)
    assert S.atom_color("sts") == S.atom_color("synergy") == S.SYNERGY
    assert S.atom_color("rtr") == S.atom_color("redundancy") == S.REDUNDANCY


def test_no_global_template_change():
    import plotly.io as pio

    import synergy_lens.view.matrices  # noqa: F401

    assert "synergy_lens" not in pio.templates and pio.templates.default == "plotly"
