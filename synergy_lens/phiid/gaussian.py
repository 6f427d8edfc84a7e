"""Pure tensor kernels: closed-form Gaussian PhiID for all pairs of units at once.

What and why
------------
For jointly Gaussian variables every mutual information is a log-determinant ratio of
covariance sub-blocks, and MI is invariant to the scale of each variable, so only the
4 x 4 *correlation* matrix of (x_t, y_t, x_{t+tau}, y_{t+tau}) matters. For the pair
(i, j), with x = unit i and y = unit j, it is

         xp  yp  xf  yf
    xp [ 1   a   b   c ]      a = corr(x_t, y_t)          (past-past,    [i, j])
    yp [ a   1   d   e ]      b = corr(x_t, x_{t+tau})    (x's autocorrelation, [i])
    xf [ b   d   1   f ]      c = corr(x_t, y_{t+tau})    (past-future,  [i, j])
    yf [ c   e   f   1 ]      d = corr(y_t, x_{t+tau})    (past-future,  [j, i])
                              e = corr(y_t, y_{t+tau})    (y's autocorrelation, [j])
                              f = corr(x_{t+tau}, y_{t+tau}) (future-future, [i, j])

Three ``[unit, unit]`` correlation matrices (from :class:`~synergy_lens.phiid.stats.PhiIDStats`)
therefore hold every pair's six numbers, and all determinants have closed forms:
2 x 2: 1 - a^2; 3 x 3 with off-diagonals p, q, r: 1 - p^2 - q^2 - r^2 + 2pqr; 4 x 4: by
the Schur complement (:func:`pair_mutual_informations`). The nine MIs (nats) are

    I(A; B) = 1/2 log( det R_A det R_B / det R_AB ),

the MMI known quantities are minima of them, and the atoms follow by the lattice's Möbius
inversion (:mod:`synergy_lens.phiid.atoms`). All of it is elementwise on ``[rows, cols]``
blocks, chunked so that memory stays bounded, in float64.

Exactness. The average of the Gaussian *local* MI values over the samples equals this
log-det MI exactly when the local values use the sample mean and the sample covariance
(with either n or n - 1 as divisor: the quadratic terms average to
(n - ddof)/n * (dim A + dim B - dim AB) = 0). MMI keeps whole local series, chosen by
their averages (as ``phyid``), so average MMI atoms = these closed-form atoms.

Symmetry used for speed: swapping the units maps atom k at (i, j) to atom MIRROR[k] at
(j, i) exactly, so only blocks with columns >= rows are computed.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from synergy_lens.phiid.atoms import ATOMS, MIRROR, mobius_matrix
from synergy_lens.phiid.redundancy import RedundancyFunction, known_quantities
from synergy_lens.phiid.stats import PhiIDStats

__all__ = [
    "DEFAULT_CHUNK_PAIRS",
    "DEFAULT_CHUNK_PAIRS_CUDA",
    "SINGULAR_TOL",
    "all_pairs_closed_form",
    "atoms_buffer",
    "closed_form_block",
    "default_chunk_pairs",
    "pair_mutual_informations",
]

SINGULAR_TOL = 1e-12
"""A pair whose 4 x 4 correlation determinant is at most this is treated as collinear
(its MIs would be infinite or rounding noise): its atoms are NaN. Every principal minor of
a correlation matrix is at least its determinant, so this one test covers them all."""

DEFAULT_CHUNK_PAIRS = 1 << 15
"""Pairs per chunk on CPU: each temporary is about 256 KiB (cache-sized), so peak memory
stays a few MiB above the ``[16, unit, unit]`` result."""

DEFAULT_CHUNK_PAIRS_CUDA = 1 << 20
"""Pairs per chunk on GPUs: large blocks amortise kernel launches (8 MiB temporaries)."""


def default_chunk_pairs(device: torch.device) -> int:
    """The default ``chunk_pairs`` for a device."""
    return DEFAULT_CHUNK_PAIRS if device.type == "cpu" else DEFAULT_CHUNK_PAIRS_CUDA


def pair_mutual_informations(
    a: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor, f: Tensor
) -> tuple[dict[tuple[str, str], Tensor], Tensor]:
    """The nine MIs (nats) from the six correlations of a pair (shapes broadcast).

    Returns ``(mis, det4)`` with ``mis`` keyed as :data:`~synergy_lens.phiid.atoms.MI_KEYS`
    and ``det4`` the 4 x 4 determinant (for the collinearity check).

    The joint-past MIs use the Schur complement: with past block P = [[1, a], [a, 1]] and
    cross block C = [[b, c], [d, e]], the future's residual covariance given the past is
    S = [[1, f], [f, 1]] - C^T P^{-1} C, so I(xy; x) = -1/2 log S11,
    I(xy; y) = -1/2 log S22, I(xy; xy) = 1/2 log((1 - f^2) / det S), and
    det4 = (1 - a^2) det S. Single-past MIs use 3 x 3 determinant ratios
    (1 - p^2 - q^2 - r^2 + 2pqr for off-diagonals p, q, r). Fewer passes over the data
    than expanding every determinant.
    """
    a2, b2, c2, d2, e2, f2 = a * a, b * b, c * c, d * d, e * e, f * f
    bc, bd, ce, de = b * c, b * d, c * e, d * e
    inv_pa = 1 / (1 - a2)  # 1 / det P
    s11 = 1 - (b2 + d2 - 2 * a * bd) * inv_pa
    s22 = 1 - (c2 + e2 - 2 * a * ce) * inv_pa
    s12 = f - (bc + de - a * (b * e + c * d)) * inv_pa
    det_s = s11 * s22 - s12 * s12
    one_minus_f2 = 1 - f2
    det4 = det_s / inv_pa
    det3_x = one_minus_f2 - b2 - c2 + 2 * f * bc  # det R(x_t, x_f, y_f)
    det3_y = one_minus_f2 - d2 - e2 + 2 * f * de  # det R(y_t, x_f, y_f)
    half = -0.5
    mis = {
        ("x", "x"): half * torch.log1p(-b2),
        ("x", "y"): half * torch.log1p(-c2),
        ("y", "x"): half * torch.log1p(-d2),
        ("y", "y"): half * torch.log1p(-e2),
        ("xy", "x"): half * torch.log(s11),
        ("xy", "y"): half * torch.log(s22),
        ("x", "xy"): half * torch.log(det3_x / one_minus_f2),
        ("y", "xy"): half * torch.log(det3_y / one_minus_f2),
        ("xy", "xy"): half * torch.log(det_s / one_minus_f2),
    }
    return mis, det4


def closed_form_block(
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Tensor,
    e: Tensor,
    f: Tensor,
    redundancy: RedundancyFunction,
    mobius: Tensor,
) -> tuple[Float[Tensor, "atom *shape"], Bool[Tensor, "*shape"]]:
    """Average atoms of a block of pairs from their six correlations (the shared kernel).

    The one place where the closed form is evaluated: :func:`all_pairs_closed_form` calls
    it on row blocks of the ``[unit, unit]`` correlation matrices, the streaming engine
    (:mod:`synergy_lens.phiid.stream`) on correlation blocks it computes on the fly.

    Args:
        a, b, c, d, e, f: the six correlations of each pair (see the module docstring),
            broadcasting to a common ``shape`` (e.g. ``[rows, cols]``).
        redundancy: a redundancy function with a closed form.
        mobius: :func:`~synergy_lens.phiid.atoms.mobius_matrix` as float64 on the device.

    Returns:
        ``(block, bad)``: float64 ``[16, *shape]`` atoms (x = the row unit, y = the column
        unit), NaN where ``bad``; bool ``[*shape]``, True where the 4 x 4 determinant is
        at most :data:`SINGULAR_TOL` or NaN (a constant unit or a collinear pair).
    """
    mis, det4 = pair_mutual_informations(a, b, c, d, e, f)
    known = known_quantities(mis, redundancy, local=False)  # [16, *shape]
    block = (mobius @ known.reshape(len(ATOMS), -1)).reshape(known.shape)
    bad = ~(det4 > SINGULAR_TOL)  # NaN-safe: NaN correlations count as degenerate
    block.masked_fill_(bad, math.nan)
    return block, bad


def _chunks(n_units: int, chunk_pairs: int) -> list[tuple[int, int]]:
    """Row blocks [r0, r1) of the upper block triangle, each about ``chunk_pairs`` pairs."""
    out, r0 = [], 0
    while r0 < n_units:
        rows = max(1, chunk_pairs // (n_units - r0))
        out.append((r0, min(n_units, r0 + rows)))
        r0 += rows
    return out


def atoms_buffer(out: Tensor | None, n_units: int, device: torch.device) -> Tensor:
    """``out`` checked to be a float64 ``[16, unit, unit]`` buffer on ``device``, or a new one."""
    shape = (len(ATOMS), n_units, n_units)
    if out is None:
        return torch.empty(shape, dtype=torch.float64, device=device)
    if tuple(out.shape) != shape or out.dtype != torch.float64 or out.device != device:
        raise ValueError(
            f"out must be float64 {shape} on {device}, got {out.dtype} {tuple(out.shape)} on {out.device}"
        )
    return out


def all_pairs_closed_form(
    stats: PhiIDStats,
    redundancy: RedundancyFunction,
    *,
    chunk_pairs: int | None = None,
    out: Float[Tensor, "atom unit unit"] | None = None,
) -> tuple[Float[Tensor, "atom unit unit"], Bool[Tensor, "unit unit"]]:
    """Average PhiID atoms of every ordered pair of units, from their statistics.

    Args:
        stats: statistics of one system (no batch dims).
        redundancy: a function with a closed form (``average_single``/``average_double``).
        chunk_pairs: pairs per elementwise block (memory vs. per-call overhead); None
            for :func:`default_chunk_pairs`.
        out: optional float64 ``[16, unit, unit]`` buffer to write into (saves a copy).

    Returns:
        ``(atoms, degenerate)``: float64 ``[16, unit, unit]`` with ``atoms[k, i, j]`` atom
        ``ATOMS[k]`` for source i (x) and target j (y), NaN on the diagonal and for
        degenerate pairs; bool ``[unit, unit]`` marking off-diagonal pairs left NaN
        because a unit is constant or the pair is collinear.
    """
    if stats.mean_past.ndim != 1:
        raise ValueError("all_pairs_closed_form takes statistics without batch dims; use .select()")
    r_pp, r_ff, r_pf = stats.correlation()
    auto = torch.diagonal(r_pf)  # each unit's lag-tau autocorrelation
    r_fp = r_pf.mT.contiguous()  # [j, i] = corr(y_t, x_{t+tau}) read row-wise below
    u = stats.n_units
    device = r_pp.device
    mobius = mobius_matrix().to(device=device, dtype=torch.float64)
    atoms = atoms_buffer(out, u, device)
    degenerate = torch.zeros((u, u), dtype=torch.bool, device=device)
    chunk = chunk_pairs if chunk_pairs is not None else default_chunk_pairs(device)
    for r0, r1 in _chunks(u, chunk):
        block, bad = closed_form_block(
            r_pp[r0:r1, r0:],
            auto[r0:r1, None],
            r_pf[r0:r1, r0:],
            r_fp[r0:r1, r0:],
            auto[None, r0:],
            r_ff[r0:r1, r0:],
            redundancy,
            mobius,
        )
        atoms[:, r0:r1, r0:] = block
        for k, m in enumerate(MIRROR):  # (i, j) -> (j, i) with x and y swapped
            atoms[m, r0:, r0:r1] = block[k].mT
        degenerate[r0:r1, r0:] = bad
        degenerate[r0:, r0:r1] = bad.mT
    idx = torch.arange(u, device=device)
    atoms[:, idx, idx] = math.nan
    degenerate[idx, idx] = False
    return atoms, degenerate
