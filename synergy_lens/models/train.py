"""Train a small Llama-style model from scratch, offline, saving checkpoints along the way.

What and why
------------
Paper (B) reports that the synergistic core *emerges during training*: absent at random
initialisation and early checkpoints, present later. Pythia and OLMo publish checkpoints
for such studies, but no hub is reachable here, so :func:`train_tiny_lm` makes a training
run of our own that a checkpoint sweep (:func:`synergy_lens.checkpoint_sweep`) can read:

- corpus: :func:`offline_corpus`, the docstrings of a fixed list of Python standard-library
  modules (English prose and code, a few hundred kilobytes, the same on every machine with
  the same Python minor version);
- tokenizer: the byte-level tokenizer of the tiny test models (259 ids);
- model: a Llama-family transformer (:class:`~synergy_lens.models.tiny.TinyConfig`), with
  transformers' own initialisation (the step-0 checkpoint is the random network);
- training: next-token cross-entropy on random windows, AdamW with linear warm-up and
  cosine decay, seeded; a transformers checkpoint folder (``save_pretrained`` plus the
  tokenizer) at every step in ``save_at``.

This is a small model trained for minutes on a CPU: it learns character statistics and
common words, not reasoning. A sweep over it shows how the analysis behaves over a real
training run; it cannot say what happens in a model of the papers' size.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from synergy_lens.models.tiny import TinyConfig, byte_tokenizer, llama_config

__all__ = ["CORPUS_MODULES", "load_checkpoint", "offline_corpus", "train_tiny_lm"]

CORPUS_MODULES = (
    "argparse", "collections", "contextlib", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email", "fractions", "functools", "heapq", "html", "http", "inspect",
    "itertools", "json", "logging", "pathlib", "pickle", "random", "re", "shutil",
    "statistics", "string", "subprocess", "tempfile", "textwrap", "threading", "typing",
    "unittest", "urllib", "uuid", "zipfile",
)
"""Standard-library modules whose docstrings form :func:`offline_corpus`."""

_TRAIN_META = "synergy_lens_training.json"


def offline_corpus(modules: Sequence[str] = CORPUS_MODULES) -> str:
    """The docstrings of ``modules`` and their public members, one paragraph each."""
    seen: set[int] = set()
    parts: list[str] = []
    for name in modules:
        module = importlib.import_module(name)
        for obj in [module, *(getattr(module, k) for k in sorted(dir(module)) if not k.startswith("_"))]:
            doc = inspect.getdoc(obj) if (inspect.ismodule(obj) or callable(obj)) else None
            if doc and id(doc) not in seen and len(doc) > 80:
                seen.add(id(doc))
                parts.append(doc.strip())
    return "\n\n".join(parts)


def _split_corpus(text: str, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The corpus as bytes, split 90% training / 10% held out."""
    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
    split = int(0.9 * len(data))
    if len(data) - split <= seq_len + 1:
        raise ValueError(f"the corpus ({len(data)} bytes) is too short for seq_len={seq_len}")
    return data[:split], data[split:]


def _optimiser(model: torch.nn.Module, lr: float, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW with a linear warm-up over 5% of the steps, then a cosine decay to 0."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    return opt, sched


def train_tiny_lm(
    out_dir: str | Path,
    *,
    config: TinyConfig | None = None,
    steps: int = 600,
    save_at: Sequence[int] = (0, 25, 50, 100, 200, 400, 600),
    batch_size: int = 16,
    seq_len: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    corpus: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Train from random initialisation, saving a checkpoint folder at each step of ``save_at``.

    Args:
        out_dir: checkpoints go to ``out_dir/step_000025`` etc.; a finished run found there
            with the same settings is reused, not retrained.
        config: model sizes (default: 4 layers x 4 heads, d_head 16, d_mlp 256).
        steps: optimiser steps; ``save_at`` entries above it are ignored.
        batch_size, seq_len, lr, seed: the training run (seeded: same settings, same weights).
        corpus: training text (default :func:`offline_corpus`); 10% is held out.
        progress: tqdm bar with the training loss.

    Returns:
        The checkpoint folders in step order; each also holds ``synergy_lens_training.json``
        (step, training and held-out loss in nats per byte, settings).
    """
    from transformers import LlamaForCausalLM

    cfg = config or TinyConfig(n_layers=4, n_heads=4, n_kv_heads=2, d_head=16, d_mlp=256, n_ctx=256)
    if seq_len + 1 > cfg.n_ctx:
        raise ValueError(f"seq_len={seq_len} needs n_ctx >= {seq_len + 1} (config has {cfg.n_ctx})")
    marks = sorted({int(s) for s in save_at if 0 <= int(s) <= steps})
    if not marks:
        raise ValueError(f"save_at={list(save_at)} has no step in 0..{steps}: nothing would be saved")
    out = Path(out_dir).expanduser()
    settings = {
        "config": cfg.__dict__, "steps": steps, "save_at": marks, "batch_size": batch_size,
        "seq_len": seq_len, "lr": lr, "seed": seed,
        "corpus": "offline_corpus" if corpus is None else f"custom ({len(corpus)} chars)",
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    folders = [out / f"step_{m:06d}" for m in marks]
    if all(_finished(f, settings) for f in folders):
        return folders

    train, held = _split_corpus(offline_corpus() if corpus is None else corpus, seq_len)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama_config(cfg))
    opt, sched = _optimiser(model, lr, steps)
    tok = byte_tokenizer()
    loss = float("nan")
    bar = tqdm(total=steps, desc="training", disable=not progress)
    for step in range(steps + 1):
        if step in marks:
            _save(model, tok, out / f"step_{step:06d}", settings, step, loss, _held_out_loss(model, held, seq_len))
        if step == steps:
            break
        model.train()
        starts = torch.randint(0, len(train) - seq_len - 1, (batch_size,), generator=gen)
        batch = torch.stack([train[s : s + seq_len + 1] for s in starts.tolist()])
        logits = model(input_ids=batch[:, :-1]).logits
        step_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        step_loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss = step_loss.item()
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.update(1)
    bar.close()
    return folders


@torch.no_grad()
def _held_out_loss(model: Any, held: torch.Tensor, seq_len: int, windows: int = 16) -> float:
    model.eval()
    starts = torch.linspace(0, len(held) - seq_len - 2, windows).long()
    batch = torch.stack([held[s : s + seq_len + 1] for s in starts.tolist()])
    logits = model(input_ids=batch[:, :-1]).logits
    return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten()))


def _save(model: Any, tok: Any, folder: Path, settings: dict, step: int, loss: float, held: float) -> None:
    from synergy_lens._io import atomic_write_text

    model.eval()
    model.config.name_or_path = f"synergy-lens/tiny-trained/step_{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    meta = {"step": step, "train_loss": loss, "held_out_loss": held, "settings": settings}
    atomic_write_text(folder / _TRAIN_META, json.dumps(meta, indent=1))  # written last: done


def _finished(folder: Path, settings: dict) -> bool:
    meta = folder / _TRAIN_META
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("settings") == json.loads(json.dumps(settings))
    except (OSError, ValueError):
        return False


def training_record(folder: str | Path) -> dict[str, Any]:
    """The step, losses and settings saved with a checkpoint of :func:`train_tiny_lm`."""
    return json.loads((Path(folder) / _TRAIN_META).read_text())


def load_checkpoint(folder: str | Path, backend: str = "auto") -> Any:
    """A TransformerLens model from a local transformers checkpoint folder (no hub).

    Works for any folder with ``config.json``, weights and tokenizer files that
    ``AutoModelForCausalLM``/``AutoTokenizer`` read, e.g. those of :func:`train_tiny_lm`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synergy_lens.models.loading import _boot_bridge, _resolve_backend, hooked_from_hf

    folder = Path(folder).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a transformers checkpoint folder (no config.json): pass a folder "
            "written by save_pretrained, e.g. one returned by train_tiny_lm"
        )
    chosen = _resolve_backend(backend)  # type: ignore[arg-type]
    hf = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    hf.eval()
    tok = AutoTokenizer.from_pretrained(folder)
    name = str(hf.config.name_or_path or folder.name)
    if chosen == "bridge":
        model = _boot_bridge(name, hf, tok, None, torch.float32)
    else:
        model = hooked_from_hf(str(folder), hf, tok, dtype=torch.float32)
        model.cfg.model_name = folder.name
    model.eval()
    return model
