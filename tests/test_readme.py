"""The README's Python examples run as written (on a tiny model standing in for SmolLM2)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_examples_run(monkeypatch):
    import synergy_lens as sl
    from synergy_lens.models import tiny_model

    model = tiny_model("bridge", n_layers=8, n_heads=4, n_kv_heads=2, d_head=8, seed=0)
    monkeypatch.setattr(sl, "load_model", lambda *a, **k: model)
    blocks = python_blocks()
    assert len(blocks) >= 2, "the README lost its examples"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["activity"].values.shape[:2] == (60, 100)  # 60 prompts x 100 tokens
    assert isinstance(namespace["scores"].to_dataframe(), pd.DataFrame)
    run = namespace["run"]  # sl.analyse with a RunConfig: the settings are the configs' asdict
    assert run.settings["record"]["max_new_tokens"] == 32 and run["activity"].values.shape[:2] == (8, 32)
    assert run["headline"].n_surrogates == 19 and run.settings["ablation"]["steps"] == 4
    assert run["robustness"].variants == ["baseline", "pooled"]
    assert run["ablation"].steps.tolist() == [0, 8, 16, 24, 32]  # 4 steps of 32 / 4 heads
    logits = namespace["logits"]
    assert logits.shape[:2] == namespace["tokens"].shape and torch.isfinite(logits).all()
    with torch.no_grad():  # the last example skipped block 7: not the clean logits
        assert not torch.allclose(model(namespace["tokens"]), logits)
