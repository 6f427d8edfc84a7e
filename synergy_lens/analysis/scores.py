"""Per-head synergy scores: from pairwise PhiID atoms to one number per attention head.

What and why
------------
PhiID gives, for every ordered pair of heads (i, j), persistent synergy ``sts[i, j]`` and
persistent redundancy ``rtr[i, j]``. The protocol of Urbina-Rodriguez et al. (paper (B),
arXiv 2601.06851, "Methods") summarises a head by the mean over all pairs that involve it,
ranks heads by that mean synergy and by that mean redundancy, and calls

    rank gradient = rank(mean sts) - rank(mean rtr)

(reference MATLAB: ``floor(tiedrank(mean(syn))) - floor(tiedrank(mean(red)))``).

The known pitfall (science.md): per-head mean sts and mean rtr are often strongly rank
correlated (Spearman ~0.9 on Pythia-1B and Qwen3-8B), because both grow with a head's
total time-delayed information and autocorrelation; their rank difference can then cancel
a real layer profile. A per-pair normalised score, ``sts / (sts + rtr)``, does not cancel
that way. So this module computes every score, always reports the Spearman correlation of
mean sts with mean rtr, and lets the caller choose which score drives the profile/core.

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
- **synergy_fraction**: per pair ``f = sts / (|sts| + |rtr|)``, then the head mean as above.
  Whenever sts >= 0 and rtr >= 0 this is exactly ``sts / (sts + rtr)``; under MMI rtr is
  always >= 0 (a minimum of mutual informations) and sts is rarely negative. The absolute
  values keep f in [-1, 1] where sts < 0: the literal ``sts / (sts + rtr)`` explodes when
  the two nearly cancel (sts = -0.010, rtr = 0.011 gives -10) and one such pair would
  dominate a head's mean. A pair with ``|sts| + |rtr| == 0`` or a NaN atom is NaN (skipped).

Scores are pluggable: :func:`register_score` adds a function ``(sts, rtr) -> [..., unit]``
(batched over leading dims, as the bootstrap in ``profile.py`` calls it on
``[boot, unit, unit]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
from jaxtyping import Float
from scipy.stats import rankdata, spearmanr
from torch import Tensor

from synergy_lens._io import load_payload, save_payload

if TYPE_CHECKING:
    import pandas as pd

    from synergy_lens.analysis.core import Core

__all__ = [
    "SCORES",
    "HeadScores",
    "PairAtoms",
    "ScoreFn",
    "ScoreName",
    "get_score",
    "head_mean",
    "pair_fraction",
    "rank_gradient",
    "register_score",
    "symmetrize",
    "synergy_scores",
    "tiedrank_floor",
]

ScoreName = Literal["rank_gradient", "synergy_fraction", "mean_sts", "mean_rtr"]
"""The built-in per-head scores (see the module docstring for their definitions)."""

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``fn(sts [..., unit, unit], rtr [..., unit, unit]) -> [..., unit]``; larger = more synergistic."""

_FORMAT = "synergy_lens.HeadScores/1"


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


def _synergy_fraction(sts: Tensor, rtr: Tensor) -> Tensor:
    return torch.nanmean(pair_fraction(sts, rtr), dim=-1)


# ----------------------------------------------------------------------------- registry

SCORES: dict[str, ScoreFn] = {
    "rank_gradient": rank_gradient,
    "synergy_fraction": _synergy_fraction,
    "mean_sts": lambda sts, rtr: head_mean(sts),
    "mean_rtr": lambda sts, rtr: head_mean(rtr),
}
"""Registry of per-head scores, name -> ``fn(sts, rtr) -> [..., unit]``."""


def register_score(name: str, fn: ScoreFn | None = None, *, overwrite: bool = False) -> Any:
    """Add a per-head score; usable as a decorator (``@register_score("my_score")``).

    ``fn(sts, rtr)`` gets ``[..., unit, unit]`` atoms (diagonal NaN, possibly with leading
    batch dims) and must return ``[..., unit]`` where larger means more synergistic.
    """

    def add(f: ScoreFn) -> ScoreFn:
        if name in SCORES and not overwrite:
            raise ValueError(
                f"score {name!r} is already registered; pass overwrite=True to replace it"
            )
        SCORES[name] = f
        return f

    return add if fn is None else add(fn)


def get_score(score: str | ScoreFn) -> tuple[str, ScoreFn]:
    """``(name, fn)`` for a registered name or a callable (named after ``fn.__name__``)."""
    if callable(score):
        return getattr(score, "__name__", "custom"), score
    if score not in SCORES:
        raise ValueError(
            f"unknown score {score!r}; registered: {sorted(SCORES)} (add one with register_score)"
        )
    return score, SCORES[score]


# ----------------------------------------------------------------------------- result


def _grid(values: Tensor, n_layers: int, n_heads: int) -> Tensor:
    return values.reshape(n_layers, n_heads).to("cpu", torch.float64)


@dataclass
class HeadScores:
    """Every per-head score of a model, labelled ``[layer, head]``.

    Attributes:
        mean_sts, mean_rtr: mean persistent synergy / redundancy over the pairs involving
            each head (nats).
        rank_gradient: ``floor(tiedrank(mean_sts)) - floor(tiedrank(mean_rtr))`` (paper (B)).
        synergy_fraction: mean over pairs of ``sts / (|sts| + |rtr|)``.
        score: the name of the score that drives :meth:`core` and profiles.
        values: that score, ``[layer, head]`` (one of the fields above for built-ins).
        spearman, spearman_p: Spearman rank correlation of mean_sts with mean_rtr over heads
            (and its p-value). Near 1 warns that the rank gradient may cancel (science.md).
        labels: ``"L{layer}H{head}"`` per unit (unit = layer * n_heads + head).
        meta: JSON-able extras (model name, tau, redundancy, number of prompts).
    """

    mean_sts: Float[Tensor, "layer head"]
    mean_rtr: Float[Tensor, "layer head"]
    rank_gradient: Float[Tensor, "layer head"]
    synergy_fraction: Float[Tensor, "layer head"]
    score: str
    values: Float[Tensor, "layer head"]
    spearman: float
    spearman_p: float
    labels: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.values.shape[1])

    @property
    def depth(self) -> Float[Tensor, " layer"]:
        """Normalised depth ``layer / (n_layers - 1)`` in [0, 1] (0 for a one-layer model)."""
        return (
            torch.linspace(0.0, 1.0, self.n_layers, dtype=torch.float64)
            if self.n_layers > 1
            else torch.zeros(1, dtype=torch.float64)
        )

    def __repr__(self) -> str:
        return (
            f"HeadScores(score={self.score!r}, {self.n_layers} layers x {self.n_heads} heads, "
            f"spearman(mean_sts, mean_rtr)={self.spearman:.3f})"
        )

    def core(self, q: float = 0.25) -> Core:
        """The synergistic core: top ``q`` of heads by :attr:`values` (see :func:`find_core`)."""
        from synergy_lens.analysis.core import find_core

        return find_core(self, q=q)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per head: label, layer, head, unit, depth, every score, and its rank by ``values``."""
        import pandas as pd

        flat = self.values.flatten()
        order = sorted(range(flat.numel()), key=lambda u: (-_key(flat[u].item()), u))
        rank = {u: r + 1 for r, u in enumerate(order)}
        units = range(self.n_layers * self.n_heads)
        depth = self.depth
        return pd.DataFrame(
            {
                "label": self.labels,
                "layer": [u // self.n_heads for u in units],
                "head": [u % self.n_heads for u in units],
                "unit": list(units),
                "depth": [float(depth[u // self.n_heads]) for u in units],
                "mean_sts": self.mean_sts.flatten().numpy(),
                "mean_rtr": self.mean_rtr.flatten().numpy(),
                "rank_gradient": self.rank_gradient.flatten().numpy(),
                "synergy_fraction": self.synergy_fraction.flatten().numpy(),
                "score": flat.numpy(),
                "rank": [rank[u] for u in units],
            }
        )

    def save(self, path: str | Path) -> None:
        """Tensors and a JSON header (see ``analysis/_io.py``); :meth:`load` round-trips."""
        tensors = {
            k: getattr(self, k)
            for k in ("mean_sts", "mean_rtr", "rank_gradient", "synergy_fraction", "values")
        }
        header = {
            "score": self.score,
            "spearman": self.spearman,
            "spearman_p": self.spearman_p,
            "labels": self.labels,
            "meta": self.meta,
        }
        save_payload(path, _FORMAT, tensors, header)

    @classmethod
    def load(cls, path: str | Path) -> HeadScores:
        tensors, header = load_payload(path, _FORMAT)
        return cls(
            **tensors,
            score=header["score"],
            spearman=header["spearman"],
            spearman_p=header["spearman_p"],
            labels=header["labels"],
            meta=header["meta"],
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


def synergy_scores(result: PairAtoms, *, score: str | ScoreFn = "rank_gradient") -> HeadScores:
    """Per-head synergy scores of a :class:`~synergy_lens.phiid.PhiIDResult`.

    Args:
        result: a ``PhiIDResult`` (or anything with ``sts``/``rtr`` ``[unit, unit]``,
            ``n_layers``, ``n_heads`` and ``labels``).
        score: which score drives :attr:`HeadScores.values`, the core and the profile:
            ``"rank_gradient"`` (paper (B)), ``"synergy_fraction"`` (robust to the rank
            correlation pitfall), ``"mean_sts"``, ``"mean_rtr"``, any registered name, or a
            callable ``(sts, rtr) -> [unit]``.

    Returns:
        :class:`HeadScores` with all four built-in scores, the chosen one as ``values``,
        and the Spearman correlation of mean sts with mean rtr (always reported).

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> sts = torch.tensor([[float("nan"), 2.0, 1.0], [2.0, float("nan"), 3.0], [1.0, 3.0, float("nan")]])
        >>> fake = SimpleNamespace(sts=sts, rtr=sts.flip(0).flip(1), n_layers=1, n_heads=3,
        ...                        labels=["L0H0", "L0H1", "L0H2"])
        >>> synergy_scores(fake).mean_sts.tolist()
        [[1.5, 2.5, 2.0]]
    """
    name, fn = get_score(score)
    sts = torch.as_tensor(result.sts).to(torch.float64)
    rtr = torch.as_tensor(result.rtr).to(torch.float64)
    n_layers, n_heads = int(result.n_layers), int(result.n_heads)
    if sts.shape != (n_layers * n_heads,) * 2 or rtr.shape != sts.shape:
        raise ValueError(
            f"sts/rtr must be [unit, unit] with unit = n_layers * n_heads = {n_layers * n_heads}, "
            f"got {tuple(sts.shape)} and {tuple(rtr.shape)}"
        )
    mean_sts, mean_rtr = head_mean(sts), head_mean(rtr)
    grad = tiedrank_floor(mean_sts) - tiedrank_floor(mean_rtr)
    frac = _synergy_fraction(sts, rtr)
    values = fn(sts, rtr)
    if values.shape != mean_sts.shape:
        raise ValueError(
            f"score {name!r} returned shape {tuple(values.shape)}, expected {tuple(mean_sts.shape)}"
        )
    rho, p = _spearman(mean_sts.cpu(), mean_rtr.cpu())
    meta_in = dict(getattr(result, "meta", {}) or {})
    meta = {
        "model_name": meta_in.get("model_name", ""),
        "n_prompts": meta_in.get("n_prompts"),
        "tau": getattr(result, "tau", None),
        "redundancy": getattr(result, "redundancy", None),
    }
    return HeadScores(
        mean_sts=_grid(mean_sts, n_layers, n_heads),
        mean_rtr=_grid(mean_rtr, n_layers, n_heads),
        rank_gradient=_grid(grad, n_layers, n_heads),
        synergy_fraction=_grid(frac, n_layers, n_heads),
        score=name,
        values=_grid(values, n_layers, n_heads),
        spearman=rho,
        spearman_p=p,
        labels=list(result.labels),
        meta=meta,
    )
