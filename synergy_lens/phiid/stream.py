"""Streaming all-pairs PhiID: per-unit summaries and top-k pairs, never ``[16, unit, unit]``.

What and why
------------
:func:`~synergy_lens.phiid.all_pairs` holds every pair's 16 atoms: 170 MB of float64 at
1,152 units, but 34 GB at 16,384 and 272 GB for SmolLM2's 46,080 MLP neurons. The
per-head scores of the protocol (Urbina-Rodriguez et al., arXiv 2601.06851, "Methods")
only need, per unit, the mean over its partners of sts and rtr, plus a few top pairs.
:func:`pair_summaries` computes those while streaming over square tiles of the pair
matrix:

1. Each series is cut into its past window ``x[:, :-tau]`` and future window
   ``x[:, tau:]``; each window is centred on its mean and scaled to unit norm, so a
   tile's four correlation blocks (past-past, past-future, future-past, future-future)
   are four matrix products ``[rows, n] @ [n, cols]`` (the ``[unit, unit]`` sufficient
   statistics are never formed; at 16,384 units they alone would be 6 GB).
2. The tile is cut into row blocks of about ``chunk_pairs`` pairs, and each block goes
   through the same closed-form kernel as the dense path
   (:func:`~synergy_lens.phiid.gaussian.closed_form_block`; CCS:
   :func:`~synergy_lens.phiid.local.local_block`).
3. The block's atoms are reduced at once: per-unit sums and counts (float64), the
   per-pair synergy fraction, and candidates for the running top-k. Only pairs i < j are
   visited; the pair's contribution to unit j (as source) is its mirror,
   ``atoms[MIRROR[k], i, j]`` (:data:`~synergy_lens.phiid.atoms.MIRROR`).

Memory: the series' two windows (``16 * unit * time`` bytes) plus a tile of
``4 * prompts * tile**2`` float64 correlations and the block temporaries, both sized from
``memory_budget``. Results equal the dense path's to rounding (about 1e-15; tested at
1e-12) and do not depend on the tile or block size beyond rounding. The correlations are
summed in another order than the dense path's, so a pair close to collinear (4 x 4
determinant just above ``SINGULAR_TOL``, e.g. a jittered copy of another unit) differs
more on both paths alike (~1e-9), and a pair right at the threshold may fall on the other
side; exactly constant units and exactly collinear pairs are NaN on both.

Cost: per pair, four dot products of length ``time - tau`` (float64 matrix products)
and the closed form; one series of 16,384 units x 1,000 steps takes about 50 CPU-seconds
(``benchmarks/bench_stream.py``), 1.8x the dense kernel's rate per CPU-second. On a CPU
shared with other processes use one torch thread (``torch.set_num_threads(1)``, the CLI's
``--threads 1``): measured on 2 cores at load average 3-5, that run took 65 s against
193 s with two threads, whose synchronisation waits dominate (the dense kernel alike).

Several prompts (``aggregate="mean_over_prompts"``, as :func:`decompose`): for each block
every prompt's atoms are computed and averaged over the prompts where the pair is defined
(NaN if none), exactly :func:`decompose`'s prompt mean, and only then reduced. So per-unit
means and top-k pairs are those of the prompt-mean atoms, exactly, at ``prompts`` times
the cost of one series. ``aggregate="pooled"`` concatenates the prompts' windows (no lag
pair crosses a prompt boundary): one system, as decompose's pooled statistics.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from synergy_lens._prompt_mean import mean_of_defined
from synergy_lens.phiid.atoms import ATOMS, MIRROR, atom_index, mobius_matrix
from synergy_lens.phiid.estimate import (
    JITTER_SEED,
    Aggregate,
    add_jitter,
    check_series,
    degenerate_message,
)
from synergy_lens.phiid.gaussian import closed_form_block, default_chunk_pairs
from synergy_lens.phiid.local import DEFAULT_LOCAL_CHUNK, corr4, local_block
from synergy_lens.phiid.redundancy import RedundancyFunction, get_redundancy
from synergy_lens.phiid.stats import CONSTANT_RTOL
from synergy_lens.phiid.summaries import PairSummaries

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_MEMORY_BUDGET_CUDA",
    "DEFAULT_TOP_K",
    "default_memory_budget",
    "pair_summaries",
]

DEFAULT_MEMORY_BUDGET = 256 * 2**20
"""Bytes for the per-tile working set on CPU (correlation tiles and block temporaries);
the series' windows come on top. 256 MiB gives 2,048 x 2,048 tiles for one series."""

DEFAULT_MEMORY_BUDGET_CUDA = 4 * 2**30
"""The same on GPUs: 4 GiB gives 8,192 x 8,192 tiles and blocks of ~1 M pairs."""

DEFAULT_TOP_K = 1000
"""Pairs kept by sts and by rtr."""

_I_STS, _I_RTR = atom_index("sts"), atom_index("rtr")
_BYTES_PER_PAIR_TEMP = 8 * 96
"""Approximate bytes of block temporaries per pair (known quantities, atoms, masks)."""


def default_memory_budget(device: torch.device) -> int:
    """The default ``memory_budget`` for a device."""
    return DEFAULT_MEMORY_BUDGET if device.type == "cpu" else DEFAULT_MEMORY_BUDGET_CUDA


# --------------------------------------------------------------------------- windows
@dataclass
class _Windows:
    """One system's lag-pair windows, ready for correlation tiles.

    ``past``/``future``: ``[unit, n]`` centred on their means and scaled to unit norm, so
    ``past[i] @ future[j]`` is corr(x_i,t, x_j,t+tau); rows of constant units are NaN (as
    :meth:`PhiIDStats.correlation`). ``auto``: each unit's lag-tau autocorrelation.
    ``std_past``/``std_future`` (CCS only): the windows standardised as
    :func:`~synergy_lens.phiid.local.standardize_windows` (n - 1 divisor).
    """

    past: Tensor
    future: Tensor
    auto: Tensor
    constant: Tensor
    std_past: Tensor | None = None
    std_future: Tensor | None = None


def _normalise(w: Tensor, local: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    n = w.shape[-1]
    mean = w.mean(-1)
    c = w - mean.unsqueeze(-1)
    ss = (c * c).sum(-1)
    const = ss.div(n).sqrt() <= CONSTANT_RTOL * mean.abs()
    standard = None
    if local:
        standard = c / torch.where(const, 1.0, (ss / (n - 1)).sqrt()).unsqueeze(-1)
    scale = torch.where(const | ~(ss > 0), math.nan, ss.sqrt())
    return c.div_(scale.unsqueeze(-1)), const, standard


def _windows(pieces: Sequence[Tensor], tau: int, local: bool) -> _Windows:
    """The windows of the lag pairs of ``pieces`` (float64 ``[unit, time_p]`` each)."""
    past, c_past, s_past = _normalise(torch.cat([p[:, :-tau] for p in pieces], -1), local)
    future, c_future, s_future = _normalise(torch.cat([p[:, tau:] for p in pieces], -1), local)
    return _Windows(past, future, (past * future).sum(-1), c_past | c_future, s_past, s_future)


# ------------------------------------------------------------------------------ top-k
class _TopK:
    """The ``k`` largest values seen, with their pairs and atoms, ties broken by (i, j).

    Candidates at or above the running k-th value are buffered and pruned by a stable
    sort, so the result does not depend on the order in which blocks arrive.
    """

    def __init__(self, k: int, n_units: int, device: torch.device) -> None:
        self.k, self.n_units = k, n_units
        self.values = torch.empty(0, dtype=torch.float64, device=device)
        self.index = torch.empty(0, dtype=torch.int64, device=device)
        self.atoms = torch.empty((0, len(ATOMS)), dtype=torch.float64, device=device)
        self.threshold = -math.inf

    def offer(self, values: Tensor, valid: Tensor, block: Tensor, i0: int, j0: int) -> None:
        if self.k == 0:
            return
        il, jl = torch.nonzero(valid & (values >= self.threshold), as_tuple=True)
        if il.numel() == 0:
            return
        self.values = torch.cat([self.values, values[il, jl]])
        self.index = torch.cat([self.index, (il + i0) * self.n_units + (jl + j0)])
        self.atoms = torch.cat([self.atoms, block[:, il, jl].mT])
        if self.values.numel() > max(2 * self.k, 4096):
            self.prune()

    def prune(self) -> None:
        order = torch.argsort(self.index, stable=True)
        order = order[torch.argsort(self.values[order], descending=True, stable=True)]
        order = order[: self.k]
        self.values, self.index, self.atoms = (
            self.values[order],
            self.index[order],
            self.atoms[order],
        )
        if self.k and self.values.numel() == self.k:
            self.threshold = float(self.values[-1])

    def result(self) -> tuple[Tensor, Tensor]:
        """``(pairs [k, 2] int64 with i < j, atoms [k, 16] float64)``, best first."""
        self.prune()
        pairs = torch.stack([self.index // self.n_units, self.index % self.n_units], -1)
        return pairs, self.atoms


# ----------------------------------------------------------------------------- engine
class _Accumulator:
    """Per-unit float64 sums and counts, the top-k and the degenerate-unit report."""

    def __init__(self, n_units: int, top_k: int, device: torch.device) -> None:
        self.sums = torch.zeros((len(ATOMS), n_units), dtype=torch.float64, device=device)
        self.count = torch.zeros(n_units, dtype=torch.float64, device=device)
        self.frac_sum = torch.zeros(n_units, dtype=torch.float64, device=device)
        self.frac_count = torch.zeros(n_units, dtype=torch.float64, device=device)
        self.top_sts = _TopK(top_k, n_units, device)
        self.top_rtr = _TopK(top_k, n_units, device)
        self.mirror = torch.tensor(MIRROR, device=device)
        self.collinear: set[tuple[int, int]] = set()
        self.partial = 0

    def add(self, block: Tensor, valid: Tensor, i0: int, j0: int) -> None:
        """Reduce ``block`` (``[16, rows, cols]``, pairs (i0 + r, j0 + c)) where ``valid``."""
        rows, cols = valid.shape
        z = torch.where(valid, block, 0.0)
        self.sums[:, i0 : i0 + rows] += z.sum(-1)
        self.sums[:, j0 : j0 + cols] += z.sum(-2)[self.mirror]  # the pair seen from j
        v = valid.to(torch.float64)
        self.count[i0 : i0 + rows] += v.sum(-1)
        self.count[j0 : j0 + cols] += v.sum(-2)
        s, r = z[_I_STS], z[_I_RTR]
        denom = s.abs() + r.abs()
        fv = valid & (denom > 0)
        frac = torch.where(fv, s / torch.where(fv, denom, 1.0), 0.0)
        fv64 = fv.to(torch.float64)
        self.frac_sum[i0 : i0 + rows] += frac.sum(-1)
        self.frac_sum[j0 : j0 + cols] += frac.sum(-2)
        self.frac_count[i0 : i0 + rows] += fv64.sum(-1)
        self.frac_count[j0 : j0 + cols] += fv64.sum(-2)
        self.top_sts.offer(block[_I_STS], valid, block, i0, j0)
        self.top_rtr.offer(block[_I_RTR], valid, block, i0, j0)

    def report(self, bad: Tensor, constant: Tensor, i0: int, j0: int) -> None:
        """Add the collinear pairs among ``bad`` (pairs i < j, neither unit constant)."""
        rows, cols = bad.shape
        keep = bad & ~constant[i0 : i0 + rows, None] & ~constant[None, j0 : j0 + cols]
        il, jl = torch.nonzero(keep, as_tuple=True)
        self.collinear.update(zip((il + i0).tolist(), (jl + j0).tolist(), strict=True))


def _tile_correlations(w: _Windows, r0: int, r1: int, c0: int, c1: int) -> tuple[Tensor, ...]:
    """corr blocks ``(a, c, d, f)`` of rows [r0, r1) (x) and columns [c0, c1) (y)."""
    p_r, f_r, p_c, f_c = w.past[r0:r1], w.future[r0:r1], w.past[c0:c1].mT, w.future[c0:c1].mT
    return p_r @ p_c, p_r @ f_c, f_r @ p_c, f_r @ f_c


def _block_atoms(
    w: _Windows,
    corr: tuple[Tensor, ...],
    rows: slice,
    cols: slice,
    i0: int,
    j0: int,
    upper: Tensor | None,
    red: RedundancyFunction,
    mobius: Tensor,
) -> tuple[Tensor, Tensor]:
    """Atoms ``[16, rows, cols]`` and ``bad`` of one block of one system (shared kernels)."""
    a, c, d, f = (m[rows, cols] for m in corr)
    n_rows, n_cols = a.shape
    b = w.auto[i0 : i0 + n_rows, None]
    e = w.auto[None, j0 : j0 + n_cols]
    if red.closed_form:
        return closed_form_block(a, b, c, d, e, f, red, mobius)
    assert w.std_past is not None and w.std_future is not None
    block = torch.full((len(ATOMS), n_rows, n_cols), math.nan, dtype=torch.float64, device=a.device)
    bad = torch.ones((n_rows, n_cols), dtype=torch.bool, device=a.device)
    il, jl = torch.nonzero(upper if upper is not None else torch.ones_like(bad), as_tuple=True)
    eye = torch.eye(4, dtype=torch.float64, device=a.device)
    step = max(1, DEFAULT_LOCAL_CHUNK // w.past.shape[-1])
    for s in range(0, il.numel(), step):
        r, q = il[s : s + step], jl[s : s + step]
        i, j = r + i0, q + j0
        c4 = corr4(a[r, q], w.auto[i], c[r, q], d[r, q], w.auto[j], f[r, q])
        v = torch.stack([w.std_past[i], w.std_past[j], w.std_future[i], w.std_future[j]], 1)
        block[:, r, q], ok = local_block(c4, v, red, mobius, eye)
        bad[r, q] = ~ok
    return block, bad


def _stream(
    systems: list[_Windows],
    red: RedundancyFunction,
    *,
    top_k: int,
    memory_budget: int,
    chunk_pairs: int | None,
    progress: bool,
) -> _Accumulator:
    """Stream every pair i < j of ``systems`` (one, or one per prompt: prompt mean)."""
    u = systems[0].past.shape[0]
    device = systems[0].past.device
    n_sys = len(systems)
    mobius = mobius_matrix().to(device=device, dtype=torch.float64)
    acc = _Accumulator(u, top_k, device)
    tile = max(16, math.isqrt(max(1, memory_budget // 2) // (32 * n_sys)))
    chunk = chunk_pairs if chunk_pairs is not None else default_chunk_pairs(device)
    chunk = max(1, min(chunk, memory_budget // 2 // _BYTES_PER_PAIR_TEMP))
    tiles = [(r0, c0) for r0 in range(0, u, tile) for c0 in range(r0, u, tile)]
    for r0, c0 in tqdm(tiles, desc="PhiID pair tiles", disable=not progress, unit="tile"):
        r1, c1 = min(u, r0 + tile), min(u, c0 + tile)
        corrs = [_tile_correlations(w, r0, r1, c0, c1) for w in systems]
        s0 = r0
        while s0 < r1:
            j0 = max(c0, s0)  # on a diagonal tile, start at the block's own first row
            if j0 >= c1:
                break
            s1 = min(r1, s0 + max(1, chunk // (c1 - j0)))
            rows, cols = slice(s0 - r0, s1 - r0), slice(j0 - c0, c1 - c0)
            upper = None
            if j0 < s1:  # the block overlaps the diagonal: keep j > i only
                i_idx = torch.arange(s0, s1, device=device)[:, None]
                upper = torch.arange(j0, c1, device=device)[None, :] > i_idx
            block = total = count = None
            for w, corr in zip(systems, corrs, strict=True):
                block, bad = _block_atoms(w, corr, rows, cols, s0, j0, upper, red, mobius)
                bad_u = bad & upper if upper is not None else bad
                if bool(bad_u.any()):
                    acc.report(bad_u, w.constant, s0, j0)
                if n_sys > 1:  # decompose's prompt mean, in its order of operations
                    defined = ~torch.isnan(block[_I_STS])
                    if total is None or count is None:
                        total = torch.zeros_like(block)
                        count = torch.zeros(defined.shape, dtype=torch.float64, device=device)
                    total += torch.where(defined, block, 0.0)
                    count += defined
            assert block is not None
            if total is not None and count is not None:
                block = total / count
                block[:, count == 0] = math.nan
                part = (count > 0) & (count < n_sys)
                acc.partial += int((part & upper if upper is not None else part).sum())
            valid = ~torch.isnan(block[_I_STS])
            if upper is not None:
                valid &= upper
            acc.add(block, valid, s0, j0)
            s0 = s1
    return acc


# ------------------------------------------------------------------------- public API
def pair_summaries(
    x: Float[Tensor, "... unit time"] | Sequence[Float[Tensor, "unit _time"]],
    *,
    tau: int = 1,
    redundancy: str | RedundancyFunction = "MMI",
    top_k: int = DEFAULT_TOP_K,
    aggregate: Aggregate = "mean_over_prompts",
    jitter: float | None = None,
    labels: Sequence[str] | None = None,
    n_layers: int | None = None,
    n_heads: int | None = None,
    memory_budget: int | None = None,
    chunk_pairs: int | None = None,
    progress: bool = False,
) -> PairSummaries:
    """Per-unit means of all 16 atoms over partners, and the top-k pairs, streamed.

    Args:
        x: one series ``[unit, time]``; or several prompts, ``[prompt, unit, time]`` or
            a list of ``[unit, time_p]`` (lengths may differ), combined by ``aggregate``.
            Any float dtype and device: the work runs in float64 where ``x`` lives (GPU
            included).
        tau, redundancy, jitter, labels, chunk_pairs: as
            :func:`~synergy_lens.phiid.all_pairs` (one series: jitter seeded as
            ``all_pairs``; prompt p as :func:`decompose`, ``JITTER_SEED + p``).
        top_k: pairs kept by sts and by rtr (0: none).
        aggregate: for several prompts, ``"mean_over_prompts"`` (the prompt-mean atoms of
            :func:`decompose`, exactly) or ``"pooled"`` (windows concatenated).
        n_layers, n_heads: optional model shape (``unit = layer * n_heads + head``), kept
            for :func:`~synergy_lens.analysis.synergy_scores`.
        memory_budget: bytes for the tile working set: half for the correlation tiles
            (``32 * tile**2`` bytes per prompt), half for block temporaries; None for
            :func:`default_memory_budget` (256 MiB on CPU, 4 GiB on GPUs). The windows
            (``16 * unit * time`` bytes per prompt) come on top.
        progress: show a tqdm bar over tiles.

    Returns:
        A :class:`~synergy_lens.phiid.summaries.PairSummaries`. Degenerate pairs
        (constant units, collinear pairs) are left out of the means and the top-k, and
        one ``RuntimeWarning`` names them, as ``all_pairs``/``decompose`` warn.

    Example:
        >>> import torch
        >>> from synergy_lens.phiid import pair_summaries
        >>> s = pair_summaries(torch.randn(6, 300, generator=torch.Generator().manual_seed(0)), top_k=3)
        >>> s.unit_mean.shape, s.top_sts_pairs.shape, s.n_partners.tolist()
        (torch.Size([16, 6]), torch.Size([3, 2]), [5, 5, 5, 5, 5, 5])
    """
    if aggregate not in get_args(Aggregate):
        raise ValueError(f"aggregate must be one of {get_args(Aggregate)}, got {aggregate!r}")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be a non-negative int, got {top_k!r}")
    single = isinstance(x, Tensor) and x.ndim == 2
    pieces = _checked_prompts(x, tau, labels, single)
    if memory_budget is None:
        memory_budget = default_memory_budget(pieces[0].device)
    if memory_budget < 2**20:
        raise ValueError(f"memory_budget must be at least 1 MiB, got {memory_budget} bytes")
    red = get_redundancy(redundancy)
    systems = _systems(pieces, tau, not red.closed_form, aggregate, jitter, single)
    acc = _stream(systems, red, top_k=top_k, memory_budget=memory_budget, chunk_pairs=chunk_pairs,
                  progress=progress)
    constant, collinear = _degenerate(systems, acc, pieces[0].shape[0], labels)
    pairs_sts, atoms_sts = acc.top_sts.result()
    pairs_rtr, atoms_rtr = acc.top_rtr.result()
    return PairSummaries(
        unit_mean=mean_of_defined(acc.sums, acc.count),
        n_partners=acc.count.round().to(torch.int64),
        fraction_mean=mean_of_defined(acc.frac_sum, acc.frac_count),
        top_sts_pairs=pairs_sts, top_sts_atoms=atoms_sts,
        top_rtr_pairs=pairs_rtr, top_rtr_atoms=atoms_rtr,
        labels=list(labels) if labels is not None else None,
        n_layers=n_layers, n_heads=n_heads, tau=tau, redundancy=red.name,
        aggregate=aggregate if not single else "single",
        n_prompts=len(pieces),
        constant_units=constant,
        collinear_pairs=[list(p) for p in collinear],
        partial_pairs=acc.partial,
    )


def _checked_prompts(
    x: Tensor | Sequence[Tensor], tau: int, labels: Sequence[str] | None, single: bool
) -> list[Tensor]:
    """The prompts of ``x`` as a list of ``[unit, time]`` series, each checked."""
    if isinstance(x, Tensor):
        if x.ndim not in (2, 3):
            raise ValueError(
                f"x must be [unit, time] or [prompt, unit, time], got shape {tuple(x.shape)}"
            )
        pieces = [x] if single else list(x.unbind(0))
    else:
        pieces = list(x)
    if not pieces:
        raise ValueError("x holds no prompt; pass at least one [unit, time] series")
    n_units = pieces[0].shape[0] if pieces[0].ndim == 2 else -1
    for p, piece in enumerate(pieces):
        check_series(piece, tau, name="x" if single else f"prompt {p}", labels=labels)
        if piece.ndim != 2 or piece.shape[0] != n_units:
            raise ValueError(
                f"prompt {p} has shape {tuple(piece.shape)}; every prompt must be [unit, time] "
                f"with the same {n_units} units"
            )
    return pieces


def _degenerate(
    systems: list[_Windows], acc: _Accumulator, n_units: int, labels: Sequence[str] | None
) -> tuple[list[int], list[tuple[int, int]]]:
    """The constant units and collinear pairs of a streamed run, named in one warning."""
    constant = (
        sorted({int(u) for w in systems for u in torch.nonzero(w.constant).flatten().tolist()})
        if n_units > 1
        else []
    )
    collinear = sorted(acc.collinear)
    if constant or collinear:
        consequence = "their pairs are left out of the per-unit means and the top-k pairs"
        if len(systems) > 1:
            consequence = (
                "their pairs are left out of the prompt average where undefined, and out of the "
                "per-unit means and the top-k pairs where undefined in every prompt"
            )
        warnings.warn(
            degenerate_message(constant, collinear, labels, consequence),
            RuntimeWarning,
            stacklevel=3,
        )
    return constant, collinear


def _systems(
    pieces: list[Tensor], tau: int, local: bool, aggregate: Aggregate, jitter: float | None, single: bool
) -> list[_Windows]:
    """The lag windows to stream: one system of pooled windows, or one per prompt (float64,
    jittered as ``all_pairs`` for one series and as ``decompose`` for prompts)."""
    series = [piece.to(torch.float64) for piece in pieces]
    if jitter is not None:
        seeds = [JITTER_SEED] if single else [JITTER_SEED + p for p in range(len(series))]
        series = [add_jitter(s, jitter, seed=seed) for s, seed in zip(series, seeds, strict=True)]
    if aggregate == "pooled" or len(series) == 1:
        return [_windows(series, tau, local)]
    return [_windows([s], tau, local) for s in series]
