"""PairSummaries: what the streaming engine returns (per-unit means and top-k pairs).

What is computed, exactly
-------------------------
Let ``A[k, i, j]`` be the atoms that :func:`~synergy_lens.phiid.all_pairs` (one series)
or :func:`~synergy_lens.phiid.decompose` (the prompt mean, or the pooled decomposition)
would hold: ``ATOMS[k]`` with unit i as source x and unit j as target y, NaN for
degenerate pairs. :func:`~synergy_lens.phiid.pair_summaries` returns, without holding A:

- ``unit_mean[k, i] = nanmean_{j != i} A[k, i, j]``: unit i as *source*. As target it is
  ``unit_mean[MIRROR[k], i]`` (:meth:`PairSummaries.target_mean`), because swapping the
  units maps atom k to atom ``MIRROR[k]``; sts and rtr are their own mirrors, so
  ``mean_sts``/``mean_rtr`` equal the symmetrised head means of
  :func:`~synergy_lens.analysis.scores.head_mean`.
- ``n_partners[i]``: how many j enter that mean (pairs defined in at least one prompt).
- ``fraction_mean[i]``: nanmean over partners of ``sts / (|sts| + |rtr|)`` (the
  ``synergy_fraction`` score; pairs with a zero denominator are skipped).
- the ``top_k`` unordered pairs (i < j) with the largest sts and with the largest rtr, with
  all 16 atoms of ``A[:, i, j]``. Order: value descending, ties by (i, j) ascending (so
  the result does not depend on block sizes); NaN pairs never rank; fewer than ``top_k``
  rows when fewer pairs are defined.

Merging summaries of different prompt sets (:meth:`PairSummaries.merge`)
------------------------------------------------------------------------
The per-unit mean of the prompt-mean atoms is the prompt-weighted mean of the per-unit
means *only when every pair has the same NaN pattern in every prompt* (the counts then
match); a pair undefined in some prompts weighs differently in the two orders. ``merge``
therefore weights each unit by ``n_prompts * n_partners`` (its defined (prompt, partner)
entries), is exact when neither side has partially defined pairs and both name the same
degenerate units and pairs, and warns otherwise. The synergy fraction and the top-k are
non-linear in the prompt-mean atoms and cannot be merged: the merged object has them as
None. For everything exact, give :func:`pair_summaries` all prompts at once; it streams
the prompt-mean atoms block by block.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from synergy_lens._io import SavedFields
from synergy_lens._repr import SummaryRepr
from synergy_lens._views import KeyedView
from synergy_lens.phiid.atoms import ATOMS, MIRROR, atom_index

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PairSummaries"]

_TOP = ("top_sts_pairs", "top_sts_atoms", "top_rtr_pairs", "top_rtr_atoms")
STREAM_SCORES = ("rank_gradient", "synergy_fraction", "mean_sts", "mean_rtr")
"""Per-head scores that follow from per-unit means (plus ``syn_minus_red`` where
``analysis.scores`` defines it); a score on ``[unit, unit]`` matrices needs the dense path."""


_KEPT_BY_MERGE = ("labels", "n_layers", "n_heads", "tau", "redundancy")
"""The fields a merge copies from the first side (``merge`` checks that both sides have the
same ``tau``, ``redundancy``, labels and number of units)."""


@dataclass(repr=False)
class PairSummaries(SummaryRepr, SavedFields):
    """Per-unit means of the 16 atoms over partners, and the top-k pairs by sts and rtr.

    Attributes:
        unit_mean: float64 ``[16, unit]`` in ATOMS order, unit as source (module docstring).
        n_partners: int64 ``[unit]``, valid partners in each mean.
        fraction_mean: float64 ``[unit]``, mean over partners of sts / (|sts| + |rtr|);
            None after :meth:`merge`.
        top_sts_pairs, top_rtr_pairs: int64 ``[k, 2]`` (i < j), best first; None after merge.
        top_sts_atoms, top_rtr_atoms: float64 ``[k, 16]``, the pairs' atoms (i as source).
        labels: unit labels or None; n_layers, n_heads: model shape or None.
        tau, redundancy: as computed. aggregate: ``"single"`` (one series),
            ``"mean_over_prompts"`` or ``"pooled"``. n_prompts: prompts combined.
        constant_units, collinear_pairs: the degenerate units and pairs (left out).
        partial_pairs: pairs defined in some prompts but not all (mean over prompts).
        meta: JSON-able extras.
    """

    FORMAT = "synergy_lens.PairSummaries/1"  # save/load: SavedFields
    SAVED_CONSTANTS: ClassVar[dict[str, Any]] = {"atoms_order": list(ATOMS)}  # a file must list the atoms in this order

    unit_mean: Float[Tensor, "atom unit"]
    n_partners: Int[Tensor, " unit"]
    fraction_mean: Float[Tensor, " unit"] | None = None
    top_sts_pairs: Int[Tensor, "k 2"] | None = None
    top_sts_atoms: Float[Tensor, "k atom"] | None = None
    top_rtr_pairs: Int[Tensor, "k 2"] | None = None
    top_rtr_atoms: Float[Tensor, "k atom"] | None = None
    labels: list[str] | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    tau: int = 1
    redundancy: str = "MMI"
    aggregate: str = "single"
    n_prompts: int = 1
    constant_units: list[int] = field(default_factory=list)
    collinear_pairs: list[list[int]] = field(default_factory=list)
    partial_pairs: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k, u = self.unit_mean.shape
        if k != len(ATOMS):
            raise ValueError(f"unit_mean must be [16, unit], got {tuple(self.unit_mean.shape)}")
        if self.labels is not None and len(self.labels) != u:
            raise ValueError(f"{len(self.labels)} labels for {u} units")
        if (
            self.n_layers is not None
            and self.n_heads is not None
            and self.n_layers * self.n_heads != u
        ):
            raise ValueError(
                f"n_layers * n_heads = {self.n_layers * self.n_heads} but there are {u} units"
            )

    def _summary_extra(self) -> list[tuple[str, str]]:
        if self.top_sts_pairs is None or not self.top_sts_pairs.shape[0]:
            return []
        best = self.top_sts_pairs[:3].tolist()
        return [("top sts pairs", ", ".join(f"{self._label(i)}-{self._label(j)}" for i, j in best))]

    # ---------------------------------------------------------------- read-outs
    @property
    def n_units(self) -> int:
        return int(self.unit_mean.shape[-1])

    def atom_mean(self, name: str) -> Float[Tensor, " unit"]:
        """Per-unit mean of one atom (unit as source), e.g. ``s.atom_mean("xty")``."""
        return self.unit_mean[atom_index(name)]

    def target_mean(self) -> Float[Tensor, "atom unit"]:
        """Per-unit means with the unit as target y: ``unit_mean[MIRROR]``."""
        return self.unit_mean[list(MIRROR)]

    mean_sts = KeyedView("atom_mean", "sts", "Mean persistent synergy over each unit's partners (nats), ``[unit]``.")
    mean_rtr = KeyedView("atom_mean", "rtr", "Mean persistent redundancy over each unit's partners (nats), ``[unit]``.")

    @property
    def syn_minus_red(self) -> Float[Tensor, " unit"]:
        """Mean over partners of ``sts - rtr`` (exact: both share the NaN pattern)."""
        return self.mean_sts - self.mean_rtr

    def top_pairs(self, by: Literal["sts", "rtr"] = "sts") -> tuple[Tensor, Tensor]:
        """``(pairs [k, 2], atoms [k, 16])`` of the top-k pairs by ``"sts"`` or ``"rtr"``."""
        if by not in ("sts", "rtr"):
            raise ValueError(f"by must be 'sts' or 'rtr', got {by!r}")
        pairs, atoms = getattr(self, f"top_{by}_pairs"), getattr(self, f"top_{by}_atoms")
        if pairs is None or atoms is None:
            raise ValueError(
                "these summaries hold no top-k pairs (merged summaries cannot keep them); "
                "run pair_summaries on all prompts at once"
            )
        return pairs, atoms

    def _label(self, u: int) -> str:
        return self.labels[u] if self.labels is not None else str(u)

    def to_dataframe(self, kind: Literal["units", "top_sts", "top_rtr"] = "units") -> pd.DataFrame:
        """``"units"``: one row per unit (label, n_partners, the 16 atom means, fraction);
        ``"top_sts"``/``"top_rtr"``: one row per top pair (rank, i, j, labels, 16 atoms)."""
        import pandas as pd

        if kind == "units":
            means = self.unit_mean.detach().cpu()
            frame: dict[str, Any] = {
                "unit": list(range(self.n_units)),
                "label": [self._label(u) for u in range(self.n_units)],
                "n_partners": self.n_partners.cpu().numpy(),
            }
            frame.update({name: means[k].numpy() for k, name in enumerate(ATOMS)})
            if self.fraction_mean is not None:
                frame["synergy_fraction"] = self.fraction_mean.cpu().numpy()
            return pd.DataFrame(frame)
        if kind not in ("top_sts", "top_rtr"):
            raise ValueError(f"kind must be 'units', 'top_sts' or 'top_rtr', got {kind!r}")
        pairs, atoms = self.top_pairs("sts" if kind == "top_sts" else "rtr")
        pairs, atoms = pairs.cpu(), atoms.detach().cpu()
        frame = {
            "rank": list(range(1, pairs.shape[0] + 1)),
            "i": pairs[:, 0].numpy(),
            "j": pairs[:, 1].numpy(),
            "source": [self._label(i) for i in pairs[:, 0].tolist()],
            "target": [self._label(j) for j in pairs[:, 1].tolist()],
        }
        frame.update({name: atoms[:, k].numpy() for k, name in enumerate(ATOMS)})
        return pd.DataFrame(frame)

    # ---------------------------------------------------------------- merging
    def merge(self, other: PairSummaries) -> PairSummaries:
        """Summaries of the union of two prompt sets (see the module docstring).

        Per-unit means are weighted by each side's ``n_prompts * n_partners``; exact when
        neither side has partially defined pairs and both share the same degenerate
        units and pairs, else a ``RuntimeWarning`` says it is approximate. Fraction and
        top-k pairs are dropped (None).
        """
        for name in ("tau", "redundancy", "n_units", "labels"):
            if getattr(self, name) != getattr(other, name):
                raise ValueError(
                    f"cannot merge summaries with different {name}: {getattr(self, name)!r} "
                    f"vs {getattr(other, name)!r}"
                )
        if "pooled" in (self.aggregate, other.aggregate):
            raise ValueError("pooled summaries cannot be merged; pool all prompts in one call")
        exact = (
            self.partial_pairs == 0
            and other.partial_pairs == 0
            and self.constant_units == other.constant_units
            and self.collinear_pairs == other.collinear_pairs
        )
        if not exact:
            warnings.warn(
                "merging summaries whose pairs are undefined in different prompts: the merged "
                "per-unit means weight (prompt, partner) entries and differ from the means of "
                "the prompt-mean atoms; run pair_summaries on all prompts at once to be exact",
                RuntimeWarning,
                stacklevel=2,
            )
        wa = self.n_prompts * self.n_partners.to(torch.float64)
        wb = other.n_prompts * other.n_partners.to(torch.float64)
        total = wa + wb
        ma, mb = self.unit_mean.nan_to_num(), other.unit_mean.nan_to_num()
        mean = torch.where(total > 0, (wa * ma + wb * mb) / total, math.nan)
        return PairSummaries(
            unit_mean=mean,
            n_partners=torch.maximum(self.n_partners, other.n_partners),
            **{name: getattr(self, name) for name in _KEPT_BY_MERGE},
            aggregate="mean_over_prompts",
            n_prompts=self.n_prompts + other.n_prompts,
            constant_units=sorted(set(self.constant_units) | set(other.constant_units)),
            collinear_pairs=[
                list(p)
                for p in sorted(
                    {(p[0], p[1]) for p in [*self.collinear_pairs, *other.collinear_pairs]}
                )
            ],
            partial_pairs=self.partial_pairs + other.partial_pairs,
            meta={**self.meta, "merged": True, "exact_merge": exact},
        )
