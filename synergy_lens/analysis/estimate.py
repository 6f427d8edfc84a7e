"""An inverted-U index with its bootstrap CI and its p-value against the surrogate null.

Every result that reports the layer profile's inverted-U index (``Headline``, per score;
``Robustness``, per analysis choice and score; the training sweep's ``CheckpointSummary``
and ``SweepResult``, per checkpoint and score) holds the same four tensors of one shape:
the observed ``index``, the percentile CI ``ci_low``/``ci_high`` over prompt resamples and
the one-sided ``p`` of the aligned index against the autocorrelation-preserving null.
:class:`IndexEstimate` declares them once and reads them out; a result dataclass inherits
it and declares only what is its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict, cast

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["ESTIMATE_FIELDS", "EstimateTensors", "IndexEstimate"]

ESTIMATE_FIELDS = ("index", "ci_low", "ci_high", "p")
"""The four tensors of an :class:`IndexEstimate`, in the order :meth:`IndexEstimate.estimate` returns them."""


class EstimateTensors(TypedDict):
    """The four tensors of an :class:`IndexEstimate` by field name (keyword arguments of another)."""

    index: Tensor
    ci_low: Tensor
    ci_high: Tensor
    p: Tensor


@dataclass(repr=False)
class IndexEstimate:
    """Mixin dataclass: ``index``, ``ci_low``, ``ci_high``, ``p``, all ``[..., score]``.

    Attributes:
        index: observed inverted-U index of the min-max scaled layer profile.
        ci_low, ci_high: its percentile CI over prompt resamples (NaN without resamples).
        p: one-sided p-value of the aligned index against the surrogate null (NaN without one).
    """

    index: Float[Tensor, "*where score"]
    ci_low: Float[Tensor, "*where score"]
    ci_high: Float[Tensor, "*where score"]
    p: Float[Tensor, "*where score"]

    def estimate(self, *at: int) -> tuple[float, float, float, float]:
        """``(index, ci_low, ci_high, p)`` at one position (e.g. ``(variant, score)``), as floats."""
        index, low, high, p = (float(getattr(self, name)[at]) for name in ESTIMATE_FIELDS)
        return index, low, high, p

    def estimate_tensors(self, dtype: torch.dtype | None = None) -> EstimateTensors:
        """The four tensors by field name (converted to ``dtype`` if given), to build another result."""
        out = {name: getattr(self, name).to(dtype) if dtype else getattr(self, name) for name in ESTIMATE_FIELDS}
        return cast(EstimateTensors, out)

    @staticmethod
    def stacked(items: Sequence[IndexEstimate]) -> EstimateTensors:
        """The four tensors of ``items`` stacked on a new leading dim (e.g. one row per checkpoint)."""
        out = {name: torch.stack([getattr(item, name) for item in items]) for name in ESTIMATE_FIELDS}
        return cast(EstimateTensors, out)
