"""Files written by earlier versions keep loading: one stored example of every result class.

``tests/data/stored_v1`` holds files written by ``tests/data/make_stored.py`` with the torch-file
formats (before the safetensors format), ``tests/data/stored_safetensors`` the same examples in the
safetensors format (written at the commit that added it). Each is loaded with the current code and
compared, field by field, with the values the script builds (closed-form ramps and literals), plus
spot values written out here by hand. A new format version adds a folder; none is ever removed.
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
STORED = [STORED_V1, DATA / "stored_safetensors"]


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


@pytest.mark.parametrize("folder", STORED, ids=lambda p: p.name)
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_stored_files_still_load(name: str, folder: Path) -> None:
    want = EXAMPLES[name]
    got = type(want).load(_file(folder, name))  # type: ignore[attr-defined]
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
    from synergy_lens.sweep import CheckpointSummary, SweepResult

    for cls in (CheckpointSummary, SweepResult):  # stored in format 1, derived since format 2
        back = cls.load(STORED_V1 / f"{cls.__name__}.pt")
        assert (back.n_layers, back.n_heads, back.labels) == (2, 2, ["L0H0", "L0H1", "L1H0", "L1H1"])


@pytest.mark.parametrize("folder", STORED, ids=lambda p: p.name)
def test_stored_recording_checkpoints_resume(folder: Path) -> None:
    from synergy_lens.record.checkpoint import Checkpoint, RecordingState

    state = RecordingState.empty(3, 2, 2, 2)
    fp = {"prompts": "p", "model": "m", "settings": "s"}
    assert Checkpoint(folder / "recording.ckpt", fp).load_into(state)
    assert state.done.tolist() == [True, False, True]
    assert state.generated_ids == [[5, 6], None, [7, 2]]
    assert state.values[2, 1, 1, 1].item() == 15 / 4 and bool(state.values[1].isnan().all())
    with pytest.raises(ValueError, match="differs in: model"):
        Checkpoint(folder / "recording.ckpt", {**fp, "model": "other"}).load_into(RecordingState.empty(3, 2, 2, 2))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_current_format_round_trips_and_reads_without_synergy_lens(name: str, tmp_path: Path) -> None:
    """Saved now: a safetensors file whose metadata holds the JSON header; loads back equal."""
    import json

    from safetensors import safe_open

    want = EXAMPLES[name]
    path = tmp_path / f"{name}.st"
    want.save(path)  # type: ignore[attr-defined]
    file = path / "study.pt" if name == "DifficultyStudy" else path
    with safe_open(file, framework="pt") as f:  # no unpickler, no synergy_lens code
        header = json.loads(f.metadata()["synergy_lens"])
        keys = set(f.keys())
    assert header["format"] == f"synergy_lens.{name}" and keys  # every example holds tensors
    assert f"{header['format']}/{header['version']}" == type(want).FORMAT  # type: ignore[attr-defined]
    assert_same(type(want).load(path), want, name)  # type: ignore[attr-defined]


def test_a_study_level_folder_of_the_earlier_layout_resumes(tmp_path: Path) -> None:
    """Earlier level folders held fingerprint.json and the finished stages' files; the
    level's checkpoint takes them over (same study) or refuses them (another study)."""
    import json

    from synergy_lens.dynamics.study_level import _level_checkpoint

    fp = {"level": 1, "prompts": "abc", "families": ["arithmetic"], "n_boot": 10}
    old = tmp_path / "old"
    old.mkdir()
    (old / "fingerprint.json").write_text(json.dumps(fp, indent=1))
    (old / "activity.pt").write_bytes(b"x")
    (old / "phiid.pt").write_bytes(b"x")
    other = tmp_path / "other"
    other.mkdir()
    (other / "fingerprint.json").write_text(json.dumps({**fp, "n_boot": 20}))
    with pytest.raises(ValueError, match=r"different study \(differs in: n_boot\)"):
        _level_checkpoint(other, fp)
    ckpt, done = _level_checkpoint(old, {**fp, "families": ("arithmetic",)})  # a tuple reads back as a list
    assert done == {"activity", "phiid"} and not (old / "fingerprint.json").exists()
    assert _level_checkpoint(old, fp)[1] == {"activity", "phiid"}  # now from level.ckpt
    ckpt.write({}, {"stages": ["activity", "flow", "phiid"]})
    assert _level_checkpoint(old, fp)[1] == {"activity", "flow", "phiid"}
    with pytest.raises(ValueError, match=r"different study \(differs in: prompts\)"):
        _level_checkpoint(old, {**fp, "prompts": "xyz"})
