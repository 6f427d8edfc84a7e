"""decompose and PhiIDResult, on a tiny fake HeadActivity (the duck-typed interface)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from synergy_lens.phiid import ATOMS, PhiIDResult, all_pairs, atom_index, decompose

from . import reference as ref


@dataclass
class FakeActivity:
    """values: [prompt, time, layer, head], NaN past each prompt's length."""

    values: torch.Tensor
    lengths: torch.Tensor
    n_layers: int
    n_heads: int
    model_name: str = "fake/tiny"

    def unit_series(self) -> torch.Tensor:
        return self.values.flatten(2).transpose(1, 2)  # [prompt, unit, time]

    def unit_labels(self) -> list[str]:
        return [
            f"L{layer}H{head}" for layer in range(self.n_layers) for head in range(self.n_heads)
        ]


def _activity(
    lengths: tuple[int, ...] = (40, 25, 33), n_layers: int = 2, n_heads: int = 3
) -> FakeActivity:
    g = torch.Generator().manual_seed(0)
    n_units, n_time = n_layers * n_heads, max(lengths)
    values = torch.full((len(lengths), n_time, n_layers, n_heads), math.nan)
    for p, n in enumerate(lengths):
        x = torch.randn(n, n_units, generator=g)
        x[1:] += 0.6 * x[:-1] + 0.3 * x[:-1].roll(1, dims=1)
        values[p, :n] = x.reshape(n, n_layers, n_heads)
    return FakeActivity(values, torch.tensor(lengths), n_layers, n_heads)


def _prefixes(act: FakeActivity) -> list[torch.Tensor]:
    series = act.unit_series()
    return [series[p, :, :n] for p, n in enumerate(act.lengths.tolist())]


def test_mean_over_prompts_is_the_mean_of_per_prompt_atoms() -> None:
    act = _activity()
    result = decompose(act, progress=False)
    per_prompt = torch.stack([all_pairs(x) for x in _prefixes(act)])
    torch.testing.assert_close(result.atoms, per_prompt.mean(0), rtol=0, atol=1e-14, equal_nan=True)
    assert result.atoms.dtype == torch.float64 and result.atoms.shape == (16, 6, 6)
    assert result.per_prompt_sts is not None and result.per_prompt_rtr is not None
    assert result.per_prompt_sts.dtype == torch.float32 and result.per_prompt_sts.shape == (3, 6, 6)
    torch.testing.assert_close(
        result.per_prompt_sts, per_prompt[:, atom_index("sts")].float(), equal_nan=True
    )
    torch.testing.assert_close(
        result.per_prompt_rtr, per_prompt[:, atom_index("rtr")].float(), equal_nan=True
    )
    torch.testing.assert_close(result.sts, result.atoms[atom_index("sts")], equal_nan=True)
    torch.testing.assert_close(result.rtr, result.atoms[atom_index("rtr")], equal_nan=True)
    assert result.labels == act.unit_labels() and result.n_layers == 2 and result.n_heads == 3
    assert result.meta["model_name"] == "fake/tiny" and result.meta["lengths"] == [40, 25, 33]


@pytest.mark.parametrize("tau", [1, 2])
def test_pooled_uses_all_lag_pairs_but_none_across_prompts(tau: int) -> None:
    act = _activity()
    result = decompose(act, aggregate="pooled", tau=tau, progress=False)
    assert result.per_prompt_sts is None and result.aggregate == "pooled"
    pieces = [x.double().numpy() for x in _prefixes(act)]
    for i, j in [(0, 1), (4, 2), (5, 0)]:
        # independent: pooled 4 x 4 covariance of lag pairs within prompts, then atoms
        v = np.concatenate(
            [np.stack([p[i, :-tau], p[j, :-tau], p[i, tau:], p[j, tau:]]) for p in pieces], 1
        )
        want = ref.mmi_atoms_from_cov(np.cov(v))
        np.testing.assert_allclose(result.atoms[:, i, j].numpy(), want, rtol=0, atol=1e-10)


def test_pooled_ccs_equals_local_reference_on_concatenated_lag_pairs() -> None:
    act = _activity(lengths=(30, 22, 41))
    result = decompose(act, aggregate="pooled", redundancy="CCS", progress=False)
    assert result.redundancy == "CCS"
    pieces = [x.double().numpy() for x in _prefixes(act)]
    for i, j in [(0, 1), (3, 5)]:
        v = np.concatenate(
            [np.stack([p[i, :-1], p[j, :-1], p[i, 1:], p[j, 1:]]) for p in pieces], 1
        )
        assert v.shape[1] == 29 + 21 + 40
        want = ref.local_atoms_of_samples(v, "CCS").mean(1)
        np.testing.assert_allclose(result.atoms[:, i, j].numpy(), want, rtol=0, atol=1e-9)


def test_single_prompt_pooled_equals_mean() -> None:
    act = _activity(lengths=(50,))
    pooled = decompose(act, aggregate="pooled", progress=False)
    mean = decompose(act, progress=False)
    torch.testing.assert_close(pooled.atoms, mean.atoms, rtol=0, atol=1e-12, equal_nan=True)


def test_save_load_roundtrip_is_exact(tmp_path: Path) -> None:
    result = decompose(_activity(), progress=False)
    path = tmp_path / "phiid.pt"
    result.save(path)
    again = PhiIDResult.load(path)
    for name in ("atoms", "per_prompt_sts", "per_prompt_rtr"):
        torch.testing.assert_close(
            getattr(again, name), getattr(result, name), rtol=0, atol=0, equal_nan=True
        )
    for name in ("n_layers", "n_heads", "labels", "tau", "redundancy", "aggregate", "meta"):
        assert getattr(again, name) == getattr(result, name), name
    pooled = decompose(_activity(), aggregate="pooled", progress=False)
    pooled.save(path)
    assert PhiIDResult.load(path).per_prompt_sts is None


def test_to_dataframe() -> None:
    result = decompose(_activity(), progress=False)
    df = result.to_dataframe()
    assert len(df) == 6 * 5
    assert list(df.columns[:6]) == [
        "source",
        "target",
        "source_layer",
        "source_head",
        "target_layer",
        "target_head",
    ]
    assert list(df.columns[6:]) == list(ATOMS)
    row = df[(df.source == "L1H0") & (df.target == "L0H2")].iloc[0]
    assert (row.source_layer, row.source_head, row.target_layer, row.target_head) == (1, 0, 0, 2)
    assert row.sts == pytest.approx(result.sts[3, 2].item())
    assert row.xty == pytest.approx(result.atom("xty")[3, 2].item())


def test_nan_inside_a_prompt_is_an_error_naming_prompt_unit_and_time() -> None:
    act = _activity()
    act.values[1, 7, 1, 2] = math.nan  # prompt 1, time 7, unit 1 * 3 + 2 = 5
    with pytest.raises(ValueError, match=r"prompt 1 .* unit 5 \(L1H2\), time 7"):
        decompose(act, progress=False)


def test_short_prompt_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"prompt\(s\) \[1\]"):
        decompose(_activity(lengths=(20, 3)), progress=False)


def test_lengths_beyond_the_recording_are_an_error() -> None:
    act = _activity()
    act.lengths = torch.tensor([40, 25, 41])
    with pytest.raises(ValueError, match=r"prompt\(s\) \[2\] have lengths beyond"):
        decompose(act, progress=False)


def test_bad_aggregate() -> None:
    with pytest.raises(ValueError, match="aggregate"):
        decompose(_activity(), aggregate="median", progress=False)  # type: ignore[arg-type]


def test_head_constant_in_one_prompt_is_averaged_over_the_others() -> None:
    act = _activity()
    act.values[0, :40, 0, 1] = 2.0  # head L0H1 constant in prompt 0
    with pytest.warns(RuntimeWarning, match=r"constant unit\(s\) 1 \(L0H1\)") as record:
        result = decompose(act, progress=False)
    assert len(record) == 1
    others = torch.stack([all_pairs(x) for x in _prefixes(act)[1:]]).mean(0)
    torch.testing.assert_close(result.atoms[:, 1, 4], others[:, 1, 4], rtol=0, atol=1e-14)
    assert result.per_prompt_sts is not None and result.per_prompt_sts[0, 1, 4].isnan()


def test_progress_bar_and_result_validation() -> None:
    decompose(_activity(), progress=True)
    with pytest.raises(ValueError, match="labels"):
        PhiIDResult(atoms=torch.zeros(16, 2, 2), n_layers=1, n_heads=2, labels=["a"])
    with pytest.raises(ValueError, match=r"\[16, unit, unit\]"):
        PhiIDResult(atoms=torch.zeros(15, 2, 2), n_layers=1, n_heads=2, labels=["a", "b"])


def test_jitter_in_decompose_removes_nan_without_warning() -> None:
    act = _activity()
    act.values[:, :, 1, 1] = torch.where(act.values[:, :, 1, 1].isnan(), math.nan, 4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = decompose(act, jitter=1e-2, progress=False)
    off = ~torch.eye(6, dtype=torch.bool)
    assert result.atoms[:, off].isfinite().all()
    assert result.meta["jitter"] == 1e-2
