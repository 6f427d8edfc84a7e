"""Surrogate null for PhiID: is a head more synergistic than its own autocorrelation explains?

What and why
------------
Under Gaussian MMI PhiID, persistent synergy ``sts`` of a pair grows with the two units'
autocorrelation even when the units are independent (two independent AR(1) units with
coefficient 0.5 have sts = 0.29 nats). Per-head means of sts and rtr then track how
"slow" a head is rather than how it combines information (docs/science.md,
"Pitfalls"). A head is called *significantly synergistic* here only against a null that
keeps each unit's own dynamics and destroys what couples units:

- ``"circular_shift"``: each unit's series (per prompt) is rotated by its own random
  offset in ``[min_shift, n - min_shift]``. Each unit keeps its values and (up to the one
  wrap-around step) its autocorrelation; cross-unit lagged structure is scrambled.
- ``"phase"``: each unit's Fourier phases are randomised independently (Theiler et al.
  1992): the power spectrum, hence the circular autocorrelation, is kept exactly; the
  cross-spectra are destroyed. The DC and (even n) Nyquist terms keep their phase.

A surrogate replicate shifts every prompt's units, recomputes all-pairs PhiID per prompt
(``synergy_lens.phiid.all_pairs``, same tau/redundancy) and averages over prompts exactly
like the observed statistic.

The test statistic is *aligned*. Rotating a finite series puts x_{n-1} next to x_0 (one
wrap-around step replaces one true step); phase randomisation likewise makes a series
circular. For slow heads (autocorrelation near 1) that one step lowers the estimated
autocorrelation, hence sts and rtr, by a small systematic amount, while the null's spread
is tiny because every unit keeps its own dynamics. Comparing the untouched statistic with
the null therefore gives false positives (19% of independent AR(0.9)-AR(0.2) pairs at
p < 0.05 in our tests). So the statistic tested is computed on an aligned surrogate: the
same operation with one draw shared by all units (a common rotation, or common phases),
which keeps every cross-unit relation and carries exactly the artefact the null carries.
Under independence the aligned and the independent surrogates are exchangeable.
``observed`` reports the untouched values (as ``decompose``), ``aligned`` the tested ones.

Then, one-sided (more synergy/redundancy than chance):

- per pair: ``p = (1 + #{null >= aligned}) / (1 + n_surrogates)`` (the +1 makes the
  test exact under exchangeability; Phipson & Smyth 2010), for sts and rtr;
- per head: the same for each head score (``mean_sts``, ``mean_rtr``, ...)
  recomputed on every surrogate;
- false discovery rate: Benjamini-Hochberg (1995) over heads (per score) and over the
  upper-triangle pairs (per atom), :func:`benjamini_hochberg`.

With few surrogates the smallest empirical p-value, ``1 / (1 + n)``, may be too coarse
for FDR control over hundreds of heads; ``pvalue="gaussian"`` then uses a z-score
against the surrogates' mean and standard deviation (an approximation; say so when you
report it).

Draws are seeded per (prompt, surrogate): ``numpy.random.default_rng([seed, p, s, 0])``
(the aligned draw: ``[seed, p, 0, 1]``), so results do not depend on the batch size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
from jaxtyping import Bool, Float
from scipy.stats import norm
from torch import Tensor
from tqdm.auto import tqdm

from synergy_lens._collective import all_gather, check_collective, world
from synergy_lens._grid import LabelledGrid
from synergy_lens._io import SavedFields
from synergy_lens._prompt_mean import mean_of_defined
from synergy_lens.analysis.scores import ScoreFn, get_score, symmetrize
from synergy_lens.phiid import STREAM_ABOVE_UNITS, all_pairs, atom_index
from synergy_lens.units import unit_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SURROGATES",
    "PValueMethod",
    "SurrogateMethod",
    "SurrogateTest",
    "benjamini_hochberg",
    "circular_shift",
    "phase_randomize",
    "surrogate_test",
]

SurrogateMethod = Literal["circular_shift", "phase"]
PValueMethod = Literal["empirical", "gaussian"]
_ATOMS = ("sts", "rtr")


# ----------------------------------------------------------------------------- surrogates


def circular_shift(
    x: Float[Tensor, "unit time"],
    rng: np.random.Generator,
    *,
    n: int,
    min_shift: int,
    common: bool = False,
) -> Float[Tensor, "surrogate unit time"]:
    """``n`` surrogates: each unit rotated by its own offset, uniform in ``[min_shift, time - min_shift]``.

    ``common=True`` rotates all units by one offset (the aligned version, see the module docstring).
    """
    units, time = x.shape
    lo = min_shift if time - 2 * min_shift >= 1 else 1
    draw = rng.integers(lo, time - lo + 1, size=(n, 1 if common else units))
    shifts = torch.from_numpy(np.broadcast_to(draw, (n, units)).copy()).to(x.device)
    idx = (torch.arange(time, device=x.device) - shifts[..., None]) % time  # rolled[t] = x[t - k]
    return x.expand(n, units, time).gather(-1, idx)


def phase_randomize(
    x: Float[Tensor, "unit time"],
    rng: np.random.Generator,
    *,
    n: int,
    min_shift: int = 0,
    common: bool = False,
) -> Float[Tensor, "surrogate unit time"]:
    """``n`` surrogates with each unit's Fourier phases drawn uniformly, amplitudes kept.

    ``common=True`` adds the same random phases to every unit, which keeps all
    cross-spectra (Prichard & Theiler 1994): the aligned version.
    """
    units, time = x.shape
    spec = torch.fft.rfft(x.to(torch.float64), dim=-1)
    draw = rng.uniform(0.0, 2 * math.pi, size=(n, 1 if common else units, spec.shape[-1]))
    phases = torch.from_numpy(np.broadcast_to(draw, (n, units, spec.shape[-1])).copy()).to(x.device)
    phases[..., 0] = 0.0
    if time % 2 == 0:
        phases[..., -1] = 0.0
    return torch.fft.irfft(spec * torch.polar(torch.ones_like(phases), phases), n=time, dim=-1)


SURROGATES: dict[str, Callable[..., Tensor]] = {
    "circular_shift": circular_shift,
    "phase": phase_randomize,
}
"""Registry of surrogate generators ``fn(x [unit, time], rng, *, n, min_shift, common) -> [n, unit, time]``.

``common=False`` draws independently per unit (the null); ``common=True`` applies one draw
to all units (the aligned statistic that the null is compared with)."""


# ----------------------------------------------------------------------------- FDR


def benjamini_hochberg(p: Any, q: float = 0.05) -> tuple[Any, Any]:
    """Benjamini-Hochberg step-up procedure (1995) at false discovery rate ``q``.

    Sort the m finite p-values, ``p_(1) <= ... <= p_(m)``; reject ``H_(1..k)`` with
    ``k = max{i : p_(i) <= i q / m}``. Adjusted p-values (q-values) are
    ``min_{j >= i} min(1, p_(j) m / j)``; a hypothesis is rejected iff its adjusted value is
    ``<= q``. NaN p-values are not tested (not counted in m, never rejected, adjusted NaN).

    Returns ``(reject, adjusted)`` with the input's shape, as tensors for a tensor input.

    Example:
        >>> reject, adj = benjamini_hochberg([0.01, 0.04, 0.03, 0.20], q=0.05)
        >>> reject.tolist(), [round(v, 4) for v in adj.tolist()]
        ([True, False, False, False], [0.04, 0.0533, 0.0533, 0.2])
    """
    is_tensor = isinstance(p, Tensor)
    arr = (
        p.detach().cpu().numpy().astype(np.float64)
        if is_tensor
        else np.asarray(p, dtype=np.float64)
    )
    flat = arr.ravel()
    adjusted = np.full(flat.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(flat))
    m = idx.size
    if m:
        order = idx[np.argsort(flat[idx], kind="stable")]
        scaled = flat[order] * m / np.arange(1, m + 1)
        adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    reject = np.zeros(flat.shape, dtype=bool)
    reject[idx] = adjusted[idx] <= q
    reject, adjusted = reject.reshape(arr.shape), adjusted.reshape(arr.shape)
    if is_tensor:
        return torch.from_numpy(reject), torch.from_numpy(adjusted)
    return reject, adjusted


# ----------------------------------------------------------------------------- result


@dataclass
class SurrogateTest(LabelledGrid, SavedFields):
    """Per-pair and per-head p-values of PhiID against a surrogate null, with FDR control.

    Attributes:
        scores: head scores tested (e.g. ``["mean_sts", "mean_rtr"]``).
        observed: the untouched scores (as from ``decompose``), ``[score, layer, head]``.
        aligned: the tested scores, from the aligned surrogate (module docstring).
        null_mean, null_std: of the null replicates, ``[score, layer, head]``.
        null: the per-head surrogate replicates, ``[surrogate, score, layer, head]``.
        p_head, q_head: p-values and BH-adjusted p-values, ``[score, layer, head]``.
        observed_pair, aligned_pair, p_pair, q_pair: ``[atom, unit, unit]`` for atoms ``("sts", "rtr")``
            (symmetrised, upper and lower triangle equal, diagonal NaN).
        fdr: the false discovery rate used by :meth:`significant`.
        method, pvalue, n_surrogates, seed, tau, redundancy: how it was computed.
        labels: unit labels; meta: JSON-able extras.
    """

    FORMAT = "synergy_lens.SurrogateTest/1"  # save/load: SavedFields
    GRID = ("observed", 1)  # n_layers, n_heads: LabelledGrid (which holds labels and meta)

    scores: list[str]
    observed: Float[Tensor, "score layer head"]
    aligned: Float[Tensor, "score layer head"]
    null_mean: Float[Tensor, "score layer head"]
    null_std: Float[Tensor, "score layer head"]
    null: Float[Tensor, "surrogate score layer head"]
    p_head: Float[Tensor, "score layer head"]
    q_head: Float[Tensor, "score layer head"]
    observed_pair: Float[Tensor, "atom unit unit"]
    aligned_pair: Float[Tensor, "atom unit unit"]
    p_pair: Float[Tensor, "atom unit unit"]
    q_pair: Float[Tensor, "atom unit unit"]
    fdr: float
    method: str
    pvalue: str
    n_surrogates: int
    seed: int
    tau: int
    redundancy: str

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}: {int(self.significant(s).sum())}" for s in self.scores)
        return (
            f"SurrogateTest({self.method}, n={self.n_surrogates}, fdr={self.fdr}; "
            f"significant heads {counts} of {self.n_layers * self.n_heads})"
        )

    def significant(
        self, score: str = "mean_sts", fdr: float | None = None
    ) -> Bool[Tensor, "layer head"]:
        """Heads whose ``score`` exceeds the surrogate null at false discovery rate ``fdr``."""
        return self.q_head[self._score(score)] <= (self.fdr if fdr is None else fdr)

    def significant_pairs(
        self, atom: str = "sts", fdr: float | None = None
    ) -> Bool[Tensor, "unit unit"]:
        """Pairs whose (symmetrised) ``atom`` exceeds the null at rate ``fdr`` (symmetric mask)."""
        if atom not in _ATOMS:
            raise ValueError(f"atom must be one of {_ATOMS}, got {atom!r}")
        return self.q_pair[_ATOMS.index(atom)] <= (self.fdr if fdr is None else fdr)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per head: label, layer, head and, per score, observed, aligned, null mean/std, p, q, significant."""
        import pandas as pd

        frame: dict[str, Any] = self.unit_columns()
        for k, s in enumerate(self.scores):
            frame[f"{s}"] = self.observed[k].flatten().numpy()
            frame[f"{s}_aligned"] = self.aligned[k].flatten().numpy()
            frame[f"{s}_null_mean"] = self.null_mean[k].flatten().numpy()
            frame[f"{s}_null_std"] = self.null_std[k].flatten().numpy()
            frame[f"{s}_p"] = self.p_head[k].flatten().numpy()
            frame[f"{s}_q"] = self.q_head[k].flatten().numpy()
            frame[f"{s}_significant"] = self.significant(s).flatten().numpy()
        return pd.DataFrame(frame)

    def _score(self, score: str) -> int:
        if score not in self.scores:
            raise ValueError(f"score {score!r} was not tested; tested: {self.scores}")
        return self.scores.index(score)


# ----------------------------------------------------------------------------- the test


def _prompt_series(
    source: Any, n_layers: int | None, n_heads: int | None
) -> tuple[list[Tensor], int, int, list[str]]:
    """Valid per-prompt ``[unit, n_p]`` float64 series, sizes and labels of ``source``."""
    if hasattr(source, "unit_series"):
        series = source.unit_series()
        lengths = [int(v) for v in torch.as_tensor(source.lengths).tolist()]
        layers, heads, labels = (
            int(source.n_layers),
            int(source.n_heads),
            list(source.unit_labels()),
        )
    else:
        series = torch.as_tensor(source)
        if series.ndim == 2:
            series = series[None]
        if series.ndim != 3:
            raise ValueError(
                f"expected a HeadActivity or a [prompt, unit, time] tensor, got shape {tuple(series.shape)}"
            )
        finite = torch.isfinite(series).all(1)  # [prompt, time]
        lengths = [int(row.cumprod(0).sum()) for row in finite.to(torch.int64)]
        u = series.shape[1]
        layers, heads = (n_layers or 1), (n_heads or u // (n_layers or 1))
        labels = unit_labels(layers, heads)
    if layers * heads != series.shape[1]:
        raise ValueError(
            f"n_layers * n_heads = {layers * heads} but the series has {series.shape[1]} units"
        )
    return (
        [series[p, :, :n].to(torch.float64) for p, n in enumerate(lengths)],
        layers,
        heads,
        labels,
    )


def _pair_atoms(x: Tensor, tau: int, redundancy: str) -> Tensor:
    """``[..., unit, time]`` -> ``[..., 2, unit, unit]`` (sts, rtr), symmetrised."""
    atoms = all_pairs(x, tau=tau, redundancy=redundancy)
    picked = atoms[..., [atom_index(a) for a in _ATOMS], :, :]
    return symmetrize(picked)


def _min_shift(n: int, tau: int, min_shift: int | None) -> int:
    return max(tau + 1, n // 10) if min_shift is None else int(min_shift)


def _pvalues(
    exceed: Tensor, observed: Tensor, mean: Tensor, std: Tensor, n: int, how: str
) -> Tensor:
    if how == "empirical":
        p = (1.0 + exceed) / (1.0 + n)
    else:
        z = (observed - mean) / std
        p = torch.from_numpy(norm.sf(z.numpy()))
    return p.masked_fill(~torch.isfinite(observed), math.nan)


def surrogate_test(
    activity: Any,
    *,
    n_surrogates: int = 100,
    method: SurrogateMethod = "circular_shift",
    scores: Sequence[str | ScoreFn] = ("mean_sts", "mean_rtr"),
    fdr: float = 0.05,
    pvalue: PValueMethod = "empirical",
    tau: int = 1,
    redundancy: str = "MMI",
    seed: int = 0,
    min_shift: int | None = None,
    batch: int = 8,
    n_layers: int | None = None,
    n_heads: int | None = None,
    progress: bool = False,
    distributed: bool = False,
) -> SurrogateTest:
    """Test pairs and heads for more synergy (and redundancy) than a surrogate null.

    Args:
        activity: a ``HeadActivity`` (or anything with ``unit_series()``, ``lengths``,
            ``n_layers``, ``n_heads``, ``unit_labels()``), or a tensor ``[prompt, unit,
            time]`` (NaN-padded) / ``[unit, time]`` with ``n_layers``/``n_heads``.
        n_surrogates: surrogate replicates (the smallest empirical p is ``1/(1+n)``).
        method: ``"circular_shift"`` or ``"phase"`` (module docstring).
        scores: head scores to test, one-sided ``aligned > null`` (registered names). Not
            ``"synergy_fraction"`` by default: for independent units MMI gives rtr = 0, so
            the null's fraction sits at its ceiling 1 and no head can exceed it; test
            ``"mean_sts"`` and ``"mean_rtr"``.
        fdr: Benjamini-Hochberg false discovery rate for :meth:`SurrogateTest.significant`.
        pvalue: ``"empirical"`` (exact, +1 corrected) or ``"gaussian"`` (z vs the null).
        tau, redundancy: PhiID settings; use the ones of the result you report.
        seed: seeds every draw.
        min_shift: smallest circular offset; default ``max(tau + 1, n // 10)`` per prompt.
        batch: surrogates per ``all_pairs`` call (memory ~ ``batch * 16 * unit^2 * 8`` bytes).
        progress: tqdm bar over surrogate batches.
        distributed: inside a torch.distributed process group, every rank calls this with
            the same arguments and computes its share of the surrogate batches; every rank
            gets the whole result, equal to one process's bit for bit at the same thread count
            (``synergy_lens.distributed``). Ignored without a process group.

    Cost: ``n_prompts * (n_surrogates + 2)`` all-pairs decompositions (about 0.4 s each
    for 270 heads on one CPU core): budget surrogates accordingly, or use ``pvalue="gaussian"``.
    """
    if method not in SURROGATES:
        raise ValueError(f"method must be one of {sorted(SURROGATES)}, got {method!r}")
    if pvalue not in get_args(PValueMethod):
        raise ValueError(f"pvalue must be one of {get_args(PValueMethod)}, got {pvalue!r}")
    if n_surrogates < 2:
        raise ValueError(f"n_surrogates must be >= 2, got {n_surrogates}")
    prompts, layers, heads, labels = _prompt_series(activity, n_layers, n_heads)
    _check_dense_size(len(labels))
    null = _Null(prompts, SURROGATES[method], [get_score(s)[1] for s in scores], tau=tau, redundancy=redundancy,
                 seed=seed, min_shift=min_shift)
    # observed (untouched) and aligned (tested: one draw shared by all units), per prompt, averaged
    observed_pair = null.prompt_mean(lambda p, x, ms: x, quiet=False)
    aligned_pair = null.prompt_mean(lambda p, x, ms: null.make(
        x, np.random.default_rng([seed, p, 0, 1]), n=1, min_shift=ms, common=True)[0])
    sums = null.replicates(aligned_pair, n_surrogates, batch, distributed=distributed, progress=progress)
    p_pair, q_pair = _pair_tests(sums, aligned_pair, n_surrogates, pvalue)
    aligned = null.head_stats(aligned_pair).to(torch.float64)  # [score, U]
    null_mean, null_std, p_head, q_head = _head_tests(sums.heads, aligned, n_surrogates, pvalue)
    grid = (len(scores), layers, heads)
    return SurrogateTest(
        scores=[get_score(s)[0] for s in scores], observed=null.head_stats(observed_pair).to(torch.float64).reshape(grid),
        aligned=aligned.reshape(grid), null_mean=null_mean.reshape(grid), null_std=null_std.reshape(grid),
        null=sums.heads.reshape(n_surrogates, *grid), p_head=p_head.reshape(grid), q_head=q_head.reshape(grid),
        observed_pair=observed_pair, aligned_pair=aligned_pair, p_pair=p_pair, q_pair=q_pair, fdr=fdr, method=method,
        pvalue=pvalue, n_surrogates=n_surrogates, seed=seed, tau=tau, redundancy=redundancy, labels=labels,
        meta={"n_prompts": len(prompts), "lengths": [int(x.shape[-1]) for x in prompts], "processes": sums.processes},
    )


def _check_dense_size(n_units: int) -> None:
    """Refuse the dense null above :data:`~synergy_lens.phiid.STREAM_ABOVE_UNITS` units, where
    ``decompose`` streams: every decomposition here holds ``[16, unit, unit]`` float64."""
    if n_units > STREAM_ABOVE_UNITS:
        gb = 16 * n_units**2 * 8 / 1e9
        raise ValueError(
            f"surrogate_test decomposes the data and every surrogate with the dense kernel, "
            f"[16, unit, unit] float64: {gb:.1f} GB per prompt for {n_units} units (more than "
            f"STREAM_ABOVE_UNITS = {STREAM_ABOVE_UNITS}, where decompose streams), and it has no "
            "streaming version yet. Test fewer units (record_activity(..., layers=[...]); fewer "
            "prompts do not shrink this), or build the null on pair_summaries of circular_shift "
            "surrogates (as benchmarks/bench_units.py, part [1d], does)"
        )


@dataclass
class _NullSums:
    """What the surrogate replicates leave: per-pair exceedance counts, sums and sums of
    squares over replicates, and every replicate's head statistics ``[S, score, U]``."""

    exceed: Tensor
    total: Tensor
    squares: Tensor
    heads: Tensor
    processes: int


class _Null:
    """One data set's surrogate machinery: draws per prompt, PhiID, prompt means, head stats."""

    def __init__(self, prompts: list[Tensor], make: Callable[..., Tensor], fns: list[Any], *, tau: int,
                 redundancy: str, seed: int, min_shift: int | None) -> None:
        self.prompts, self.make, self.fns = prompts, make, fns
        self.tau, self.redundancy, self.seed, self.min_shift = tau, redundancy, seed, min_shift

    def head_stats(self, pair: Tensor) -> Tensor:  # [..., 2, U, U] -> [..., score, U]
        return torch.stack([fn(pair[..., 0, :, :], pair[..., 1, :, :]) for fn in self.fns], -2)

    def prompt_mean(self, draw: Callable[[int, Tensor, int], Tensor], *, quiet: bool = True) -> Tensor:
        """sts and rtr of every pair on ``draw(prompt, series, min_shift)`` of each prompt,
        averaged over the prompts where defined (as ``decompose`` averages): ``[..., 2, U, U]``.
        ``quiet``: degenerate units were already reported for the data."""
        total = count = None
        for p, x in enumerate(self.prompts):
            series = draw(p, x, _min_shift(x.shape[-1], self.tau, self.min_shift))
            with warnings.catch_warnings():
                if quiet:
                    warnings.simplefilter("ignore", RuntimeWarning)
                a = _pair_atoms(series, self.tau, self.redundancy).cpu()
            if total is None or count is None:
                total = torch.zeros(a.shape, dtype=torch.float64)
                count = torch.zeros(a.shape, dtype=torch.float64)
            total.add_(torch.nan_to_num(a))
            count.add_(torch.isfinite(a))
        assert total is not None and count is not None
        return mean_of_defined(total, count)

    def batch(self, aligned_pair: Tensor, start: int, stop: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Replicates ``start .. stop - 1``: exceedances, sum, sum of squares, head stats."""
        null_pair = self.prompt_mean(lambda p, x, ms: torch.cat([
            self.make(x, np.random.default_rng([self.seed, p, s, 0]), n=1, min_shift=ms) for s in range(start, stop)]))
        finite = torch.nan_to_num(null_pair)  # [b, 2, U, U]
        return ((null_pair >= aligned_pair).sum(0), finite.sum(0), finite.pow(2).sum(0),
                self.head_stats(null_pair).to(torch.float64))

    def replicates(self, aligned_pair: Tensor, n: int, batch: int, *, distributed: bool, progress: bool) -> _NullSums:
        """All ``n`` replicates in batches. Under ``distributed`` the ranks take the batches in
        rounds (rank r computes batch round * size + r); each round is gathered and added in
        batch order, as one process adds them, so only one batch per rank is held at a time."""
        rank, size = world() if check_collective(distributed) else (0, 1)
        starts = list(range(0, n, batch))
        sums = [torch.zeros_like(aligned_pair) for _ in range(3)]
        heads = []
        bar = tqdm(total=len(starts), desc="surrogates", disable=not progress)
        for first in range(0, len(starts), size):
            k = first + rank
            part = self.batch(aligned_pair, starts[k], min(starts[k] + batch, n)) if k < len(starts) else None
            for piece in all_gather(part) if size > 1 else [part]:
                if piece is not None:
                    for acc, add in zip(sums, piece[:3]):
                        acc += add
                    heads.append(piece[3])
                    bar.update(1)
        bar.close()
        return _NullSums(sums[0], sums[1], sums[2], heads=torch.cat(heads), processes=size)


def _pair_tests(sums: _NullSums, aligned_pair: Tensor, n: int, pvalue: str) -> tuple[Tensor, Tensor]:
    """Per-pair p-values and Benjamini-Hochberg q-values over the upper-triangle pairs, per atom."""
    mean_pair = sums.total / n
    std_pair = ((sums.squares - n * mean_pair**2).clamp_min(0) / (n - 1)).sqrt()
    p_pair = _pvalues(sums.exceed, aligned_pair, mean_pair, std_pair, n, pvalue)
    q_pair = torch.full_like(p_pair, math.nan)
    n_units = p_pair.shape[-1]
    upper = torch.triu(torch.ones(n_units, n_units, dtype=torch.bool), diagonal=1)
    for k in range(len(_ATOMS)):
        _, adj = benjamini_hochberg(p_pair[k][upper])
        q = torch.full((n_units, n_units), math.nan, dtype=torch.float64)
        q[upper] = adj
        q_pair[k] = torch.where(upper, q, q.T)
    return p_pair, q_pair


def _head_tests(null: Tensor, aligned: Tensor, n: int, pvalue: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-head null mean and spread, p-values and q-values (per score) from ``null [S, score, U]``."""
    null_mean = torch.nanmean(null, 0)
    null_std = torch.from_numpy(np.nanstd(null.numpy(), axis=0, ddof=1))
    exceed_head = (null >= aligned).sum(0).to(torch.float64)
    p_head = _pvalues(exceed_head, aligned, null_mean, null_std, n, pvalue)
    q_head = torch.stack([benjamini_hochberg(row)[1] for row in p_head])
    return null_mean, null_std, p_head, q_head
