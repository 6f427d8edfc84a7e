"""The synergistic core and its exports for circuit-discovery work.

What and why
------------
Paper (B) (arXiv 2601.06851) calls the most synergy-dominated heads the *synergistic core*
and tests it by ablating the top 25% of heads by rank gradient; paper (A) (arXiv 2603.29735)
splits heads into *abstract* (synergy-dominated) and *memory* (redundancy-dominated) heads.
:func:`~synergy_lens.analysis.scores.find_core` (or ``HeadScores.core``) returns both groups
from one score:

- **abstract** (the core): the top ``q`` fraction of heads by score,
- **memory**: the bottom ``q`` fraction (the most redundancy-dominated for
  ``"rank_gradient"`` and ``"synergy_fraction"``; for ``"mean_sts"`` it is simply the least
  synergistic heads).

Group size is ``k = ceil(q * n)`` with ``n`` the heads whose score is not NaN (NaN heads
are never in a group). Ties at the cut are broken by unit index (lower layer/head first).

Composing with TransformerLens: a :class:`Core` exports its heads as ``(layer, head)``
pairs, as hook names (``blocks.{L}.attn.hook_z``, ``[batch, pos, head, d_head]``), as a
``[layer, head]`` boolean mask, as the ``index_df`` (columns ``layer``, ``head``) that
``transformer_lens.patching``'s head patchers accept, and as ready ``fwd_hooks``::

    from transformer_lens import patching
    core = synergy_scores(result).core(0.25)
    effects = patching.get_act_patch_attn_head_out_all_pos(
        model, corrupted_tokens, clean_cache, metric,
        index_axis_names=None, index_df=core.to_index_df())  # one value per core head
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens._grid import LayerGrid, unit_columns
from synergy_lens._io import SavedFields

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Core", "Group", "select_core"]

Group = Literal["abstract", "memory"]
"""``"abstract"``: top-q heads by score (the synergistic core); ``"memory"``: bottom-q."""



@dataclass
class Core(LayerGrid, SavedFields):
    """Abstract (core) and memory heads chosen by one per-head score.

    Attributes:
        values: the score per head, ``[layer, head]``.
        abstract: ``[layer, head]`` mask of the top-``q`` heads (the synergistic core).
        memory: ``[layer, head]`` mask of the bottom-``q`` heads.
        score: the score's name; q: the fraction used; labels: ``"L{l}H{h}"`` per unit.
    """

    FORMAT = "synergy_lens.Core/1"  # save/load: SavedFields
    GRID = ("values", 0)  # n_layers, n_heads: LayerGrid

    values: Float[Tensor, "layer head"]
    abstract: Bool[Tensor, "layer head"]
    memory: Bool[Tensor, "layer head"]
    score: str
    q: float
    labels: list[str]

    def __len__(self) -> int:
        return int(self.abstract.sum())

    def __contains__(self, head: tuple[int, int]) -> bool:
        layer, h = head
        return bool(self.abstract[layer, h])

    def __repr__(self) -> str:
        return f"Core(score={self.score!r}, q={self.q}, abstract={self.labels_of('abstract')})"

    def head_mask(self, group: Group = "abstract") -> Bool[Tensor, "layer head"]:
        """``[layer, head]`` boolean mask of the group (a copy)."""
        return self._mask(group).clone()

    def pairs(self, group: Group = "abstract") -> list[tuple[int, int]]:
        """``(layer, head)`` of the group, strongest first (highest score for abstract, lowest for memory)."""
        mask = self._mask(group)
        flat = self.values.flatten()
        units = [u for u in range(flat.numel()) if bool(mask.flatten()[u])]
        sign = -1.0 if group == "abstract" else 1.0
        units.sort(key=lambda u: (sign * float(flat[u]), u))
        return [(u // self.n_heads, u % self.n_heads) for u in units]

    def labels_of(self, group: Group = "abstract") -> list[str]:
        """``["L5H3", ...]`` of the group, strongest first."""
        return [self.labels[layer * self.n_heads + h] for layer, h in self.pairs(group)]

    def to_hook_names(self, group: Group = "abstract") -> list[str]:
        """The ``blocks.{L}.attn.hook_z`` names of the layers holding the group's heads.

        ``hook_z`` is ``[batch, pos, head, d_head]``; index its head axis with
        :meth:`heads_by_layer` (or use :meth:`fwd_hooks`).
        """
        return [H.hook_z(layer) for layer in sorted(self.heads_by_layer(group))]

    def heads_by_layer(self, group: Group = "abstract") -> dict[int, list[int]]:
        """``{layer: [head, ...]}`` of the group, layers and heads ascending."""
        out: dict[int, list[int]] = {}
        for layer, h in sorted(self.pairs(group)):
            out.setdefault(layer, []).append(h)
        return out

    def to_index_df(self, group: Group = "abstract") -> pd.DataFrame:
        """``DataFrame(columns=["layer", "head"])``, one row per head (layer first).

        The ``index_df`` that ``transformer_lens.patching`` head patchers take (e.g.
        ``get_act_patch_attn_head_out_all_pos(model, corrupted_tokens, clean_cache, metric,
        index_axis_names=None, index_df=core.to_index_df())``; the ``index_axis_names=None``
        is needed because TL's partial binds it): they then patch one core head at a time
        and return one value per row.
        """
        import pandas as pd

        rows = sorted(self.pairs(group))
        return pd.DataFrame(rows, columns=["layer", "head"], dtype="int64")

    def fwd_hooks(self, hook_fn: Callable[..., Any], group: Group = "abstract") -> list[H.FwdHook]:
        """``[(hook_z name, partial(hook_fn, layer=L, heads=[...]))]`` for ``model.hooks``.

        ``hook_fn(z, *, hook, layer, heads)`` gets ``hook_z`` (``[batch, pos, head, d_head]``)
        with the layer and that layer's group heads bound (TransformerLens style; never read
        ``hook.name``). Example, patching every core head from a clean cache at once::

            def patch(z, *, hook, layer, heads):
                z[:, :, heads] = clean_cache[hooks.hook_z(layer)][:, :, heads]
                return z
            with model.hooks(fwd_hooks=core.fwd_hooks(patch)): model(corrupted_tokens)
        """
        return [
            (H.hook_z(layer), functools.partial(hook_fn, layer=layer, heads=heads))
            for layer, heads in sorted(self.heads_by_layer(group).items())
        ]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per head: label, layer, head, score and group (abstract/memory/other)."""
        import pandas as pd

        group = [
            "abstract" if a else "memory" if m else "other"
            for a, m in zip(self.abstract.flatten().tolist(), self.memory.flatten().tolist())
        ]
        return pd.DataFrame(
            {
                **unit_columns(self.labels, self.n_heads),
                "score": self.values.flatten().numpy(),
                "group": group,
            }
        )

    def _mask(self, group: str) -> Tensor:
        if group == "abstract":
            return self.abstract
        if group == "memory":
            return self.memory
        raise ValueError(f"group must be 'abstract' or 'memory', got {group!r}")


def select_core(
    values: Float[Tensor, "layer head"], q: float, *, score: str, labels: list[str]
) -> Core:
    """The top-``q`` heads by ``values`` (abstract) and the bottom-``q`` heads (memory).

    ``k = ceil(q * n_valid)`` heads per group, NaN heads never chosen, ties broken by unit
    index. :func:`~synergy_lens.analysis.scores.find_core` and ``HeadScores.core`` call it.
    """
    if not 0 < q <= 0.5:
        raise ValueError(
            f"q must be in (0, 0.5] so the abstract and memory groups cannot overlap, got {q}"
        )
    flat = values.flatten()
    valid = [u for u in range(flat.numel()) if math.isfinite(float(flat[u]))]
    k = math.ceil(q * len(valid) - 1e-9)
    by_score = sorted(valid, key=lambda u: (-float(flat[u]), u))
    top = by_score[:k]
    chosen = set(top)  # with q = 0.5 and an odd count the middle head stays abstract only
    bottom = [u for u in sorted(valid, key=lambda u: (float(flat[u]), u)) if u not in chosen][:k]
    abstract = torch.zeros(flat.numel(), dtype=torch.bool)
    memory = torch.zeros(flat.numel(), dtype=torch.bool)
    abstract[top] = True
    memory[bottom] = True
    return Core(
        values=values.clone(),
        abstract=abstract.reshape(values.shape),
        memory=memory.reshape(values.shape),
        score=score,
        q=q,
        labels=list(labels),
    )
