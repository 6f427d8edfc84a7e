"""Layer profile of a head score, with a bootstrap band over prompts and an inverted-U index.

What and why
------------
Paper (B) (arXiv 2601.06851, Fig. 2) plots the mean synergy-redundancy rank gradient of
each layer against normalised depth ``layer / (n_layers - 1)``, min-max scaled to [0, 1],
and finds an inverted U: middle layers are the most synergistic. To compare profiles
(trained vs control, one score vs another, model vs model) by one number we use the
*inverted-U index* (:func:`inverted_u_index`): the mean of the
(scaled) profile over the middle third of depth minus its mean over the outer thirds.
Positive = inverted U; with min-max scaling it lies in [-1, 1].

Two versions are reported. ``inverted_u`` is computed on the min-max scaled profile (the
shape as paper (B) plots it, comparable across scores and models). But min-max scaling
stretches *any* profile to [0, 1], so a flat profile (a randomised control) becomes its
noise stretched to full range, and its scaled index is large noise. ``inverted_u_raw`` is
the same contrast on the unscaled layer means, in the score's own units (rank units for
the rank gradient, a fraction for the synergy fraction): use it to compare a model with
its control under the same score (``ControlComparison`` does).

Uncertainty comes from the prompts, the independent units of the experiment: resample
the prompts with replacement, average the per-prompt sts/rtr matrices of the resample
(``PhiIDResult.per_prompt_sts/rtr``), recompute the head scores (ranks included), the
layer means, the scaling and the index. The band and the CI are the ``alpha/2`` and
``1 - alpha/2`` percentiles of the replicates (percentile bootstrap, Efron & Tibshirani
1993, ch. 13). The resamples are drawn as prompt
*counts* and applied with one matrix product per chunk of replicates, so no Python loop
runs over heads or prompts. The draws depend only on ``(seed, n_prompts, n_boot)``: two
profiles of the same prompts with the same seed use the same resamples, which makes the
difference of their indices a paired bootstrap (see ``controls.py``).

Pair averaging in a resample follows ``decompose``: a pair that is NaN in some prompts (a
constant head there) is averaged over the prompts where it is defined.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from synergy_lens._io import SavedFields
from synergy_lens._prompt_mean import PromptValues
from synergy_lens.analysis.scores import HeadScores, ScoreFn, get_score, synergy_scores
from synergy_lens.phiid.summaries import PairSummaries
from synergy_lens.units import normalised_depth

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LayerProfile",
    "bootstrap_head_scores",
    "layer_means",
    "inverted_u_index",
    "layer_profile",
    "minmax_scale",
    "resample_counts",
    "u_index",
]



# ----------------------------------------------------------------------------- kernels


def _finite_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; drop or impute those entries first")
    return arr


def inverted_u_index(
    profile: Float[np.ndarray, " layer"] | Float[Tensor, " layer"] | Sequence[float],
    depth: Float[np.ndarray, " layer"] | Float[Tensor, " layer"] | Sequence[float] | None = None,
    *,
    minmax: bool = False,
) -> float:
    """Middle-third mean minus outer-thirds mean of a layer profile.

    Layers with normalised depth in [1/3, 2/3] (inclusive) are "middle", the rest
    "outer"; the index is mean(profile[middle]) - mean(profile[outer]).  Positive = an
    inverted U (middle layers highest), the signature of the synergistic core in
    paper (B), Fig. 2; about 0 for flat or monotone-symmetric profiles.

    Args:
        profile: one value per layer, e.g. the mean synergy-redundancy gradient.
        depth: normalised depth per layer in [0, 1]; default
            :func:`~synergy_lens.units.normalised_depth` (layer l of L at l / (L - 1)).
        minmax: min-max scale the profile to [0, 1] first (as the papers plot it), making
            the index comparable across models; a constant profile then gives 0.

    Example:
        >>> inverted_u_index([0.0, 1.0, 1.0, 0.0], [0.0, 0.4, 0.6, 1.0])
        1.0
    """
    p = _finite_array(profile, "profile").ravel()
    d = normalised_depth(p.size).numpy() if depth is None else _finite_array(depth, "depth").ravel()
    if d.shape != p.shape:
        raise ValueError(f"profile and depth must have the same length, got {p.size} and {d.size}")
    if np.any(d < 0) or np.any(d > 1):
        raise ValueError("depth must be normalised to [0, 1]; use layer / (n_layers - 1)")
    if minmax:
        span = p.max() - p.min()
        p = (p - p.min()) / span if span > 0 else np.zeros_like(p)
    eps = 1e-12
    middle = (d >= 1 / 3 - eps) & (d <= 2 / 3 + eps)
    if not middle.any() or middle.all():
        raise ValueError(
            "need layers both inside and outside the middle third of depth; pass >= 3 layers"
        )
    return float(p[middle].mean() - p[~middle].mean())


def layer_means(
    values: Float[Tensor, "... unit"], n_layers: int, n_heads: int
) -> Float[Tensor, "... layer"]:
    """Mean over each layer's heads (NaN heads skipped): ``[..., unit] -> [..., layer]``."""
    return torch.nanmean(values.reshape(*values.shape[:-1], n_layers, n_heads), dim=-1)


def minmax_scale(profile: Float[Tensor, "... layer"]) -> Float[Tensor, "... layer"]:
    """Scale each profile to [0, 1] over its finite entries; a constant profile becomes 0."""
    finite = torch.isfinite(profile)
    lo = torch.where(finite, profile, math.inf).amin(-1, keepdim=True)
    hi = torch.where(finite, profile, -math.inf).amax(-1, keepdim=True)
    span = hi - lo
    scaled = (profile - lo) / torch.where(span > 0, span, 1.0)
    return torch.where(span > 0, scaled, torch.zeros_like(profile)).masked_fill(~finite, math.nan)


def u_index(profile: Float[Tensor, " layer"], depth: Float[Tensor, " layer"]) -> float:
    """:func:`inverted_u_index` over the layers whose value is finite (NaN if it is undefined)."""
    p = torch.as_tensor(profile, dtype=torch.float64)
    ok = torch.isfinite(p)
    try:
        return inverted_u_index(p[ok], torch.as_tensor(depth, dtype=torch.float64)[ok])
    except ValueError:
        return math.nan  # no finite layer inside (or outside) the middle third


def resample_counts(n_prompts: int, n_boot: int, seed: int) -> Float[Tensor, "boot prompt"]:
    """How often each prompt appears in each bootstrap resample (rows sum to ``n_prompts``).

    Drawn with ``numpy.random.default_rng(seed).integers(0, n_prompts, (n_boot, n_prompts))``.
    """
    idx = np.random.default_rng(seed).integers(0, n_prompts, size=(n_boot, n_prompts))
    counts = np.zeros((n_boot, n_prompts), dtype=np.float64)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return torch.from_numpy(counts)


def bootstrap_head_scores(
    per_prompt_sts: Float[Tensor, "prompt unit unit"],
    per_prompt_rtr: Float[Tensor, "prompt unit unit"],
    score: str | ScoreFn,
    counts: Float[Tensor, "boot prompt"],
    *,
    chunk: int = 32,
) -> Float[Tensor, "boot unit"]:
    """A head score recomputed on each prompt resample given by ``counts``.

    For resample b the atoms are ``sum_p counts[b, p] * atom[p] / sum_p counts[b, p]`` over
    the prompts where the pair is defined, then ``score`` is applied (ranks and all).
    ``chunk`` resamples are processed per matrix product (memory ~ ``chunk * unit^2 * 8 * 4`` bytes).
    """
    _, fn = get_score(score)
    sts, rtr = PromptValues(per_prompt_sts), PromptValues(per_prompt_rtr)
    out = []
    for start in range(0, counts.shape[0], chunk):
        c = counts[start : start + chunk]
        out.append(fn(sts.mean(c), rtr.mean(c)).to(torch.float64))
    return torch.cat(out)


# ----------------------------------------------------------------------------- result


@dataclass
class LayerProfile(SavedFields):
    """A head score averaged per layer against normalised depth, with a bootstrap band.

    Attributes:
        score: the head score profiled.
        depth: normalised depth ``layer / (n_layers - 1)``, ``[layer]``.
        raw: mean score of each layer's heads, unscaled.
        values: the plotted profile: ``raw`` min-max scaled to [0, 1] (paper (B)), or
            ``raw`` itself when ``minmax=False``.
        low, high: percentile band of ``values`` over prompt resamples (None without
            per-prompt data or with ``n_boot=0``).
        boot: the resampled profiles, ``[boot, layer]`` (scaled like ``values``).
        inverted_u: middle-third minus outer-thirds mean of ``values``.
        inverted_u_ci: its percentile CI; boot_inverted_u: its replicates ``[boot]``.
        inverted_u_raw, inverted_u_raw_ci, boot_inverted_u_raw: the same on ``raw``
            (unscaled; see the module docstring for when to use which).
        spearman: Spearman of mean sts vs mean rtr over heads (the rank-gradient caveat).
        alpha, n_boot, seed, minmax: how it was computed; meta: JSON-able extras.
    """

    FORMAT = "synergy_lens.LayerProfile/1"  # save/load: SavedFields

    score: str
    depth: Float[Tensor, " layer"]
    raw: Float[Tensor, " layer"]
    values: Float[Tensor, " layer"]
    inverted_u: float
    low: Float[Tensor, " layer"] | None = None
    high: Float[Tensor, " layer"] | None = None
    boot: Float[Tensor, "boot layer"] | None = None
    boot_inverted_u: Float[Tensor, " boot"] | None = None
    inverted_u_ci: tuple[float, float] | None = None
    inverted_u_raw: float = math.nan
    boot_inverted_u_raw: Float[Tensor, " boot"] | None = None
    inverted_u_raw_ci: tuple[float, float] | None = None
    spearman: float = math.nan
    alpha: float = 0.05
    n_boot: int = 0
    seed: int = 0
    minmax: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        ci = (
            ""
            if self.inverted_u_ci is None
            else f" [{self.inverted_u_ci[0]:.3f}, {self.inverted_u_ci[1]:.3f}]"
        )
        return f"LayerProfile(score={self.score!r}, {self.n_layers} layers, inverted_u={self.inverted_u:.3f}{ci})"

    def to_dataframe(self) -> pd.DataFrame:
        """One row per layer: layer, depth, raw, value, low, high."""
        import pandas as pd

        nan = torch.full_like(self.values, math.nan)
        return pd.DataFrame(
            {
                "layer": range(self.n_layers),
                "depth": self.depth.numpy(),
                "raw": self.raw.numpy(),
                "value": self.values.numpy(),
                "low": (self.low if self.low is not None else nan).numpy(),
                "high": (self.high if self.high is not None else nan).numpy(),
            }
        )

def _index_replicates(
    boot: Tensor, depth: Tensor, q: list[float]
) -> tuple[Tensor, tuple[float, float] | None]:
    reps = torch.tensor([u_index(row, depth) for row in boot], dtype=torch.float64)
    finite = reps[torch.isfinite(reps)].numpy()
    if not finite.size:
        return reps, None
    lo, hi = np.percentile(finite, q)
    return reps, (float(lo), float(hi))


def _finish(
    score: str,
    raw: Tensor,
    boot_raw: Tensor | None,
    *,
    minmax: bool,
    alpha: float,
    n_boot: int,
    seed: int,
    spearman: float,
    meta: dict[str, Any],
) -> LayerProfile:
    n_layers = raw.shape[-1]
    depth = normalised_depth(n_layers)
    values = minmax_scale(raw) if minmax else raw
    index = u_index(values, depth) if n_layers >= 3 else math.nan
    index_raw = u_index(raw, depth) if n_layers >= 3 else math.nan
    low = high = boot = boot_u = boot_u_raw = None
    ci = ci_raw = None
    if boot_raw is not None:
        boot = minmax_scale(boot_raw) if minmax else boot_raw
        q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN layer columns
            band = np.nanpercentile(boot.numpy(), q, axis=0)
        low, high = torch.from_numpy(band[0]), torch.from_numpy(band[1])
        if n_layers >= 3:
            boot_u, ci = _index_replicates(boot, depth, q)
            boot_u_raw, ci_raw = _index_replicates(boot_raw, depth, q)
    return LayerProfile(
        score=score,
        depth=depth,
        raw=raw,
        values=values,
        inverted_u=index,
        low=low,
        high=high,
        boot=boot,
        boot_inverted_u=boot_u,
        inverted_u_ci=ci,
        inverted_u_raw=index_raw,
        boot_inverted_u_raw=boot_u_raw,
        inverted_u_raw_ci=ci_raw,
        spearman=spearman,
        alpha=alpha,
        n_boot=n_boot if boot_raw is not None else 0,
        seed=seed,
        minmax=minmax,
        meta=meta,
    )


def layer_profile(
    source: Any,
    *,
    score: str | ScoreFn | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    minmax: bool = True,
    chunk: int = 32,
) -> LayerProfile:
    """Mean head score per layer against normalised depth, with a bootstrap band over prompts.

    Args:
        source: a ``PhiIDResult`` (bootstrap over its ``per_prompt_sts/rtr``), or a
            :class:`HeadScores` (point profile only: scores hold no per-prompt data).
        score: head score to profile; default ``"rank_gradient"`` for a result, the
            scores' own for a ``HeadScores``. Run both ``"rank_gradient"`` and
            ``"synergy_fraction"``: see docs/science.md, "Pitfalls".
        n_boot: prompt resamples (0 for none).
        alpha: band/CI level (0.05 for 95%).
        seed: seeds the resamples (same seed + same prompt count = same resamples).
        minmax: min-max scale each profile to [0, 1] as paper (B) plots it.
        chunk: resamples per matrix product (memory bound).

    Returns:
        A :class:`LayerProfile` with the inverted-U index and, when bootstrapped, its CI.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if isinstance(source, HeadScores):
        if score is not None and get_score(score)[0] != source.score:
            raise ValueError(
                f"these HeadScores hold score {source.score!r}; pass the PhiIDResult to profile {score!r}"
            )
        raw = torch.nanmean(source.values, dim=-1)
        return _finish(source.score, raw, None, minmax=minmax, alpha=alpha, n_boot=0, seed=seed,
                       spearman=source.spearman, meta=dict(source.meta))
    name, fn = get_score(score or "rank_gradient")
    scores = synergy_scores(source, score=score or "rank_gradient")
    raw = torch.nanmean(scores.values, dim=-1)
    per_sts, per_rtr = (
        getattr(source, "per_prompt_sts", None),
        getattr(source, "per_prompt_rtr", None),
    )
    boot_raw = None
    if n_boot > 0:
        if isinstance(source, PairSummaries):
            warnings.warn(
                f"these streamed PairSummaries ({source.n_units} units) keep per-unit means, not "
                "per-prompt atoms, so no bootstrap band: decompose with stream=False for one (dense: "
                "16 * unit^2 * 8 bytes per prompt), or pass n_boot=0",
                RuntimeWarning,
                stacklevel=2,
            )
        elif per_sts is None or per_rtr is None:
            warnings.warn(
                "this PhiIDResult keeps no per-prompt atoms (aggregate='pooled'), so no bootstrap band: "
                "decompose with aggregate='mean_over_prompts' for one",
                RuntimeWarning,
                stacklevel=2,
            )
        elif per_sts.shape[0] < 2:
            warnings.warn(
                "one prompt only: no bootstrap band over prompts", RuntimeWarning, stacklevel=2
            )
        else:
            counts = resample_counts(per_sts.shape[0], n_boot, seed)
            head = bootstrap_head_scores(per_sts, per_rtr, fn, counts, chunk=chunk)
            boot_raw = layer_means(head, scores.n_layers, scores.n_heads)
    meta = {**scores.meta, "n_prompts": None if per_sts is None else int(per_sts.shape[0])}
    return _finish(name, raw, boot_raw, minmax=minmax, alpha=alpha, n_boot=n_boot, seed=seed,
                   spearman=scores.spearman, meta=meta)
