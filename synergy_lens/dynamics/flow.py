"""Residual flow: how each sub-layer's write lines up with the residual stream it writes into.

What and why
------------
Paper (A) (Zhang et al. 2026, arXiv 2603.29735) follows the residual stream through depth
and reports a phase transition in the middle of the network: early and late blocks
*enhance* the stream (their writes point along it), middle blocks *orthogonalise* it (their
writes point elsewhere, rotating the representation). The paper gives no formula, so this
module fixes one (docs/science.md, "Additions of (A) with no published protocol details").

For every layer ``L`` and every token position ``p`` that is counted (see *Positions*):

=================  ===================================================================
metric             per-token value, averaged over the counted tokens
=================  ===================================================================
``attn_cos``       cos(attn_out[L, p], resid_pre[L, p]): the attention write vs the
                   stream it is added to (``resid_mid = resid_pre + attn_out``)
``mlp_cos``        cos(mlp_out[L, p], resid_mid[L, p]): the MLP write vs the stream it is
                   added to (``resid_post = resid_mid + mlp_out``)
``resid_cos``      cos(resid_pre[L, p], resid_post[L, p]): consecutive residual states
                   across the whole block (1 = the block leaves the direction unchanged)
``attn_ratio``     ||attn_out[L, p]|| / ||resid_pre[L, p]||: relative size of the write
``mlp_ratio``      ||mlp_out[L, p]|| / ||resid_mid[L, p]||
=================  ===================================================================

with ``cos(a, b) = a . b / (||a|| ||b||)`` over ``d_model`` (TransformerLens hooks
``blocks.{L}.hook_resid_pre``, ``hook_attn_out``, ``hook_resid_mid``, ``hook_mlp_out``,
``hook_resid_post``; see :mod:`synergy_lens.hooks`). A positive ``attn_cos``/``mlp_cos``
is enhancement, near 0 orthogonal writing, negative erasure. The mean is over tokens
(every counted token of every prompt weighs the same); per-prompt means are kept as well,
for a bootstrap over prompts.

Zero vectors. A direction is undefined for a zero vector, so a token where a metric's
vector has norm 0 (``cos``: either vector; ``ratio``: the denominator) is *left out* of
that metric's mean and counted in ``n_undefined``. A sub-layer zeroed by a hook therefore
gives NaN for its cosine and 0 for its ratio, never a fake 0 cosine. A layer with no
defined token is NaN.

Positions. ``positions="all"`` counts every non-padding token of each sequence (the first
token, often an attention sink with a huge norm, included: a cosine is scale-free).
``positions="generated"`` (only when the input is a recording) counts the steps that
produced generated tokens, position ``len(prompt_ids[p]) - 1 + t`` of the sequence
``prompt_ids + generated_ids[:-1]``: the same time axis as ``HeadActivity.values``, so the
flow and the PhiID of a recording describe the same tokens.

Cost. One teacher-forced pass per batch (right padding, which cannot change a causal
model's earlier positions). The hooks reduce each activation to per-token dot products and
norms on the spot; only the few tensors of the current block that wait for their partner
are held, never a cache of the whole network, and the pass stops after the last block.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from synergy_lens import hooks as H
from synergy_lens._grid import LayerAxis
from synergy_lens._io import SavedFields
from synergy_lens._views import KeyedView
from synergy_lens.models.adapter import adapt

__all__ = ["FLOW_METRICS", "Positions", "ResidualFlow", "residual_flow"]

Positions = Literal["all", "generated"]

FLOW_METRICS: dict[str, tuple[str, str, Literal["cos", "ratio"]]] = {
    "attn_cos": ("attn_out", "resid_pre", "cos"),
    "mlp_cos": ("mlp_out", "resid_mid", "cos"),
    "resid_cos": ("resid_post", "resid_pre", "cos"),
    "attn_ratio": ("attn_out", "resid_pre", "ratio"),
    "mlp_ratio": ("mlp_out", "resid_mid", "ratio"),
}
"""Metric name -> (vector a, vector b, kind): ``cos(a, b)`` or ``||a|| / ||b||`` (see above)."""

_HOOKS = {
    "resid_pre": H.hook_resid_pre,
    "attn_out": H.hook_attn_out,
    "resid_mid": H.hook_resid_mid,
    "mlp_out": H.hook_mlp_out,
    "resid_post": H.hook_resid_post,
}


@dataclass
class ResidualFlow(LayerAxis, SavedFields):
    """Per-layer residual-flow metrics (module docstring), with per-prompt values.

    Attributes:
        per_prompt: ``[metric, prompt, layer]`` mean over each prompt's counted tokens
            (NaN where none is defined); metrics in the order of :attr:`metrics`.
        counts: ``[metric, prompt, layer]`` number of tokens each mean is over.
        n_undefined: ``[metric, layer]`` tokens left out for a zero-norm vector.
        metrics: metric names (keys of :data:`FLOW_METRICS`).
        positions: which tokens were counted (``"all"`` or ``"generated"``).
        meta: JSON-able extras (model name, number of tokens).
    """

    FORMAT = "synergy_lens.ResidualFlow/1"  # save/load: SavedFields
    GRID = ("per_prompt", 2)  # n_layers, depth: LayerAxis

    per_prompt: Float[Tensor, "metric prompt layer"]
    counts: Int[Tensor, "metric prompt layer"]
    n_undefined: Int[Tensor, "metric layer"]
    metrics: list[str] = field(default_factory=lambda: list(FLOW_METRICS))
    positions: str = "all"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.per_prompt.shape != self.counts.shape or self.per_prompt.ndim != 3:
            raise ValueError("per_prompt and counts must both be [metric, prompt, layer]")
        if len(self.metrics) != self.per_prompt.shape[0]:
            raise ValueError(f"{len(self.metrics)} metric names for {self.per_prompt.shape[0]} metrics")

    @property
    def n_prompts(self) -> int:
        return int(self.per_prompt.shape[1])

    def mean(self, metric: str) -> Float[Tensor, " layer"]:
        """Token-weighted mean of one metric per layer (every counted token weighs the same)."""
        k = self._index(metric)
        c = self.counts[k].to(torch.float64)
        total = (torch.nan_to_num(self.per_prompt[k]) * c).sum(0)
        n = c.sum(0)
        return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, math.nan))

    def prompt_means(self, metric: str) -> Float[Tensor, "prompt layer"]:
        """Per-prompt means of one metric (rows are the units of a bootstrap)."""
        return self.per_prompt[self._index(metric)]

    attn_cos = KeyedView("mean", "attn_cos", "Token-weighted mean ``attn_cos`` per layer, ``[layer]``.")
    mlp_cos = KeyedView("mean", "mlp_cos", "Token-weighted mean ``mlp_cos`` per layer, ``[layer]``.")
    resid_cos = KeyedView("mean", "resid_cos", "Token-weighted mean ``resid_cos`` per layer, ``[layer]``.")

    def _index(self, metric: str) -> int:
        if metric not in self.metrics:
            raise ValueError(f"unknown flow metric {metric!r}; available: {self.metrics}")
        return self.metrics.index(metric)

    def __repr__(self) -> str:
        return f"ResidualFlow({self.n_layers} layers, {self.n_prompts} prompts, positions={self.positions!r})"

    def to_dataframe(self) -> Any:
        """One row per layer: ``layer, depth`` and the token-weighted mean of every metric."""
        import pandas as pd

        frame: dict[str, Any] = {"layer": range(self.n_layers), "depth": self.depth.numpy()}
        frame.update({m: self.mean(m).numpy() for m in self.metrics})
        return pd.DataFrame(frame)

def _sequences(
    adapter: Any, inputs: Any, positions: str, chat_template: bool | None
) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Token lists to feed and the ``[start, stop)`` positions to count in each."""
    if hasattr(inputs, "generated_ids") and hasattr(inputs, "prompt_ids"):  # a HeadActivity
        seqs, spans = [], []
        for p, gen in zip(inputs.prompt_ids, inputs.generated_ids):
            if not p or not gen:
                raise ValueError("the recording has a prompt without token ids or generated tokens")
            seqs.append([*p, *gen[:-1]])
            spans.append((len(p) - 1, len(p) - 1 + len(gen)) if positions == "generated" else (0, len(p) + len(gen) - 1))
        return seqs, spans
    if positions == "generated":
        raise ValueError("positions='generated' needs a HeadActivity (it knows which tokens were generated)")
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    if not items:
        raise ValueError("no prompts given: pass texts, token-id lists or a HeadActivity")
    seqs = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            use = bool(getattr(adapter.tokenizer, "chat_template", None)) if chat_template is None else chat_template
            seqs.append(adapter.tokenize(adapter.apply_chat_template(item) if use else item))
        elif isinstance(item, Sequence | Tensor) and all(isinstance(int(t), int) for t in item):
            seqs.append([int(t) for t in item])
        else:
            raise TypeError(f"input {i} is a {type(item).__name__}: pass texts or lists of token ids")
        if not seqs[-1]:
            raise ValueError(f"input {i} has no tokens")
    return seqs, [(0, len(s)) for s in seqs]


def residual_flow(
    model: Any,
    inputs: Any,
    *,
    batch_size: int = 8,
    positions: Positions = "all",
    chat_template: bool | None = None,
    progress: bool = False,
) -> ResidualFlow:
    """Residual-flow metrics of every layer, averaged over tokens (module docstring).

    Args:
        model: a HookedTransformer, TransformerBridge or ``ModelAdapter``.
        inputs: texts, lists of token ids (fed as given), or a ``HeadActivity`` (its
            prompts with their generated continuations).
        batch_size: sequences per forward pass (batched by similar length; results do not
            depend on it).
        positions: ``"all"`` non-padding tokens, or ``"generated"`` (a recording only).
        chat_template: for texts, as in ``record_head_activity``: ``None`` wraps them in
            the tokenizer's chat template when it has one.
        progress: tqdm bar over batches.

    Returns:
        A :class:`ResidualFlow` with prompts in input order.
    """
    from synergy_lens.record.recorder import batch_plan

    if positions not in ("all", "generated"):
        raise ValueError(f"positions must be 'all' or 'generated', got {positions!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    adapter = adapt(model)
    seqs, spans = _sequences(adapter, inputs, positions, chat_template)
    names = list(FLOW_METRICS)
    n_layers = adapter.n_layers
    sums = torch.zeros(len(names), len(seqs), n_layers, dtype=torch.float64)
    counts = torch.zeros(len(names), len(seqs), n_layers, dtype=torch.long)
    undefined = torch.zeros(len(names), n_layers, dtype=torch.long)
    with adapter.eval_mode(), torch.inference_mode():
        for indices in tqdm(batch_plan(seqs, batch_size), desc="residual flow", disable=not progress):
            _flow_batch(adapter, [seqs[i] for i in indices], [spans[i] for i in indices],
                        torch.tensor(indices), sums, counts, undefined)
    per_prompt = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, math.nan))
    return ResidualFlow(
        per_prompt=per_prompt.to(torch.float32),
        counts=counts,
        n_undefined=undefined,
        metrics=names,
        positions=positions,
        meta={"model_name": adapter.name, "n_tokens": int(counts[0].sum())},
    )


def _flow_batch(
    adapter: Any,
    seqs: list[list[int]],
    spans: list[tuple[int, int]],
    rows: Tensor,
    sums: Tensor,
    counts: Tensor,
    undefined: Tensor,
) -> None:
    """One right-padded pass; adds to ``sums``/``counts`` ``[metric, prompt, layer]`` at
    prompts ``rows`` and to ``undefined`` ``[metric, layer]``, in place."""
    ids, _ = adapter.pad(seqs, side="right")
    device = ids.device
    pos = torch.arange(ids.shape[1], device=device)
    start = torch.tensor([s for s, _ in spans], device=device)
    stop = torch.tensor([e for _, e in spans], device=device)
    counted = (pos[None] >= start[:, None]) & (pos[None] < stop[:, None])  # [batch, pos]
    n_layers = adapter.n_layers
    needs = {m: (a, b) for m, (a, b, _) in FLOW_METRICS.items()}
    pending: dict[tuple[int, str], Tensor] = {}
    done: dict[int, set[str]] = {layer: set() for layer in range(n_layers)}

    def store(x: Tensor, *, hook: Any, layer: int, kind: str) -> None:
        pending[(layer, kind)] = x.detach().to(torch.float32, copy=True)
        for metric, (a, b) in needs.items():
            if metric in done[layer] or (layer, a) not in pending or (layer, b) not in pending:
                continue
            value, ok = _token_metric(pending[(layer, a)], pending[(layer, b)], FLOW_METRICS[metric][2])
            keep = ok & counted
            k = names.index(metric)
            sums[k, rows, layer] += torch.where(keep, value, 0.0).sum(-1).to("cpu", torch.float64)
            counts[k, rows, layer] += keep.sum(-1).cpu()
            undefined[k, layer] += int((counted & ~ok).sum())
            done[layer].add(metric)
        for kind_ in {k for (lay, k) in pending if lay == layer}:
            if all(m in done[layer] for m, (a, b) in needs.items() if kind_ in (a, b)):
                del pending[(layer, kind_)]
        if layer == n_layers - 1 and len(done[layer]) == len(needs):
            raise H.StopForward

    names = list(FLOW_METRICS)
    hooks = [
        (_HOOKS[kind](layer), functools.partial(store, layer=layer, kind=kind))
        for layer in range(n_layers)
        for kind in _HOOKS
    ]
    try:
        adapter.forward(ids, fwd_hooks=hooks)
    except H.StopForward:
        pass
    missing = [layer for layer, d in done.items() if len(d) < len(needs)]
    if missing:
        raise RuntimeError(
            f"residual-flow hooks did not fire for layers {missing}: this model lacks one of "
            f"{[f(0) for f in _HOOKS.values()]}"
        )


def _token_metric(
    a: Float[Tensor, "batch pos d_model"], b: Float[Tensor, "batch pos d_model"], kind: str
) -> tuple[Float[Tensor, "batch pos"], Tensor]:
    """Per-token cosine or norm ratio, and where it is defined (no zero-norm vector)."""
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    if kind == "cos":
        ok = (na > 0) & (nb > 0)
        value = (a * b).sum(-1) / torch.where(ok, na * nb, 1.0)
        return value.clamp(-1.0, 1.0), ok
    ok = nb > 0
    return na / torch.where(ok, nb, 1.0), ok
