"""Per-head synergy scores: from pairwise PhiID atoms to one number per attention head.

What and why
------------
PhiID gives, for every ordered pair of heads (i, j), persistent synergy ``sts[i, j]`` and
persistent redundancy ``rtr[i, j]``. Every score below summarises a head by the pairs that
involve it (its *partners*, the diagonal never counts) and is oriented so that larger means
more synergy-dominated. They do not agree with each other, and published numbers were made
with different ones, so this module computes all of them on the same atoms, says where each
comes from, and reports how well they agree (:meth:`HeadScores.agreement_table`).

Where each definition comes from (docs/science.md, "Scores and their sources")
--------------------------------------------------------------------------------
=================  ==============================================  =====================================
score              definition (per head i)                         source
=================  ==============================================  =====================================
rank_gradient      ``floor(tiedrank(mean sts)) -                   text of paper (B) (arXiv 2601.06851,
                   floor(tiedrank(mean rtr))``                     Methods) and the MATLAB reference of
                                                                   Luppi et al. (``tiedrank``)
syn_minus_red      ordinal rank (1 = lowest) of                    the released code of (B),
                   ``mean_j (sts[i, j] - rtr[i, j])``              ``src/it-llms``, ``PromptPhyID.
                                                                   syn_minus_red_rank``; it makes (B)'s
                                                                   figures
synergy_fraction   ``mean_j sts / (|sts| + |rtr|)``                the independent reproduction of (B)
                                                                   (marimeireles/rep-synergy-llm), a
                                                                   per-pair normalised score
mean_sts,          ``mean_j sts[i, j]``, ``mean_j rtr[i, j]``      all of the above (their ingredients)
mean_rtr
=================  ==============================================  =====================================

When they disagree: ``rank_gradient`` ranks synergy and redundancy *separately* and
subtracts the ranks; ``syn_minus_red`` subtracts the atoms first (in nats) and ranks the
difference once. Where mean sts and mean rtr are strongly rank-correlated across heads
(both grow with a head's overall time-delayed information and autocorrelation; Spearman
about 0.9 on Pythia-1B and Qwen3-8B) the rank difference cancels most of the signal while
the nats difference keeps whichever atom has the larger spread. On SmolLM2-135M (10
prompts, same atoms) the two head rankings correlate at Spearman 0.43 and their layer
profiles at Pearson 0.53; the inverted-U index is 0.28 under ``rank_gradient`` and 0.43
under ``syn_minus_red``. So the paper's text and its figures rest on different scores: use
``syn_minus_red`` to reproduce the figures, ``rank_gradient`` to follow the text, and look
at ``synergy_fraction`` too. None of them is tested against chance by itself: see
``analysis.headline`` for the surrogate null of the layer profile.

Definitions (all on the prompt-averaged atoms; ``[..., unit, unit]`` in, ``[..., unit]`` out)
------------------------------------------------------------------------------------------
- **symmetrised pair value**: ``(m[i, j] + m[j, i]) / 2``. For sts and rtr the engine's
  atoms are symmetric already (swapping the two units maps ``sts`` and ``rtr`` to
  themselves, ``phiid.atoms.MIRROR``; checked in the tests to ~1e-15), so this only guards
  against rounding and against user-supplied asymmetric matrices.
- **mean_sts / mean_rtr**: for head i, the ``nanmean`` over j != i of the symmetrised
  value. NaN pairs (a degenerate, e.g. constant, head) are skipped; a head whose pairs are
  all NaN gets NaN.
- **rank_gradient**: ``floor(r(mean_sts)) - floor(r(mean_rtr))`` with ``r`` the 1-based
  average rank of ties (MATLAB ``tiedrank`` = ``scipy.stats.rankdata(method="average")``);
  NaN heads are left out of the ranking and get NaN. Larger = more synergy-dominated.
- **syn_minus_red**: ``d_i = nanmean_{j != i}`` of the symmetrised ``sts - rtr``, then
  :func:`ordinal_rank`: ranks 1..n from the lowest to the highest ``d`` (most synergistic
  = n), every head a distinct rank. The released code ranks with NumPy's default
  ``argsort``, which is not a stable sort, so the order it gives tied heads is
  unspecified; we break ties by unit index (the lower unit gets the lower rank), which
  equals it whenever no two heads tie. Two more differences, both deliberate: the
  released code averages over a ``[layer, head]`` grid of partners whose self-pair cell
  is never written (the array is allocated uninitialised; where it holds 0 every head's
  mean is scaled by the same ``(n-1)/n`` and the ranks do not change), and it has no NaN
  handling (NumPy sorts NaN last, i.e. as the most synergistic); we exclude the
  self-pair and give a NaN head NaN, ranking the others 1..n_valid.
- **synergy_fraction**: per pair ``f = sts / (|sts| + |rtr|)``, then the head mean as above.
  Whenever sts >= 0 and rtr >= 0 this is exactly ``sts / (sts + rtr)``; under MMI rtr is
  always >= 0 (a minimum of mutual informations) and sts is rarely negative. The absolute
  values keep f in [-1, 1] where sts < 0: the literal ``sts / (sts + rtr)`` explodes when
  the two nearly cancel (sts = -0.010, rtr = 0.011 gives -10) and one such pair would
  dominate a head's mean. A pair with ``|sts| + |rtr| == 0`` or a NaN atom is NaN (skipped).

Unstable heads (``analysis.stability``) can be marked in :class:`HeadScores`
(``unstable=``) or left out of every score (``exclude=``): their rows and columns are set
to NaN before scoring, so they get NaN and no other head averages over them.

Scores are pluggable: :func:`register_score` adds a function ``(sts, rtr) -> [..., unit]``
(batched over leading dims, as the bootstrap in ``profile.py`` calls it on
``[boot, unit, unit]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from jaxtyping import Bool, Float
from scipy.stats import rankdata, spearmanr
from torch import Tensor

from synergy_lens._grid import LabelledGrid
from synergy_lens._io import SavedFields
from synergy_lens._registry import Registry
from synergy_lens.analysis.core import Core, select_core
from synergy_lens.phiid.summaries import PairSummaries

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SCORES",
    "HeadScores",
    "PairAtoms",
    "ScoreFn",
    "ScoreName",
    "find_core",
    "get_score",
    "head_mean",
    "ordinal_rank",
    "pair_fraction",
    "rank_gradient",
    "register_score",
    "score_agreement",
    "symmetrize",
    "syn_minus_red",
    "synergy_scores",
    "tiedrank_floor",
]

ScoreName = Literal["rank_gradient", "syn_minus_red", "synergy_fraction", "mean_sts", "mean_rtr"]
"""The built-in per-head scores (see the module docstring for their definitions)."""

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``fn(sts [..., unit, unit], rtr [..., unit, unit]) -> [..., unit]``; larger = more synergistic."""



@runtime_checkable
class PairAtoms(Protocol):
    """What :func:`synergy_scores` reads from a ``PhiIDResult`` (duck-typed)."""

    n_layers: int
    n_heads: int
    labels: list[str]

    @property
    def sts(self) -> Tensor: ...

    @property
    def rtr(self) -> Tensor: ...


# ----------------------------------------------------------------------------- kernels


def symmetrize(m: Float[Tensor, "... unit unit"]) -> Float[Tensor, "... unit unit"]:
    """``(m + m^T) / 2`` with a NaN diagonal (a head is never paired with itself)."""
    sym = (m + m.transpose(-1, -2)) / 2
    eye = torch.eye(m.shape[-1], dtype=torch.bool, device=m.device)
    return sym.masked_fill(eye, math.nan)


def head_mean(m: Float[Tensor, "... unit unit"]) -> Float[Tensor, "... unit"]:
    """Mean over the pairs involving each head: ``nanmean_{j != i} (m[i, j] + m[j, i]) / 2``."""
    return torch.nanmean(symmetrize(m), dim=-1)


def pair_fraction(
    sts: Float[Tensor, "... unit unit"], rtr: Float[Tensor, "... unit unit"]
) -> Float[Tensor, "... unit unit"]:
    """Per-pair synergy fraction ``sts / (|sts| + |rtr|)`` of the symmetrised atoms.

    Equals ``sts / (sts + rtr)`` when both are non-negative; NaN where the denominator is
    0 or an atom is NaN (see the module docstring for why the absolute values).
    """
    s, r = symmetrize(sts), symmetrize(rtr)
    denom = s.abs() + r.abs()
    return torch.where(denom > 0, s / denom, torch.full_like(s, math.nan))


def tiedrank_floor(x: Float[Tensor, "... unit"]) -> Float[Tensor, "... unit"]:
    """``floor(tiedrank(x))`` along the last dim: 1-based average ranks of ties, floored.

    NaN entries are left out of the ranking and stay NaN (as MATLAB's ``tiedrank``).
    """
    arr = x.detach().to("cpu", torch.float64).numpy()
    ranks = rankdata(arr, method="average", axis=-1, nan_policy="omit")
    return torch.from_numpy(np.floor(ranks)).to(device=x.device, dtype=torch.float64)


def rank_gradient(
    sts: Float[Tensor, "... unit unit"], rtr: Float[Tensor, "... unit unit"]
) -> Float[Tensor, "... unit"]:
    """Synergy-redundancy rank gradient of paper (B): ``floor(tiedrank(mean sts)) - floor(tiedrank(mean rtr))``."""
    return tiedrank_floor(head_mean(sts)) - tiedrank_floor(head_mean(rtr))


def ordinal_rank(x: Float[Tensor, "... unit"]) -> Float[Tensor, "... unit"]:
    """Ordinal ranks along the last dim: 1 for the lowest value, n for the highest.

    Every entry gets a distinct rank; ties are broken by position (the earlier entry gets
    the lower rank: a stable sort). NaN entries are left out and stay NaN, so the finite
    ones are ranked 1..n_finite.

    Example:
        >>> ordinal_rank(torch.tensor([0.5, -1.0, 0.5, float("nan"), 2.0])).tolist()
        [2.0, 1.0, 3.0, nan, 4.0]
    """
    arr = x.detach().to("cpu", torch.float64).numpy()
    flat = arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
    out = np.full(flat.shape, np.nan)
    for row, values in enumerate(flat):
        ok = np.flatnonzero(np.isfinite(values))
        order = ok[np.argsort(values[ok], kind="stable")]
        out[row, order] = np.arange(1, ok.size + 1)
    return torch.from_numpy(out.reshape(arr.shape)).to(device=x.device)


def syn_minus_red(
    sts: Float[Tensor, "... unit unit"], rtr: Float[Tensor, "... unit unit"]
) -> Float[Tensor, "... unit"]:
    """The score of (B)'s released code: ordinal rank of each head's mean over partners of ``sts - rtr``.

    Rank 1 = least synergistic, n = most (see the module docstring for the tie and NaN rules).
    """
    return ordinal_rank(torch.nanmean(symmetrize(sts) - symmetrize(rtr), dim=-1))


def _synergy_fraction(sts: Tensor, rtr: Tensor) -> Tensor:
    return torch.nanmean(pair_fraction(sts, rtr), dim=-1)


# ----------------------------------------------------------------------------- registry

SCORES: Registry[ScoreFn] = Registry(
    "score",
    hint="add one with register_score",
    entries=[
        ("rank_gradient", rank_gradient),
        ("syn_minus_red", syn_minus_red),
        ("synergy_fraction", _synergy_fraction),
        ("mean_sts", lambda sts, rtr: head_mean(sts)),
        ("mean_rtr", lambda sts, rtr: head_mean(rtr)),
    ],
)
"""Registry of per-head scores, name -> ``fn(sts, rtr) -> [..., unit]``."""


register_score = SCORES.register
"""``register_score(name, fn=None, *, overwrite=False)`` adds a per-head score; usable as a
decorator (``@register_score("my_score")``). ``fn(sts, rtr)`` gets ``[..., unit, unit]`` atoms
(diagonal NaN, possibly with leading batch dims) and must return ``[..., unit]`` where larger
means more synergistic."""


def get_score(score: str | ScoreFn) -> tuple[str, ScoreFn]:
    """``(name, fn)`` for a registered name or a callable (named after ``fn.__name__``)."""
    if callable(score):
        return getattr(score, "__name__", "custom"), score
    return score, SCORES[score]  # an unknown name raises, listing the registered ones


# ----------------------------------------------------------------------------- result


def _grid(values: Tensor, n_layers: int, n_heads: int) -> Tensor:
    return values.reshape(n_layers, n_heads).to("cpu", torch.float64)


@dataclass
class HeadScores(LabelledGrid, SavedFields):
    """Every per-head score of a model, labelled ``[layer, head]``.

    Attributes:
        mean_sts, mean_rtr: mean persistent synergy / redundancy over the pairs involving
            each head (nats).
        rank_gradient: ``floor(tiedrank(mean_sts)) - floor(tiedrank(mean_rtr))`` (text of (B)).
        synergy_fraction: mean over pairs of ``sts / (|sts| + |rtr|)``.
        score: the name of the score that drives :meth:`core` and profiles.
        values: that score, ``[layer, head]`` (one of the fields above for built-ins).
        spearman, spearman_p: Spearman rank correlation of mean_sts with mean_rtr over heads
            (and its p-value). Near 1 warns that the rank gradient may cancel
            (docs/science.md, "Pitfalls").
        labels: ``"L{layer}H{head}"`` per unit (unit = layer * n_heads + head).
        meta: JSON-able extras (model name, tau, redundancy, number of prompts).
        syn_minus_red: ordinal rank of mean ``sts - rtr`` (released code of (B)).
        unstable: ``[layer, head]`` mask of heads whose series are too coarse to estimate
            (``analysis.stability``), or None when not checked.
        excluded: whether the unstable heads were left out of every score (NaN).
        agreement: Spearman correlation over heads between every pair of registered
            scores on the same atoms, ``{a: {b: rho}}`` (:meth:`agreement_table`).
    """

    FORMAT = "synergy_lens.HeadScores/1"  # save/load: SavedFields
    GRID = ("values", 0)  # n_layers, n_heads, depth: LabelledGrid (which holds labels and meta)

    mean_sts: Float[Tensor, "layer head"]
    mean_rtr: Float[Tensor, "layer head"]
    rank_gradient: Float[Tensor, "layer head"]
    synergy_fraction: Float[Tensor, "layer head"]
    score: str
    values: Float[Tensor, "layer head"]
    spearman: float
    spearman_p: float
    syn_minus_red: Float[Tensor, "layer head"] | None = None
    unstable: Bool[Tensor, "layer head"] | None = None
    excluded: bool = False
    agreement: dict[str, dict[str, float]] = field(default_factory=dict)

    def __repr__(self) -> str:
        flagged = "" if self.unstable is None else f", {int(self.unstable.sum())} unstable heads"
        return (
            f"HeadScores(score={self.score!r}, {self.n_layers} layers x {self.n_heads} heads, "
            f"spearman(mean_sts, mean_rtr)={self.spearman:.3f}{flagged})"
        )

    def unstable_labels(self) -> list[str]:
        """Labels of the heads marked unstable (empty when none or not checked)."""
        if self.unstable is None:
            return []
        return self.labels_where(self.unstable)

    def core(self, q: float = 0.25) -> Core:
        """The synergistic core: top ``q`` of heads by :attr:`values` (see :func:`find_core`)."""
        return select_core(self.values, q, score=self.score, labels=self.labels)

    def agreement_table(self) -> pd.DataFrame:
        """Spearman correlation over heads between the registered scores (a square table)."""
        import pandas as pd

        names = list(self.agreement)
        return pd.DataFrame(
            [[self.agreement[a].get(b, math.nan) for b in names] for a in names],
            index=names,
            columns=names,
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per head: label, layer, head, unit, depth, every score, its rank by
        ``values`` and whether it is marked unstable."""
        import pandas as pd

        flat = self.values.flatten()
        order = sorted(range(flat.numel()), key=lambda u: (-_key(flat[u].item()), u))
        rank = {u: r + 1 for r, u in enumerate(order)}
        units = range(self.n_layers * self.n_heads)
        depth = self.depth
        smr = self.syn_minus_red if self.syn_minus_red is not None else torch.full_like(flat, math.nan)
        unstable = (
            self.unstable.flatten().tolist() if self.unstable is not None else [False] * len(units)
        )
        return pd.DataFrame(
            {
                **self.unit_columns(),
                "unit": list(units),
                "depth": [float(depth[u // self.n_heads]) for u in units],
                "mean_sts": self.mean_sts.flatten().numpy(),
                "mean_rtr": self.mean_rtr.flatten().numpy(),
                "rank_gradient": self.rank_gradient.flatten().numpy(),
                "syn_minus_red": smr.flatten().numpy(),
                "synergy_fraction": self.synergy_fraction.flatten().numpy(),
                "score": flat.numpy(),
                "rank": [rank[u] for u in units],
                "unstable": unstable,
            }
        )

def _key(v: float) -> float:
    """Sort key that puts NaN last in a descending sort."""
    return -math.inf if math.isnan(v) else v


def _spearman(a: Tensor, b: Tensor) -> tuple[float, float]:
    x, y = a.flatten().numpy(), b.flatten().numpy()
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan, math.nan
    res = spearmanr(x[ok], y[ok])
    return float(res[0]), float(res[1])


def score_agreement(sts: Tensor, rtr: Tensor) -> dict[str, dict[str, float]]:
    """Spearman correlation over heads between every pair of registered scores.

    ``{a: {b: rho}}`` for all names in :data:`SCORES` (a score that fails on these atoms is
    left out). Ties and NaN heads follow ``scipy.stats.spearmanr`` on the finite heads.
    """
    values: dict[str, Tensor] = {}
    for name, fn in SCORES.items():
        try:
            v = fn(sts, rtr)
        except Exception:  # a user score may not apply to these atoms
            continue
        if v.shape == sts.shape[:-1]:
            values[name] = v.detach().to("cpu", torch.float64)
    out: dict[str, dict[str, float]] = {}
    for a, va in values.items():
        out[a] = {b: (1.0 if a == b else _spearman(va, vb)[0]) for b, vb in values.items()}
    return out


def _unit_mask(unstable: Any, labels: list[str], n_units: int) -> Tensor | None:
    """A ``[unit]`` bool mask from a mask (any shape with ``n_units`` entries), labels, or an
    object with ``.unstable`` (``analysis.stability.UnitStability``)."""
    if unstable is None:
        return None
    unstable = getattr(unstable, "unstable", unstable)
    if isinstance(unstable, Tensor):
        if unstable.numel() != n_units:
            raise ValueError(
                f"unstable mask has {unstable.numel()} entries, expected one per head ({n_units})"
            )
        return unstable.flatten().to("cpu", torch.bool)
    names = list(unstable)
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise ValueError(f"unstable heads {unknown} are not labels of this result (e.g. 'L5H3')")
    mask = torch.zeros(n_units, dtype=torch.bool)
    mask[[labels.index(n) for n in names]] = True
    return mask


def _streamed_scores(summaries: PairSummaries, score: str | ScoreFn) -> HeadScores:
    """:class:`HeadScores` of streamed :class:`~synergy_lens.phiid.PairSummaries`.

    ``rank_gradient``, ``syn_minus_red``, ``mean_sts``, ``mean_rtr`` and ``synergy_fraction``
    follow from per-unit means exactly; scores defined on ``[unit, unit]`` matrices need the
    dense path. Needs ``n_layers``/``n_heads`` (set by ``decompose``).
    """
    if summaries.n_layers is None or summaries.n_heads is None:
        raise ValueError("head scores need n_layers and n_heads: pass them to pair_summaries")
    if summaries.fraction_mean is None:
        raise ValueError(
            "merged summaries have no synergy fraction; summarise all prompts at once"
        )
    sts, rtr = summaries.mean_sts.to("cpu", torch.float64), summaries.mean_rtr.to("cpu", torch.float64)
    values = {
        "mean_sts": sts,
        "mean_rtr": rtr,
        "rank_gradient": tiedrank_floor(sts) - tiedrank_floor(rtr),
        "synergy_fraction": summaries.fraction_mean.to("cpu", torch.float64),
        "syn_minus_red": ordinal_rank(sts - rtr),
    }
    if not isinstance(score, str) or score not in values:
        raise ValueError(
            f"score {getattr(score, '__name__', score)!r} needs the [unit, unit] atoms, which "
            f"streamed summaries do not hold; choose one of {sorted(values)} or decompose "
            "with stream=False"
        )
    grid = {k: v.reshape(summaries.n_layers, summaries.n_heads) for k, v in values.items()}
    rho, p = _spearman(sts, rtr)
    kwargs: dict[str, Any] = dict(grid)
    kwargs.update(
        score=score,
        values=grid[score],
        spearman=rho,
        spearman_p=p,
        labels=list(summaries.labels)
        if summaries.labels is not None
        else [str(u) for u in range(summaries.n_units)],
        meta={
            "model_name": summaries.meta.get("model_name", ""),
            "n_prompts": summaries.n_prompts,
            "tau": summaries.tau,
            "redundancy": summaries.redundancy,
            "engine": "stream",
        },
    )
    return HeadScores(**kwargs)


def synergy_scores(
    result: PairAtoms | PairSummaries,
    *,
    score: str | ScoreFn = "rank_gradient",
    unstable: Any = None,
    exclude: bool = False,
) -> HeadScores:
    """Per-head synergy scores of a :class:`~synergy_lens.phiid.PhiIDResult`.

    Args:
        result: a ``PhiIDResult`` (or anything with ``sts``/``rtr`` ``[unit, unit]``,
            ``n_layers``, ``n_heads`` and ``labels``).
        score: which score drives :attr:`HeadScores.values`, the core and the profile:
            ``"rank_gradient"`` (text of paper (B)), ``"syn_minus_red"`` (released code of
            (B)), ``"synergy_fraction"`` (robust to the rank correlation pitfall),
            ``"mean_sts"``, ``"mean_rtr"``, any registered name, or a callable
            ``(sts, rtr) -> [unit]``. The module docstring says where each comes from.
        unstable: heads to mark unstable: a ``UnitStability`` (``analysis.unit_stability``),
            a boolean mask with one entry per head, or a list of labels (``"L18H8"``).
        exclude: leave the unstable heads out of every score (their pairs become NaN, so
            they get NaN and no other head averages over them).

    Returns:
        :class:`HeadScores` with every built-in score, the chosen one as ``values``, the
        Spearman correlation of mean sts with mean rtr (always reported) and the
        agreement between all registered scores.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> sts = torch.tensor([[float("nan"), 2.0, 1.0], [2.0, float("nan"), 3.0], [1.0, 3.0, float("nan")]])
        >>> fake = SimpleNamespace(sts=sts, rtr=sts.flip(0).flip(1), n_layers=1, n_heads=3,
        ...                        labels=["L0H0", "L0H1", "L0H2"])
        >>> synergy_scores(fake).mean_sts.tolist()
        [[1.5, 2.5, 2.0]]
    """
    if isinstance(result, PairSummaries):  # streamed (phiid.stream): from per-unit means
        return _streamed_scores(result, score)
    name, fn = get_score(score)
    sts, rtr, n_layers, n_heads = _checked_atoms(result)
    labels = list(result.labels)
    mask = _unit_mask(unstable, labels, n_layers * n_heads)
    if exclude and mask is not None and bool(mask.any()):
        drop = mask.to(sts.device)
        pair_drop = drop[:, None] | drop[None, :]
        sts = sts.masked_fill(pair_drop, math.nan)
        rtr = rtr.masked_fill(pair_drop, math.nan)
    mean_sts, mean_rtr = head_mean(sts), head_mean(rtr)
    grad = tiedrank_floor(mean_sts) - tiedrank_floor(mean_rtr)
    smr = syn_minus_red(sts, rtr)
    frac = _synergy_fraction(sts, rtr)
    values = fn(sts, rtr)
    if values.shape != mean_sts.shape:
        raise ValueError(
            f"score {name!r} returned shape {tuple(values.shape)}, expected {tuple(mean_sts.shape)}"
        )
    rho, p = _spearman(mean_sts.cpu(), mean_rtr.cpu())
    meta_in = dict(getattr(result, "meta", {}) or {})
    meta = {"model_name": meta_in.get("model_name", ""), "n_prompts": meta_in.get("n_prompts"),
            "tau": getattr(result, "tau", None), "redundancy": getattr(result, "redundancy", None)}
    return HeadScores(
        mean_sts=_grid(mean_sts, n_layers, n_heads),
        mean_rtr=_grid(mean_rtr, n_layers, n_heads),
        rank_gradient=_grid(grad, n_layers, n_heads),
        synergy_fraction=_grid(frac, n_layers, n_heads),
        score=name,
        values=_grid(values, n_layers, n_heads),
        spearman=rho,
        spearman_p=p,
        labels=labels,
        meta=meta,
        syn_minus_red=_grid(smr, n_layers, n_heads),
        unstable=None if mask is None else mask.reshape(n_layers, n_heads),
        excluded=bool(exclude and mask is not None and mask.any()),
        agreement=score_agreement(sts, rtr),
    )


def _checked_atoms(result: Any) -> tuple[Tensor, Tensor, int, int]:
    """``(sts, rtr, n_layers, n_heads)`` of a result, float64, checked to be ``[unit, unit]``."""
    sts = torch.as_tensor(result.sts).to(torch.float64)
    rtr = torch.as_tensor(result.rtr).to(torch.float64)
    n_layers, n_heads = int(result.n_layers), int(result.n_heads)
    if sts.shape != (n_layers * n_heads,) * 2 or rtr.shape != sts.shape:
        raise ValueError(
            f"sts/rtr must be [unit, unit] with unit = n_layers * n_heads = {n_layers * n_heads}, "
            f"got {tuple(sts.shape)} and {tuple(rtr.shape)}"
        )
    return sts, rtr, n_layers, n_heads


def find_core(source: Any, q: float = 0.25, *, score: str | None = None) -> Core:
    """The synergistic core (abstract heads) and the memory heads (see :mod:`.core`).

    Args:
        source: :class:`HeadScores`, or a ``PhiIDResult`` (scored with ``score``, default
            ``"rank_gradient"``).
        q: fraction of heads per group, in (0, 0.5]; paper (B) ablates the top 25%.
        score: the score to rank by when ``source`` is a ``PhiIDResult``. A ``HeadScores``
            is used as it is (its own ``score``); naming another score then is an error.

    Returns:
        A :class:`~synergy_lens.analysis.core.Core`; ``k = ceil(q * n_valid)`` heads per
        group, ties broken by unit index.
    """
    if isinstance(source, HeadScores):
        if score is not None and score != source.score:
            raise ValueError(
                f"these HeadScores were computed with score={source.score!r}; recompute them with "
                f"synergy_scores(result, score={score!r}) or pass the PhiIDResult"
            )
        return source.core(q)
    return synergy_scores(source, score=score or "rank_gradient").core(q)
