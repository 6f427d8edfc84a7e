"""Mergeable sufficient statistics for Gaussian PhiID of all pairs of units.

What and why
------------
Gaussian PhiID of a pair (i, j) at lag tau only needs the 4 x 4 covariance of
(x_t, y_t, x_{t+tau}, y_{t+tau}) over the lag pairs t = 0 .. n-1 (n = time - tau). For all
pairs at once that is three ``[unit, unit]`` matrices (past-past, future-future,
past-future) plus the means of the two windows. :class:`PhiIDStats` holds exactly these,
as *centred* sums (co-moments) so that they stay accurate for series with large offsets,
and merges them exactly (Chan, Golub & LeVeque 1979, pairwise update):

    n = n_a + n_b,  delta = mean_b - mean_a,
    C = C_a + C_b + delta_past delta_future^T * n_a n_b / n.

So prompts, batches or workers can be reduced without the raw series, and no lag pair
ever crosses the boundary between two merged pieces.

Past and future are separate windows with their own means (``x[:-tau]`` and
``x[tau:]``), as the reference tool ``phyid`` builds its four variables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["CONSTANT_RTOL", "PhiIDStats"]

CONSTANT_RTOL = 1e-10
"""A window whose standard deviation is at most this times its absolute mean (or zero)
counts as constant: its correlations are undefined (NaN)."""


@dataclass(frozen=True)
class PhiIDStats:
    """Sums about the mean of the lag pairs (past_t, future_t) = (x_t, x_{t+tau}).

    Leading batch dims (``*batch``) are allowed; merging adds batch elements pairwise.

    Attributes:
        tau: the lag, in steps.
        n: number of lag pairs summed (the same for every batch element).
        mean_past: mean of ``x_t`` over the lag pairs, ``[*batch, unit]``.
        mean_future: mean of ``x_{t+tau}``, ``[*batch, unit]``.
        comoment_past: ``sum_t (p_t - mean_past)(p_t - mean_past)^T``, ``[*batch, unit, unit]``.
        comoment_future: the same for the future window.
        comoment_lag: ``sum_t (p_t - mean_past)(f_t - mean_future)^T``; entry ``[i, j]``
            pairs unit i's past with unit j's future.
    """

    tau: int
    n: int
    mean_past: Float[Tensor, "*batch unit"]
    mean_future: Float[Tensor, "*batch unit"]
    comoment_past: Float[Tensor, "*batch unit unit"]
    comoment_future: Float[Tensor, "*batch unit unit"]
    comoment_lag: Float[Tensor, "*batch unit unit"]

    @classmethod
    def from_series(cls, x: Float[Tensor, "*batch unit time"], tau: int = 1) -> PhiIDStats:
        """Statistics of one series per batch element (float64, on ``x``'s device).

        Cost: two ``[unit, time] @ [time, unit]`` matrix products. The past-past and
        future-future sums are the full-series Gram matrix minus the ``tau`` samples that
        each window leaves out; everything is computed about the full-series mean first,
        so no large offset is ever squared.
        """
        if tau < 1:
            raise ValueError(f"tau must be a positive integer, got {tau}")
        time = x.shape[-1]
        n = time - tau
        if n < 1:
            raise ValueError(f"need time > tau to form lag pairs, got time={time}, tau={tau}")
        x = x.to(torch.float64)
        mean = x.mean(-1)
        xc = x - mean.unsqueeze(-1)
        head, tail = xc[..., :tau], xc[..., n:]  # samples missing from future / past window
        gram = xc @ xc.mT
        past, future = xc[..., :n], xc[..., tau:]
        dp = past.sum(-1) / n  # window means relative to the full-series mean (small)
        df = future.sum(-1) / n
        return cls(
            tau=tau,
            n=n,
            mean_past=mean + dp,
            mean_future=mean + df,
            comoment_past=gram - tail @ tail.mT - n * _outer(dp, dp),
            comoment_future=gram - head @ head.mT - n * _outer(df, df),
            comoment_lag=past @ future.mT - n * _outer(dp, df),
        )

    # ------------------------------------------------------------------ merging
    def merge(self, other: PhiIDStats) -> PhiIDStats:
        """Exact statistics of the union of both sets of lag pairs."""
        if other.tau != self.tau:
            raise ValueError(f"cannot merge statistics with tau={self.tau} and tau={other.tau}")
        if other.comoment_lag.shape != self.comoment_lag.shape:
            raise ValueError(
                f"cannot merge statistics of shapes {tuple(self.comoment_lag.shape)} and "
                f"{tuple(other.comoment_lag.shape)}: units and batch dims must match"
            )
        n = self.n + other.n
        w = self.n * other.n / n
        dp = other.mean_past - self.mean_past
        df = other.mean_future - self.mean_future
        return PhiIDStats(
            tau=self.tau,
            n=n,
            mean_past=self.mean_past + dp * (other.n / n),
            mean_future=self.mean_future + df * (other.n / n),
            comoment_past=self.comoment_past + other.comoment_past + w * _outer(dp, dp),
            comoment_future=self.comoment_future + other.comoment_future + w * _outer(df, df),
            comoment_lag=self.comoment_lag + other.comoment_lag + w * _outer(dp, df),
        )

    __add__ = merge

    @staticmethod
    def merge_all(stats: Iterable[PhiIDStats]) -> PhiIDStats:
        """Merge any number of statistics (e.g. one per prompt or per worker)."""
        it = iter(stats)
        try:
            total = next(it)
        except StopIteration:
            raise ValueError("merge_all needs at least one PhiIDStats") from None
        for s in it:
            total = total.merge(s)
        return total

    # ------------------------------------------------------------ derived values
    @property
    def n_units(self) -> int:
        return int(self.mean_past.shape[-1])

    def covariance(self, ddof: int = 1) -> tuple[Tensor, Tensor, Tensor]:
        """Covariances ``(past-past, future-future, past-future)``, dividing by ``n - ddof``.

        The default ``ddof=1`` is ``np.cov``'s, which ``phyid`` uses. Mutual informations
        (and so every MMI atom) do not depend on this choice; local (per-sample) values do.
        """
        d = self.n - ddof
        return self.comoment_past / d, self.comoment_future / d, self.comoment_lag / d

    def constant_units(self) -> Tensor:
        """Bool ``[*batch, unit]``: units constant in the past or the future window.

        Constant means std <= :data:`CONSTANT_RTOL` * |mean| (std 0 included), i.e. any
        variation is at the level of float64 rounding of the offset.
        """
        sp, sf = self.std(ddof=0)
        return (sp <= CONSTANT_RTOL * self.mean_past.abs()) | (
            sf <= CONSTANT_RTOL * self.mean_future.abs()
        )

    def correlation(self) -> tuple[Tensor, Tensor, Tensor]:
        """Correlations ``(past-past, future-future, past-future)``; NaN rows and columns
        for :meth:`constant_units`."""
        const = self.constant_units()
        sp = _safe_sqrt(
            torch.diagonal(self.comoment_past, dim1=-2, dim2=-1).masked_fill(const, 0.0)
        )
        sf = _safe_sqrt(
            torch.diagonal(self.comoment_future, dim1=-2, dim2=-1).masked_fill(const, 0.0)
        )
        return (
            self.comoment_past / _outer(sp, sp),
            self.comoment_future / _outer(sf, sf),
            self.comoment_lag / _outer(sp, sf),
        )

    def std(self, ddof: int = 1) -> tuple[Tensor, Tensor]:
        """Standard deviations of the past and future windows, ``[*batch, unit]`` each."""
        d = self.n - ddof
        return (
            torch.diagonal(self.comoment_past, dim1=-2, dim2=-1).clamp_min(0).div(d).sqrt(),
            torch.diagonal(self.comoment_future, dim1=-2, dim2=-1).clamp_min(0).div(d).sqrt(),
        )

    def select(self, index: tuple[int, ...]) -> PhiIDStats:
        """The statistics of one batch element (``index`` into the batch dims)."""
        return PhiIDStats(
            tau=self.tau,
            n=self.n,
            mean_past=self.mean_past[index],
            mean_future=self.mean_future[index],
            comoment_past=self.comoment_past[index],
            comoment_future=self.comoment_future[index],
            comoment_lag=self.comoment_lag[index],
        )

    def to(self, device: torch.device | str) -> PhiIDStats:
        return PhiIDStats(
            tau=self.tau,
            n=self.n,
            **{k: v.to(device) for k, v in self.tensors().items()},
        )

    def tensors(self) -> dict[str, Tensor]:
        return {
            "mean_past": self.mean_past,
            "mean_future": self.mean_future,
            "comoment_past": self.comoment_past,
            "comoment_future": self.comoment_future,
            "comoment_lag": self.comoment_lag,
        }

    def to_dict(self) -> dict[str, Tensor | int]:
        """A plain dict (tensors and ints) for ``torch.save``; inverse of :meth:`from_dict`."""
        return {"tau": self.tau, "n": self.n, **self.tensors()}

    @classmethod
    def from_dict(cls, d: dict[str, Tensor | int]) -> PhiIDStats:
        tensors = {k: v for k, v in d.items() if isinstance(v, Tensor)}
        return cls(tau=int(d["tau"]), n=int(d["n"]), **tensors)


def _outer(a: Tensor, b: Tensor) -> Tensor:
    return a.unsqueeze(-1) * b.unsqueeze(-2)


def _safe_sqrt(v: Tensor) -> Tensor:
    """sqrt with NaN where the variance is not positive (constant series)."""
    return torch.where(v > 0, v.clamp_min(0).sqrt(), torch.full_like(v, float("nan")))
