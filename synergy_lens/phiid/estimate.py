"""User-facing estimators: :func:`all_pairs` (every pair at once) and :func:`pair` (one pair).

Both take raw series in any float dtype (bf16/fp16 activations included), work in float64
on the input's device, check their input, and report degenerate units once.

Bad input, and what happens
---------------------------
- NaN or Inf anywhere: ``ValueError`` naming the first offending unit and time.
- ``time <= tau + 2``: ``ValueError`` (too few lag pairs). Note that a 4 x 4 covariance
  needs at least 5 lag pairs to be non-singular; with 3 or 4 every pair is NaN (warned).
- A constant unit, or a pair whose four variables are perfectly collinear (e.g. one unit a
  scaled copy of another, or a unit that exactly predicts itself): those pairs come back
  NaN and one ``RuntimeWarning`` names the units. Pass ``jitter`` to add instead a tiny
  seeded Gaussian noise (see :func:`add_jitter`) that makes every pair estimable.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from synergy_lens.phiid.atoms import ATOMS, mobius_matrix
from synergy_lens.phiid.gaussian import (
    SINGULAR_TOL,
    all_pairs_closed_form,
    pair_mutual_informations,
)
from synergy_lens.phiid.local import (
    all_pairs_local,
    corr4,
    local_atoms,
    local_mutual_informations,
    standardize_windows,
)
from synergy_lens.phiid.redundancy import RedundancyFunction, get_redundancy, known_quantities
from synergy_lens.phiid.stats import CONSTANT_RTOL, PhiIDStats

__all__ = [
    "JITTER_SEED",
    "Aggregate",
    "DegenerateReport",
    "add_jitter",
    "all_pairs",
    "all_pairs_from_stats",
    "atoms_from_windows",
    "check_series",
    "degenerate_message",
    "pair",
]

JITTER_SEED = 0
"""Seed of the jitter noise (a CPU generator, so results agree across devices)."""


def check_series(
    x: Tensor,
    tau: int,
    *,
    name: str = "x",
    unit_dim: bool = True,
    labels: Sequence[str] | None = None,
) -> None:
    """Raise ``ValueError``/``TypeError`` for input PhiID cannot use.

    ``x`` is ``[..., unit, time]`` (``unit_dim=True``) or ``[..., time]``; the error for a
    non-finite value names its unit (and label) and time step, so it can be found.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if not isinstance(tau, int) or isinstance(tau, bool) or tau < 1:
        raise ValueError(f"tau must be a positive int, got {tau!r}")
    time = x.shape[-1] if x.ndim else 0
    if time <= tau + 2:
        raise ValueError(
            f"{name} has {time} time steps but PhiID at tau={tau} needs more than tau + 2 = {tau + 2}: "
            "record longer sequences or lower tau"
        )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        first = [int(v) for v in torch.nonzero(~finite)[0].tolist()]
        value = x[tuple(first)].item()
        where = f"time {first[-1]}"
        batch = first[:-1]
        if unit_dim and x.ndim >= 2:
            unit = first[-2]
            where = (
                f"unit {unit}" + (f" ({labels[unit]})" if labels is not None else "") + ", " + where
            )
            batch = first[:-2]
        if batch:
            where += f" (batch index {tuple(batch)})"
        raise ValueError(
            f"{name} contains {value} at {where}; PhiID needs finite values. "
            "Drop or impute that step (padding past a prompt's end belongs in decompose's lengths)"
        )


def add_jitter(
    x: Float[Tensor, "... unit time"], jitter: float, *, seed: int = JITTER_SEED
) -> Float[Tensor, "... unit time"]:
    """``x`` plus seeded Gaussian noise of std ``jitter`` times each unit's own scale.

    The scale is the unit's standard deviation over time, or ``max(1, |value|)`` for a
    constant unit. With ``jitter=1e-2`` a constant unit becomes small white noise (its
    atoms near 0) and an exact copy of another unit a near copy (MIs of several nats but
    finite: the 4 x 4 determinant of a copied pair is about jitter^4, which must exceed
    :data:`~synergy_lens.phiid.gaussian.SINGULAR_TOL`, so jitter below ~1e-3 is too small
    for copies); other atoms move by roughly jitter / sqrt(time) relative (the noise's
    chance correlations). Noise comes from a CPU generator seeded with ``seed``, the same
    on every device.
    """
    if not jitter > 0:
        raise ValueError(f"jitter must be a positive float, got {jitter!r}")
    x = x.to(torch.float64)
    std = x.std(-1, keepdim=True, correction=0)
    mean_abs = x.mean(-1, keepdim=True).abs()
    constant = std <= CONSTANT_RTOL * mean_abs
    scale = torch.where(constant, mean_abs.clamp_min(1.0), std)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.device)
    return x + jitter * scale * noise


def degenerate_message(
    constant: Sequence[int],
    collinear: Sequence[tuple[int, int]],
    labels: Sequence[str] | None = None,
    consequence: str = "their pairs are NaN",
) -> str:
    """The one warning text for degenerate units (shared by all_pairs and decompose)."""

    def name(u: int) -> str:
        return f"{u} ({labels[u]})" if labels is not None else str(u)

    parts = []
    if constant:
        shown = ", ".join(name(u) for u in constant[:20])
        more = f" and {len(constant) - 20} more" if len(constant) > 20 else ""
        parts.append(f"constant unit(s) {shown}{more}")
    if collinear:
        units = sorted({u for p in collinear for u in p} - set(constant))
        shown = ", ".join(name(u) for u in units[:20])
        more = f" and {len(units) - 20} more" if len(units) > 20 else ""
        pairs = ", ".join(f"({i}, {j})" for i, j in collinear[:10])
        pmore = f" and {len(collinear) - 10} more" if len(collinear) > 10 else ""
        parts.append(f"perfectly collinear pair(s) {pairs}{pmore} involving unit(s) {shown}{more}")
    return (
        "PhiID is undefined for " + "; ".join(parts) + f": {consequence}. "
        f"Drop those units, or pass jitter=1e-2 to add a tiny seeded noise (determinant tol {SINGULAR_TOL:g})."
    )


Aggregate = Literal["mean_over_prompts", "pooled"]
"""How ``decompose`` and ``pair_summaries`` combine prompts: the mean of per-prompt atoms
(pairs undefined in a prompt skipped) or one estimate from the pooled lag windows."""

DegenerateReport = tuple[set[int], set[tuple[int, int]]]
"""Accumulator ``(constant units, collinear pairs (i < j))`` filled across systems."""


def atoms_from_windows(
    stats: PhiIDStats,
    series: Sequence[Float[Tensor, "unit _time"]],
    redundancy: RedundancyFunction,
    *,
    chunk_pairs: int | None = None,
    report: DegenerateReport | None = None,
    out: Float[Tensor, "atom unit unit"] | None = None,
) -> Float[Tensor, "atom unit unit"]:
    """All-pairs atoms of one system whose lag pairs are ``stats`` (and ``series``).

    ``series`` are the float64 pieces whose lag pairs ``stats`` summarises (one series,
    or one per prompt when pooling); they are read only by redundancies without a closed
    form, which need local values. Degenerate units are added to ``report``, not warned.
    The result is written into ``out`` when given.
    """
    if redundancy.closed_form:
        atoms, degenerate = all_pairs_closed_form(
            stats, redundancy, chunk_pairs=chunk_pairs, out=out
        )
    else:
        tau = stats.tau
        past = torch.cat([s[:, :-tau] for s in series], -1)
        future = torch.cat([s[:, tau:] for s in series], -1)
        atoms, degenerate = all_pairs_local(past, future, stats, redundancy, out=out)
    if report is not None and bool(degenerate.any()):
        const = stats.constant_units()
        report[0].update(int(u) for u in torch.nonzero(const).flatten().tolist())
        pairs = torch.triu(degenerate & ~const[:, None] & ~const[None, :], diagonal=1)
        report[1].update((int(i), int(j)) for i, j in torch.nonzero(pairs).tolist())
    return atoms


def all_pairs(
    x: Float[Tensor, "... unit time"],
    *,
    tau: int = 1,
    redundancy: str | RedundancyFunction = "MMI",
    jitter: float | None = None,
    labels: Sequence[str] | None = None,
    chunk_pairs: int | None = None,
) -> Float[Tensor, "... atom unit unit"]:
    """Gaussian PhiID atoms for every ordered pair of units, exactly, all at once.

    Args:
        x: activity, ``[..., unit, time]``; leading dims (prompts, seeds, ...) are batch
            dims, each an independent system. Any float dtype, any device.
        tau: lag in steps (past x_t, future x_{t+tau}).
        redundancy: ``"MMI"`` (closed form from covariances; fast) or ``"CCS"`` (needs
            local values: O(pairs * time)), or a registered/custom
            :class:`~synergy_lens.phiid.redundancy.RedundancyFunction`.
        jitter: if given, add :func:`add_jitter` noise first instead of returning NaN for
            constant or collinear units.
        labels: unit names used in the warning (e.g. ``"L5H3"``).
        chunk_pairs: pairs per elementwise block (bounds temporary memory); None picks
            a per-device default (``gaussian.default_chunk_pairs``).

    Returns:
        float64 ``[..., 16, unit, unit]`` on ``x``'s device: entry ``[..., k, i, j]`` is
        atom ``ATOMS[k]`` with unit i as source ``x`` and unit j as target ``y``, in nats.
        The diagonal is NaN. Swapping i and j mirrors the atoms (``atoms[k, i, j] ==
        atoms[MIRROR[k], j, i]``).

    Reference: Mediano, Rosas et al., arXiv 2109.13186; numbers agree with ``phyid``'s
    ``calc_PhiID(src, trg, tau, kind="gaussian")`` on the same pair.

    Example:
        >>> import torch
        >>> from synergy_lens.phiid import ATOMS, all_pairs
        >>> atoms = all_pairs(torch.randn(4, 200, generator=torch.Generator().manual_seed(0)))
        >>> atoms.shape, atoms.dtype
        (torch.Size([16, 4, 4]), torch.float64)
        >>> bool(atoms[ATOMS.index("sts")].diagonal().isnan().all())
        True
    """
    check_series(x, tau, labels=labels)
    if x.ndim < 2:
        raise ValueError(
            f"x must be [..., unit, time], got shape {tuple(x.shape)}; for one pair use pair()"
        )
    red = get_redundancy(redundancy)
    x64 = x.to(torch.float64)
    if jitter is not None:
        x64 = add_jitter(x64, jitter)
    *batch, u, time = x64.shape
    flat = x64.reshape(-1, u, time)
    out = torch.empty((flat.shape[0], len(ATOMS), u, u), dtype=torch.float64, device=x.device)
    constant: set[int] = set()
    collinear: set[tuple[int, int]] = set()
    for b in range(flat.shape[0]):
        stats = PhiIDStats.from_series(flat[b], tau)
        atoms_from_windows(
            stats, [flat[b]], red, chunk_pairs=chunk_pairs, report=(constant, collinear), out=out[b]
        )
    if constant or collinear:
        warnings.warn(
            degenerate_message(sorted(constant), sorted(collinear), labels),
            RuntimeWarning,
            stacklevel=2,
        )
    return out.reshape(*batch, len(ATOMS), u, u)


def all_pairs_from_stats(
    stats: PhiIDStats,
    *,
    redundancy: str | RedundancyFunction = "MMI",
    labels: Sequence[str] | None = None,
    chunk_pairs: int | None = None,
) -> Float[Tensor, "... atom unit unit"]:
    """:func:`all_pairs` from (merged) sufficient statistics instead of raw series.

    For pooling that never holds the raw data: compute ``PhiIDStats.from_series`` per
    batch, prompt or worker, ``merge`` them, then decompose once. Batch dims of ``stats``
    carry over. Only redundancies with a closed form (MMI) work from statistics; CCS needs
    the per-sample values, so call :func:`all_pairs` on the series instead.
    """
    red = get_redundancy(redundancy)
    if not red.closed_form:
        raise ValueError(
            f"redundancy {red.name!r} needs per-sample values, which statistics do not keep; "
            "use all_pairs(x, redundancy=...) on the series"
        )
    *batch, u = stats.mean_past.shape
    out = torch.empty(
        (*batch, len(ATOMS), u, u), dtype=torch.float64, device=stats.mean_past.device
    )
    report: DegenerateReport = (set(), set())
    for index in itertools.product(*(range(b) for b in batch)):
        atoms_from_windows(
            stats.select(index), [], red, chunk_pairs=chunk_pairs, report=report, out=out[index]
        )
    if report[0] or report[1]:
        warnings.warn(
            degenerate_message(sorted(report[0]), sorted(report[1]), labels),
            RuntimeWarning,
            stacklevel=2,
        )
    return out


def pair(
    x: Float[Tensor, "... time"],
    y: Float[Tensor, "... time"],
    *,
    tau: int = 1,
    redundancy: str | RedundancyFunction = "MMI",
    local: bool = False,
    jitter: float | None = None,
) -> dict[str, Tensor]:
    """PhiID of one pair: source ``x``, target ``y``; for teaching and checking.

    Args:
        x, y: series ``[..., time]`` of the same shape (leading dims are batch dims).
        tau, redundancy, jitter: as :func:`all_pairs`.
        local: return per-sample local atoms (``[..., time - tau]``; their mean over the
            last dim is the average atom) instead of averages (``[...]``).

    Returns:
        ``{atom name: float64 tensor}`` in :data:`ATOMS` order. Local values follow the
        textbook definition: Gaussian local entropies with the sample mean and the (n - 1)
        sample covariance of (x_t, y_t, x_{t+tau}, y_{t+tau}), as ``phyid``; MMI keeps for
        each redundancy the local MI series with the smallest average.

    Example:
        >>> import torch
        >>> from synergy_lens.phiid import pair
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(500, generator=g, dtype=torch.float64)
        >>> atoms = pair(x, x.roll(1) + 0.1 * torch.randn(500, generator=g, dtype=torch.float64))
        >>> sorted(atoms)[:3], atoms["xty"].item() > 0.5  # x's past drives y's future
        (['rtr', 'rts', 'rtx'], True)
    """
    check_series(x, tau, name="x", unit_dim=False)
    check_series(y, tau, name="y", unit_dim=False)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    red = get_redundancy(redundancy)
    xy = torch.stack([x.to(torch.float64), y.to(torch.float64)], -2)  # [..., 2, time]
    if jitter is not None:
        xy = add_jitter(xy, jitter)
    stats = PhiIDStats.from_series(xy, tau)
    r_pp, r_ff, r_pf = stats.correlation()
    a, f = r_pp[..., 0, 1], r_ff[..., 0, 1]
    b, c, d, e = r_pf[..., 0, 0], r_pf[..., 0, 1], r_pf[..., 1, 0], r_pf[..., 1, 1]
    mis, det4 = pair_mutual_informations(a, b, c, d, e, f)
    ok = det4 > SINGULAR_TOL
    if not bool(ok.all()):
        warnings.warn(
            "PhiID is undefined for this pair (a constant series or perfectly collinear variables): "
            "NaN returned. Pass jitter=1e-2 to add a tiny seeded noise instead.",
            RuntimeWarning,
            stacklevel=2,
        )
    if red.closed_form and not local:
        known = known_quantities(mis, red, local=False)  # [16, ...]
        atoms = (mobius_matrix().to(known) @ known.reshape(len(ATOMS), -1)).reshape(known.shape)
        atoms = atoms.masked_fill(~ok, math.nan)
    else:
        zp, zf = standardize_windows(xy[..., :-tau], xy[..., tau:], stats)
        corr = corr4(a, b, c, d, e, f)
        corr = torch.where(
            ok[..., None, None], corr, torch.eye(4, dtype=torch.float64, device=corr.device)
        )
        v = torch.stack([zp[..., 0, :], zp[..., 1, :], zf[..., 0, :], zf[..., 1, :]], -2)
        atoms = local_atoms(local_mutual_informations(v, corr), red)  # [16, ..., n]
        atoms = atoms.masked_fill(~ok[..., None], math.nan)
        if not local:
            atoms = atoms.mean(-1)
    return {name: atoms[k] for k, name in enumerate(ATOMS)}
