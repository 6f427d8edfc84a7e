"""torch.distributed runs (gloo, 2 CPU processes) equal the single-process run, and a killed
rank resumes from its own checkpoint (synergy_lens/distributed.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import synergy_lens as sl
from synergy_lens import distributed as D
from synergy_lens.record.activity import HeadActivity
from tests import _dist_worker as W

WORKER = Path(__file__).parent / "_dist_worker.py"


def _torchrun(out: Path, ckpt: Path, *, nproc: int = 2, die_rank: int | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("SYNERGY_LENS_TEST_DIE_RANK", None)
    if die_rank is not None:
        env["SYNERGY_LENS_TEST_DIE_RANK"] = str(die_rank)
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={nproc}", str(WORKER), str(out), str(ckpt)],
        capture_output=True, text=True, env=env, timeout=300,
    )


@pytest.fixture(scope="module")
def single():
    """The single-process reference: the same prompts, settings and model."""
    activity = sl.record_head_activity(W.tiny(), W.PROMPTS, **W.SETTINGS)
    return activity, sl.decompose(activity, progress=False)


def _check_equal(saved: dict, single) -> None:
    activity, result = single
    merged = HeadActivity.from_dict(saved["activity"])
    # batch_size 1: each prompt is generated alone, so the recordings are bit-identical
    assert merged.generated_ids == activity.generated_ids
    assert merged.prompts == activity.prompts
    assert torch.equal(merged.values.nan_to_num(-1.0), activity.values.nan_to_num(-1.0))
    assert torch.equal(merged.lengths, activity.lengths)
    # PhiID per prompt on each rank, merged on rank 0: summation order differs only
    torch.testing.assert_close(saved["atoms"], result.atoms, rtol=0, atol=1e-12, equal_nan=True)
    assert torch.equal(saved["per_sts"].nan_to_num(-1.0), result.per_prompt_sts.nan_to_num(-1.0))
    assert torch.equal(saved["per_rtr"].nan_to_num(-1.0), result.per_prompt_rtr.nan_to_num(-1.0))
    assert saved["meta"]["lengths"] == result.meta["lengths"]
    assert saved["meta"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    merged_result = __import__("dataclasses").replace(result, atoms=saved["atoms"])
    for score in ("rank_gradient", "synergy_fraction"):
        a = sl.synergy_scores(merged_result, score=score).to_dataframe()
        b = sl.synergy_scores(result, score=score).to_dataframe()
        assert list(a["label"]) == list(b["label"]), score  # the same order of heads
        assert list(a["rank"]) == list(b["rank"]), score
        floats = a.select_dtypes("float").columns
        assert (a[floats] - b[floats]).abs().max().max() < 1e-12, score


def test_two_gloo_processes_equal_one(tmp_path: Path, single) -> None:
    out = tmp_path / "out.pt"
    done = _torchrun(out, tmp_path / "rec.pt")
    assert done.returncode == 0, done.stderr[-3000:]
    _check_equal(torch.load(out, weights_only=False), single)
    # each rank kept its own checkpoint
    assert sorted(p.name for p in tmp_path.glob("rec.rank*")) == ["rec.rank0of2.pt", "rec.rank1of2.pt"]


def test_a_killed_rank_resumes_from_its_checkpoint(tmp_path: Path, single) -> None:
    out = tmp_path / "out.pt"
    first = _torchrun(out, tmp_path / "rec.pt", die_rank=1)
    assert first.returncode != 0
    assert not out.exists()
    assert out.with_suffix(".died").read_text() == "1"  # rank 1 saved 1 of its 3 prompts
    assert (tmp_path / "rec.rank1of2.pt").exists()
    second = _torchrun(out, tmp_path / "rec.pt", die_rank=1)  # the marker stops a 2nd death
    assert second.returncode == 0, second.stderr[-3000:]
    _check_equal(torch.load(out, weights_only=False), single)


def test_single_process_fallbacks() -> None:
    assert D.world() == (0, 1) and D.is_main()
    assert D.shard(7) == list(range(7))
    assert D.shard(7, 1, 3) == [1, 4]
    assert D.gather_to_main({"a": 1}) == [{"a": 1}]
    assert D.rank_checkpoint("x/run.pt") == Path("x/run.pt")
    with pytest.raises(ValueError, match="outside a world of 2"):
        D.shard(4, 2, 2)


def _cli(out: Path, *extra: str, nproc: int = 1) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
                if nproc > 1 else [sys.executable])
    return subprocess.run(
        [*launcher, "-m", "synergy_lens", "run", *extra, "--batch-size", "1", "--n-surrogates", "0",
         "--robustness", "none", "--no-report", "--threads", "1", "--no-progress", "--quiet", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=900,
    )


def _same_run(one: Path, two: Path) -> None:
    from synergy_lens.analysis import HeadScores
    from synergy_lens.phiid import PhiIDResult

    a1, a2 = HeadActivity.load(one / "activity.pt"), HeadActivity.load(two / "activity.pt")
    assert a1.generated_ids == a2.generated_ids
    assert torch.equal(a1.values.nan_to_num(-1.0), a2.values.nan_to_num(-1.0))
    p1, p2 = PhiIDResult.load(one / "phiid.pt"), PhiIDResult.load(two / "phiid.pt")
    torch.testing.assert_close(p2.atoms, p1.atoms, rtol=0, atol=1e-12, equal_nan=True)
    assert p2.meta["distributed"]["world_size"] == 2
    s1, s2 = HeadScores.load(one / "scores.pt"), HeadScores.load(two / "scores.pt")
    assert torch.equal(s1.values, s2.values)  # ranks of heads: identical
    assert not list(two.glob("*.rank*"))  # the ranks' recording checkpoints were removed


def test_torchrun_cli_run_equals_one_process_tiny(tmp_path: Path) -> None:
    args = ("--model", "tiny", "--n-prompts", "5", "--max-new-tokens", "12")
    one, two = _cli(tmp_path / "one", *args), _cli(tmp_path / "two", *args, nproc=2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    _same_run(tmp_path / "one", tmp_path / "two")


@pytest.mark.slow
def test_torchrun_cli_run_equals_one_process_smollm2(tmp_path: Path) -> None:
    args = ("--n-prompts", "4", "--max-new-tokens", "16", "--full-length")
    one, two = _cli(tmp_path / "one", *args), _cli(tmp_path / "two", *args, nproc=2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    _same_run(tmp_path / "one", tmp_path / "two")
