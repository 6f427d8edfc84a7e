"""One level of the difficulty study: record, decompose, score, order parameters, flow.

:func:`order_parameters` is the reusable core: the three order parameters of head
differentiation of one ``PhiIDResult``, with percentile bootstrap CIs over its prompts
(see :mod:`synergy_lens.dynamics.study` for their definitions and paper (A) for the
question). :func:`run_level` is the resumable per-level step of ``difficulty_study``.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from synergy_lens._io import SavedFields, atomic_write_text
from synergy_lens._prompt_mean import PromptValues
from synergy_lens.dynamics.order import bimodality, cluster_separation
from synergy_lens.record.checkpoint import Checkpoint
from synergy_lens.record.tasks import accuracy_table, task_suite, wilson_interval
from synergy_lens.units import normalised_depth, unit_labels

__all__ = ["ORDER_PARAMETERS", "LevelSummary", "order_parameters", "run_level"]

ORDER_PARAMETERS = ("separation", "bimodality", "inverted_u")
"""The order parameters of the study, in table order (see ``study.py``)."""

Embed = Callable[[Any], Tensor]


# ----------------------------------------------------------------------------- order parameters


def _order_of(sts: Tensor, rtr: Tensor, n_layers: int, n_heads: int, score_fn: Any, embed: Embed) -> tuple[dict[str, float], Tensor, Tensor]:
    """(order parameters, embedding [unit, 2], scores [unit]) of one pair of atom matrices."""
    from synergy_lens.analysis.profile import layer_means, u_index

    res = SimpleNamespace(sts=sts, rtr=rtr, n_layers=n_layers, n_heads=n_heads,
                          labels=unit_labels(n_layers, n_heads))
    emb = embed(res)
    values = score_fn(sts, rtr).to(torch.float64)
    finite = values[torch.isfinite(values)]
    out = {"separation": math.nan, "bimodality": math.nan, "inverted_u": math.nan}
    if emb.shape[0] >= 4 and bool(torch.isfinite(emb).all()):
        out["separation"] = cluster_separation(emb)
    if finite.numel() >= 4 and float(finite.max() - finite.min()) > 0:
        out["bimodality"] = bimodality(finite)
    if n_layers >= 3:
        out["inverted_u"] = u_index(layer_means(values, n_layers, n_heads), normalised_depth(n_layers))
    return out, emb, values


def order_parameters(
    result: Any,
    *,
    score: str = "synergy_fraction",
    embed: Embed | None = None,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[dict[str, float], dict[str, tuple[float, float]], dict[str, Tensor], Tensor]:
    """Order parameters of head differentiation of one ``PhiIDResult``, with bootstrap CIs.

    ``separation`` = :func:`cluster_separation` of the heads' 2-D functional embedding
    (``embed(result)``, default PCA of the ``"row"`` features); ``bimodality`` = Sarle's
    coefficient of the per-head ``score``; ``inverted_u`` = :func:`inverted_u_index` of the
    raw layer profile of the score (NaN with fewer than 3 layers).

    The bootstrap resamples prompts with replacement (``analysis.profile.resample_counts``,
    the same draws as ``layer_profile`` for the same seed), averages their per-prompt
    sts/rtr (pairs undefined in a prompt are skipped, as ``decompose`` does) and recomputes
    everything. A parameter undefined in a replicate is NaN there and left out of its CI.

    Returns:
        ``(values, cis, replicates [boot] per parameter, embedding [unit, 2])``; no CIs
        without per-prompt atoms, with one prompt or with ``n_boot == 0``.
    """
    from synergy_lens.analysis.profile import resample_counts
    from synergy_lens.analysis.scores import get_score
    from synergy_lens.dynamics.embedding import functional_embedding, phiid_features

    embed = embed or (lambda r: functional_embedding(phiid_features(r, "row")))
    _, fn = get_score(score)
    n_layers, n_heads = int(result.n_layers), int(result.n_heads)
    sts = torch.as_tensor(result.sts).to("cpu", torch.float64)
    rtr = torch.as_tensor(result.rtr).to("cpu", torch.float64)
    values, emb, _ = _order_of(sts, rtr, n_layers, n_heads, fn, embed)
    per_sts, per_rtr = getattr(result, "per_prompt_sts", None), getattr(result, "per_prompt_rtr", None)
    cis: dict[str, tuple[float, float]] = {}
    boots: dict[str, Tensor] = {}
    if n_boot > 0 and per_sts is not None and per_rtr is not None and per_sts.shape[0] >= 2:
        n_prompts = per_sts.shape[0]
        sts_p, rtr_p = PromptValues(per_sts), PromptValues(per_rtr)
        counts = resample_counts(n_prompts, n_boot, seed)
        reps = {k: torch.full((n_boot,), math.nan, dtype=torch.float64) for k in values}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN pair or layer in a replicate
            for b in range(n_boot):
                c = counts[b : b + 1]  # undefined pairs: NaN
                replicate, _, _ = _order_of(sts_p.mean(c)[0], rtr_p.mean(c)[0], n_layers, n_heads, fn, embed)
                for k, v in replicate.items():
                    reps[k][b] = v
        q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
        for k, series in reps.items():
            finite = series[torch.isfinite(series)].numpy()
            boots[k] = series
            if finite.size >= 2:
                lo, hi = np.percentile(finite, q)
                cis[k] = (float(lo), float(hi))
    return values, cis, boots, emb


# ----------------------------------------------------------------------------- one level


@dataclass
class LevelSummary(SavedFields):
    """The numbers of one difficulty level (what ``summary.pt`` holds)."""

    FORMAT = "synergy_lens.LevelSummary/1"  # save/load: SavedFields

    level: int
    accuracy: pd.DataFrame
    order: dict[str, float]
    ci: dict[str, tuple[float, float]]
    boot: dict[str, Tensor]
    info: dict[str, Any]
    scores: Float[Tensor, "layer head"]
    embedding: Float[Tensor, "unit 2"] | None
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _from_old_file(cls, tensors: dict[str, Any], header: dict[str, Any], version: int) -> LevelSummary:
        """Format 1: ``boot/<name>`` tensors, the accuracy table as ``{column: values}``."""
        h = header
        return cls(level=h["level"], accuracy=pd.DataFrame(h["accuracy"]), order=h["order"],
                   ci={k: (v[0], v[1]) for k, v in h["ci"].items()},
                   boot={k[5:]: v for k, v in tensors.items() if k.startswith("boot/")},
                   info=h["info"], scores=tensors["scores"], embedding=tensors.get("embedding"),
                   fingerprint=h["fingerprint"])


def _fingerprint(level: int, settings: dict[str, Any], prompts: list[str]) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:16]
    return {"level": level, "prompts": digest, **{k: v for k, v in settings.items()}}


_STAGES = ("activity", "phiid", "scores", "flow", "summary")


def _level_checkpoint(level_dir: Path, fp: dict[str, Any]) -> tuple[Checkpoint, set[str]]:
    """The level's checkpoint (``level.ckpt``: its fingerprint and finished stages) and the
    stages finished so far; a folder written by another study is refused."""
    ckpt = Checkpoint(level_dir / "level.ckpt", fp, what="study",
                      fix="Pass another out folder, or delete this one to start over.")
    saved = ckpt.read()
    if saved is not None:
        return ckpt, set(saved[1]["stages"])
    level_dir.mkdir(parents=True, exist_ok=True)
    old = level_dir / "fingerprint.json"  # a level folder of the earlier layout
    done: set[str] = set()
    if old.is_file():
        ckpt.check(json.loads(old.read_text()))
        done = {k for k in _STAGES if (level_dir / f"{k}.pt").is_file()}  # written by a rename: complete
    ckpt.write({}, {"stages": sorted(done)})
    old.unlink(missing_ok=True)
    return ckpt, done


def _accuracy(tasks: list[Any], completions: list[str], n_boot: int, seed: int) -> tuple[pd.DataFrame, float, Tensor]:
    """Per-family rows plus an ``"all"`` row; overall accuracy; its bootstrap over tasks."""
    from synergy_lens.record.tasks import score_answer

    table = accuracy_table(tasks, completions)
    correct = np.array([score_answer(t, c) for t, c in zip(tasks, completions)], dtype=np.float64)
    k, n = int(correct.sum()), len(correct)
    lo, hi = wilson_interval(k, n)
    row = {"family": "all", "level": tasks[0].level, "n": n, "n_correct": k, "accuracy": k / n,
           "ci_low": lo, "ci_high": hi}
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    rng = np.random.default_rng(seed)
    boot = correct[rng.integers(0, n, size=(n_boot, n))].mean(1) if n_boot > 0 else np.zeros(0)
    return table, k / n, torch.from_numpy(boot)


def run_level(
    adapter: Any, level: int, settings: dict[str, Any], *, level_dir: Path | None, batch_size: int,
    checkpoint: bool, progress: bool, flow_fn: Callable[[Any], Any], embed_fn: Embed,
) -> tuple[LevelSummary, Any]:
    """One level of ``difficulty_study`` (resumable when ``level_dir`` is given)."""
    from synergy_lens.analysis.scores import synergy_scores
    from synergy_lens.dynamics.flow import ResidualFlow
    from synergy_lens.phiid import PhiIDResult
    from synergy_lens.record import HeadActivity, Prompt, record_head_activity

    tasks = task_suite(settings["families"], [level], settings["prompts_per_level"], seed=settings["seed"])
    fp = _fingerprint(level, settings, [t.prompt for t in tasks])
    files = {k: level_dir / f"{k}.pt" for k in _STAGES} if level_dir else {}
    ckpt: Checkpoint | None = None
    done: set[str] = set()
    if level_dir is not None:
        ckpt, done = _level_checkpoint(level_dir, fp)
        atomic_write_text(level_dir / "tasks.json", json.dumps([t.__dict__ for t in tasks], indent=1, default=str))
        if {"summary", "flow"} <= done:
            return LevelSummary.load(files["summary"]), ResidualFlow.load(files["flow"])

    def finished(key: str, obj: Any) -> None:
        """Save a stage's result (atomically), then record it as finished in the checkpoint."""
        if ckpt is not None and obj is not None:
            obj.save(files[key])
            done.add(key)
            ckpt.write({}, {"stages": sorted(done)})

    def cached(key: str, make: Callable[[], Any], load: Callable[[Path], Any]) -> Any:
        if key in done and files[key].is_file():
            return load(files[key])
        obj = make()
        finished(key, obj)
        return obj

    activity = cached("activity", lambda: record_head_activity(
        adapter, [Prompt(t.prompt, t.family) for t in tasks], max_new_tokens=settings["max_new_tokens"],
        batch_size=batch_size, chat_template=settings["chat_template"], seed=settings["seed"],
        checkpoint=level_dir / "recording.ckpt" if level_dir is not None and checkpoint else None,
        progress=progress), HeadActivity.load)
    if level_dir is not None:
        (level_dir / "recording.ckpt").unlink(missing_ok=True)  # activity.pt holds it all now
    n_boot, seed = settings["n_boot"], settings["seed"]
    acc_table, acc, acc_boot = _accuracy(tasks, activity.completions, n_boot, seed)
    lengths = activity.lengths
    keep = [i for i in range(activity.n_prompts) if int(lengths[i]) >= settings["min_steps"]]

    result = cached("phiid", lambda: _phiid_of(activity, keep, settings["tau"], progress), PhiIDResult.load)
    n_layers, n_heads = adapter.n_layers, adapter.n_heads
    info: dict[str, Any] = {
        "n_prompts": activity.n_prompts, "n_phiid": len(keep), "n_short": activity.n_prompts - len(keep),
        "mean_answer_tokens": float(lengths.double().mean()), "accuracy": acc, "spearman": math.nan,
    }
    if result is None:
        warnings.warn(f"level {level}: only {len(keep)} answers have >= {settings['min_steps']} tokens, so no "
                      "PhiID and no order parameters here; raise prompts_per_level or lower min_steps",
                      RuntimeWarning, stacklevel=3)
        ci: dict[str, tuple[float, float]] = {}
        boot: dict[str, Tensor] = {}
        order, emb = dict.fromkeys(ORDER_PARAMETERS, math.nan), None
        scores_grid = torch.full((n_layers, n_heads), math.nan, dtype=torch.float64)
    else:
        scores = cached("scores", lambda: synergy_scores(result, score=settings["score"]), _load_scores)
        info["spearman"] = scores.spearman
        order, ci, boot, emb = order_parameters(result, score=settings["score"], embed=embed_fn,
                                                n_boot=n_boot, seed=seed)
        scores_grid = scores.values
    boot = {**boot, "accuracy": acc_boot}
    flow = cached("flow", lambda: flow_fn(activity), ResidualFlow.load)
    summary = LevelSummary(level=level, accuracy=acc_table, order=order, ci=ci, boot=boot, info=info,
                           scores=scores_grid, embedding=emb, fingerprint=fp)
    finished("summary", summary)
    return summary, flow


def _phiid_of(activity: Any, keep: list[int], tau: int, progress: bool) -> Any:
    """PhiID of the prompts ``keep`` of a level's recording (None below two prompts)."""
    from synergy_lens.phiid import decompose
    from synergy_lens.record import HeadActivity

    if len(keep) < 2:
        return None
    sub = HeadActivity(values=activity.values[keep], lengths=activity.lengths[keep],
                       prompts=[activity.prompts[i] for i in keep], model_name=activity.model_name)
    return decompose(sub, tau=tau, progress=progress)  # type: ignore[arg-type]


def _load_scores(path: Path) -> Any:
    from synergy_lens.analysis.scores import HeadScores

    return HeadScores.load(path)
