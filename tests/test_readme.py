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
    logits = namespace["logits"]
    assert logits.shape[:2] == namespace["tokens"].shape and torch.isfinite(logits).all()
    with torch.no_grad():  # the last example skipped block 7: not the clean logits
        assert not torch.allclose(model(namespace["tokens"]), logits)
