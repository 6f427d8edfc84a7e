"""The headline of a run, tested: is the layer profile more than each head's own dynamics?

What and why
------------
Papers (A) and (B) report an inverted U: middle layers are the most synergistic. Under
Gaussian MMI PhiID a pair's persistent synergy grows with the two units' autocorrelation
even when the units are independent, so a descriptive inverted U can come from middle-layer
heads that are merely *slower* (Varley 2024, arXiv 2407.16601; docs/science.md,
"Pitfalls"). A bootstrap over prompts says how precisely the profile is measured, not
whether it exceeds that explanation. So the headline of a run is tested against the
autocorrelation-preserving surrogate null of :func:`~synergy_lens.analysis.surrogate_test`:

1. the observed profile and its inverted-U index with a bootstrap CI over prompts
   (:func:`~synergy_lens.analysis.layer_profile`), per score;
2. ``n_surrogates`` null recordings in which every head keeps its own series (circularly
   shifted by its own random offset, per prompt) and cross-head timing is destroyed; each is
   decomposed like the data, scored (ranks recomputed), profiled and min-max scaled;
3. the one-sided p-value of the index, ``(1 + #{null index >= aligned index}) / (1 + n)``,
   where the *aligned* index is the data's under one common shift (the surrogate module
   explains why the tested statistic carries the same wrap-around step as the null);
4. the core heads' significance: per head, mean sts against the same null, with
   Benjamini-Hochberg control of the false discovery rate over all heads.

The summary sentence per score reads, e.g., "syn_minus_red: inverted U, index 0.33 [0.25,
0.37], not above the autocorrelation null (null index 0.31, 19 surrogates), p = 0.41". An
index can be above the null and still negative (no inverted U, but less U-shaped than the
null): the sentence then says "no inverted U ... above the autocorrelation null".

Cost: ``n_prompts * (n_surrogates + 2)`` all-pairs decompositions (about 0.04 s each for
SmolLM2's 270 heads x 100 tokens on one CPU core); every score shares the same surrogates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from synergy_lens._io import SavedFields
from synergy_lens.analysis.estimate import IndexEstimate
from synergy_lens.analysis.profile import (
    LayerProfile,
    layer_means,
    layer_profile,
    minmax_scale,
    u_index,
)
from synergy_lens.analysis.scores import _unit_mask, find_core, get_score, synergy_scores
from synergy_lens.analysis.surrogates import SurrogateTest, surrogate_test
from synergy_lens.units import normalised_depth

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HEADLINE_SCORES", "Headline", "headline", "index_null", "shape_word", "surrogate_batch"]

HEADLINE_SCORES = ("rank_gradient", "syn_minus_red", "synergy_fraction")
"""The three scores every headline reports (``scores.py`` says where each comes from)."""

_FORMAT = "synergy_lens.Headline/2"  # /2: saved through SavedFields


def shape_word(index: float, ci: tuple[float, float] | None = None) -> str:
    """``"inverted U"``, ``"weak inverted U (CI includes 0)"`` or ``"no inverted U"``."""
    if not math.isfinite(index):
        return "no profile"
    if index <= 0:
        return "no inverted U"
    if ci is not None and math.isfinite(ci[0]) and ci[0] <= 0:
        return "weak inverted U (CI includes 0)"
    return "inverted U"


def _profile_index(head_values: Tensor, n_layers: int, n_heads: int, depth: Tensor) -> float:
    prof = minmax_scale(layer_means(head_values.flatten(), n_layers, n_heads))
    return u_index(prof, depth) if n_layers >= 3 else math.nan


def index_null(
    test: SurrogateTest, score: str
) -> tuple[float, Float[Tensor, " surrogate"], Float[Tensor, "surrogate layer"]]:
    """The aligned index of ``score`` and its null replicates, from a :class:`SurrogateTest`.

    Returns ``(aligned_index, null_index [surrogate], null_profiles [surrogate, layer])``,
    every profile min-max scaled as the observed one (``score`` must be among ``test.scores``).
    """
    k = test._score(score)
    n_layers, n_heads = test.n_layers, test.n_heads
    depth = normalised_depth(n_layers)
    aligned = _profile_index(test.aligned[k], n_layers, n_heads, depth)
    null_prof = minmax_scale(layer_means(test.null[:, k].reshape(test.n_surrogates, -1), n_layers, n_heads))
    null_index = torch.tensor(
        [u_index(row, depth) if n_layers >= 3 else math.nan for row in null_prof], dtype=torch.float64
    )
    return aligned, null_index, null_prof


def _p_upper(aligned: float, null: Tensor) -> float:
    finite = null[torch.isfinite(null)]
    if not math.isfinite(aligned) or finite.numel() == 0:
        return math.nan
    return (1 + int((finite >= aligned).sum())) / (1 + int(finite.numel()))


@dataclass(repr=False)
class Headline(IndexEstimate, SavedFields):
    """Each score's layer profile, its bootstrap CI and its p-value against the surrogate null.

    Attributes:
        scores: the scores, in order; every tensor below has a leading ``score`` dim.
        index, ci_low, ci_high, p (:class:`IndexEstimate`): observed inverted-U index of the
            min-max scaled profile, its bootstrap CI over prompts, and the one-sided p-value
            of ``aligned_index`` against ``null_index``.
        aligned_index: the index of the aligned statistic (what the null is compared with).
        null_index: ``[surrogate, score]`` null replicates of the index.
        profile, low, high: the observed scaled profiles and bands ``[score, layer]``.
        null_profile_mean: mean of the null's scaled profiles ``[score, layer]``.
        core: the core heads (labels) of ``core_score``; core_q: their BH-adjusted p-value
            (mean sts vs the null, FDR over all heads); fdr: the rate.
        agreement: Pearson correlation of the layer profiles, ``{a: {b: r}}``.
        alpha, n_surrogates, method, seed, tau, redundancy: how it was computed.
    """

    scores: list[str]
    aligned_index: Float[Tensor, " score"]
    null_index: Float[Tensor, "surrogate score"]
    profile: Float[Tensor, "score layer"]
    low: Float[Tensor, "score layer"]
    high: Float[Tensor, "score layer"]
    null_profile_mean: Float[Tensor, "score layer"]
    core: list[str]
    core_q: Float[Tensor, " core"]
    core_score: str
    fdr: float
    alpha: float
    n_surrogates: int
    method: str
    seed: int
    tau: int
    redundancy: str
    agreement: dict[str, dict[str, float]] = field(default_factory=dict)
    unstable: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    FORMAT = _FORMAT  # save()/load(): tensors plus a JSON header (SavedFields)

    def __repr__(self) -> str:
        return "Headline(\n  " + "\n  ".join(self.sentences()) + "\n)"

    def significant(self, score: str) -> bool:
        """Whether ``score``'s index exceeds the null at level ``alpha``."""
        k = self.scores.index(score)
        return bool(self.p[k] <= self.alpha)

    def sentence(self, score: str) -> str:
        """One sentence: the profile's shape, index and CI, and how it compares with the null."""
        k = self.scores.index(score)
        idx, lo, hi, p = self.estimate(k)
        ci = None if math.isnan(lo) else (lo, hi)
        ci_txt = "" if ci is None else f" [{lo:.2f}, {hi:.2f}]"
        null = float(torch.nanmean(self.null_index[:, k])) if self.null_index.numel() else math.nan
        verdict = "above" if p <= self.alpha else "not above"
        return (
            f"{score}: {shape_word(idx, ci)}, index {idx:.2f}{ci_txt}, {verdict} the autocorrelation "
            f"null (null index {null:.2f}, {self.n_surrogates} surrogates), p = {p:.2g}"
        )

    def sentences(self) -> list[str]:
        return [self.sentence(s) for s in self.scores]

    def core_sentence(self) -> str:
        """How many core heads carry more synergy than their own dynamics explain."""
        if not self.core:
            return "No core heads."
        sig = [lab for lab, q in zip(self.core, self.core_q.tolist()) if q <= self.fdr]
        names = "" if not sig else f" ({', '.join(sig[:10])}{', ...' if len(sig) > 10 else ''})"
        return (
            f"{len(sig)} of {len(self.core)} core heads ({self.core_score}) have more mean sts than the "
            f"autocorrelation null at FDR {self.fdr:g}{names}"
            + (" (p-values from a Gaussian fit to the null)." if self.meta.get("head_pvalue") == "gaussian" else ".")
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per score: index, CI, aligned index, null mean and 95% range, p, verdict."""
        import pandas as pd

        rows = []
        for k, s in enumerate(self.scores):
            null = self.null_index[:, k].numpy()
            null = null[np.isfinite(null)]
            rows.append(
                {
                    "score": s,
                    "inverted_u": float(self.index[k]),
                    "ci_low": float(self.ci_low[k]),
                    "ci_high": float(self.ci_high[k]),
                    "aligned": float(self.aligned_index[k]),
                    "null_mean": float(null.mean()) if null.size else math.nan,
                    "null_q95": float(np.percentile(null, 95)) if null.size else math.nan,
                    "p": float(self.p[k]),
                    "above_null": bool(self.p[k] <= self.alpha),
                }
            )
        return pd.DataFrame(rows)

    def agreement_table(self) -> pd.DataFrame:
        """Pearson correlation between the scores' layer profiles (square table)."""
        import pandas as pd

        return pd.DataFrame(
            [[self.agreement[a][b] for b in self.scores] for a in self.scores],
            index=self.scores,
            columns=self.scores,
        )

def surrogate_batch(n_units: int) -> int:
    """Surrogates per ``all_pairs`` call: batching helps small models, but above ~100 heads
    the batched tensors outgrow the cache and one at a time is faster (measured on SmolLM2's
    270 heads: 0.066 s per decomposition alone vs 0.086 s in batches of 8)."""
    return 1 if n_units >= 100 else 8


def _pearson(a: Tensor, b: Tensor) -> float:
    x, y = a.numpy(), b.numpy()
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def _excluding(name: str, drop: Tensor | None) -> Any:
    """The registered score ``name``, with the ``drop`` units' pairs set to NaN first."""
    _, fn = get_score(name)
    if drop is None or not bool(drop.any()):
        return name

    def scored(sts: Tensor, rtr: Tensor) -> Tensor:
        pair = (drop[:, None] | drop[None, :]).to(sts.device)
        return fn(sts.masked_fill(pair, math.nan), rtr.masked_fill(pair, math.nan))

    scored.__name__ = name
    return scored


def headline(
    activity: Any,
    result: Any,
    *,
    scores: Sequence[str] = HEADLINE_SCORES,
    n_surrogates: int = 19,
    n_boot: int = 1000,
    alpha: float = 0.05,
    fdr: float = 0.05,
    q: float = 0.25,
    core_score: str | None = None,
    method: str = "circular_shift",
    seed: int = 0,
    unstable: Any = None,
    exclude: bool = False,
    profiles: dict[str, LayerProfile] | None = None,
    test: SurrogateTest | None = None,
    head_pvalue: str = "auto",
    progress: bool = False,
    distributed: bool = False,
) -> tuple[Headline, SurrogateTest]:
    """Test each score's layer profile against the autocorrelation null (module docstring).

    Args:
        activity: the ``HeadActivity`` that ``result`` was decomposed from.
        result: its ``PhiIDResult`` (per prompt; tau and redundancy are taken from it).
        scores: scores to report (default: rank_gradient, syn_minus_red, synergy_fraction).
        n_surrogates: null replicates; the smallest possible p is ``1 / (1 + n)`` (19 ->
            0.05, 99 -> 0.01).
        n_boot, alpha: bootstrap resamples and level for the CIs; ``alpha`` is also the
            level at which an index is called above the null.
        fdr, q, core_score: the core (top ``q`` by ``core_score``, default the first
            score) and the false discovery rate of its heads' test.
        method, seed: surrogate method and seed (``surrogate_test``).
        unstable, exclude: heads to leave out of every score (data and null alike) when
            ``exclude`` (a ``UnitStability``, mask or labels).
        profiles: ready ``{score: LayerProfile}`` to reuse (computed when missing).
        test: a ready ``SurrogateTest`` whose scores include ``mean_sts`` and ``scores``.
        head_pvalue: p-values of the per-head test: ``"empirical"``, ``"gaussian"`` (a
            z-score against the null's mean and spread; an approximation) or ``"auto"``:
            gaussian below 100 surrogates, where the smallest empirical p ``1 / (1 + n)`` is
            too coarse for FDR control over hundreds of heads. The index p-value is always
            empirical.
        progress: tqdm bar over surrogates.
        distributed: spread the surrogates over the ranks of a torch.distributed process
            group (every rank calls with the same arguments; see ``surrogate_test``).

    Returns:
        ``(Headline, SurrogateTest)``.
    """
    scores = list(scores)
    labels = list(result.labels)
    mask = _unit_mask(unstable, labels, len(labels))
    drop = mask if (exclude and mask is not None) else None
    if test is None:
        pvalue = ("gaussian" if n_surrogates < 100 else "empirical") if head_pvalue == "auto" else head_pvalue
        test = _surrogate_null(activity, result, scores, drop, n_surrogates=n_surrogates, method=method,
                               fdr=fdr, pvalue=pvalue, seed=seed, progress=progress, distributed=distributed)
    rows = _score_rows(result, test, scores, dict(profiles or {}), drop, n_boot=n_boot, alpha=alpha, seed=seed)
    core_score = core_score or scores[0]
    core = find_core(synergy_scores(result, score=core_score, unstable=unstable, exclude=exclude), q=q)
    core_labels, core_q = _core_q(core, test, labels)
    hl = Headline(
        **_row_tensors(rows, scores), scores=scores, core=core_labels, core_q=core_q, core_score=core_score,
        fdr=fdr, alpha=alpha, n_surrogates=test.n_surrogates, method=test.method, seed=seed, tau=test.tau,
        redundancy=test.redundancy,
        unstable=[] if mask is None else [lab for lab, b in zip(labels, mask.tolist()) if b],
        meta={"excluded": bool(drop is not None and drop.any()), "n_boot": n_boot, "head_pvalue": test.pvalue},
    )
    return hl, test


def _row_tensors(rows: dict[str, list[Any]], scores: list[str]) -> dict[str, Any]:
    """The per-score rows as the Headline's tensors, and the profiles' agreement."""
    def vec(key: str) -> Tensor:
        return torch.tensor(rows[key], dtype=torch.float64)

    def stack(key: str) -> Tensor:
        return torch.stack([torch.as_tensor(t, dtype=torch.float64) for t in rows[key]])

    prof = stack("prof")
    return {
        "index": vec("index"), "ci_low": vec("lo"), "ci_high": vec("hi"), "aligned_index": vec("aligned"),
        "null_index": torch.stack(rows["null"], dim=1), "p": vec("p"), "profile": prof, "low": stack("low"),
        "high": stack("high"), "null_profile_mean": torch.stack(rows["null_prof"]),
        "agreement": {a: {b: _pearson(prof[i], prof[j]) for j, b in enumerate(scores)} for i, a in enumerate(scores)},
    }


def _surrogate_null(
    activity: Any, result: Any, scores: list[str], drop: Tensor | None, *, n_surrogates: int,
    method: str, fdr: float, pvalue: str, seed: int, progress: bool, distributed: bool = False,
) -> SurrogateTest:
    """The surrogate test of ``mean_sts``, ``mean_rtr`` and ``scores`` (unstable heads dropped)."""
    tested = ["mean_sts", "mean_rtr", *[s for s in scores if s not in ("mean_sts", "mean_rtr")]]
    return surrogate_test(
        activity,
        n_surrogates=n_surrogates,
        method=method,  # type: ignore[arg-type]
        scores=[_excluding(s, drop) for s in tested],
        fdr=fdr,
        pvalue=pvalue,  # type: ignore[arg-type]
        tau=int(getattr(result, "tau", 1)),
        redundancy=str(getattr(result, "redundancy", "MMI")),
        seed=seed,
        batch=surrogate_batch(len(result.labels)),
        progress=progress,
        distributed=distributed,
    )


def _score_rows(
    result: Any, test: SurrogateTest, scores: list[str], profiles: dict[str, LayerProfile],
    drop: Tensor | None, *, n_boot: int, alpha: float, seed: int,
) -> dict[str, list[Any]]:
    """Per score: the profile's index and CI, the aligned index against its null and p, the
    profile with its band, and the null's mean profile (profiles computed when missing)."""
    rows: dict[str, list[Any]] = {k: [] for k in ("index", "lo", "hi", "aligned", "null", "p", "prof",
                                                 "low", "high", "null_prof")}
    for s in scores:
        prof = profiles.get(s)
        if prof is None:
            prof = layer_profile(result, score=_excluding(s, drop), n_boot=n_boot, alpha=alpha, seed=seed)
            prof.score = s
        aligned, null_index, null_prof = index_null(test, s)
        ci = prof.inverted_u_ci or (math.nan, math.nan)
        nan = torch.full_like(prof.values, math.nan)
        rows["index"].append(prof.inverted_u)
        rows["lo"].append(ci[0])
        rows["hi"].append(ci[1])
        rows["aligned"].append(aligned)
        rows["null"].append(null_index)
        rows["p"].append(_p_upper(aligned, null_index))
        rows["prof"].append(prof.values)
        rows["low"].append(prof.low if prof.low is not None else nan)
        rows["high"].append(prof.high if prof.high is not None else nan)
        rows["null_prof"].append(torch.nanmean(null_prof, 0))
    return rows


def _core_q(core: Any, test: SurrogateTest, labels: list[str]) -> tuple[list[str], Tensor]:
    """The core's labels and the FDR-adjusted p of each one's mean sts against the null."""
    core_labels = core.labels_of("abstract")
    q_sts = test.q_head[test._score("mean_sts")].flatten()
    return core_labels, torch.tensor([float(q_sts[labels.index(lab)]) for lab in core_labels], dtype=torch.float64)
