"""The difficulty study: head organisation, accuracy and residual flow across task difficulty.

What and why
------------
Paper (A) (Zhang et al. 2026, arXiv 2603.29735) claims that functional differentiation of
attention heads is *dynamic*: on easy tasks the heads stay intermixed, past a difficulty
threshold they split sharply into synergistic (abstract) and redundant (memory) groups,
and the residual stream changes its flow in the middle of the network. This module runs
that experiment on any TransformerLens model, with the graded tasks of
:mod:`~synergy_lens.record.tasks`. For each difficulty level:

1. Generate ``prompts_per_level`` tasks *per family* (so a level has
   ``prompts_per_level * len(families)`` prompts, families mixed).
2. Record head activity while the model answers (``record_head_activity``). The recorded
   completions are the model's answers: ``score_answer`` gives accuracy per family and
   level, with Wilson CIs.
3. PhiID of every pair of heads (``decompose``) over the prompts whose answer is at least
   ``min_steps`` tokens long (a PhiID time series needs some length; terse answers such as
   ``"7"`` count for accuracy and residual flow only; ``level_table`` says how many were
   used), then the per-head score (``synergy_scores``).
4. Functional embedding of the heads (:mod:`~synergy_lens.dynamics.embedding`) and three
   order parameters (:mod:`~synergy_lens.dynamics.order`):

   * ``separation``: :func:`cluster_separation` (Cohen's d of the best 2-means split) of
     the heads' 2-D functional embedding: do the heads form two groups?
   * ``bimodality``: Sarle's coefficient of the per-head score: is the score distribution
     two-humped (> 5/9)?
   * ``inverted_u``: :func:`inverted_u_index` of the raw layer profile of the score (mean
     over each layer's heads): are the middle layers the synergistic ones?

   Each with a percentile bootstrap CI over prompts: resample the level's prompts with
   replacement, average their per-prompt sts/rtr, and recompute features, embedding,
   scores and all three parameters.
5. Residual flow (:func:`~synergy_lens.dynamics.flow.residual_flow`) on the same prompts
   and answers.

Then :func:`transition_point` of every order parameter (and of accuracy) against level,
with a CI from the per-level bootstrap replicates.

Files. With ``out``, each level is written to ``out/level_K/`` as soon as it finishes:
``activity.pt``, ``phiid.pt``, ``scores.pt``, ``flow.pt`` (each class's own ``save``),
``tasks.json`` and, last, ``summary.pt`` (the level's numbers). A level whose ``summary.pt``
exists with the same settings is loaded instead of recomputed, and a level interrupted
mid-recording resumes from its recording checkpoint, so an interrupted study loses
nothing. :meth:`DifficultyStudy.save` adds ``study.pt`` (loads back with
:meth:`DifficultyStudy.load`) and human-readable CSV tables.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from synergy_lens._grid import LayerGrid
from synergy_lens._io import SavedFields
from synergy_lens.dynamics.embedding import (
    EmbeddingMethod,
    FeatureKind,
    functional_embedding,
    phiid_features,
    profile_features,
)
from synergy_lens.dynamics.flow import Positions, ResidualFlow, residual_flow
from synergy_lens.dynamics.order import TransitionPoint, transition_point
from synergy_lens.dynamics.study_level import ORDER_PARAMETERS, LevelSummary, run_level
from synergy_lens.models.adapter import adapt
from synergy_lens.record.tasks import FAMILIES

__all__ = [
    "ORDER_PARAMETERS",
    "DifficultyStudy",
    "difficulty_study",
]

@dataclass
class DifficultyStudy(LayerGrid, SavedFields):
    """Results of :func:`difficulty_study` (module docstring).

    Attributes:
        levels: the difficulty levels, ascending.
        accuracy: one row per (family, level) and per level over all families
            (``family == "all"``): ``family, level, n, n_correct, accuracy, ci_low, ci_high``.
        order: one row per (level, order parameter): ``level, name, value, ci_low, ci_high``.
        order_boot: per order parameter (and ``"accuracy"``), bootstrap replicates
            ``[boot, level]`` (NaN where a replicate was undefined).
        transitions: per order parameter (and ``"accuracy"``), the estimated transition.
        level_table: one row per level: prompts, prompts used for PhiID, mean answer
            length, the Spearman of mean sts with mean rtr (the rank-gradient caveat).
        embeddings: per level, the heads' 2-D functional embedding ``[unit, 2]``.
        scores: per-head score ``[level, layer, head]`` (NaN for a level without PhiID).
        profile_embedding: heads embedded by their score profile across levels ``[unit, 2]``.
        flows: per level, the residual flow.
        labels: head labels ``L{layer}H{head}``; settings: how the study was run.
    """

    FORMAT = "synergy_lens.DifficultyStudy/1"  # save/load: SavedFields
    GRID = ("scores", 1)  # n_layers, n_heads: LayerGrid

    levels: list[int]
    accuracy: pd.DataFrame
    order: pd.DataFrame
    order_boot: dict[str, Float[Tensor, "boot level"]]
    transitions: dict[str, TransitionPoint | None]
    level_table: pd.DataFrame
    embeddings: dict[int, Float[Tensor, "unit 2"]]
    scores: Float[Tensor, "level layer head"]
    profile_embedding: Float[Tensor, "unit 2"] | None
    flows: dict[int, ResidualFlow]
    labels: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"DifficultyStudy(levels={self.levels}, {self.n_layers} layers x {self.n_heads} heads, "
                f"model={self.settings.get('model_name')!r})")

    def transition_table(self) -> pd.DataFrame:
        """One row per quantity: ``name, estimate, method, ci_low, ci_high``."""
        rows = []
        for name, tp in self.transitions.items():
            ci = tp.ci if tp is not None and tp.ci is not None else (math.nan, math.nan)
            rows.append({"name": name, "estimate": tp.estimate if tp else math.nan,
                         "method": tp.method if tp else "", "ci_low": ci[0], "ci_high": ci[1]})
        return pd.DataFrame(rows, columns=["name", "estimate", "method", "ci_low", "ci_high"])

    def flow_table(self) -> pd.DataFrame:
        """Residual flow, one row per (level, layer): ``level, layer, depth`` and every metric."""
        frames = [f.to_dataframe().assign(level=lv) for lv, f in self.flows.items()]
        if not frames:
            return pd.DataFrame()
        df = pd.concat(frames, ignore_index=True)
        return df[["level", *[c for c in df.columns if c != "level"]]]

    def embedding_table(self) -> pd.DataFrame:
        """One row per (level, head): ``level, label, layer, head, depth, x, y, score``."""
        rows = []
        n_heads, depth = self.n_heads, self.depth
        for i, lv in enumerate(self.levels):
            emb = self.embeddings.get(lv)
            if emb is None:
                continue
            score = self.scores[i].flatten()
            for u, label in enumerate(self.labels):
                layer = u // n_heads
                rows.append({"level": lv, "label": label, "layer": layer, "head": u % n_heads,
                             "depth": float(depth[layer]), "x": float(emb[u, 0]),
                             "y": float(emb[u, 1]), "score": float(score[u])})
        return pd.DataFrame(rows)

    def to_dataframe(self) -> pd.DataFrame:
        """The order-parameter table joined with accuracy over all families, one row per (level, name)."""
        acc = self.accuracy[self.accuracy.family == "all"][["level", "accuracy"]]
        return self.order.merge(acc, on="level", how="left")

    # ----------------------------------------------------------------- save / load
    def save(self, path: str | Path) -> None:
        """``path/study.pt`` (:class:`~synergy_lens._io.SavedFields`; loads back) and CSV tables."""
        from synergy_lens._io import atomic_write_text, save_fields

        folder = Path(path)
        save_fields(self, folder / "study.pt")
        tables = {"accuracy": self.accuracy, "order_parameters": self.order, "transitions": self.transition_table(),
                  "levels": self.level_table, "residual_flow": self.flow_table(), "embeddings": self.embedding_table()}
        for name, table in tables.items():
            atomic_write_text(folder / f"{name}.csv", table.to_csv(index=False))

    @classmethod
    def load(cls, path: str | Path) -> DifficultyStudy:
        """Read a folder written by :meth:`save` (or its ``study.pt``)."""
        from synergy_lens._io import load_fields

        file = Path(path) / "study.pt" if Path(path).is_dir() else Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no saved DifficultyStudy at {file} (write one with DifficultyStudy.save)")
        study: DifficultyStudy = load_fields(cls, file)
        return study

    @classmethod
    def _from_old_file(cls, tensors: dict[str, Any], header: dict[str, Any], version: int) -> DifficultyStudy:
        """Format 1: tensors ``boot/<name>``, ``embedding/<level>``, ``flow/<level>/<field>``."""
        flows = {}
        for key, info in header["flows"].items():
            lv = int(key)
            flows[lv] = ResidualFlow(per_prompt=tensors[f"flow/{lv}/per_prompt"], counts=tensors[f"flow/{lv}/counts"],
                                     n_undefined=tensors[f"flow/{lv}/n_undefined"], **info)
        return cls(
            levels=[int(v) for v in header["levels"]],
            accuracy=pd.DataFrame(header["accuracy"]),
            order=pd.DataFrame(header["order"]),
            order_boot={k[5:]: v for k, v in tensors.items() if k.startswith("boot/")},
            transitions={k: _tp_from_json(v) for k, v in header["transitions"].items()},
            level_table=pd.DataFrame(header["level_table"]),
            embeddings={int(k.split("/")[1]): v for k, v in tensors.items() if k.startswith("embedding/")},
            scores=tensors["scores"],
            profile_embedding=tensors.get("profile_embedding"),
            flows=flows,
            labels=list(header["labels"]),
            settings=header["settings"],
        )


def _tp_from_json(d: dict[str, Any] | None) -> TransitionPoint | None:
    if d is None:
        return None
    return TransitionPoint(estimate=d["estimate"], method=d["method"],
                           ci=tuple(d["ci"]) if d["ci"] else None,  # type: ignore[arg-type]
                           params=tuple(d["params"]) if d["params"] else None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the study


def difficulty_study(
    model: Any,
    *,
    levels: Sequence[int] = (1, 2, 3, 4, 5),
    families: Sequence[str] | None = None,
    prompts_per_level: int = 10,
    max_new_tokens: int = 48,
    tau: int = 1,
    score: str = "synergy_fraction",
    features: FeatureKind = "row",
    embedding: EmbeddingMethod = "pca",
    min_steps: int = 8,
    flow_positions: Positions = "all",
    n_boot: int = 200,
    seed: int = 0,
    batch_size: int = 8,
    chat_template: bool | None = None,
    out: str | Path | None = None,
    checkpoint: bool = True,
    progress: bool = True,
) -> DifficultyStudy:
    """Run the difficulty study (module docstring) and return a :class:`DifficultyStudy`.

    Args:
        model: a HookedTransformer, TransformerBridge or ``ModelAdapter``.
        levels: difficulty levels, e.g. ``(1, 2, 3, 4, 5)`` (at least 2 for a transition).
        families: task families (default: every registered family).
        prompts_per_level: tasks *per family* at each level.
        max_new_tokens: tokens generated per prompt (the PhiID time axis).
        tau: PhiID lag.
        score: per-head score (``"synergy_fraction"``, robust to the syn/red rank
            correlation, or ``"rank_gradient"`` of paper (B), or any registered score).
        features: head features for the embedding, ``"row"`` or ``"summary"``
            (:func:`~synergy_lens.dynamics.embedding.phiid_features`).
        embedding: ``"pca"`` or ``"umap"``.
        min_steps: shortest answer (generated tokens) a prompt needs to enter PhiID; must
            exceed ``tau + 2``.
        flow_positions: tokens of the residual flow, ``"all"`` (prompt and answer) or
            ``"generated"`` (the recorded steps only).
        n_boot: bootstrap resamples of prompts for the CIs (0: none).
        seed: seeds the tasks and the bootstrap.
        batch_size: prompts per forward pass.
        chat_template: as in ``record_head_activity`` (None: use the tokenizer's if any).
        out: folder for per-level files and the final results (resumable); None keeps
            everything in memory.
        checkpoint: with ``out``, checkpoint each level's recording after every batch.
        progress: progress bars.
    """
    level_list, family_list = _checked_levels(levels, families, min_steps, tau, flow_positions)
    adapter = adapt(model)
    settings = {
        "model_name": adapter.name, "weights": _weights_digest(adapter.model), "families": family_list,
        "prompts_per_level": int(prompts_per_level), "max_new_tokens": int(max_new_tokens), "tau": int(tau),
        "score": score, "features": features, "embedding": embedding, "min_steps": int(min_steps),
        "flow_positions": flow_positions, "n_boot": int(n_boot), "seed": int(seed),
        "chat_template": chat_template, "n_layers": adapter.n_layers, "n_heads": adapter.n_heads,
    }
    folder = Path(out) if out is not None else None
    summaries: dict[int, LevelSummary] = {}
    flows: dict[int, ResidualFlow] = {}
    for level in tqdm(level_list, desc="difficulty levels", unit="level", disable=not progress):
        level_dir = folder / f"level_{level}" if folder is not None else None
        summary, flow = run_level(
            adapter, level, settings, level_dir=level_dir, batch_size=batch_size,
            checkpoint=checkpoint, progress=progress,
            flow_fn=lambda act: residual_flow(adapter, act, batch_size=batch_size, positions=flow_positions),
            embed_fn=lambda res: functional_embedding(phiid_features(res, features), embedding, seed),
        )
        summaries[level], flows[level] = summary, flow
    study = _assemble(level_list, summaries, flows, adapter.unit_labels(), settings, embedding, seed)
    if folder is not None:
        study.save(folder)
    return study


def _checked_levels(
    levels: Sequence[int], families: Sequence[str] | None, min_steps: int, tau: int, flow_positions: str
) -> tuple[list[int], list[str]]:
    """The sorted distinct levels and the task families of a study, its settings checked."""
    level_list = sorted({int(v) for v in levels})
    if not level_list:
        raise ValueError("levels is empty: pass e.g. levels=(1, 2, 3, 4, 5)")
    family_list = list(FAMILIES) if families is None else list(families)
    unknown = [f for f in family_list if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown task families {unknown}; known: {list(FAMILIES)}")
    if min_steps <= tau + 2:
        raise ValueError(f"min_steps={min_steps} must exceed tau + 2 = {tau + 2} (PhiID needs that many steps)")
    if flow_positions not in ("all", "generated"):
        raise ValueError(f"flow_positions must be 'all' or 'generated', got {flow_positions!r}")
    return level_list, family_list


def _weights_digest(model: Any, samples: int = 1024) -> str:
    """Digest of evenly spaced weight entries of every parameter (guards resuming with other weights)."""
    import hashlib

    h = hashlib.sha256()
    for name, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        idx = torch.linspace(0, flat.numel() - 1, min(samples, flat.numel()), dtype=torch.float64).long()
        h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
        h.update(flat[idx.to(flat.device)].to("cpu", torch.float32).numpy().tobytes())
    return h.hexdigest()[:32]


def _assemble(
    levels: list[int],
    summaries: dict[int, LevelSummary],
    flows: dict[int, ResidualFlow],
    labels: list[str],
    settings: dict[str, Any],
    embedding: EmbeddingMethod,
    seed: int,
) -> DifficultyStudy:
    acc_frames, order_rows, level_rows = [], [], []
    for lv in levels:
        s = summaries[lv]
        acc_frames.append(s.accuracy)
        for name in ORDER_PARAMETERS:
            lo, hi = s.ci.get(name, (math.nan, math.nan))
            order_rows.append({"level": lv, "name": name, "value": s.order[name], "ci_low": lo, "ci_high": hi})
        level_rows.append({"level": lv, **s.info})
    accuracy = pd.concat(acc_frames, ignore_index=True)
    order = pd.DataFrame(order_rows, columns=["level", "name", "value", "ci_low", "ci_high"])
    boots = {name: _stack_boot([summaries[lv].boot.get(name) for lv in levels]) for name in ORDER_PARAMETERS}
    boots["accuracy"] = _stack_boot([summaries[lv].boot.get("accuracy") for lv in levels])
    values = {name: [summaries[lv].order[name] for lv in levels] for name in ORDER_PARAMETERS}
    values["accuracy"] = [summaries[lv].info["accuracy"] for lv in levels]
    transitions = {name: _transition(levels, values[name], boots[name]) for name in values}
    scores = torch.stack([summaries[lv].scores for lv in levels])
    have = [i for i, lv in enumerate(levels) if summaries[lv].embedding is not None]
    profile_embedding = None
    if len(have) >= 2:
        profile_embedding = functional_embedding(profile_features(scores[have]), embedding, seed)  # type: ignore[arg-type]
    return DifficultyStudy(
        levels=levels, accuracy=accuracy, order=order, order_boot=boots, transitions=transitions,
        level_table=pd.DataFrame(level_rows),
        embeddings={lv: summaries[lv].embedding for lv in levels if summaries[lv].embedding is not None},  # type: ignore[misc]
        scores=scores, profile_embedding=profile_embedding, flows=flows, labels=labels, settings=settings,
    )


def _stack_boot(rows: list[Tensor | None]) -> Tensor:
    n = max((len(r) for r in rows if r is not None), default=0)
    out = torch.full((n, len(rows)), math.nan, dtype=torch.float64)
    for j, r in enumerate(rows):
        if r is not None and len(r) == n:
            out[:, j] = r
    return out


def _transition(levels: list[int], values: list[float], boot: Tensor) -> TransitionPoint | None:
    """Transition of one quantity over the levels where it is finite; None if < 2 such levels."""
    y = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(y)
    if ok.sum() < 2 or np.ptp(y[ok]) == 0:
        return None  # too few levels, or a flat curve: no transition to locate
    x = np.asarray(levels, dtype=np.float64)[ok]
    b = boot.numpy()[:, ok] if boot.numel() else np.zeros((0, int(ok.sum())))
    b = b[np.isfinite(b).all(1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transition_point(x, y[ok], b if len(b) >= 2 else None)


def summary_text(study: DifficultyStudy) -> str:
    """A short plain-text summary: accuracy, order parameters and transitions per level."""
    acc = study.accuracy[study.accuracy.family == "all"].set_index("level")["accuracy"]
    lines = ["level  accuracy  " + "  ".join(f"{n:>22}" for n in ORDER_PARAMETERS)]
    for lv in study.levels:
        cells = []
        for name in ORDER_PARAMETERS:
            row = study.order[(study.order.level == lv) & (study.order.name == name)].iloc[0]
            cells.append(f"{row.value:7.3f} [{row.ci_low:6.3f},{row.ci_high:6.3f}]")
        lines.append(f"{lv:5d}  {acc.get(lv, math.nan):8.2f}  " + "  ".join(f"{c:>22}" for c in cells))
    for _, r in study.transition_table().iterrows():
        lines.append(f"transition of {r['name']}: {r.estimate:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] ({r.method})")
    return "\n".join(lines)
