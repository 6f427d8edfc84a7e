"""Checkpoint sweeps over a model trained here from scratch (synergy_lens/sweep.py,
synergy_lens/models/train.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from synergy_lens.models.tiny import TinyConfig
from synergy_lens.models.train import offline_corpus, train_tiny_lm, training_record
from synergy_lens.sweep import (
    SweepConfig,
    SweepResult,
    analyse_checkpoint,
    checkpoint_sweep,
    local_checkpoints,
)
from synergy_lens.view.sweep import sweep_report

PROMPTS = ["The function returns", "Return a new list", "If the value is", "This module provides",
           "A class that", "Raise an error when"]
CONFIG = SweepConfig(max_new_tokens=16, n_surrogates=9, n_boot=50)
SMALL = TinyConfig(n_layers=3, n_heads=2, n_kv_heads=1, d_head=16, d_mlp=64, n_ctx=128)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("train")
    return train_tiny_lm(out, config=SMALL, steps=30, save_at=(0, 15, 30), batch_size=8,
                         seq_len=64, progress=False)


def test_corpus_is_offline_and_sizeable() -> None:
    text = offline_corpus()
    assert len(text) > 100_000
    assert "Return" in text


def test_training_starts_uniform_and_learns(trained: list[Path]) -> None:
    records = [training_record(f) for f in trained]
    assert [r["step"] for r in records] == [0, 15, 30]
    # transformers' small initialisation: near-uniform over the 259 byte ids at step 0
    assert abs(records[0]["held_out_loss"] - math.log(259)) < 0.05
    assert records[-1]["held_out_loss"] < records[0]["held_out_loss"] - 1.0


def test_finished_training_is_reused_not_redone(trained: list[Path]) -> None:
    before = [(f / "model.safetensors").stat().st_mtime_ns for f in trained]
    again = train_tiny_lm(trained[0].parent, config=SMALL, steps=30, save_at=(0, 15, 30),
                          batch_size=8, seq_len=64, progress=False)
    assert again == trained
    assert [(f / "model.safetensors").stat().st_mtime_ns for f in trained] == before


def test_sweep_equals_each_checkpoint_alone_and_resumes(trained: list[Path], tmp_path: Path) -> None:
    names, load = local_checkpoints(trained, backend="bridge")
    calls: list[str] = []

    def interrupted(name: str):
        if name == names[2]:
            raise KeyboardInterrupt
        calls.append(name)
        return load(name)

    with pytest.raises(KeyboardInterrupt):
        checkpoint_sweep(interrupted, names, PROMPTS, config=CONFIG, out=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*.pt")) == [
        "checkpoint_000.pt", "checkpoint_001.pt"]

    def counted(name: str):
        calls.append(name)
        return load(name)

    calls.clear()
    result = checkpoint_sweep(counted, names, PROMPTS, config=CONFIG, out=tmp_path, progress=False)
    assert calls == [names[2]]  # the first two came from their saved summaries
    assert result is not None and result.steps.tolist() == [0.0, 15.0, 30.0]

    alone = analyse_checkpoint(load(names[1]), PROMPTS, CONFIG, names[1], 15.0)
    assert torch.equal(result.index[1], alone.index)
    assert torch.equal(result.p[1], alone.p)
    assert torch.equal(result.profile[1], alone.profile)
    assert torch.equal(result.ranks[1], alone.ranks)
    assert result.core[1] == alone.core
    assert result.core_jaccard[-1] == 1.0

    path = tmp_path / "sweep.pt"
    result.save(path)
    back = SweepResult.load(path)
    assert torch.equal(back.index, result.index) and back.core == result.core
    frame = result.to_dataframe()
    assert len(frame) == 3 * len(CONFIG.scores)
    page = sweep_report(result, tmp_path / "sweep.html")
    assert "Inverted U over training" in page.to_html()


def test_changed_settings_are_not_resumed(trained: list[Path], tmp_path: Path) -> None:
    names, load = local_checkpoints(trained[:1], backend="bridge")
    checkpoint_sweep(load, names, PROMPTS, config=CONFIG, out=tmp_path, progress=False)
    calls: list[str] = []

    def counted(name: str):
        calls.append(name)
        return load(name)

    other = SweepConfig(max_new_tokens=16, n_surrogates=9, n_boot=50, q=0.5)
    checkpoint_sweep(counted, names, PROMPTS, config=other, out=tmp_path, progress=False)
    assert calls == names


def test_bad_input_is_named() -> None:
    with pytest.raises(FileNotFoundError, match="no config.json"):
        local_checkpoints(["/nonexistent/step_1"])
    with pytest.raises(ValueError, match="no checkpoints"):
        checkpoint_sweep(lambda n: None, [], PROMPTS)
    with pytest.raises(ValueError, match="must be one of"):
        checkpoint_sweep(lambda n: None, ["a"], PROMPTS, config=SweepConfig(score="nope"))


def test_cli_sweep_trains_sweeps_and_resumes(tmp_path: Path) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "synergy_lens", "sweep", "--train-demo", "--train-steps", "4",
           "--prompts", str(_prompt_file(tmp_path)), "--max-new-tokens", "16", "--n-surrogates", "4",
           "--n-boot", "20", "--out", str(tmp_path / "sw"), "--no-progress"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    frame = __import__("pandas").read_csv(tmp_path / "sw" / "sweep.csv")
    assert sorted(set(frame["step"])) == [0.0, 1.0, 2.0, 4.0]  # step 0 = random init
    assert len(frame) == 4 * 3
    saved = SweepResult.load(tmp_path / "sw" / "sweep.pt")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = SweepResult.load(tmp_path / "sw" / "sweep.pt")
    assert torch.equal(saved.index, resumed.index) and saved.core == resumed.core
    assert (tmp_path / "sw" / "sweep.html").stat().st_size > 10_000


def _prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path
