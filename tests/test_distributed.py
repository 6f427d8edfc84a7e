"""torch.distributed runs (gloo, 2 CPU processes) equal the single-process run, and a killed
rank resumes from its own checkpoint (synergy_lens/distributed.py)."""

from __future__ import annotations

import os
import shutil
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


def _torchrun(out: Path, ckpt: Path, *, nproc: int = 2, die_rank: int | None = None, task: str = ""):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "SYNERGY_LENS_TEST_TASK": task}
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


def test_ablation_and_surrogates_spread_over_two_ranks_equal_one(tmp_path: Path) -> None:
    # both runs under torchrun with one thread per process: 1 process (no split) vs 2
    runs = {n: _torchrun(tmp_path / f"out{n}.pt", tmp_path / f"ck{n}.pt", nproc=n, task="interventions")
            for n in (1, 2)}
    for n, run in runs.items():
        assert run.returncode == 0, (n, run.stderr[-3000:])
    want, got = (torch.load(tmp_path / f"out{n}.pt", weights_only=True) for n in (1, 2))
    assert (want["processes"], got["processes"]) == (1, 2)
    assert torch.equal(got["null"], want["null"])  # surrogates: bit for bit
    assert torch.equal(got["p_pair"].nan_to_num(-1.0), want["p_pair"].nan_to_num(-1.0))
    # resample ablation: every prompt's conditions take that prompt's reference row on either rank
    torch.testing.assert_close(got["curve"], want["curve"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got["given"], want["given"], rtol=1e-5, atol=1e-7)
    assert float(want["curve"][:, -1].min()) > 0.0  # every head resampled: the model changed


def test_single_process_fallbacks() -> None:
    assert D.world() == (0, 1) and D.is_main()
    assert D.shard(7) == list(range(7))
    assert D.shard(7, 1, 3) == [1, 4]
    assert D.gather_to_main({"a": 1}) == [{"a": 1}]
    assert D.rank_checkpoint("x/run.pt") == Path("x/run.pt")
    with pytest.raises(ValueError, match="outside a world of 2"):
        D.shard(4, 2, 2)


NO_TESTS = ("--n-surrogates", "0", "--robustness", "none")


def _cli(out: Path, *extra: str, nproc: int = 1) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
                if nproc > 1 else [sys.executable])
    return subprocess.run(
        [*launcher, "-m", "synergy_lens", "run", *extra, "--batch-size", "1",
         "--no-report", "--threads", "1", "--no-progress", "--quiet", "--out", str(out)],
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


def _same_tests(one: Path, two: Path) -> None:
    """The null tests and the ablation curve, spread over the ranks, equal one process's."""
    from synergy_lens.analysis.headline import Headline
    from synergy_lens.analysis.robustness import Robustness
    from synergy_lens.analysis.surrogates import SurrogateTest
    from synergy_lens.intervene import AblationCurve

    t1, t2 = SurrogateTest.load(one / "surrogates.pt"), SurrogateTest.load(two / "surrogates.pt")
    assert t1.meta["processes"] == 1 and t2.meta["processes"] == 2
    for field in ("null", "p_head", "aligned", "observed", "p_pair", "null_mean"):
        a, b = getattr(t1, field), getattr(t2, field)
        assert torch.equal(a.nan_to_num(-9.0), b.nan_to_num(-9.0)), field  # bit for bit
    h1, h2 = Headline.load(one / "headline.pt"), Headline.load(two / "headline.pt")
    assert torch.equal(h1.null_index.nan_to_num(-9.0), h2.null_index.nan_to_num(-9.0))
    assert torch.equal(h1.p, h2.p) and h1.core == h2.core
    r1, r2 = Robustness.load(one / "robustness.pt"), Robustness.load(two / "robustness.pt")
    assert r1.variants == r2.variants == ["baseline", "pooled", "detrended"]
    for field in ("index", "p", "null_mean", "null_profile"):
        a, b = getattr(r1, field), getattr(r2, field)
        assert torch.equal(a.nan_to_num(-9.0), b.nan_to_num(-9.0)), field
    c1, c2 = AblationCurve.load(one / "ablation.pt"), AblationCurve.load(two / "ablation.pt")
    assert c1.meta["processes"] == 1 and c2.meta["processes"] == 2
    assert c1.orders == c2.orders and torch.equal(c1.steps, c2.steps)
    # each (condition, prompt) cell is one forward pass on one rank; a pass batched with other
    # rows may round differently in float32, so cells agree to float32 rounding
    for name in c1.curves:
        torch.testing.assert_close(c2.per_prompt[name], c1.per_prompt[name], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(c2.random_per_prompt, c1.random_per_prompt, rtol=1e-5, atol=1e-7)


def test_torchrun_cli_run_equals_one_process_tiny(tmp_path: Path) -> None:
    args = ("--model", "tiny", "--n-prompts", "5", "--max-new-tokens", "12", "--n-surrogates", "5",
            "--robustness", "pooled", "detrended", "--n-boot", "50", "--ablate", "--ablation-prompts", "4",
            "--ablation-steps", "4", "--ablation-seeds", "2", "--ablation-tokens", "8")
    one, two = _cli(tmp_path / "one", *args), _cli(tmp_path / "two", *args, nproc=2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    _same_run(tmp_path / "one", tmp_path / "two")
    _same_tests(tmp_path / "one", tmp_path / "two")

    # `ablate --from` under torchrun: the saved run's curve again, its passes on two ranks
    from synergy_lens.intervene import AblationCurve

    again = tmp_path / "again"
    shutil.copytree(tmp_path / "one", again)
    (again / "ablation.pt").unlink()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ablate = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "synergy_lens",
         "ablate", "--from", str(again), *args[args.index("--ablation-prompts"):], "--no-report", "--threads", "1",
         "--no-progress", "--quiet"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert ablate.returncode == 0, ablate.stderr[-2000:]
    c1, c2 = AblationCurve.load(tmp_path / "one" / "ablation.pt"), AblationCurve.load(again / "ablation.pt")
    assert c2.meta["processes"] == 2 and c1.orders == c2.orders
    torch.testing.assert_close(c2.random_per_prompt, c1.random_per_prompt, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_torchrun_cli_run_equals_one_process_smollm2(tmp_path: Path) -> None:
    args = ("--n-prompts", "4", "--max-new-tokens", "16", "--full-length", *NO_TESTS)
    one, two = _cli(tmp_path / "one", *args), _cli(tmp_path / "two", *args, nproc=2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    _same_run(tmp_path / "one", tmp_path / "two")
