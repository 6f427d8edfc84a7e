"""Which heads to intervene on: parsing ``(layer, head)`` pairs, ``"L5H3"`` labels and masks.

Every intervention in :mod:`synergy_lens.intervene` takes its heads in one of these forms,
all turned into a boolean mask by :func:`head_mask`:

- an iterable of ``(layer, head)`` pairs and/or labels ``"L{layer}H{head}"``
  (``[(5, 3), "L7H0"]``); an empty iterable means "no head";
- a boolean ``[layer, head]`` tensor (the same heads for the whole batch);
- a boolean ``[batch, layer, head]`` tensor: **one set of heads per batch element**. This is
  how many ablation conditions share one forward pass: stack the conditions along the batch
  dimension (the same sequence repeated) and give each row its own mask.

Units follow ARCHITECTURE.md: unit = layer * n_heads + head, label ``f"L{layer}H{head}"``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from synergy_lens.units import parse_label, unit_label

__all__ = ["HeadSpec", "head_mask", "head_label", "parse_head", "mask_to_heads", "unit_order"]

HeadSpec = Iterable[tuple[int, int] | str] | Tensor
"""``(layer, head)`` pairs / ``"L5H3"`` labels, or a bool ``[layer, head]`` or
``[batch, layer, head]`` mask."""

head_label = unit_label
"""``head_label(layer, head) -> "L{layer}H{head}"`` (:func:`synergy_lens.units.unit_label`)."""


def _sizes(model: Any) -> tuple[int, int]:
    if isinstance(model, tuple):
        return int(model[0]), int(model[1])
    return int(model.n_layers), int(model.n_heads)


def _grid(model: Any) -> Any:
    """The unit grid when ``model`` is one (it has ``position``), else None (heads)."""
    return model if callable(getattr(model, "position", None)) else None


def parse_head(item: Any, n_layers: int, n_heads: int, *, grid: Any = None) -> tuple[int, int]:
    """One head as ``(layer, head)``, from a pair or a label, checked against the model size.

    With ``grid`` (a :class:`~synergy_lens.intervene.units.UnitGrid`), labels are units of the
    grid's kind (``"L5N7"``) and the pair is their ``(row, unit)`` on the grid.
    """
    if isinstance(item, str) and grid is not None:
        return tuple(grid.position(item))  # type: ignore[return-value]
    if isinstance(item, str):
        layer, head = parse_label(item)
    elif isinstance(item, Sequence) and len(item) == 2 and not isinstance(item, (str, bytes)):
        try:  # operator.index: ints (Python, numpy, torch), never floats or bools
            if any(isinstance(v, bool) for v in item):
                raise TypeError
            layer, head = operator.index(item[0]), operator.index(item[1])
        except (TypeError, ValueError):
            raise TypeError(
                f"bad head {item!r}: a (layer, head) pair needs two integers, got "
                f"({type(item[0]).__name__}, {type(item[1]).__name__})"
            ) from None
    elif isinstance(item, Tensor) and item.numel() == 2:
        layer, head = (int(v) for v in item.flatten().tolist())
    else:
        raise TypeError(
            f"bad head {item!r} ({type(item).__name__}): use a (layer, head) pair, a label "
            "like 'L5H3', or pass a bool [layer, head] mask instead of a list"
        )
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise ValueError(
            f"head {head_label(layer, head)} is out of range: this model has layers "
            f"0..{n_layers - 1} and heads 0..{n_heads - 1}"
        )
    return layer, head


def head_mask(
    model: Any, heads: HeadSpec, *, allow_batch: bool = True
) -> Bool[Tensor, "layer head"] | Bool[Tensor, "batch layer head"]:
    """A boolean mask of the selected heads (CPU), ``[layer, head]`` or ``[batch, layer, head]``.

    Args:
        model: anything with ``n_layers`` and ``n_heads`` (a ``ModelAdapter``, a
            ``HeadActivity``) or an ``(n_layers, n_heads)`` tuple.
        heads: see the module docstring.
        allow_batch: accept a per-batch-element ``[batch, layer, head]`` mask.

    Raises:
        ValueError: a label that does not parse, a head out of range, or a mask of the
            wrong shape. TypeError: something that is not a head.

    Example:
        >>> head_mask((2, 3), [(0, 1), "L1H2"]).int().tolist()
        [[0, 1, 0], [0, 0, 1]]
    """
    n_layers, n_heads = _sizes(model)
    if isinstance(heads, Tensor) and heads.dtype == torch.bool:
        shape = tuple(heads.shape)
        if shape == (n_layers, n_heads):
            return heads.detach().cpu()
        if allow_batch and heads.ndim == 3 and shape[1:] == (n_layers, n_heads):
            return heads.detach().cpu()
        want = "[layer, head] or [batch, layer, head]" if allow_batch else "[layer, head]"
        raise ValueError(
            f"head mask has shape {shape}; expected {want} with layer={n_layers}, head={n_heads}"
        )
    if isinstance(heads, Tensor):
        raise TypeError(
            f"a head mask must be a bool tensor, got dtype {heads.dtype}: use mask.bool(), or "
            "pass a list of (layer, head) pairs"
        )
    if isinstance(heads, (str, bytes)):
        heads = [heads]  # a single label
    mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    items = list(heads)
    if len(items) == 2 and all(isinstance(v, int) for v in items):
        items = [tuple(items)]  # a single (layer, head) pair
    for item in items:
        layer, head = parse_head(item, n_layers, n_heads, grid=_grid(model))
        mask[layer, head] = True
    return mask


def mask_to_heads(mask: Bool[Tensor, "layer head"]) -> list[tuple[int, int]]:
    """The ``(layer, head)`` pairs of a ``[layer, head]`` mask, in unit order."""
    return [(int(layer), int(head)) for layer, head in mask.nonzero().tolist()]


def unit_order(model: Any, heads: Iterable[Any]) -> list[tuple[int, int]]:
    """An ordered list of distinct heads (for cumulative ablation), each checked.

    Raises ValueError if a head appears twice (a cumulative order ablates each head once).
    """
    n_layers, n_heads = _sizes(model)
    out: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for item in heads:
        lh = parse_head(item, n_layers, n_heads, grid=_grid(model))
        if lh in seen:
            name = grid.label(*lh) if (grid := _grid(model)) is not None else head_label(*lh)
            raise ValueError(f"unit {name} appears twice in an ablation order")
        seen.add(lh)
        out.append(lh)
    return out
