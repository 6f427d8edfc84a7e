"""PhiIDResult (what users hold) and decompose (HeadActivity -> PhiIDResult).

What and why
------------
The protocol of Urbina-Rodriguez et al. (arXiv 2601.06851) computes Gaussian MMI PhiID at
tau = 1 for every pair of attention heads *per prompt* and averages the atoms over prompts
(``aggregate="mean_over_prompts"``). The alternative ``"pooled"`` merges the lag-pair
statistics of all prompts first (no lag pair crosses a prompt boundary) and decomposes
once: a single estimate from all samples, less noisy for short prompts, but it mixes
between-prompt differences of the means into nothing (each prompt is centred on the pooled
mean, not its own).

``decompose`` codes against this duck-typed ``HeadActivity`` interface only:
``unit_series() -> [prompt, unit, time]`` (NaN past each prompt's length), ``lengths``
(``[prompt]`` valid steps), ``n_layers``, ``n_heads``, ``unit_labels()`` and
``model_name``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, get_args, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from synergy_lens._io import SavedFields
from synergy_lens._prompt_mean import mean_of_defined
from synergy_lens._repr import SummaryRepr
from synergy_lens._views import KeyedView
from synergy_lens.phiid.atoms import ATOMS, atom_index
from synergy_lens.phiid.estimate import (
    JITTER_SEED,
    Aggregate,
    DegenerateReport,
    add_jitter,
    atoms_from_windows,
    check_series,
    degenerate_message,
)
from synergy_lens.phiid.redundancy import RedundancyFunction, get_redundancy
from synergy_lens.phiid.stats import PhiIDStats
from synergy_lens.phiid.summaries import PairSummaries

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["STREAM_ABOVE_UNITS", "Aggregate", "HeadActivityLike", "PhiIDResult", "decompose"]



STREAM_ABOVE_UNITS = 2048
"""Above this many units :func:`decompose` streams (``stream=None``): the dense result
would hold ``[16, unit, unit]`` float64 (537 MB at 2,048 units) plus two float32
``[prompt, unit, unit]`` per-prompt matrices (2 GB at 60 prompts)."""


@runtime_checkable
class HeadActivityLike(Protocol):
    """The part of ``synergy_lens.record.HeadActivity`` that :func:`decompose` reads."""

    @property
    def lengths(self) -> Tensor | None: ...

    @property
    def n_layers(self) -> int: ...

    @property
    def n_heads(self) -> int: ...

    @property
    def model_name(self) -> str: ...

    def unit_series(self) -> Tensor: ...

    def unit_labels(self) -> list[str]: ...


@dataclass(repr=False)
class PhiIDResult(SummaryRepr, SavedFields):
    """All-pairs PhiID atoms of a model's heads, labelled.

    Attributes:
        atoms: float64 ``[16, unit, unit]``; ``atoms[k, i, j]`` is atom ``ATOMS[k]`` with
            head i as source and head j as target, prompt-averaged; diagonal NaN.
        n_layers, n_heads: unit ``u`` is head ``u % n_heads`` of layer ``u // n_heads``.
        labels: unit labels, ``"L{layer}H{head}"``.
        tau, redundancy, aggregate: how the atoms were computed.
        per_prompt_sts, per_prompt_rtr: float32 ``[prompt, unit, unit]`` for
            ``"mean_over_prompts"`` (for bootstraps over prompts), else None.
        meta: JSON-able extras (model name, prompt count, lengths, ...).
    """

    FORMAT = "synergy_lens.PhiIDResult/1"  # save/load: SavedFields
    SAVED_CONSTANTS: ClassVar[dict[str, Any]] = {"atoms_order": list(ATOMS)}  # a file must list the atoms in this order

    atoms: Float[Tensor, "atom unit unit"]
    n_layers: int
    n_heads: int
    labels: list[str]
    tau: int = 1
    redundancy: str = "MMI"
    aggregate: str = "mean_over_prompts"
    per_prompt_sts: Float[Tensor, "prompt unit unit"] | None = None
    per_prompt_rtr: Float[Tensor, "prompt unit unit"] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k, u, u2 = self.atoms.shape
        if k != len(ATOMS) or u != u2:
            raise ValueError(f"atoms must be [16, unit, unit], got {tuple(self.atoms.shape)}")
        if len(self.labels) != u:
            raise ValueError(f"{len(self.labels)} labels for {u} units")
        if self.n_layers * self.n_heads != u:
            raise ValueError(
                f"n_layers * n_heads = {self.n_layers * self.n_heads} but there are {u} units"
            )

    @property
    def n_units(self) -> int:
        return int(self.atoms.shape[-1])

    def atom(self, name: str) -> Float[Tensor, "unit unit"]:
        """One atom's ``[unit, unit]`` matrix by name, e.g. ``result.atom("xty")``."""
        return self.atoms[atom_index(name)]

    sts = KeyedView("atom", "sts", "Persistent synergy (synergy -> synergy), ``[unit, unit]``.")
    rtr = KeyedView("atom", "rtr", "Persistent redundancy (redundancy -> redundancy), ``[unit, unit]``.")

    def to_dataframe(self) -> pd.DataFrame:
        """One row per ordered pair (source != target): labels, layer/head indices, 16 atoms."""
        import pandas as pd

        u = self.n_units
        src, tgt = torch.meshgrid(torch.arange(u), torch.arange(u), indexing="ij")
        keep = src != tgt
        src, tgt = src[keep], tgt[keep]
        values = self.atoms.detach().cpu()[:, keep]
        labels = self.labels
        frame: dict[str, Any] = {
            "source": [labels[i] for i in src.tolist()],
            "target": [labels[j] for j in tgt.tolist()],
            "source_layer": (src // self.n_heads).numpy(),
            "source_head": (src % self.n_heads).numpy(),
            "target_layer": (tgt // self.n_heads).numpy(),
            "target_head": (tgt % self.n_heads).numpy(),
        }
        frame.update({name: values[k].numpy() for k, name in enumerate(ATOMS)})
        return pd.DataFrame(frame)

    # ----------------------------------------------------------------- save/load

def decompose(
    activity: HeadActivityLike,
    *,
    tau: int = 1,
    redundancy: str | RedundancyFunction = "MMI",
    aggregate: Aggregate = "mean_over_prompts",
    jitter: float | None = None,
    progress: bool = True,
    chunk_pairs: int | None = None,
    stream: bool | None = None,
    top_k: int = 1000,
    memory_budget: int | None = None,
) -> PhiIDResult | PairSummaries:
    """PhiID of every pair of heads of a recording.

    Args:
        activity: a ``HeadActivity`` (see :class:`HeadActivityLike`). Each prompt's valid
            prefix (``lengths``) is used; NaN beyond it is padding.
        tau: lag in generated tokens.
        redundancy: ``"MMI"`` (the papers') or ``"CCS"``, or a registered function.
        aggregate: ``"mean_over_prompts"`` (per prompt, then averaged; the paper's way) or
            ``"pooled"`` (statistics merged over prompts, one decomposition).
        jitter: see :func:`~synergy_lens.phiid.estimate.add_jitter` (prompt p is seeded
            with ``JITTER_SEED + p``); default None: degenerate pairs are NaN.
        progress: show a tqdm bar over prompts.
        chunk_pairs: pairs per elementwise block (None: per-device default).
        stream: None (default) streams above :data:`STREAM_ABOVE_UNITS` units and says so
            (a ``UserWarning``); True always, False never. Streaming returns
            :class:`~synergy_lens.phiid.summaries.PairSummaries` (per-unit means and the
            top-k pairs of the same prompt-mean or pooled atoms; see
            :func:`~synergy_lens.phiid.stream.pair_summaries`), not the dense atoms.
        top_k, memory_budget: for streaming (None: ``stream.default_memory_budget``).

    Returns:
        A :class:`PhiIDResult` (or :class:`PairSummaries` when streaming). With
        ``"mean_over_prompts"`` a pair that is degenerate in some prompts (a head constant
        there) is averaged over the prompts where it is defined (NaN if none); one warning
        names the heads.
    """
    if aggregate not in get_args(Aggregate):
        raise ValueError(f"aggregate must be one of {get_args(Aggregate)}, got {aggregate!r}")
    red = get_redundancy(redundancy)
    labels = list(activity.unit_labels())
    prompts, lengths = _prompt_series(activity, tau, jitter, labels)
    n_units = prompts[0].shape[0]
    if stream is None and n_units > STREAM_ABOVE_UNITS:
        warnings.warn(
            f"decompose: {n_units} units > STREAM_ABOVE_UNITS = {STREAM_ABOVE_UNITS}, so the "
            "streaming engine runs and returns PairSummaries (per-unit means and top-k pairs), "
            "not the [16, unit, unit] atoms; pass stream=False for the dense result",
            UserWarning,
            stacklevel=2,
        )
        stream = True
    if stream:
        from synergy_lens.phiid.stream import pair_summaries

        summaries = pair_summaries(
            prompts, tau=tau, redundancy=red, top_k=top_k, aggregate=aggregate, labels=labels,
            n_layers=int(activity.n_layers), n_heads=int(activity.n_heads),
            memory_budget=memory_budget, chunk_pairs=chunk_pairs, progress=progress,
        )
        summaries.meta.update(_meta(activity, lengths, jitter))
        return summaries
    atoms, per_sts, per_rtr = _dense_atoms(prompts, tau, red, aggregate, chunk_pairs, progress, labels)
    return PhiIDResult(
        atoms=atoms,
        n_layers=int(activity.n_layers),
        n_heads=int(activity.n_heads),
        labels=labels,
        tau=tau,
        redundancy=red.name,
        aggregate=aggregate,
        per_prompt_sts=per_sts,
        per_prompt_rtr=per_rtr,
        meta=_meta(activity, lengths, jitter),
    )


def _prompt_series(
    activity: HeadActivityLike, tau: int, jitter: float | None, labels: list[str]
) -> tuple[list[Tensor], list[int]]:
    """Each prompt's valid ``[unit, time]`` series in float64 (jittered when asked), checked,
    and the lengths; clear errors for an empty recording and too short prompts."""
    series = activity.unit_series()
    lengths = [int(v) for v in torch.as_tensor(activity.lengths).tolist()]
    n_prompts = series.shape[0]
    if n_prompts == 0:
        raise ValueError("the activity has no prompts: record some (record_head_activity) before decompose")
    if len(lengths) != n_prompts:
        raise ValueError(f"activity has {n_prompts} prompts but {len(lengths)} lengths")
    too_long = [p for p, n in enumerate(lengths) if n > series.shape[-1]]
    if too_long:
        raise ValueError(
            f"prompt(s) {too_long} have lengths beyond the {series.shape[-1]} recorded steps"
        )
    short = [p for p, n in enumerate(lengths) if n <= tau + 2]
    if short:
        raise ValueError(
            f"prompt(s) {short} have at most tau + 2 = {tau + 2} valid steps (lengths "
            f"{[lengths[p] for p in short]}); PhiID needs more. Drop them or generate more tokens"
        )
    prompts: list[Tensor] = []
    for p, n in enumerate(lengths):
        x = series[p, :, :n]
        check_series(x, tau, name=f"prompt {p} of the activity", labels=labels)
        x = x.to(torch.float64)
        prompts.append(add_jitter(x, jitter, seed=JITTER_SEED + p) if jitter is not None else x)
    return prompts, lengths


def _dense_atoms(
    prompts: list[Tensor],
    tau: int,
    red: RedundancyFunction,
    aggregate: Aggregate,
    chunk_pairs: int | None,
    progress: bool,
    labels: list[str],
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(atoms [16, unit, unit], per-prompt sts, per-prompt rtr)``: pooled windows, or the
    mean over prompts of per-prompt atoms (per-prompt sts/rtr kept); one warning names the
    degenerate units."""
    n_units, device = prompts[0].shape[0], prompts[0].device
    report: DegenerateReport = (set(), set())
    per_sts = per_rtr = None
    it = tqdm(prompts, desc="PhiID over prompts", disable=not progress, unit="prompt")
    if aggregate == "pooled":
        stats = PhiIDStats.merge_all(PhiIDStats.from_series(x, tau) for x in it)
        atoms = atoms_from_windows(stats, prompts, red, chunk_pairs=chunk_pairs, report=report)
    else:
        total = torch.zeros((len(ATOMS), n_units, n_units), dtype=torch.float64, device=device)
        count = torch.zeros((n_units, n_units), dtype=torch.float64, device=device)
        per_sts = torch.empty((len(prompts), n_units, n_units), dtype=torch.float32, device=device)
        per_rtr = torch.empty_like(per_sts)
        i_sts, i_rtr = atom_index("sts"), atom_index("rtr")
        for p, x in enumerate(it):
            a = atoms_from_windows(
                PhiIDStats.from_series(x, tau), [x], red, chunk_pairs=chunk_pairs, report=report
            )
            per_sts[p], per_rtr[p] = a[i_sts], a[i_rtr]
            defined = ~torch.isnan(a[i_sts])
            total += torch.where(defined, a, 0.0)
            count += defined
        atoms = mean_of_defined(total, count)  # NaN where no prompt defines the pair
    constant, collinear = report
    consequence = (
        "their pairs are NaN"
        if aggregate == "pooled"
        else "their pairs are left out of the prompt average where undefined (NaN if undefined "
        "in every prompt)"
    )
    if constant or collinear:
        warnings.warn(
            degenerate_message(sorted(constant), sorted(collinear), labels, consequence),
            RuntimeWarning,
            stacklevel=3,
        )
    return atoms, per_sts, per_rtr


def _meta(activity: HeadActivityLike, lengths: list[int], jitter: float | None) -> dict[str, Any]:
    """The JSON-able ``meta`` of decompose's results (dense and streamed)."""
    return {
        "model_name": str(getattr(activity, "model_name", "")),
        "n_prompts": len(lengths),
        "lengths": lengths,
        "jitter": jitter,
        "estimator": "gaussian",
        "units": "nats",
    }
