"""HeadActivity: unit order and labels, the long table, exact save/load round trips."""

from __future__ import annotations

import math

import pytest
import torch

import synergy_lens as sl
from synergy_lens.record import HeadActivity, Prompt


def _synthetic(n_prompts=3, steps=9, layers=2, heads=3, lengths=(9, 5, 1)):
    g = torch.Generator().manual_seed(0)
    values = torch.rand(n_prompts, steps, layers, heads, generator=g)
    return HeadActivity(
        values=values,
        lengths=torch.tensor(lengths),
        prompts=[f"p{i}" for i in range(n_prompts)],
        categories=["a", "b", "a"],
        prompt_ids=[[1, 2], [3], [4, 5, 6]],
        generated_ids=[list(range(n)) for n in lengths],
        completions=["x", "y", "z"],
        model_name="synthetic",
        model_config={"n_layers": layers, "n_heads": heads},
        settings={"signal": "l2", "max_new_tokens": steps},
    )


def test_nan_past_lengths_is_enforced_and_lengths_can_be_derived():
    act = _synthetic()
    assert act.values[1, 5:].isnan().all() and act.values[1, :5].isfinite().all()
    assert act.values[2, 1:].isnan().all()
    derived = HeadActivity(values=act.values)
    assert derived.lengths.tolist() == [9, 5, 1]
    assert derived.prompts == ["", "", ""] and derived.generated_ids == [[], [], []]


def test_unit_series_is_layer_major():
    act = _synthetic()
    series = act.unit_series()
    assert series.shape == (3, 6, 9)
    labels = act.unit_labels()
    for layer in range(2):
        for head in range(3):
            unit = layer * 3 + head
            assert labels[unit] == f"L{layer}H{head}"
            torch.testing.assert_close(
                series[:, unit], act.values[:, :, layer, head], equal_nan=True, atol=0, rtol=0
            )
    assert (act.n_prompts, act.n_steps, act.n_layers, act.n_heads, act.n_units) == (3, 9, 2, 3, 6)


def test_to_dataframe_keeps_valid_steps_only():
    act = _synthetic()
    df = act.to_dataframe()
    assert list(df.columns) == [
        "prompt",
        "category",
        "time",
        "layer",
        "head",
        "unit",
        "label",
        "value",
    ]
    assert len(df) == (9 + 5 + 1) * 6
    assert not df["value"].isna().any()
    row = df[(df.prompt == 1) & (df.time == 4) & (df.label == "L1H2")].iloc[0]
    assert row.unit == 5 and row.category == "b"
    assert math.isclose(row.value, float(act.values[1, 4, 1, 2]), rel_tol=0, abs_tol=0)


def test_save_load_round_trip_is_bit_exact(tmp_path, tiny):
    act = sl.record_head_activity(
        tiny, ["hello", Prompt("with a label", "pos_tagging")], max_new_tokens=8, progress=False
    )
    path = tmp_path / "sub" / "act.pt"
    act.save(path)
    back = HeadActivity.load(path)
    assert torch.equal(back.values.isnan(), act.values.isnan())
    assert torch.equal(back.values.nan_to_num(-1), act.values.nan_to_num(-1))
    assert back.values.dtype == torch.float32 and torch.equal(back.lengths, act.lengths)
    for name in (
        "prompts",
        "categories",
        "prompt_ids",
        "generated_ids",
        "completions",
        "prompt_texts",
        "model_name",
        "model_config",
        "settings",
    ):
        assert getattr(back, name) == getattr(act, name), name
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temporary file


@pytest.mark.wrong_shapes
def test_invalid_construction_and_loading(tmp_path):
    with pytest.raises(ValueError, match="prompt, time, layer, head"):
        HeadActivity(values=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="lengths must lie"):
        HeadActivity(values=torch.zeros(2, 4, 1, 1), lengths=torch.tensor([5, 1]))
    with pytest.raises(ValueError, match="prompts has 1 entries"):
        HeadActivity(values=torch.zeros(2, 4, 1, 1), prompts=["a"])
    with pytest.raises(ValueError, match="must agree"):
        HeadActivity(
            values=torch.zeros(1, 4, 1, 1), lengths=torch.tensor([2]), generated_ids=[[1, 2, 3]]
        )
    with pytest.raises(FileNotFoundError):
        HeadActivity.load(tmp_path / "missing.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="expected a saved HeadActivity"):
        HeadActivity.load(tmp_path / "other.pt")
