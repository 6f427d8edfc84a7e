"""Heads whose recorded series are too coarse for PhiID: find them, name them, mark them.

What and why
------------
Gaussian PhiID reads a unit only through the covariances of its series. A head whose
signal barely moves (its L2 norm sits near one value, changing by a few float32 steps)
has a covariance made of rounding: a 1-ulp change of its series can move its atoms by
percents and, through the ranks, the scores of other heads. On SmolLM2-135M head L18H8
sits near 0.849 with std/mean between 2e-6 and 9e-5 and only 13-37 distinct float32 values
per prompt of 100 tokens; nudging its series by one ulp changed its mean sts by 1.3% and
the rank gradient of 11 other heads. ``CONSTANT_RTOL`` in the PhiID engine (1e-10) only
catches exactly constant heads, so this check works on the recording itself.

Two per-prompt measures of each unit's valid series ``x`` (length ``n``):

- **distinct fraction**: ``len(unique(x)) / n``; a well-resolved series has almost every
  value distinct, a quantised one few;
- **relative spread in ulp**: ``std(x) / |mean(x)| / eps`` with ``eps`` the machine
  epsilon of the dtype the model ran in at recording (``model_config["dtype"]``; float32:
  1.19e-7, bfloat16: 7.8e-3). A spread of a few hundred ulp means the series is a few
  hundred rounding steps wide.

A unit is **unstable** when, over prompts, the median distinct fraction is below
``min_distinct`` (0.5) or the median spread is below ``min_spread_ulp`` (1000 ulp). The
median makes one odd prompt irrelevant. Constant (dead) heads are flagged too. The
thresholds are parameters; docs/science.md, "Pitfalls", explains the choice.

What the tool does with them: :func:`unit_stability` warns once naming them; the scores,
figures and report mark them; ``synergy_scores(result, unstable=..., exclude=True)``
leaves them out of every score.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from synergy_lens._grid import LabelledGrid
from synergy_lens._io import SavedFields
from synergy_lens.units import unit_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["UnitStability", "unit_stability"]



@dataclass
class UnitStability(LabelledGrid, SavedFields):
    """Which heads are too coarse to estimate, and why.

    Attributes:
        distinct: median over prompts of the distinct-value fraction, ``[layer, head]``.
        spread_ulp: median over prompts of ``std / |mean| / eps``, ``[layer, head]``.
        dtype: the dtype name the model ran in.
        min_distinct, min_spread_ulp: the thresholds.
        labels: unit labels; meta: JSON-able extras.
        unstable (derived): ``[layer, head]`` mask of the flagged heads.
        eps (derived): the machine epsilon of ``dtype``.
    """

    FORMAT = "synergy_lens.UnitStability/2"  # /2: unstable and eps derived, not stored
    GRID = ("distinct", 0)  # n_layers, n_heads: LabelledGrid (which holds labels and meta)

    distinct: Float[Tensor, "layer head"]
    spread_ulp: Float[Tensor, "layer head"]
    dtype: str
    min_distinct: float
    min_spread_ulp: float

    @property
    def unstable(self) -> Bool[Tensor, "layer head"]:
        """Heads whose median distinct fraction or median spread is below its threshold (or NaN)."""
        return self._too_few_distinct() | self._too_narrow()

    @property
    def eps(self) -> float:
        """Machine epsilon of :attr:`dtype` (the unit of :attr:`spread_ulp`)."""
        return float(torch.finfo(getattr(torch, self.dtype)).eps)

    def _too_few_distinct(self) -> Bool[Tensor, "layer head"]:
        return ~(self.distinct >= self.min_distinct)

    def _too_narrow(self) -> Bool[Tensor, "layer head"]:
        return ~(self.spread_ulp >= self.min_spread_ulp)

    @classmethod
    def _from_fields(cls, fields: dict[str, Any], version: int) -> UnitStability:
        if version < 2:  # format 1 stored the two derived values too
            fields = {k: v for k, v in fields.items() if k not in ("unstable", "eps")}
        return cls(**fields)

    def __len__(self) -> int:
        return int(self.unstable.sum())

    def __repr__(self) -> str:
        return f"UnitStability({len(self)} unstable heads: {self.unstable_labels()})"

    def unstable_labels(self) -> list[str]:
        """Labels of the flagged heads, in unit order."""
        return self.labels_where(self.unstable)

    def reasons(self) -> dict[str, str]:
        """``{label: why}`` for each flagged head."""
        out = {}
        flat_d, flat_s = self.distinct.flatten().tolist(), self.spread_ulp.flatten().tolist()
        few, narrow = self._too_few_distinct().flatten().tolist(), self._too_narrow().flatten().tolist()
        for u, label in enumerate(self.labels):
            why = []
            if few[u]:
                why.append(f"{100 * flat_d[u]:.0f}% distinct values")
            if narrow[u]:
                why.append(f"spread {flat_s[u]:.0f} ulp of {self.dtype}")
            if why:
                out[label] = ", ".join(why)
        return out

    def to_dataframe(self) -> pd.DataFrame:
        """One row per head: label, layer, head, distinct, spread_ulp, unstable."""
        import pandas as pd

        return pd.DataFrame(
            {
                **self.unit_columns(),
                "distinct": self.distinct.flatten().numpy(),
                "spread_ulp": self.spread_ulp.flatten().numpy(),
                "unstable": self.unstable.flatten().numpy(),
            }
        )

def _dtype_eps(activity: Any, dtype: str | torch.dtype | None) -> tuple[float, str]:
    if dtype is None:
        dtype = (getattr(activity, "model_config", None) or {}).get("dtype")
    if dtype is None:
        values = getattr(activity, "values", None)
        dtype = values.dtype if isinstance(values, Tensor) else torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.replace("torch.", ""), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; pass dtype=torch.float32 (or the model's dtype)")
        dtype = resolved
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point type, got {dtype}")
    return float(torch.finfo(dtype).eps), str(dtype).replace("torch.", "")


def unit_stability(
    activity: Any,
    *,
    min_distinct: float = 0.5,
    min_spread_ulp: float = 1000.0,
    dtype: str | torch.dtype | None = None,
    warn: bool = True,
) -> UnitStability:
    """Flag the heads whose series are too coarse for PhiID (module docstring).

    Args:
        activity: a ``HeadActivity`` (or anything with ``unit_series()``, ``lengths``,
            ``n_layers``, ``n_heads``; ``unit_labels()`` and ``model_config`` optional).
        min_distinct: smallest acceptable median fraction of distinct values per series.
        min_spread_ulp: smallest acceptable median ``std / |mean|``, in units of ``eps``.
        dtype: the dtype the model ran in (default: ``model_config["dtype"]``, else the
            recorded values' dtype).
        warn: warn once, naming the flagged heads.

    Returns:
        A :class:`UnitStability`.
    """
    eps, dtype_name = _dtype_eps(activity, dtype)
    series = torch.as_tensor(activity.unit_series()).detach().cpu()
    lengths = [int(v) for v in torch.as_tensor(activity.lengths).tolist()]
    n_layers, n_heads = int(activity.n_layers), int(activity.n_heads)
    labels = (
        list(activity.unit_labels()) if hasattr(activity, "unit_labels") else unit_labels(n_layers, n_heads)
    )
    n_units = series.shape[1]
    distinct = np.full((len(lengths), n_units), np.nan)
    spread = np.full((len(lengths), n_units), np.nan)
    for p, n in enumerate(lengths):
        if n < 2:
            continue
        x = series[p, :, :n].numpy()
        srt = np.sort(x, axis=-1)
        distinct[p] = (1 + (np.diff(srt, axis=-1) != 0).sum(-1)) / n
        x64 = x.astype(np.float64)
        mean = np.abs(x64.mean(-1))
        with np.errstate(divide="ignore", invalid="ignore"):
            spread[p] = np.where(mean > 0, x64.std(-1) / mean / eps, np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (no valid prompt)
        med_d = np.nanmedian(distinct, axis=0)
        med_s = np.nanmedian(spread, axis=0)
    out = UnitStability(
        distinct=torch.from_numpy(med_d).reshape(n_layers, n_heads),
        spread_ulp=torch.from_numpy(med_s).reshape(n_layers, n_heads),
        dtype=dtype_name,
        min_distinct=float(min_distinct),
        min_spread_ulp=float(min_spread_ulp),
        labels=labels,
        meta={"n_prompts": len(lengths)},
    )
    if warn and len(out):
        reasons = out.reasons()
        shown = "; ".join(f"{k} ({v})" for k, v in list(reasons.items())[:12])
        more = "" if len(reasons) <= 12 else f"; ... {len(reasons)} heads in all"
        warnings.warn(
            f"{len(out)} head(s) have series too coarse for a stable PhiID estimate: {shown}{more}. "
            "Their scores can change with one rounding step; they are marked in the scores and the "
            "report (pass exclude=True to synergy_scores, or --exclude-unstable, to leave them out)",
            RuntimeWarning,
            stacklevel=2,
        )
    return out
