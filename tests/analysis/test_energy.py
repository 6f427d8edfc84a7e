"""Layer energy: each definition against a hand computation, NaN padding, the registry."""

from __future__ import annotations

import math

import pytest
import torch

from synergy_lens.analysis import ENERGY_DEFINITIONS, LayerEnergy, layer_energy, register_energy

from .planted import FakeActivity


def activity() -> FakeActivity:
    """2 prompts (3 and 2 valid steps), 2 layers x 2 heads; values chosen for hand sums."""
    v = torch.full((2, 3, 2, 2), math.nan)
    v[0, :, 0] = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # e_t = 1, 4, 2
    v[0, :, 1] = torch.tensor([[3.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # e_t = 9, 0, 0
    v[1, :2, 0] = torch.tensor([[2.0, 0.0], [0.0, 0.0]])  # e_t = 4, 0
    v[1, :2, 1] = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # e_t = 2, 2
    act = FakeActivity(values=v, lengths=torch.tensor([3, 2]))
    act.prompt_ids = [[0] * 4, [0] * 2]  # prompt lengths 4 and 2
    act.model_config = {"d_head": 8}
    return act


def test_mean_sq_norm_by_hand() -> None:
    e = layer_energy(activity())
    torch.testing.assert_close(
        e.per_prompt, torch.tensor([[7 / 3, 3.0], [2.0, 2.0]], dtype=torch.float64)
    )
    torch.testing.assert_close(e.values, torch.tensor([(7 / 3 + 2) / 2, 2.5], dtype=torch.float64))
    assert e.definition == "mean_sq_norm" and e.depth.tolist() == [0.0, 1.0]


def test_per_dim_and_compute_weighted_by_hand() -> None:
    per_dim = layer_energy(activity(), definition="per_dim")
    torch.testing.assert_close(per_dim.values, layer_energy(activity()).values / (2 * 8))
    cw = layer_energy(activity(), definition="compute_weighted")
    # prompt 0: keys attended c_t = 4, 5, 6; prompt 1: c_t = 2, 3
    p0 = [(4 * 1 + 5 * 4 + 6 * 2) / 15, (4 * 9) / 15]
    p1 = [(2 * 4) / 5, (2 * 2 + 3 * 2) / 5]
    torch.testing.assert_close(cw.per_prompt, torch.tensor([p0, p1], dtype=torch.float64))
    no_ids = activity()
    no_ids.prompt_ids = None
    start_one = layer_energy(no_ids, definition="compute_weighted")  # c_t = 1 + t
    assert start_one.per_prompt[0, 1].item() == pytest.approx(9 / 6)


def test_registry_errors_and_round_trip(tmp_path) -> None:
    register_energy("test_peak", lambda v, ctx: v.pow(2).sum(-1).amax(0), overwrite=True)
    try:
        peak = layer_energy(activity(), definition="test_peak")
        torch.testing.assert_close(
            peak.values, torch.tensor([(4 + 4) / 2, (9 + 2) / 2], dtype=torch.float64)
        )
        with pytest.raises(ValueError, match="exists"):
            register_energy("test_peak", lambda v, ctx: v.sum())
    finally:
        ENERGY_DEFINITIONS.pop("test_peak")
    with pytest.raises(ValueError, match="unknown energy"):
        layer_energy(activity(), definition="nope")
    no_d = activity()
    no_d.model_config = {}
    with pytest.raises(ValueError, match="d_head"):
        layer_energy(no_d, definition="per_dim")
    e = layer_energy(activity())
    e.save(tmp_path / "e.pt")
    back = LayerEnergy.load(tmp_path / "e.pt")
    assert torch.equal(back.values, e.values) and back.definition == e.definition
    frame = e.to_dataframe()
    assert list(frame.columns) == ["layer", "depth", "energy", "sem"] and len(frame) == 2
