"""Files written by earlier versions keep loading: one stored example of every result class.

``tests/data/stored_v1`` holds files written by ``tests/data/make_stored.py`` with the torch-file
formats (before the safetensors format). Each is loaded with the current code and compared, field
by field, with the values the script builds (closed-form ramps and literals), plus spot values
written out here by hand.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

DATA = Path(__file__).parent / "data"
STORED_V1 = DATA / "stored_v1"


def _examples() -> dict[str, object]:
    spec = importlib.util.spec_from_file_location("make_stored", DATA / "make_stored.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.examples()


EXAMPLES = _examples()
SKIPPED = {"ControlComparison": ("results",)}  # kept in memory only, never saved


def _file(folder: Path, name: str) -> Path:
    return folder / (name if name in ("ControlComparison", "DifficultyStudy") else f"{name}.pt")


def assert_same(got: object, want: object, where: str) -> None:
    """Equal values, dtypes and types; NaN equals NaN."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor), f"{where}: {type(got).__name__}, expected a tensor"
        assert got.dtype == want.dtype and got.shape == want.shape, f"{where}: {got.dtype}{tuple(got.shape)}"
        if want.is_floating_point():
            assert torch.equal(got.isnan(), want.isnan()), where
            assert torch.equal(got.nan_to_num(0.0), want.nan_to_num(0.0)), where
        else:
            assert torch.equal(got, want), where
    elif isinstance(want, pd.DataFrame):
        assert isinstance(got, pd.DataFrame), where
        pd.testing.assert_frame_equal(got, want, check_dtype=False, obj=where)
    elif dataclasses.is_dataclass(want):
        assert type(got) is type(want), f"{where}: {type(got).__name__}"
        for f in dataclasses.fields(want):
            if f.name not in SKIPPED.get(type(want).__name__, ()):
                assert_same(getattr(got, f.name), getattr(want, f.name), f"{where}.{f.name}")
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
        for k in want:
            assert_same(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float) and math.isnan(got), f"{where}: {got!r}"
    else:
        assert type(got) is type(want) and got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_files_of_format_v1_still_load(name: str) -> None:
    want = EXAMPLES[name]
    got = type(want).load(_file(STORED_V1, name))  # type: ignore[attr-defined]
    assert_same(got, want, name)


def test_spot_values_written_out_by_hand() -> None:
    """A few values of the stored files, typed here rather than rebuilt by the script."""
    from synergy_lens.phiid.result import PhiIDResult
    from synergy_lens.record.activity import HeadActivity

    act = HeadActivity.load(STORED_V1 / "HeadActivity.pt")
    assert act.values.dtype == torch.float32 and act.values[0, 1, 1, 0].item() == 6 / 4  # (0*12 + 1*4 + 1*2 + 0) / 4
    assert bool(act.values[1, 2].isnan().all()) and act.lengths.tolist() == [3, 2]
    assert act.prompts[1] == "héllo ✓" and act.generated_ids == [[8, 9, 2], [10, 2]]
    assert (act.n_layers, act.n_heads) == (2, 2)
    res = PhiIDResult.load(STORED_V1 / "PhiIDResult.pt")
    assert res.atoms[15, 2, 3].item() == (15 * 16 + 2 * 4 + 3) / 4 and math.isnan(res.atoms[15, 3, 3].item())
    assert res.labels == ["L0H0", "L0H1", "L1H0", "L1H1"] and res.per_prompt_rtr is None
    assert res.meta["note"] == "é ✓"


def test_recording_checkpoint_v1_resumes() -> None:
    from synergy_lens.record.checkpoint import Checkpoint, RecordingState

    state = RecordingState.empty(3, 2, 2, 2)
    fp = {"prompts": "p", "model": "m", "settings": "s"}
    assert Checkpoint(STORED_V1 / "recording.ckpt", fp).load_into(state)
    assert state.done.tolist() == [True, False, True]
    assert state.generated_ids == [[5, 6], None, [7, 2]]
    assert state.values[2, 1, 1, 1].item() == 15 / 4 and bool(state.values[1].isnan().all())
    with pytest.raises(ValueError, match="differs in: model"):
        Checkpoint(STORED_V1 / "recording.ckpt", {**fp, "model": "other"}).load_into(RecordingState.empty(3, 2, 2, 2))
