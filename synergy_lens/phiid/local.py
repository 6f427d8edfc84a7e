"""Local (per-sample) Gaussian PhiID, and CCS for all pairs.

What and why
------------
The *local* entropy of a sample v of a Gaussian vector is its surprisal,

    h(v) = 1/2 log det(2 pi Sigma) + 1/2 (v - mu)^T Sigma^{-1} (v - mu),

and the local MI is i(A;B) = h(a) + h(b) - h(a, b): the 2 pi terms cancel, and on
z-scored data Sigma is the correlation matrix R. Redundancy functions defined on local
values (CCS, Ince 2017) need these per-sample MIs; their averages have no closed form.

Normalisation, as the reference tool ``phyid`` (``local_entropy_mvn`` with ``np.cov``):
each of the four variables (x_t, y_t, x_{t+tau}, y_{t+tau}) is centred on its sample mean
and the covariance divides by n - 1. MIs averaged over samples do not depend on that
divisor (the quadratic terms cancel), local values and CCS do (slightly).

Variable order inside a pair: 0 = x_t, 1 = y_t, 2 = x_{t+tau}, 3 = y_{t+tau}.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from synergy_lens.phiid.atoms import ATOMS, MI_KEYS, MIRROR, mobius_matrix
from synergy_lens.phiid.gaussian import SINGULAR_TOL, atoms_buffer
from synergy_lens.phiid.redundancy import RedundancyFunction, broadcast, known_quantities
from synergy_lens.phiid.stats import PhiIDStats

__all__ = [
    "DEFAULT_LOCAL_CHUNK",
    "all_pairs_local",
    "corr4",
    "local_atoms",
    "local_block",
    "local_mutual_informations",
    "pair_correlation_matrices",
    "standardize_windows",
]

DEFAULT_LOCAL_CHUNK = 1 << 18
"""Pair-samples per block in :func:`all_pairs_local` (about 2 MiB per temporary)."""

_PAST = {"x": (0,), "y": (1,), "xy": (0, 1)}
_FUTURE = {"x": (2,), "y": (3,), "xy": (2, 3)}
# every variable subset an MI needs: A, B and A u B for the nine (A, B)
_SUBSETS: tuple[tuple[int, ...], ...] = tuple(
    dict.fromkeys(sub for s, t in MI_KEYS for sub in (_PAST[s], _FUTURE[t], _PAST[s] + _FUTURE[t]))
)
# i(A;B) = h(A) + h(B) - h(A u B): signed incidence of subsets in each MI, [9, n_subsets]
_MI_WEIGHTS = [
    [float(sub in (_PAST[s], _FUTURE[t])) - float(sub == _PAST[s] + _FUTURE[t]) for sub in _SUBSETS]
    for s, t in MI_KEYS
]
# the 10 products z_k z_m (k <= m) of a quadratic form in 4 variables
_PROD_K, _PROD_L = zip(*((k, m) for k in range(4) for m in range(k, 4)), strict=True)


def local_mutual_informations(
    v: Float[Tensor, "*batch 4 sample"], corr: Float[Tensor, "*batch 4 4"]
) -> dict[tuple[str, str], Float[Tensor, "*batch sample"]]:
    """The nine local MIs (nats) of standardised samples ``v`` with correlation ``corr``.

    Keys as :data:`~synergy_lens.phiid.atoms.MI_KEYS`. ``corr`` must be positive definite
    (mask degenerate pairs before calling: use an identity for them).

    Each local MI is a constant (the closed-form MI, from log-determinants) plus a
    quadratic form in the sample: i(A;B)_t = I(A;B) + 1/2 (q_A + q_B - q_{AuB})_t with
    q_S = z_S^T R_S^{-1} z_S. All nine quadratic forms are combinations of the ten
    products z_k z_l, so one batched ``[9, 10] @ [10, sample]`` product gives them all.
    """
    batch = corr.shape[:-2]
    n_sub = len(_SUBSETS)
    inverses = corr.new_zeros((*batch, n_sub, 4, 4))  # R_S^{-1}, embedded in 4 x 4
    logdets = corr.new_empty((*batch, n_sub))
    for k, sub in enumerate(_SUBSETS):
        sel = torch.tensor(sub, device=corr.device)
        chol = torch.linalg.cholesky(corr.index_select(-2, sel).index_select(-1, sel))
        logdets[..., k] = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        inverses[..., k, :, :][..., sel[:, None], sel[None, :]] = torch.cholesky_inverse(chol)
    weights = torch.tensor(_MI_WEIGHTS, dtype=corr.dtype, device=corr.device)  # [9, n_sub]
    const = 0.5 * (logdets @ weights.mT)  # [*batch, 9]
    quad = 0.5 * torch.einsum("ms,...skl->...mkl", weights, inverses)  # [*batch, 9, 4, 4]
    k_idx = torch.tensor(_PROD_K, device=corr.device)
    l_idx = torch.tensor(_PROD_L, device=corr.device)
    factor = torch.where(k_idx == l_idx, 1.0, 2.0).to(corr.dtype)
    coef = quad[..., k_idx, l_idx] * factor  # [*batch, 9, 10]
    products = v.index_select(-2, k_idx) * v.index_select(-2, l_idx)  # [*batch, 10, sample]
    local = const.unsqueeze(-1) + coef @ products  # [*batch, 9, sample]
    return {key: local[..., m, :] for m, key in enumerate(MI_KEYS)}


def local_atoms(
    mis: dict[tuple[str, str], Tensor], redundancy: RedundancyFunction
) -> Float[Tensor, "atom *batch sample"]:
    """Local atoms ``[16, *batch, sample]`` from local MIs (Möbius inversion per sample)."""
    known = known_quantities(mis, redundancy, local=True)
    mobius = mobius_matrix().to(device=known.device, dtype=known.dtype)
    return (mobius @ known.reshape(len(ATOMS), -1)).reshape(known.shape)


def standardize_windows(
    past: Float[Tensor, "*batch unit n"], future: Float[Tensor, "*batch unit n"], stats: PhiIDStats
) -> tuple[Tensor, Tensor]:
    """z-score the two windows with the statistics' means and (n - 1) standard deviations."""
    sp, sf = stats.std(ddof=1)
    const = stats.constant_units()
    sp = sp.masked_fill(const, 1.0)
    sf = sf.masked_fill(const, 1.0)
    return (
        (past - stats.mean_past.unsqueeze(-1)) / sp.unsqueeze(-1),
        (future - stats.mean_future.unsqueeze(-1)) / sf.unsqueeze(-1),
    )


def corr4(
    a: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor, f: Tensor
) -> Float[Tensor, "... 4 4"]:
    """The 4 x 4 correlation matrices with upper triangle (a, b, c; d, e; f), broadcast."""
    a, b, c, d, e, f = broadcast(a, b, c, d, e, f)
    one = torch.ones_like(a)
    rows = [(one, a, b, c), (a, one, d, e), (b, d, one, f), (c, e, f, one)]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def pair_correlation_matrices(
    r_pp: Tensor, r_ff: Tensor, r_pf: Tensor, i: Tensor, j: Tensor
) -> Float[Tensor, "pair 4 4"]:
    """The 4 x 4 correlation matrices of the pairs (i[k], j[k]) (variable order above)."""
    return corr4(r_pp[i, j], r_pf[i, i], r_pf[i, j], r_pf[j, i], r_pf[j, j], r_ff[i, j])


def local_block(
    corr: Float[Tensor, "pair 4 4"],
    v: Float[Tensor, "pair 4 n"],
    redundancy: RedundancyFunction,
    mobius: Tensor,
    eye: Tensor,
) -> tuple[Float[Tensor, "atom pair"], Bool[Tensor, " pair"]]:
    """Average atoms of a list of pairs from local values (the shared local kernel).

    Used by :func:`all_pairs_local` and by the streaming engine
    (:mod:`synergy_lens.phiid.stream`).

    Args:
        corr: each pair's 4 x 4 correlation matrix (variable order above), possibly
            singular or NaN.
        v: the pair's standardised samples (:func:`standardize_windows`), ``[pair, 4, n]``.
        redundancy: the redundancy function (its ``local_*`` callables are used).
        mobius: :func:`~synergy_lens.phiid.atoms.mobius_matrix` as float64 on the device.
        eye: a float64 4 x 4 identity on the device (stands in for degenerate pairs).

    Returns:
        ``(block, ok)``: float64 ``[16, pair]`` (NaN where not ``ok``) and bool ``[pair]``,
        False where the determinant is at most ``SINGULAR_TOL`` or NaN.
    """
    ok = torch.linalg.det(corr) > SINGULAR_TOL  # NaN correlations fail this too
    corr = torch.where(ok[:, None, None], corr, eye)
    mis = local_mutual_informations(v, corr)
    known = known_quantities(mis, redundancy, local=True).mean(-1)  # [16, pair]
    block = (mobius @ known).masked_fill_(~ok, math.nan)
    return block, ok


def all_pairs_local(
    past: Float[Tensor, "unit n"],
    future: Float[Tensor, "unit n"],
    stats: PhiIDStats,
    redundancy: RedundancyFunction,
    *,
    chunk: int = DEFAULT_LOCAL_CHUNK,
    out: Float[Tensor, "atom unit unit"] | None = None,
) -> tuple[Float[Tensor, "atom unit unit"], Bool[Tensor, "unit unit"]]:
    """Average atoms of every pair from local values (any redundancy, e.g. CCS).

    Args:
        past, future: the lag-pair windows (``x[:, :-tau]`` and ``x[:, tau:]``, or those of
            several prompts concatenated along ``n``), matching ``stats``.
        stats: their statistics (no batch dims).
        redundancy: the redundancy function (its ``local_*`` callables are used).
        chunk: pair-samples per block; pairs per block = ``chunk // n``.
        out: optional float64 ``[16, unit, unit]`` buffer to write into.

    Returns:
        ``(atoms, degenerate)`` as :func:`~synergy_lens.phiid.gaussian.all_pairs_closed_form`.
        Cost is O(pairs * n), about a thousand times the closed form's per-pair work.
    """
    zp, zf = standardize_windows(past.to(torch.float64), future.to(torch.float64), stats)
    r_pp, r_ff, r_pf = stats.correlation()
    u, n = zp.shape
    device = zp.device
    ii, jj = torch.triu_indices(u, u, offset=1, device=device)
    atoms = atoms_buffer(out, u, device).fill_(math.nan)
    degenerate = torch.zeros((u, u), dtype=torch.bool, device=device)
    mobius = mobius_matrix().to(device=device, dtype=torch.float64)
    mirror = torch.tensor(MIRROR, device=device)
    step = max(1, chunk // n)
    eye = torch.eye(4, dtype=torch.float64, device=device)
    for s in range(0, ii.numel(), step):
        i, j = ii[s : s + step], jj[s : s + step]
        corr = pair_correlation_matrices(r_pp, r_ff, r_pf, i, j)
        v = torch.stack([zp[i], zp[j], zf[i], zf[j]], 1)  # [pair, 4, n]
        block, ok = local_block(corr, v, redundancy, mobius, eye)
        atoms[:, i, j] = block
        atoms[:, j, i] = block[mirror]
        degenerate[i, j] = ~ok
        degenerate[j, i] = ~ok
    return atoms, degenerate
