"""Behaviour divergence under ablation, and cumulative ablation curves (paper (B), ablation 1).

What and why
------------
Paper (B) (Urbina-Rodriguez et al. 2026, "Methods") asks how much the model's behaviour
changes when heads are removed. The clean model generates a continuation once (the
recording, a ``HeadActivity``); the ablated model is then *teacher-forced* on exactly that
sequence, and the divergence is

    D = mean over generated positions t of KL( p_clean(. | x_<t) || p_ablated(. | x_<t) )

in nats, where the positions are those whose next-token distribution predicts a generated
token (``len(prompt) - 1 + t`` for ``t < len(generated)``). We average D over prompts with
equal weight per prompt. :func:`ablation_curve` ablates heads cumulatively in a given order
(the paper: decreasing synergy-redundancy gradient) and compares it with random orders.

Speed: one forward pass per condition is wasteful. Conditions are stacked along the batch
dimension (the same sequence repeated) and each batch element gets its own head mask
(:func:`~synergy_lens.intervene.ablate.ablate_heads` with a ``[batch, layer, head]``
mask); identical conditions are computed once, and the no-ablation condition costs nothing
(its divergence is 0 by definition). Rows of a pass are (prompt, condition) pairs and a
pass may hold several prompts: sequences are right-padded, which needs no attention mask
because attention is causal (padding after a sequence cannot reach it). Only the generated
positions are unembedded: a hook on the last block's ``hook_resid_post`` gathers just those
positions of each row (the final norm and the unembedding act position-wise, so this
changes nothing else).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens._collective import check_collective, my_share, sum_over_ranks, world
from synergy_lens._io import SavedFields
from synergy_lens._repr import SummaryRepr
from synergy_lens.intervene.ablate import (
    AblationMode,
    _ResampleState,
    ablation_hooks,
    prepare_reference,
)
from synergy_lens.intervene.heads import head_mask, unit_order
from synergy_lens.intervene.units import UnitGrid, prepare_units, unit_ablation_hooks, unit_grid
from synergy_lens.models.adapter import ModelAdapter, adapt

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AblationCurve",
    "TeacherForced",
    "ablation_curve",
    "behaviour_divergence",
    "score_orders",
    "teacher_forced_sequences",
]

HooksFor = Callable[[Tensor], list[H.FwdHook]]


@dataclass(frozen=True)
class TeacherForced:
    """One clean sequence to teacher-force: ``ids = prompt + generated[:-1]``.

    The last ``n_gen`` positions of ``ids`` predict the ``n_gen`` generated tokens (the last
    generated token predicts nothing we need, so it is not fed).
    """

    ids: list[int]
    n_gen: int


def teacher_forced_sequences(activity: Any) -> list[TeacherForced]:
    """The clean generations of a recording, ready for teacher forcing.

    Args:
        activity: a ``HeadActivity`` (or anything with ``prompt_ids`` and
            ``generated_ids``), or a list of ``(prompt_ids, generated_ids)`` pairs.

    Prompts with no generated token are skipped; none left is an error.
    """
    if hasattr(activity, "prompt_ids") and hasattr(activity, "generated_ids"):
        pairs = list(zip(activity.prompt_ids, activity.generated_ids))
    elif isinstance(activity, Sequence):
        pairs = [tuple(p) for p in activity]
        if not all(len(p) == 2 for p in pairs):
            raise TypeError("pass a HeadActivity or a list of (prompt_ids, generated_ids) pairs")
    else:
        raise TypeError(
            f"cannot read clean generations from {type(activity).__name__}: pass a HeadActivity "
            "(record_head_activity) or a list of (prompt_ids, generated_ids) pairs"
        )
    out = []
    for prompt, gen in pairs:
        prompt, gen = [int(t) for t in prompt], [int(t) for t in gen]
        if not prompt:
            raise ValueError("a prompt has no tokens: the first generated token needs a context")
        if gen:
            out.append(TeacherForced(prompt + gen[:-1], len(gen)))
    if not out:
        raise ValueError("no prompt has generated tokens: record with max_new_tokens >= 1")
    return out


def _gather_positions(resid: Tensor, *, hook: Any, index: Tensor) -> Tensor:
    """Keep, per batch row, only the positions in ``index`` ``[batch, n]``."""
    return resid.gather(1, index[:, :, None].expand(-1, -1, resid.shape[-1]))


def _logits(
    adapter: ModelAdapter, ids: Tensor, positions: Tensor, fwd: list[H.FwdHook]
) -> Float[Tensor, "batch n vocab"]:
    """Logits at ``positions`` ``[batch, n]`` of each row, with ``fwd`` hooks active.

    The positions are gathered from the last block's ``hook_resid_post`` (after any hook in
    ``fwd`` on that name: ``fwd`` is registered first), so only they are unembedded.
    """
    last = (
        H.hook_resid_post(adapter.n_layers - 1),
        functools.partial(_gather_positions, index=positions.to(adapter.device)),
    )
    with adapter.hooks(fwd):
        return adapter.forward(ids, fwd_hooks=[last])


@dataclass(frozen=True)
class _Clean:
    """The clean next-token distribution p at a prompt's generated positions."""

    p: Float[Tensor, "n vocab"]  # float32 probabilities
    neg_entropy: Float[Tensor, " n"]  # sum_v p log p, float64

    @classmethod
    def from_logits(cls, logits: Tensor) -> _Clean:
        logp = torch.log_softmax(logits.float(), dim=-1)
        p = logp.exp()
        return cls(p, (p * logp).sum(-1).double())

    def kl(self, logits: Float[Tensor, "n vocab"]) -> float:
        """Mean over positions of KL(p || softmax(logits)), in nats.

        KL = sum p log p - sum p z + logsumexp(z): one pass over the logits ``z`` instead
        of materialising log_softmax(z) (which dominated the batched engine's time).
        """
        z = logits.float()
        kl = self.neg_entropy - (self.p * z).sum(-1).double() + torch.logsumexp(z, -1).double()
        return float(kl.mean())


def _right_padded(
    seqs: list[TeacherForced], prompts: list[int], device: Any
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch n"]]:
    """Rows of ``prompts`` right-padded to one length, and the positions that predict their
    generated tokens (``[batch, max n_gen]``, shorter rows repeat their last position).

    Attention is causal, so tokens appended after a sequence cannot change its positions:
    right padding needs no attention mask, and the padding token is the row's own last
    token (never a pad id a backend might mask).
    """
    width = max(len(seqs[p].ids) for p in prompts)
    n_max = max(seqs[p].n_gen for p in prompts)
    ids = torch.empty(len(prompts), width, dtype=torch.long)
    pos = torch.empty(len(prompts), n_max, dtype=torch.long)
    for r, p in enumerate(prompts):
        seq = seqs[p]
        n = len(seq.ids)
        ids[r, :n] = torch.tensor(seq.ids)
        ids[r, n:] = seq.ids[-1]
        pos[r] = torch.arange(n - seq.n_gen, n - seq.n_gen + n_max).clamp(max=n - 1)
    return ids.to(device), pos


def _plan(
    seqs: list[TeacherForced], active: list[int], *, batched: bool, batch_size: int,
    per_prompt: bool,
) -> list[list[tuple[int, int]]]:
    """Forward passes as lists of ``(prompt, condition)`` rows.

    Loop: one pass per pair. Batched: prompts in order of length (neighbours pad little),
    every active condition of each; rows are packed ``batch_size`` to a pass across prompt
    boundaries, unless ``per_prompt`` (the ablation keeps per-prompt state, as "resample"
    does), when each prompt's conditions are split into near-equal chunks (33 conditions at
    batch_size 32 run as 17 + 16, not 32 + 1).
    """
    if not active:
        return []
    if not batched:
        return [[(p, c)] for p in range(len(seqs)) for c in active]
    order = sorted(range(len(seqs)), key=lambda p: (len(seqs[p].ids), p))
    if per_prompt:
        n_chunks = max(1, math.ceil(len(active) / batch_size))
        splits = [c.tolist() for c in torch.tensor(active, dtype=torch.long).tensor_split(n_chunks)]
        return [[(p, c) for c in chunk] for p in order for chunk in splits if chunk]
    rows = [(p, c) for p in order for c in active]
    n_chunks = max(1, math.ceil(len(rows) / batch_size))
    size = math.ceil(len(rows) / n_chunks)
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _divergences(
    adapter: ModelAdapter,
    seqs: list[TeacherForced],
    conditions: Tensor,
    hooks_for: HooksFor,
    *,
    batched: bool,
    batch_size: int,
    progress: bool,
    on_prompt: Callable[[int], None] | None = None,
    distributed: bool = False,
) -> Float[Tensor, "condition prompt"]:
    """The engine: divergence of every condition (a mask per row) on every sequence.

    Rows of a pass are ``(prompt, condition)`` pairs: the prompt's clean sequence, right
    padded, with the condition's mask (``hooks_for`` gets the ``[rows, ...]`` masks when
    ``batched``, one mask otherwise). Clean log-probabilities are computed once per prompt,
    several prompts per pass, and dropped once no later pass needs them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_cond = conditions.shape[0]
    uniq, inverse = torch.unique(conditions.flatten(1), dim=0, return_inverse=True)
    uniq = uniq.view(-1, *conditions.shape[1:])
    active = [i for i in range(uniq.shape[0]) if bool(uniq[i].any())]
    out = torch.zeros(uniq.shape[0], len(seqs), dtype=torch.float64)
    plan = _plan(seqs, active, batched=batched, batch_size=batch_size, per_prompt=on_prompt is not None)
    split = check_collective(distributed)
    if split:  # a contiguous block of passes per rank; each cell of ``out`` has one owner
        plan = [plan[i] for i in my_share(len(plan), blocks=True)]
    last_use = {p: i for i, rows in enumerate(plan) for p, _ in rows}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), desc="ablation passes", leave=False)
    clean: dict[int, _Clean] = {}
    with torch.inference_mode():
        for i, rows in enumerate(plan):
            prompts = [p for p, _ in rows]
            missing = sorted({p for p in prompts if p not in clean}, key=prompts.index)
            if missing:
                ids, pos = _right_padded(seqs, missing, adapter.device)
                logits = _logits(adapter, ids, pos, [])
                for r, p in enumerate(missing):
                    clean[p] = _Clean.from_logits(logits[r, : seqs[p].n_gen])
            if on_prompt is not None:
                on_prompt(prompts[0])  # per-prompt plans: every row has this prompt
            chunk = [c for _, c in rows]
            masks = uniq[chunk]
            ids, pos = _right_padded(seqs, prompts, adapter.device)
            logits = _logits(adapter, ids, pos, hooks_for(masks if batched else masks[0]))
            for r, (p, c) in enumerate(rows):
                out[c, p] = clean[p].kl(logits[r, : seqs[p].n_gen])
            del logits
            for p in {p for p in prompts if last_use[p] == i}:
                del clean[p]
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if split:
        out = sum_over_ranks(out)  # x + 0 + ... = x exactly: the single-process table
    return out[inverse].reshape(n_cond, len(seqs))


def _curve_grid(adapter: ModelAdapter, activity: Any, order: Any) -> UnitGrid:
    """The units of a curve: those of the scores' labels, else of the recording, else every head."""
    for source in (order, activity):
        if isinstance(getattr(source, "labels", None), list) or hasattr(source, "unit_kind"):
            return unit_grid(source)
    return unit_grid(adapter)


def _hooks_factory(
    adapter: ModelAdapter, grid: UnitGrid, mode: str | AblationMode, reference: Any
) -> tuple[HooksFor, Callable[[int], None] | None]:
    """``hooks_for(masks)`` over the grid (every head: the head ablation of ``ablate_heads``)."""
    if grid != unit_grid(adapter):
        name = mode if isinstance(mode, str) else mode.name
        state = prepare_units(adapter, grid, name, reference)

        def hooks_for(rows: Tensor) -> list[H.FwdHook]:
            return unit_ablation_hooks(adapter, grid, rows, mode=name, state=state)
    else:
        state = prepare_reference(adapter, mode, reference)

        def hooks_for(rows: Tensor) -> list[H.FwdHook]:
            return ablation_hooks(adapter, rows, mode=mode, reference=state, prepared=True)

    on_prompt = None
    if isinstance(state, _ResampleState):

        def on_prompt(p: int) -> None:  # every condition of prompt p resamples the same row
            state.fixed_row = p

    return hooks_for, on_prompt


def behaviour_divergence(
    model: Any,
    activity: Any,
    heads: Any,
    *,
    mode: str | AblationMode = "zero",
    reference: Any = None,
    batched: bool = True,
    batch_size: int = 16,
    progress: bool = False,
    distributed: bool = False,
) -> Float[Tensor, "... prompt"]:
    """Paper (B)'s behaviour divergence of an ablation, per prompt (nats).

    Args:
        model: a HookedTransformer, TransformerBridge or ``ModelAdapter``.
        activity: the clean generations: a ``HeadActivity`` or ``(prompt_ids,
            generated_ids)`` pairs (see :func:`teacher_forced_sequences`).
        heads: the heads to ablate (any form :func:`~synergy_lens.intervene.head_mask`
            accepts), or a bool ``[condition, layer, head]`` mask of many conditions.
        mode, reference: as in :func:`~synergy_lens.intervene.ablate_heads`.
        batched: stack conditions along the batch (``batch_size`` per pass) instead of one
            pass per condition and prompt. Same numbers up to float rounding.
        distributed: inside a torch.distributed process group, every rank calls this with
            the same arguments and runs a contiguous share of the forward passes; every rank
            gets the whole table (``synergy_lens.distributed``). Ignored without a group.

    Returns:
        ``[prompt]`` for one set of heads, ``[condition, prompt]`` for a 3-d mask: the mean
        over generated positions of KL(p_clean || p_ablated). Take ``.mean(-1)`` for the
        prompt average.
    """
    adapter = adapt(model)
    seqs = teacher_forced_sequences(activity)
    mask = head_mask(adapter, heads)
    conditions = mask if mask.ndim == 3 else mask[None]
    hooks_for, on_prompt = _hooks_factory(adapter, unit_grid(adapter), mode, reference)
    out = _divergences(
        adapter, seqs, conditions, hooks_for, batched=batched, batch_size=batch_size,
        progress=progress, on_prompt=on_prompt, distributed=distributed,
    )
    return out if mask.ndim == 3 else out[0]


# ----------------------------------------------------------------------------- orders


def score_orders(
    scores: Any, n_layers: int | None = None, n_heads: int | None = None
) -> dict[str, list[tuple[int, int]]]:
    """``{"synergy-first": ..., "redundancy-first": ...}`` from per-head scores.

    ``scores`` is a ``[layer, head]`` tensor/array where larger means more synergistic
    (e.g. the synergy-redundancy rank gradient of paper (B)), or a ``HeadScores`` (its
    ``values``). Synergy-first sorts by decreasing score, redundancy-first by increasing
    score; ties keep unit order; NaN heads go last in both.
    """
    values = _score_values(scores)
    if values is None:
        raise TypeError(f"cannot read [layer, head] scores from {type(scores).__name__}")
    t = values.to(torch.float64).detach().cpu()
    if t.ndim != 2 or (n_layers is not None and tuple(t.shape) != (n_layers, n_heads)):
        raise ValueError(
            f"scores must be [layer, head] = ({n_layers}, {n_heads}), got {tuple(t.shape)}"
        )
    flat = t.flatten().tolist()
    nh = t.shape[1]
    finite = [u for u, v in enumerate(flat) if not math.isnan(v)]
    nan = [u for u, v in enumerate(flat) if math.isnan(v)]
    syn = sorted(finite, key=lambda u: (-flat[u], u)) + nan
    red = sorted(finite, key=lambda u: (flat[u], u)) + nan
    return {
        "synergy-first": [(u // nh, u % nh) for u in syn],
        "redundancy-first": [(u // nh, u % nh) for u in red],
    }


def _score_values(scores: Any) -> Tensor | None:
    """A float tensor from a tensor, an array, or an object's ``values`` (``HeadScores``)."""
    if not isinstance(scores, Tensor) and not hasattr(scores, "__array__"):
        scores = getattr(scores, "values", None)
    if isinstance(scores, Tensor) or hasattr(scores, "__array__"):
        t = torch.as_tensor(scores)
        return t if t.is_floating_point() else None
    return None


def _orders(grid: UnitGrid, order: Any) -> dict[str, list[tuple[int, int]]]:
    if isinstance(order, Mapping):
        return {str(k): unit_order(grid, v) for k, v in order.items()}
    values = _score_values(order)
    if values is not None and values.ndim == 2:
        return score_orders(values, grid.n_layers, grid.n_heads)
    if isinstance(order, Sequence) and not isinstance(order, str):
        return {"given": unit_order(grid, order)}
    raise TypeError(
        f"cannot make an ablation order from {type(order).__name__}: pass a list of heads, a "
        "dict name -> list of heads, a [layer, head] score tensor or a HeadScores"
    )


# ----------------------------------------------------------------------------- the curve


@dataclass(repr=False)
class AblationCurve(SummaryRepr, SavedFields):
    """Cumulative ablation curves: divergence after ablating the first k heads of each order.

    Attributes:
        steps: number of heads ablated at each point, ``[step]`` (starts at 0).
        curves: order name -> mean divergence over prompts, ``[step]`` (nats).
        per_prompt: order name -> ``[step, prompt]``.
        random: mean divergence of each random order, ``[seed, step]``.
        random_per_prompt: ``[seed, step, prompt]``.
        orders: order name -> head labels in ablation order (``"random/3"`` for seed 3).
        meta: mode, model name, seeds, batching and timing (JSON-able).
    """

    FORMAT = "synergy_lens.AblationCurve/1"  # save/load: SavedFields

    steps: Int[Tensor, " step"]
    curves: dict[str, Float[Tensor, " step"]]
    per_prompt: dict[str, Float[Tensor, "step prompt"]]
    random: Float[Tensor, "seed step"]
    random_per_prompt: Float[Tensor, "seed step prompt"]
    orders: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _from_old_file(cls, tensors: dict[str, Any], header: dict[str, Any], version: int) -> AblationCurve:
        """Format 1 kept curve ``i`` as tensors ``curve{i}``/``pp{i}``, named in ``names``."""
        names = header["names"]
        return cls(steps=tensors["steps"], curves={k: tensors[f"curve{i}"] for i, k in enumerate(names)},
                   per_prompt={k: tensors[f"pp{i}"] for i, k in enumerate(names)}, random=tensors["random"],
                   random_per_prompt=tensors["random_pp"], orders=header["orders"], meta=header["meta"])

    @property
    def random_mean(self) -> Float[Tensor, " step"]:
        return self.random.mean(0)

    @property
    def random_std(self) -> Float[Tensor, " step"]:
        """Standard deviation over seeds (0 with a single seed)."""
        return self.random.std(0) if self.random.shape[0] > 1 else torch.zeros_like(self.random[0])

    @property
    def random_min(self) -> Float[Tensor, " step"]:
        return self.random.min(0).values

    @property
    def random_max(self) -> Float[Tensor, " step"]:
        return self.random.max(0).values

    def random_quantile(self, q: float) -> Float[Tensor, " step"]:
        """Quantile ``q`` in [0, 1] over seeds, e.g. 0.05 and 0.95 for a band."""
        return torch.quantile(self.random, q, dim=0)

    def auc(self) -> dict[str, float]:
        """Area under each curve (trapezoid over the number of heads; random: the mean)."""
        x = self.steps.double()
        out = {k: float(torch.trapezoid(v, x)) for k, v in self.curves.items()}
        if self.random.numel():
            out["random"] = float(torch.trapezoid(self.random_mean, x))
        return out

    def to_dataframe(self) -> pd.DataFrame:
        """Long table: ``order, seed, n_ablated, divergence`` (random orders: order="random")."""
        import pandas as pd

        rows = []
        for name, curve in self.curves.items():
            rows += [(name, -1, int(k), float(v)) for k, v in zip(self.steps, curve)]
        for s in range(self.random.shape[0]):
            rows += [("random", s, int(k), float(v)) for k, v in zip(self.steps, self.random[s])]
        return pd.DataFrame(rows, columns=["order", "seed", "n_ablated", "divergence"])

    def summary(self) -> pd.DataFrame:
        """One row per step: each order's curve, and mean/std/min/max of the random orders."""
        import pandas as pd

        data: dict[str, Any] = {"n_ablated": self.steps.tolist()}
        data.update({k: v.tolist() for k, v in self.curves.items()})
        if self.random.numel():
            for stat in ("mean", "std", "min", "max"):
                data[f"random_{stat}"] = getattr(self, f"random_{stat}").tolist()
        return pd.DataFrame(data)

def _cumulative(order: list[tuple[int, int]], steps: list[int], n_layers: int, n_heads: int) -> Bool[Tensor, "step layer head"]:
    masks = torch.zeros(len(steps), n_layers, n_heads, dtype=torch.bool)
    for i, k in enumerate(steps):
        for layer, head in order[:k]:
            masks[i, layer, head] = True
    return masks


def ablation_curve(
    model: Any,
    activity: Any,
    order: Any,
    *,
    step: int = 5,
    max_heads: int | None = None,
    n_random: int = 5,
    seed: int = 0,
    mode: str | AblationMode = "zero",
    reference: Any = None,
    batched: bool = True,
    batch_size: int = 16,
    progress: bool = True,
    distributed: bool = False,
) -> AblationCurve:
    """Cumulative head ablation in given orders against random orders (paper (B), ablation 1).

    At each step k = 0, step, 2*step, ... (and the last k), the first k heads of an order
    are ablated together and the behaviour divergence (see the module docstring) is
    measured on the clean generations of ``activity``.

    Args:
        model: a HookedTransformer, TransformerBridge or ``ModelAdapter``.
        activity: the clean generations (a ``HeadActivity`` or ``(prompt_ids,
            generated_ids)`` pairs).
        order: which orders to compare:

            - a ``[layer, head]`` score tensor (larger = more synergistic, such as the rank
              gradient) or a ``HeadScores``: gives ``"synergy-first"`` (decreasing score)
              and ``"redundancy-first"`` (increasing score), see :func:`score_orders`;
            - a list of heads (``(layer, head)`` or ``"L5H3"``): one order, ``"given"``;
            - a dict name -> list of heads: several named orders.
        step: heads added per step.
        max_heads: stop after this many heads (default: all heads of the shortest order).
        n_random: random orders (seeds ``seed, seed + 1, ...``); 0 for none.
        mode, reference: ablation mode, as in :func:`~synergy_lens.intervene.ablate_heads`
            (paper (B): ``"zero"``).
        batched: many conditions per forward pass (per-batch-element head masks); False
            runs one pass per condition and prompt (the reference loop, same numbers).
        batch_size: conditions per forward pass.
        distributed: spread the forward passes over the ranks of a torch.distributed process
            group (every rank calls with the same arguments and gets the whole curve; see
            :func:`behaviour_divergence`).

    Returns:
        :class:`AblationCurve` (``.summary()``, ``.to_dataframe()``, ``.save()``).
    """
    import time

    adapter = adapt(model)
    if n_random < 0:
        raise ValueError(f"n_random must be >= 0, got {n_random}")
    seqs = teacher_forced_sequences(activity)
    grid = _curve_grid(adapter, activity, order)
    named = _orders(grid, order)
    steps = _curve_steps(grid.n_units, named, step, max_heads)
    randoms = [_random_order(grid, seed + s) for s in range(n_random)]
    all_orders = list(named.values()) + randoms
    conditions = torch.cat([_cumulative(o, steps, grid.n_layers, grid.n_heads) for o in all_orders])
    hooks_for, on_prompt = _hooks_factory(adapter, grid, mode, reference)
    t0 = time.perf_counter()
    div = _divergences(adapter, seqs, conditions, hooks_for, batched=batched, batch_size=batch_size,
                       progress=progress, on_prompt=on_prompt, distributed=distributed)
    div = div.float().view(len(all_orders), len(steps), len(seqs))
    labels = {k: [grid.label(*lh) for lh in o] for k, o in named.items()}
    labels.update({f"random/{seed + s}": [grid.label(*lh) for lh in o] for s, o in enumerate(randoms)})
    return AblationCurve(
        steps=torch.tensor(steps),
        curves={k: div[i].mean(-1) for i, k in enumerate(named)},
        per_prompt={k: div[i] for i, k in enumerate(named)},
        random=div[len(named) :].mean(-1),
        random_per_prompt=div[len(named) :],
        orders=labels,
        meta={"mode": mode if isinstance(mode, str) else mode.name, "model_name": adapter.name,
              "n_prompts": len(seqs), "n_generated": [s.n_gen for s in seqs],
              "seeds": [seed + s for s in range(n_random)], "step": step, "batched": batched,
              "batch_size": batch_size, "seconds": time.perf_counter() - t0,
              "processes": world()[1] if check_collective(distributed) else 1, "units": "nats"},
    )


def _curve_steps(n_units: int, named: dict[str, list[tuple[int, int]]], step: int, max_heads: int | None) -> list[int]:
    """k = 0, step, 2 * step, ... and the last k (all heads of the shortest order, or ``max_heads``)."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    limit = min([n_units, *(len(o) for o in named.values())])
    if max_heads is not None:
        if max_heads < 1:
            raise ValueError(f"max_heads must be >= 1, got {max_heads}")
        limit = min(limit, max_heads)
    if limit < 1:
        raise ValueError("an ablation order is empty")
    steps = list(range(0, limit + 1, step))
    if steps[-1] != limit:
        steps.append(limit)
    return steps


def _random_order(grid: UnitGrid, seed: int) -> list[tuple[int, int]]:
    """Every unit in a random order, seeded."""
    perm = torch.randperm(grid.n_units, generator=torch.Generator().manual_seed(seed)).tolist()
    return [(u // grid.n_heads, u % grid.n_heads) for u in perm]
