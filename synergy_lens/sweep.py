"""Checkpoint sweeps: the synergistic core over training.

What and why
------------
Paper (B)'s title says the synergistic core drives *learning*: it is absent at random
initialisation and early in training and emerges later. :func:`checkpoint_sweep` runs the
whole analysis on each checkpoint of a training run and lines the results up:

for each checkpoint: record (:func:`~synergy_lens.record_head_activity`), decompose
(:func:`~synergy_lens.decompose`), score, layer profile with its bootstrap CI and its p-value
against the autocorrelation-preserving null (:func:`~synergy_lens.analysis.headline`), the
core (top ``q`` heads by ``score``), and the Spearman correlation of per-head mean synergy
with mean redundancy (docs/science.md, "Pitfalls").

Checkpoints come from a ``load(checkpoint) -> model`` callable: :func:`local_checkpoints`
for folders on disk (for example those of :func:`~synergy_lens.models.train.train_tiny_lm`)
and :func:`hub_checkpoints` for Pythia-style published checkpoints where the hub is
reachable. A sweep with ``out=`` saves each finished checkpoint's summary at once and
skips it when run again with the same settings, so an interrupted sweep resumes. Inside a
torch.distributed process group each rank takes every ``world_size``-th checkpoint and
rank 0 gathers (:mod:`synergy_lens.distributed`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from synergy_lens.analysis.training import CheckpointSummary, SweepResult
from synergy_lens.configs import SweepConfig

__all__ = [
    "CheckpointSummary",
    "SweepConfig",
    "SweepResult",
    "checkpoint_sweep",
    "hub_checkpoints",
    "local_checkpoints",
]


# -- checkpoint sources ----------------------------------------------------------------
def local_checkpoints(
    folders: Sequence[str | Path], backend: str = "auto"
) -> tuple[list[str], Callable[[str], Any]]:
    """``(names, load)`` for transformers checkpoint folders on disk (no hub needed)."""
    from synergy_lens.models.train import load_checkpoint

    paths = {str(Path(f).expanduser()): Path(f).expanduser() for f in folders}
    missing = [p for p in paths.values() if not (p / "config.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"not transformers checkpoint folders (no config.json): {[str(m) for m in missing]}"
        )
    return list(paths), lambda name: load_checkpoint(paths[name], backend=backend)


def hub_checkpoints(
    name: str, steps: Sequence[int], backend: str = "auto"
) -> tuple[list[str], Callable[[str], Any]]:
    """``(names, load)`` for a model family that publishes training checkpoints on the hub.

    Pythia (``EleutherAI/pythia-160m`` ...) and the other families that TransformerLens
    knows load by step through its own ``checkpoint_value`` argument (revision
    ``step{N}``). Needs the hub (or a pre-filled ``HF_HOME`` cache).
    """
    from synergy_lens.models.loading import _hub_error, _resolve_backend

    chosen = _resolve_backend(backend)  # type: ignore[arg-type]

    def load(label: str) -> Any:
        step = int(label.rsplit("step", 1)[1])
        try:
            if chosen == "bridge":
                from transformer_lens.model_bridge import TransformerBridge

                return TransformerBridge.boot_transformers(name, checkpoint_value=step)
            from transformer_lens import HookedTransformer

            return HookedTransformer.from_pretrained(name, checkpoint_value=step)
        except (OSError, ValueError) as err:
            raise _hub_error(f"{name}@step{step}", err) from err

    return [f"{name}@step{int(s)}" for s in steps], load


# -- the sweep ---------------------------------------------------------------------------
def checkpoint_sweep(
    load: Callable[[str], Any],
    checkpoints: Sequence[str],
    prompts: Sequence[Any],
    *,
    config: SweepConfig | None = None,
    steps: Sequence[float] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> SweepResult | None:
    """Run the analysis on every checkpoint and line the results up (module docstring).

    Args:
        load: ``load(checkpoint) -> model`` (see :func:`local_checkpoints`,
            :func:`hub_checkpoints`); called once per checkpoint, the model is dropped after.
        checkpoints: names passed to ``load``, in training order.
        prompts: the prompts recorded on every checkpoint.
        config: the analysis (:class:`SweepConfig`).
        steps: training step of each checkpoint (for plots); default: parsed from names
            ending in a number (``step_000100`` -> 100), else NaN.
        out: folder for per-checkpoint summaries (``checkpoint_003.pt``): a finished
            checkpoint is saved at once and skipped by a later call with the same settings.
        progress: a progress bar over checkpoints.

    Returns:
        The :class:`SweepResult` (on rank 0; ``None`` on other ranks of a process group).
    """
    from synergy_lens.distributed import gather_to_main, shard, world

    config = config or SweepConfig()
    if not checkpoints:
        raise ValueError("no checkpoints to sweep: pass at least one")
    if config.score not in config.scores:
        raise ValueError(f"config.score={config.score!r} must be one of config.scores {config.scores}")
    step_values = list(steps) if steps is not None else [_parse_step(c) for c in checkpoints]
    if len(step_values) != len(checkpoints):
        raise ValueError(f"{len(step_values)} steps for {len(checkpoints)} checkpoints")
    folder = Path(out).expanduser() if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    key = _settings_key(config, prompts)
    mine = shard(len(checkpoints))
    done: dict[int, CheckpointSummary] = {}
    for i in tqdm(mine, desc="checkpoints", unit="ckpt", disable=not progress or world()[0] != 0):
        path = folder / f"checkpoint_{i:03d}.pt" if folder is not None else None
        summary = _load_if_same(path, checkpoints[i], key)
        if summary is None:
            summary = analyse_checkpoint(load(checkpoints[i]), prompts, config, checkpoints[i], float(step_values[i]))
            summary.settings = {"key": key}
            if path is not None:
                summary.save(path)
        done[i] = summary
    gathered = gather_to_main(done)
    if gathered is None:
        return None
    merged = {i: s for part in gathered for i, s in part.items()}
    return SweepResult.from_summaries([merged[i] for i in range(len(checkpoints))], config)


def analyse_checkpoint(
    model: Any, prompts: Sequence[Any], config: SweepConfig, name: str, step: float
) -> CheckpointSummary:
    """Record, decompose, test the profile against the null, find the core: one checkpoint."""
    import torch

    from synergy_lens.analysis.headline import headline
    from synergy_lens.analysis.scores import ordinal_rank, synergy_scores
    from synergy_lens.phiid import PhiIDResult, decompose
    from synergy_lens.record import record_head_activity

    activity = record_head_activity(
        model, list(prompts), max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
        stop_at_eos=config.stop_at_eos, progress=False,
    )
    result = decompose(activity, tau=config.tau, progress=False, stream=False)
    assert isinstance(result, PhiIDResult)  # stream=False: the dense result
    hl, _ = headline(
        activity, result, scores=config.scores, n_surrogates=config.n_surrogates,
        n_boot=config.n_boot, q=config.q, core_score=config.score, seed=config.seed,
    )
    scores = synergy_scores(result, score=config.score)
    core = scores.core(config.q)
    return CheckpointSummary(
        name=name,
        step=step,
        scores=list(config.scores),
        **hl.estimate_tensors(torch.float64),
        profile=hl.profile.double(),
        ranks=ordinal_rank(scores.values.flatten().double()),
        core=list(core.labels_of()),
        synred_spearman=float(scores.spearman),
    )


def _parse_step(name: str) -> float:
    digits = ""
    for ch in reversed(str(name).rstrip("/")):
        if not ch.isdigit():
            break
        digits = ch + digits
    return float(digits) if digits else math.nan


def _settings_key(config: SweepConfig, prompts: Sequence[Any]) -> str:
    texts = [getattr(p, "text", p) for p in prompts]
    blob = json.dumps({"config": asdict(config), "prompts": texts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load_if_same(path: Path | None, name: str, key: str) -> CheckpointSummary | None:
    if path is None or not path.is_file():
        return None
    try:
        summary = CheckpointSummary.load(path)
    except ValueError:
        return None  # damaged or foreign: recompute and overwrite
    if summary.settings.get("key") != key or summary.name != name:
        return None
    return summary
