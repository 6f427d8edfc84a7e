"""Attention patterns of chosen heads on one token sequence (one forward pass).

:func:`head_attention` reads ``blocks.{L}.attn.hook_pattern`` (``[batch, head, q_pos,
k_pos]``) of the layers involved and returns a :class:`HeadAttention`;
``view.circuits.attention_view`` draws it with CircuitsVis. Heads are given as in
:func:`parse_heads`: ``(layer, head)`` pairs, ``"L5H3"`` labels, unit indices, a ``Core``
or ``HeadScores``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens._io import SavedFields
from synergy_lens.models.adapter import adapt
from synergy_lens.units import parse_label, unit_label

__all__ = ["HeadAttention", "head_attention", "parse_heads", "token_strings"]


def parse_heads(heads: Any, n_heads: int | None = None, k: int = 6) -> list[tuple[int, int]]:
    """Normalise a head selection to ``[(layer, head), ...]``.

    Accepts ``(layer, head)`` pairs, labels ``"L5H3"``, unit indices (with ``n_heads``),
    a ``Core`` (its abstract heads, strongest first) or ``HeadScores`` (the top ``k``).
    """
    if hasattr(heads, "pairs") and hasattr(heads, "abstract"):  # Core
        return list(heads.pairs("abstract"))[:k]
    if hasattr(heads, "core") and hasattr(heads, "values"):  # HeadScores
        flat = heads.values.flatten()
        nh = heads.values.shape[1]
        order = [u for u in torch.argsort(torch.nan_to_num(flat, nan=-torch.inf), descending=True).tolist()
                 if torch.isfinite(flat[u])]
        return [(u // nh, u % nh) for u in order[:k]]
    out = []
    for h in heads:
        if isinstance(h, str):
            out.append(parse_label(h))
        elif isinstance(h, (int, np.integer)):
            if n_heads is None:
                raise ValueError("unit indices need n_heads (unit = layer * n_heads + head)")
            out.append((int(h) // n_heads, int(h) % n_heads))
        else:
            layer, head = h
            out.append((int(layer), int(head)))
    return out


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token id decoded on its own (what CircuitsVis shows as one token)."""
    return [tokenizer.decode([int(i)]) for i in ids]


@dataclass
class HeadAttention(SavedFields):
    """Attention patterns of some heads on one token sequence.

    Attributes:
        tokens: the decoded tokens (one string per position).
        patterns: float32 ``[head, q_pos, k_pos]`` (rows sum to 1, upper triangle 0).
        labels: ``"L{layer}H{head}"`` per pattern.
        meta: JSON-able extras (model name, prompt index).
    """

    FORMAT = "synergy_lens.HeadAttention/1"  # save/load: SavedFields

    tokens: list[str]
    patterns: Float[Tensor, "head q_pos k_pos"]
    labels: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


@torch.inference_mode()
def head_attention(model: Any, tokens: str | Sequence[int], heads: Any, *, k: int = 6) -> HeadAttention:
    """Record the attention patterns of ``heads`` on one sequence (one forward pass).

    Args:
        model: HookedTransformer, TransformerBridge or ``ModelAdapter``.
        tokens: a text (tokenised with the model's BOS policy, no chat template) or token
            ids, e.g. ``activity.full_ids(0)`` for a recorded prompt and its generation.
        heads: see :func:`parse_heads` (pairs, labels, a ``Core``, ``HeadScores``).
        k: how many heads to take from a ``Core`` / ``HeadScores``.

    Reads ``blocks.{L}.attn.hook_pattern`` (``[batch, head, q_pos, k_pos]``) of each layer
    involved; for grouped-query models the query heads are the units, as everywhere.
    """
    adapter = adapt(model)
    pairs = parse_heads(heads, adapter.n_heads, k)
    if not pairs:
        raise ValueError("no heads selected")
    for layer, head in pairs:
        if not (0 <= layer < adapter.n_layers and 0 <= head < adapter.n_heads):
            raise ValueError(f"head {unit_label(layer, head)} is outside this model "
                             f"({adapter.n_layers} layers x {adapter.n_heads} heads)")
    ids = adapter.tokenize(tokens) if isinstance(tokens, str) else [int(t) for t in tokens]
    if not ids:
        raise ValueError("empty token sequence")
    layers = sorted({layer for layer, _ in pairs})
    store: dict[int, Tensor] = {}

    def grab(pattern: Tensor, *, hook: Any, layer: int) -> None:
        store[layer] = pattern[0].detach().float().cpu()

    hooks = [(H.hook_pattern(layer), functools.partial(grab, layer=layer)) for layer in layers]
    adapter.forward(torch.tensor([ids], device=adapter.device), fwd_hooks=hooks)
    patterns = torch.stack([store[layer][head] for layer, head in pairs])
    return HeadAttention(
        tokens=token_strings(adapter.tokenizer, ids), patterns=patterns,
        labels=[unit_label(layer, head) for layer, head in pairs], meta={"model_name": adapter.name},
    )
