"""How sure is a head's rank? A bootstrap over prompts of ranks and of core membership.

What and why
------------
A head's score is an average over prompts, and the prompts are a sample. Resampling them
(with replacement, as ``profile.py`` does for the layer profile) and recomputing the
score shows how far each head's rank moves and how often it lands in the core:

- **rank**: 1 = most synergistic, by the chosen score; NaN heads are not ranked. The
  observed rank, and the ``alpha/2`` and ``1 - alpha/2`` percentiles of the resampled
  ranks (percentile bootstrap);
- **core frequency**: the fraction of resamples in which the head is among the top
  ``k = ceil(q * n_valid)`` heads (the :func:`~synergy_lens.analysis.scores.find_core`
  rule, ties by unit index). A core head at 0.55 is a coin flip; at 1.0 it is robust to
  the choice of prompts.

The resamples are the ones of :func:`~synergy_lens.analysis.profile.resample_counts` with
the same seed, so they match the layer profile's band.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from synergy_lens._grid import LabelledGrid
from synergy_lens._io import SavedFields
from synergy_lens.analysis.profile import bootstrap_head_scores, resample_counts
from synergy_lens.analysis.scores import ScoreFn, get_score, synergy_scores

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RankUncertainty", "descending_ranks", "rank_uncertainty"]



def descending_ranks(values: Float[Tensor, "... unit"]) -> Float[Tensor, "... unit"]:
    """Rank 1 for the highest value along the last dim, ties by unit index; NaN stays NaN.

    Example:
        >>> descending_ranks(torch.tensor([0.2, 0.9, float("nan"), 0.2])).tolist()
        [2.0, 1.0, nan, 3.0]
    """
    arr = values.detach().to("cpu", torch.float64).numpy()
    flat = arr.reshape(-1, arr.shape[-1])
    out = np.full(flat.shape, np.nan)
    for row, v in enumerate(flat):
        ok = np.flatnonzero(np.isfinite(v))
        order = ok[np.argsort(-v[ok], kind="stable")]
        out[row, order] = np.arange(1, ok.size + 1)
    return torch.from_numpy(out.reshape(arr.shape))


@dataclass
class RankUncertainty(LabelledGrid, SavedFields):
    """Bootstrap spread of every head's rank and of its core membership.

    Attributes:
        score: the score ranked; q: the core fraction; alpha: CI level.
        rank: observed rank (1 = most synergistic), ``[layer, head]``.
        rank_low, rank_high: percentile CI of the rank over resamples.
        core_frequency: fraction of resamples with the head in the top ``q``.
        n_boot, seed: the resamples; labels, meta: as elsewhere.
        in_core (derived): observed core membership (top ``q`` by the observed rank).
    """

    FORMAT = "synergy_lens.RankUncertainty/2"  # /2: in_core derived from rank and q, not stored
    GRID = ("rank", 0)  # n_layers, n_heads: LabelledGrid (which holds labels and meta)

    score: str
    q: float
    alpha: float
    rank: Float[Tensor, "layer head"]
    rank_low: Float[Tensor, "layer head"]
    rank_high: Float[Tensor, "layer head"]
    core_frequency: Float[Tensor, "layer head"]
    n_boot: int
    seed: int

    @property
    def in_core(self) -> Bool[Tensor, "layer head"]:
        """The observed core: the top ``ceil(q * n_ranked)`` heads by :attr:`rank`."""
        return _in_top(self.rank.flatten(), self.q).reshape(self.rank.shape)

    @classmethod
    def _from_fields(cls, fields: dict[str, Any], version: int) -> RankUncertainty:
        if version < 2:  # format 1 stored in_core too
            fields = {k: v for k, v in fields.items() if k != "in_core"}
        return cls(**fields)

    def __repr__(self) -> str:
        core = self.core_frequency[self.in_core]
        stable = int((core >= 0.9).sum())
        return (
            f"RankUncertainty(score={self.score!r}, q={self.q}, n_boot={self.n_boot}; "
            f"{stable} of {int(self.in_core.sum())} core heads in the core in >= 90% of resamples)"
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per head, by observed rank: label, layer, head, rank, CI, core frequency, in_core."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                **self.unit_columns(),
                "rank": self.rank.flatten().numpy(),
                "rank_low": self.rank_low.flatten().numpy(),
                "rank_high": self.rank_high.flatten().numpy(),
                "core_frequency": self.core_frequency.flatten().numpy(),
                "in_core": self.in_core.flatten().numpy(),
            }
        )
        return frame.sort_values(["rank", "layer", "head"], na_position="last").reset_index(drop=True)

def _top_mask(values: Tensor, q: float) -> Tensor:
    """``[..., unit]`` bool: the top ``ceil(q * n_valid)`` of each row, ties by unit index."""
    return _in_top(descending_ranks(values), q)


def _in_top(ranks: Tensor, q: float) -> Tensor:
    """``[..., unit]`` bool: ranks (1 = top, NaN = not ranked) within ``ceil(q * n_ranked)`` of each row."""
    valid = torch.isfinite(ranks).sum(-1, keepdim=True).to(torch.float64)
    k = torch.ceil(q * valid - 1e-9)
    return torch.isfinite(ranks) & (ranks <= k)


def rank_uncertainty(
    result: Any,
    *,
    score: str | ScoreFn = "rank_gradient",
    q: float = 0.25,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    unstable: Any = None,
    exclude: bool = False,
    chunk: int = 32,
) -> RankUncertainty:
    """Bootstrap over prompts of each head's rank and of core membership (module docstring).

    Args:
        result: a ``PhiIDResult`` with per-prompt atoms (``aggregate="mean_over_prompts"``).
        score: the score ranked (registered name or callable).
        q: the core fraction (as :func:`~synergy_lens.analysis.scores.find_core`).
        n_boot, alpha, seed: resamples, CI level, seed (the profile's resamples for the
            same seed and prompt count).
        unstable, exclude: as :func:`~synergy_lens.analysis.scores.synergy_scores`; with
            ``exclude`` the flagged heads are left out of every resample too.
        chunk: resamples per matrix product.
    """
    if not 0 < q <= 0.5:
        raise ValueError(f"q must be in (0, 0.5], got {q}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    per_sts, per_rtr = getattr(result, "per_prompt_sts", None), getattr(result, "per_prompt_rtr", None)
    if per_sts is None or per_rtr is None or per_sts.shape[0] < 2:
        raise ValueError(
            "rank uncertainty needs per-prompt atoms from two or more prompts: decompose with "
            "aggregate='mean_over_prompts'"
        )
    name, fn = get_score(score)
    scores = synergy_scores(result, score=fn, unstable=unstable, exclude=exclude)
    n_layers, n_heads = scores.n_layers, scores.n_heads
    if scores.excluded and scores.unstable is not None:
        drop = scores.unstable.flatten()
        pair_drop = drop[:, None] | drop[None, :]
        per_sts = per_sts.masked_fill(pair_drop, math.nan)
        per_rtr = per_rtr.masked_fill(pair_drop, math.nan)
    observed = scores.values.flatten()
    counts = resample_counts(int(per_sts.shape[0]), n_boot, seed)
    boot = bootstrap_head_scores(per_sts, per_rtr, fn, counts, chunk=chunk)  # [boot, unit]
    ranks = descending_ranks(boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # heads NaN in every resample
        lo, hi = np.nanpercentile(ranks.numpy(), [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    freq = _top_mask(boot, q).to(torch.float64).mean(0)
    freq = freq.masked_fill(~torch.isfinite(observed), math.nan)
    grid = (n_layers, n_heads)
    return RankUncertainty(
        score=name,
        q=q,
        alpha=alpha,
        rank=descending_ranks(observed).reshape(grid),
        rank_low=torch.from_numpy(lo).reshape(grid),
        rank_high=torch.from_numpy(hi).reshape(grid),
        core_frequency=freq.reshape(grid),
        n_boot=n_boot,
        seed=seed,
        labels=list(scores.labels),
        meta={"n_prompts": int(per_sts.shape[0])},
    )
