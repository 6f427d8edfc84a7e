"""Results over training checkpoints: one checkpoint's summary and the sweep's trajectory.

:func:`synergy_lens.checkpoint_sweep` (``synergy_lens.sweep``) builds them; they live here, in
the analysis stage, so that the views that draw them (``synergy_lens.view.sweep``) can name the
type they draw. ``synergy_lens.sweep`` re-exports both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from synergy_lens._grid import HeadLabels
from synergy_lens._io import SavedFields
from synergy_lens._repr import SummaryRepr
from synergy_lens.analysis.estimate import IndexEstimate
from synergy_lens.configs import SweepConfig

__all__ = ["CheckpointSummary", "SweepResult"]


class _HeadGrid(HeadLabels):
    """``n_layers``, ``n_heads`` and ``labels`` derived from the shapes of ``profile``
    (``[..., layer]``) and ``ranks`` (``[..., unit]``), not stored (format 1 stored them)."""

    profile: Tensor
    ranks: Tensor

    def _grid_sizes(self) -> tuple[int, ...]:
        n_layers = int(self.profile.shape[-1])
        return n_layers, int(self.ranks.shape[-1]) // n_layers

    @classmethod
    def _from_fields(cls, fields: dict[str, Any], version: int) -> Any:
        if version < 2:  # format 1 stored the three derived values too
            fields = {k: v for k, v in fields.items() if k not in ("labels", "n_layers", "n_heads")}
        return cls(**fields)


@dataclass(repr=False)
class CheckpointSummary(_HeadGrid, IndexEstimate, SavedFields, SummaryRepr):
    """One checkpoint's numbers (what a sweep saves as soon as the checkpoint is done)."""

    FORMAT = "synergy_lens.CheckpointSummary/2"  # /2: labels, n_layers, n_heads derived

    name: str
    step: float
    """Training step when known (NaN otherwise)."""
    scores: list[str]
    profile: Float[Tensor, "score layer"]
    ranks: Float[Tensor, " unit"]
    """Ordinal rank of each head under the sweep's score (1 = least synergistic)."""
    core: list[str]
    synred_spearman: float
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(repr=False)
class SweepResult(_HeadGrid, IndexEstimate, SavedFields, SummaryRepr):
    """The sweep's numbers over checkpoints (in the order given).

    ``index``/``ci_low``/``ci_high``/``p`` are ``[checkpoint, score]``, ``profile`` is
    ``[checkpoint, score, layer]`` (min-max scaled), ``ranks`` ``[checkpoint, unit]``.
    """

    FORMAT = "synergy_lens.SweepResult/2"  # /2: labels, n_layers, n_heads derived

    checkpoints: list[str]
    steps: Float[Tensor, " checkpoint"]
    scores: list[str]
    score: str
    profile: Float[Tensor, "checkpoint score layer"]
    ranks: Float[Tensor, "checkpoint unit"]
    core: list[list[str]]
    synred_spearman: Float[Tensor, " checkpoint"]
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_summaries(cls, summaries: Sequence[CheckpointSummary], config: SweepConfig) -> SweepResult:
        first = summaries[0]
        return cls(
            checkpoints=[s.name for s in summaries],
            steps=torch.tensor([s.step for s in summaries], dtype=torch.float64),
            scores=list(first.scores),
            score=config.score,
            **IndexEstimate.stacked(summaries),
            profile=torch.stack([s.profile for s in summaries]),
            ranks=torch.stack([s.ranks for s in summaries]),
            core=[list(s.core) for s in summaries],
            synred_spearman=torch.tensor([s.synred_spearman for s in summaries], dtype=torch.float64),
            settings=asdict(config),
        )

    @property
    def core_jaccard(self) -> Float[Tensor, " checkpoint"]:
        """Jaccard similarity of each checkpoint's core with the last checkpoint's core."""
        final = set(self.core[-1])
        out = []
        for core in self.core:
            union = final | set(core)
            out.append(len(final & set(core)) / len(union) if union else math.nan)
        return torch.tensor(out, dtype=torch.float64)

    def rank_correlation_with_final(self) -> Float[Tensor, " checkpoint"]:
        """Spearman correlation of each checkpoint's head ranks with the last checkpoint's."""
        from scipy.stats import spearmanr

        last = self.ranks[-1].numpy()
        return torch.tensor(
            [float(spearmanr(r.numpy(), last)[0]) for r in self.ranks], dtype=torch.float64
        )

    def to_dataframe(self) -> Any:
        """One row per (checkpoint, score): index with CI, null p, and the per-checkpoint
        syn/red correlation and core stability."""
        import pandas as pd

        alpha = 0.05
        jac = self.core_jaccard.tolist()
        rows = []
        for c, name in enumerate(self.checkpoints):
            for s, score in enumerate(self.scores):
                index, low, high, p = self.estimate(c, s)
                rows.append({
                    "checkpoint": name,
                    "step": float(self.steps[c]),
                    "score": score,
                    "index": index,
                    "ci_low": low,
                    "ci_high": high,
                    "p_null": p,
                    "above_null": bool(p <= alpha),
                    "synred_spearman": float(self.synred_spearman[c]),
                    "core_jaccard_final": jac[c],
                })
        return pd.DataFrame(rows)
