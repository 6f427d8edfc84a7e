"""Does the layer profile survive the analysis choices a reviewer would ask about?

What and why
------------
A layer profile is the end of a chain of choices: the lag tau, the score, whether the
series are used raw or detrended, whether PhiID is estimated per prompt and averaged or
once from the pooled prompts, the redundancy function. :func:`robustness` recomputes the
inverted-U index under each choice, one change at a time from the baseline (the papers'
protocol: tau = 1, raw series, per prompt then averaged, MMI), for every score, with

- a bootstrap CI over prompts (per-prompt variants: ``profile.layer_profile``; pooled:
  the pooled statistics of each prompt resample), and
- a one-sided p-value against the autocorrelation-preserving circular-shift null
  (``headline.py`` explains the aligned statistic), every variant with its own null.

Why these choices. MMI PhiID alone cannot tell integration from first-order
autocorrelation: uncoupled units with autocorrelation carry "persistent synergy"
(Varley 2024, arXiv 2407.16601). The independent reproduction of (B)
(marimeireles/rep-synergy-llm) traced its partial results to lag-1 autocorrelation near
0.97 and a drift of the signal over generation. First differences (``x_{t+1} - x_t``)
remove the drift and most of the autocorrelation: a profile that holds only on raw
series is a profile of slowness. tau = 10 asks whether the structure persists beyond the
next token; pooling asks whether averaging per-prompt estimates (each from ~100 points)
made it; CCS redundancy whether MMI's minimum rule made it (docs/science.md, "Pitfalls").

Variants (:data:`VARIANTS`): ``baseline``, ``detrended``, ``pooled``, ``tau10``, ``ccs``.
The default runs all but ``ccs``, whose per-sample redundancy makes every decomposition
O(pairs x time) (ask for it). Measured on SmolLM2 (60 prompts, 270 heads, 19 surrogates,
one CPU thread): pooled 6 s, detrended 20 s, tau 10 16 s of CPU time. A variant that
cannot run (series too short for its tau, CCS from pooled statistics) is reported with a
reason instead of numbers.
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
from tqdm.auto import tqdm

from synergy_lens._collective import all_gather, check_collective, my_share
from synergy_lens._io import SavedFields
from synergy_lens.analysis.estimate import IndexEstimate
from synergy_lens.analysis.headline import (
    HEADLINE_SCORES,
    Headline,
    _excluding,
    _p_upper,
    index_null,
    surrogate_batch,
)
from synergy_lens.analysis.profile import (
    layer_means,
    layer_profile,
    minmax_scale,
    resample_counts,
    u_index,
)
from synergy_lens.analysis.scores import _unit_mask, get_score, symmetrize
from synergy_lens.analysis.surrogates import SURROGATES, _min_shift, surrogate_test
from synergy_lens.units import normalised_depth

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_VARIANTS", "VARIANTS", "Robustness", "robustness"]

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"tau": 1, "detrend": False, "aggregate": "mean_over_prompts", "redundancy": "MMI",
                 "label": "tau 1, raw, mean over prompts, MMI (the papers')"},
    "detrended": {"tau": 1, "detrend": True, "aggregate": "mean_over_prompts", "redundancy": "MMI",
                  "label": "first differences x[t+1] - x[t]"},
    "pooled": {"tau": 1, "detrend": False, "aggregate": "pooled", "redundancy": "MMI",
               "label": "one estimate from the pooled prompts"},
    "tau10": {"tau": 10, "detrend": False, "aggregate": "mean_over_prompts", "redundancy": "MMI",
              "label": "tau 10"},
    "ccs": {"tau": 1, "detrend": False, "aggregate": "mean_over_prompts", "redundancy": "CCS",
            "label": "CCS redundancy (slow)"},
}
"""Analysis choices, each one change from ``baseline``: name -> settings and a label."""

DEFAULT_VARIANTS = ("baseline", "detrended", "pooled", "tau10")
"""What :func:`robustness` runs by default (``ccs`` is slow: ask for it)."""



@dataclass
class _Series:
    """The part of a ``HeadActivity`` that ``decompose`` and ``surrogate_test`` read."""

    values: Tensor  # [prompt, unit, time], NaN padded
    lengths: Tensor
    n_layers: int
    n_heads: int
    labels: list[str]
    model_name: str = ""

    def unit_series(self) -> Tensor:
        return self.values

    def unit_labels(self) -> list[str]:
        return self.labels


def _variant_series(activity: Any, detrend: bool, min_length: int) -> tuple[_Series, list[int]]:
    series = torch.as_tensor(activity.unit_series()).to(torch.float64)
    lengths = [int(v) for v in torch.as_tensor(activity.lengths).tolist()]
    if detrend:
        series = series[..., 1:] - series[..., :-1]
        lengths = [max(n - 1, 0) for n in lengths]
    keep = [p for p, n in enumerate(lengths) if n >= min_length]
    labels = list(activity.unit_labels())
    return (
        _Series(
            values=series[keep],
            lengths=torch.tensor([lengths[p] for p in keep], dtype=torch.long),
            n_layers=int(activity.n_layers),
            n_heads=int(activity.n_heads),
            labels=labels,
            model_name=str(getattr(activity, "model_name", "")),
        ),
        keep,
    )


def _pair_sts_rtr(atoms: Tensor) -> tuple[Tensor, Tensor]:
    from synergy_lens.phiid import atom_index

    return symmetrize(atoms[..., atom_index("sts"), :, :]), symmetrize(atoms[..., atom_index("rtr"), :, :])


class _Pooled:
    """Pooled PhiID of prompt subsets: per-prompt sums, weighted unions, one decomposition each."""

    def __init__(self, prompts: list[Tensor], tau: int, redundancy: str) -> None:
        self.tau, self.redundancy = tau, redundancy
        self.offset = torch.cat(prompts, dim=-1).mean(-1, keepdim=True)
        self.prompts = [x - self.offset for x in prompts]
        self.parts = [self._sums(x) for x in self.prompts]

    def _sums(self, x: Tensor) -> dict[str, Tensor]:
        past, fut = x[:, : x.shape[-1] - self.tau], x[:, self.tau :]
        return {"n": torch.tensor(float(past.shape[-1]), dtype=torch.float64), "sp": past.sum(-1),
                "sf": fut.sum(-1), "pp": past @ past.T, "ff": fut @ fut.T, "pf": past @ fut.T}

    def stats(self, parts: list[dict[str, Tensor]], weights: Sequence[float]) -> Any:
        from synergy_lens.phiid import PhiIDStats

        tot: dict[str, Tensor] = {}
        for key in parts[0]:
            acc = torch.zeros_like(parts[0][key])
            for w, part in zip(weights, parts):
                if w:
                    acc = acc + w * part[key]
            tot[key] = acc
        n = float(tot["n"])
        mp, mf = tot["sp"] / n, tot["sf"] / n
        return PhiIDStats(
            tau=self.tau, n=round(n), mean_past=mp + self.offset[:, 0], mean_future=mf + self.offset[:, 0],
            comoment_past=tot["pp"] - n * torch.outer(mp, mp),
            comoment_future=tot["ff"] - n * torch.outer(mf, mf),
            comoment_lag=tot["pf"] - n * torch.outer(mp, mf),
        )

    def atoms(self, parts: list[dict[str, Tensor]], weights: Sequence[float]) -> tuple[Tensor, Tensor]:
        from synergy_lens.phiid.estimate import all_pairs_from_stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # degenerate heads: reported by decompose
            a = all_pairs_from_stats(self.stats(parts, weights), redundancy=self.redundancy)
        return _pair_sts_rtr(a)


def _index(values: Tensor, n_layers: int, n_heads: int, depth: Tensor) -> tuple[float, Tensor]:
    prof = minmax_scale(layer_means(values.flatten(), n_layers, n_heads))
    return (u_index(prof, depth) if n_layers >= 3 else math.nan), prof


def _pooled_variant(
    series: _Series, fns: list[tuple[str, Any]], *, tau: int, redundancy: str, n_boot: int, alpha: float,
    n_surrogates: int, seed: int, depth: Tensor, progress: bool, distributed: bool = False,
) -> dict[str, dict[str, Any]]:
    prompts = [series.values[p, :, :n] for p, n in enumerate(series.lengths.tolist())]
    pooled = _Pooled(prompts, tau, redundancy)
    ones = [1.0] * len(prompts)
    L, H = series.n_layers, series.n_heads
    sts, rtr = pooled.atoms(pooled.parts, ones)
    out: dict[str, dict[str, Any]] = {}
    obs = {name: _index(fn(sts, rtr), L, H, depth) for name, fn in fns}
    boots: dict[str, list[float]] = {name: [] for name, _ in fns}
    counts = resample_counts(len(prompts), n_boot, seed) if n_boot else torch.zeros(0, len(prompts))
    for row in tqdm(counts, desc="pooled bootstrap", disable=not progress):
        s, r = pooled.atoms(pooled.parts, row.tolist())
        for name, fn in fns:
            boots[name].append(_index(fn(s, r), L, H, depth)[0])
    make = SURROGATES["circular_shift"]

    def shifted(s: int, common: bool) -> list[dict[str, Tensor]]:
        parts = []
        for p, x in enumerate(pooled.prompts):
            rng = np.random.default_rng([seed, p, s, 1 if common else 0])
            ms = _min_shift(x.shape[-1], tau, None)
            parts.append(pooled._sums(make(x, rng, n=1, min_shift=ms, common=common)[0]))
        return parts

    s_al, r_al = pooled.atoms(shifted(0, True), ones)
    aligned = {name: _index(fn(s_al, r_al), L, H, depth)[0] for name, fn in fns}
    nulls: dict[str, list[float]] = {name: [] for name, _ in fns}
    null_prof: dict[str, list[Tensor]] = {name: [] for name, _ in fns}

    def replicate(s: int) -> list[tuple[float, Tensor]]:
        sn, rn = pooled.atoms(shifted(s, False), ones)
        return [_index(fn(sn, rn), L, H, depth) for _, fn in fns]

    # every replicate is seeded by its index, so under ``distributed`` the ranks take a share
    # each and the gathered replicates are put back in index order
    split = check_collective(distributed)
    mine = my_share(n_surrogates) if split else range(n_surrogates)
    done = {i: replicate(i) for i in tqdm(mine, desc="pooled surrogates", disable=not progress)}
    if split:
        done = {i: v for part in all_gather(done) for i, v in part.items()}
    for i in range(n_surrogates):
        for (name, _), (idx, prof) in zip(fns, done[i]):
            nulls[name].append(idx)
            null_prof[name].append(prof)
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    for name, _ in fns:
        b = np.asarray(boots[name])
        b = b[np.isfinite(b)]
        ci = tuple(np.percentile(b, q)) if b.size else (math.nan, math.nan)
        null = torch.tensor(nulls[name], dtype=torch.float64)
        out[name] = {"index": obs[name][0], "ci": ci, "profile": obs[name][1], "null": null,
                     "null_profile": torch.stack(null_prof[name]).nanmean(0) if null_prof[name] else None,
                     "p": _p_upper(aligned[name], null), "aligned": aligned[name]}
    return out


def _per_prompt_variant(
    series: _Series, names: list[str], fns: list[tuple[str, Any]], *, tau: int, redundancy: str, n_boot: int,
    alpha: float, n_surrogates: int, seed: int, progress: bool, distributed: bool = False,
) -> dict[str, dict[str, Any]]:
    from synergy_lens.phiid import decompose

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate heads: reported for the baseline
        result = decompose(series, tau=tau, redundancy=redundancy, progress=False)
        test = surrogate_test(series, n_surrogates=n_surrogates, scores=[fn for _, fn in fns], tau=tau,
                              redundancy=redundancy, seed=seed, batch=surrogate_batch(len(series.labels)),
                              progress=progress, distributed=distributed)
    out = {}
    for name, fn in fns:
        prof = layer_profile(result, score=fn, n_boot=n_boot, alpha=alpha, seed=seed)
        aligned, null, null_prof = index_null(test, name)
        out[name] = {"index": prof.inverted_u, "ci": prof.inverted_u_ci or (math.nan, math.nan),
                     "profile": prof.values, "null": null, "null_profile": null_prof.nanmean(0),
                     "p": _p_upper(aligned, null), "aligned": aligned}
    return out


def _named(name: str, fn: Any) -> Any:
    """``fn`` under the name ``name`` (a wrapper: registered functions are never renamed)."""

    def score(sts: Tensor, rtr: Tensor) -> Tensor:
        return fn(sts, rtr)

    score.__name__ = name
    return score


@dataclass
class Robustness(IndexEstimate, SavedFields):
    """The inverted-U index of every score under every analysis choice (module docstring).

    Attributes:
        variants: variant names, in order; scores: score names.
        settings: per variant, its settings (tau, detrend, aggregate, redundancy, label)
            and what happened (``n_prompts`` used, or ``skipped`` with a reason).
        index, ci_low, ci_high, p (:class:`IndexEstimate`), null_mean: ``[variant, score]``
            (NaN where skipped).
        profile, null_profile: ``[variant, score, layer]`` scaled profiles (observed, null mean).
        alpha, n_surrogates, n_boot, seed: how it was computed.
    """

    FORMAT = "synergy_lens.Robustness/1"  # save/load: SavedFields

    variants: list[str]
    scores: list[str]
    settings: dict[str, dict[str, Any]]
    null_mean: Float[Tensor, "variant score"]
    profile: Float[Tensor, "variant score layer"]
    null_profile: Float[Tensor, "variant score layer"]
    alpha: float
    n_surrogates: int
    n_boot: int
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Robustness(variants={self.variants}, scores={self.scores}, n_surrogates={self.n_surrogates})"

    def to_dataframe(self) -> pd.DataFrame:
        """The tidy table: one row per (variant, score) with index, CI, null mean, p, verdict."""
        import pandas as pd

        rows = []
        for v, name in enumerate(self.variants):
            st = self.settings[name]
            for s, score in enumerate(self.scores):
                index, low, high, p = self.estimate(v, s)
                rows.append({
                    "choice": name, "what": st.get("label", ""), "score": score,
                    "inverted_u": index, "ci_low": low, "ci_high": high, "null_mean": float(self.null_mean[v, s]), "p": p,
                    "above_null": bool(p <= self.alpha) if math.isfinite(p) else None,
                    "n_prompts": st.get("n_prompts"), "note": st.get("skipped", ""),
                })
        return pd.DataFrame(rows)

    def holds(self, variant: str) -> list[str]:
        """The scores whose inverted U (index > 0) exceeds the null at ``alpha`` under ``variant``."""
        v = self.variants.index(variant)
        return [s for k, s in enumerate(self.scores)
                if float(self.index[v, k]) > 0 and float(self.p[v, k]) <= self.alpha]

    def verdict(self) -> str:
        """One sentence: under which choices the inverted U above the null holds, per score count."""
        parts = []
        for name in self.variants:
            if self.settings[name].get("skipped"):
                parts.append(f"{name}: skipped")
                continue
            held = self.holds(name)
            parts.append(f"{name} {len(held)}/{len(self.scores)}" + (f" ({', '.join(held)})" if held else ""))
        return ("Inverted U above the surrogate null (index > 0, p <= "
                f"{self.alpha:g}), scores per analysis choice: " + "; ".join(parts) + ".")

def robustness(
    activity: Any,
    *,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    scores: Sequence[str] = HEADLINE_SCORES,
    n_surrogates: int = 19,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    unstable: Any = None,
    exclude: bool = False,
    baseline: Headline | None = None,
    progress: bool = False,
    distributed: bool = False,
) -> Robustness:
    """Recompute the layer profile's inverted-U index under each analysis choice (module docstring).

    Args:
        activity: a ``HeadActivity`` (or anything with ``unit_series()``, ``lengths``,
            ``n_layers``, ``n_heads``, ``unit_labels()``).
        variants: names from :data:`VARIANTS` (``"tau10"`` and ``"ccs"`` are not run by default).
        scores: the scores profiled under each choice.
        n_surrogates: null replicates per variant (every score shares them).
        n_boot, alpha, seed: bootstrap resamples, CI level (and the level of the null test), seed.
        unstable, exclude: leave these heads out of every score when ``exclude``.
        baseline: a :class:`~synergy_lens.analysis.headline.Headline` of the same
            recording with the baseline settings, reused for the ``baseline`` row.
        progress: tqdm bars.
        distributed: spread each variant's surrogate replicates over the ranks of a
            torch.distributed process group (every rank calls with the same arguments and
            gets the whole table, equal to one process's; see ``surrogate_test``).

    Returns:
        A :class:`Robustness` (``to_dataframe()`` is the table; ``view.plot_robustness``
        draws the small multiples).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown robustness variant(s) {unknown}; known: {sorted(VARIANTS)}")
    scores = list(scores)
    labels = list(activity.unit_labels())
    mask = _unit_mask(unstable, labels, len(labels))
    drop = mask if (exclude and mask is not None) else None
    fns = [(s, _named(s, get_score(_excluding(s, drop))[1])) for s in scores]
    n_layers = int(activity.n_layers)
    depth = normalised_depth(n_layers)
    nan_vs = torch.full((len(variants), len(scores)), math.nan, dtype=torch.float64)
    t = {k: nan_vs.clone() for k in ("index", "lo", "hi", "p", "null")}
    prof = torch.full((len(variants), len(scores), n_layers), math.nan, dtype=torch.float64)
    null_prof = prof.clone()
    settings: dict[str, dict[str, Any]] = {}
    for v, name in enumerate(variants):
        spec = dict(VARIANTS[name])
        settings[name] = spec
        tau = int(spec["tau"])
        series, keep = _variant_series(activity, bool(spec["detrend"]), max(4 * tau + 2, tau + 8))
        spec["n_prompts"] = len(keep)
        skipped = _skip_reason(spec, len(keep))
        if skipped:
            spec["skipped"] = skipped
            continue
        if name == "baseline" and baseline is not None and list(baseline.scores) == scores:
            _fill_from_baseline(t, prof, null_prof, v, baseline)
            spec["reused"] = "the run's headline test"
            continue
        kw = {"tau": tau, "redundancy": spec["redundancy"], "n_boot": n_boot, "alpha": alpha,
              "n_surrogates": n_surrogates, "seed": seed, "progress": progress,
              "distributed": distributed}
        res = (_pooled_variant(series, fns, depth=depth, **kw) if spec["aggregate"] == "pooled"
               else _per_prompt_variant(series, scores, fns, **kw))
        _fill(t, prof, null_prof, v, [res[score] for score in scores])
    return Robustness(
        variants=list(variants), scores=scores, settings=settings, index=t["index"], ci_low=t["lo"],
        ci_high=t["hi"], p=t["p"], null_mean=t["null"], profile=prof, null_profile=null_prof, alpha=alpha,
        n_surrogates=n_surrogates, n_boot=n_boot, seed=seed,
        meta={"excluded": [] if drop is None else [lab for lab, b in zip(labels, drop.tolist()) if b]},
    )


def _skip_reason(spec: dict[str, Any], n_prompts: int) -> str | None:
    """Why a variant cannot run on the prompts long enough for its tau (None: it can)."""
    if spec["aggregate"] == "pooled" and spec["redundancy"] != "MMI":
        return "pooled statistics have a closed form only for MMI"
    min_prompts = 1 if spec["aggregate"] == "pooled" else 2
    if n_prompts < min_prompts:
        tau = int(spec["tau"])
        return f"fewer than {min_prompts} prompts have >= {4 * tau + 2} steps for tau = {tau}"
    return None


def _fill_from_baseline(
    t: dict[str, Tensor], prof: Tensor, null_prof: Tensor, v: int, baseline: Headline
) -> None:
    """Row ``v`` of the tables from the run's headline test (same scores, same settings)."""
    for s in range(len(baseline.scores)):
        t["index"][v, s], t["lo"][v, s], t["hi"][v, s] = baseline.index[s], baseline.ci_low[s], baseline.ci_high[s]
        t["p"][v, s], t["null"][v, s] = baseline.p[s], baseline.null_index[:, s].nanmean()
        prof[v, s], null_prof[v, s] = baseline.profile[s], baseline.null_profile_mean[s]


def _fill(t: dict[str, Tensor], prof: Tensor, null_prof: Tensor, v: int, results: list[dict[str, Any]]) -> None:
    """Row ``v`` of the tables from one variant's per-score results."""
    for s, r in enumerate(results):
        t["index"][v, s], (t["lo"][v, s], t["hi"][v, s]) = r["index"], r["ci"]
        t["p"][v, s] = r["p"]
        t["null"][v, s] = r["null"].nanmean() if r["null"].numel() else math.nan
        prof[v, s] = r["profile"]
        if r["null_profile"] is not None:
            null_prof[v, s] = r["null_profile"]
