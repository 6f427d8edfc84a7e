"""The layer grid read from a result's tensor shape (synergy_lens._grid)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from synergy_lens._grid import HeadLabels, LabelledGrid, LayerAxis, unit_columns
from synergy_lens.analysis.core import Core
from synergy_lens.analysis.stability import UnitStability
from synergy_lens.dynamics.flow import ResidualFlow


@dataclass
class _Scores(HeadLabels):
    GRID = ("per_score", 1)
    per_score: torch.Tensor  # [score, layer, head]


def test_sizes_depth_and_labels_come_from_the_named_axis() -> None:
    grid = _Scores(torch.zeros(4, 3, 2))
    assert (grid.n_layers, grid.n_heads, grid.n_units) == (3, 2, 6)
    assert grid.labels == ["L0H0", "L0H1", "L1H0", "L1H1", "L2H0", "L2H1"]
    torch.testing.assert_close(grid.depth, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert _Scores(torch.zeros(1, 1, 5)).depth.tolist() == [0.0]  # one layer sits at depth 0


def test_result_classes_read_their_own_grid() -> None:
    values = torch.arange(12.0).reshape(4, 3)
    core = Core(values, values > 8, values < 3, "rank_gradient", 0.25, [f"u{i}" for i in range(12)])
    assert (core.n_layers, core.n_heads, core.n_units) == (4, 3, 12)
    flow = ResidualFlow(torch.zeros(2, 2, 5), torch.ones(2, 2, 5, dtype=torch.long),
                        torch.zeros(2, 5, dtype=torch.long), metrics=["attn_cos", "mlp_cos"])
    assert isinstance(flow, LayerAxis) and flow.n_layers == 5
    assert flow.depth.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_labelled_grid_keeps_stored_labels_and_reads_tables_from_them() -> None:
    stab = UnitStability(torch.tensor([[0.9, 0.1], [0.05, 1.0]]), torch.full((2, 2), 5e3), "float32",
                         min_distinct=0.5, min_spread_ulp=1e3, labels=["a", "b", "c", "d"])
    assert isinstance(stab, LabelledGrid) and stab.meta == {}
    assert stab.labels_where(torch.tensor([[False, True], [True, False]])) == ["b", "c"]
    assert stab.unstable_labels() == ["b", "c"]  # distinct below 0.5
    assert stab.unit_columns() == {"label": ["a", "b", "c", "d"], "layer": [0, 0, 1, 1], "head": [0, 1, 0, 1]}
    assert unit_columns(["x", "y", "z"], 3) == {"label": ["x", "y", "z"], "layer": [0, 0, 0], "head": [0, 1, 2]}
    with pytest.raises(TypeError):
        UnitStability(torch.zeros(1, 1), torch.zeros(1, 1), "float32", 0.5, 1e3, ["a"])  # type: ignore[misc]
