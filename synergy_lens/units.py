"""Units, their labels and their depth, defined once for every stage.

A unit is an attention (query) head: ``unit = layer * n_heads + head``, labelled
``"L{layer}H{head}"`` (ARCHITECTURE.md). Normalised depth places layer ``l`` of ``n_layers``
at ``l / (n_layers - 1)`` in [0, 1] (0 for a one-layer model), the x axis of every layer
profile (papers (A) arXiv 2603.29735 and (B) arXiv 2601.06851).

>>> unit_label(5, 3), parse_label("L5H3")
('L5H3', (5, 3))
>>> unit_labels(2, 2)
['L0H0', 'L0H1', 'L1H0', 'L1H1']
>>> normalised_depth(5).tolist()
[0.0, 0.25, 0.5, 0.75, 1.0]
"""

from __future__ import annotations

import re

import torch
from jaxtyping import Float64
from torch import Tensor

__all__ = ["LABEL_PATTERN", "normalised_depth", "parse_label", "unit_label", "unit_labels"]

LABEL_PATTERN = re.compile(r"^L(\d+)H(\d+)$")
"""A unit label: ``L<layer>H<head>`` with decimal layer and head."""


def unit_label(layer: int, head: int) -> str:
    """``"L{layer}H{head}"``."""
    return f"L{layer}H{head}"


def unit_labels(n_layers: int, n_heads: int) -> list[str]:
    """``["L0H0", "L0H1", ...]`` in unit order (``unit = layer * n_heads + head``)."""
    return [unit_label(layer, head) for layer in range(n_layers) for head in range(n_heads)]


def parse_label(label: str) -> tuple[int, int]:
    """``"L5H3" -> (5, 3)``; surrounding whitespace is ignored.

    Raises:
        ValueError: the text is not ``L<layer>H<head>``.
    """
    m = LABEL_PATTERN.match(label.strip())
    if m is None:
        raise ValueError(
            f"bad head label {label!r}: write heads as 'L<layer>H<head>' (e.g. 'L5H3') "
            "or as (layer, head) pairs"
        )
    return int(m.group(1)), int(m.group(2))


def normalised_depth(n_layers: int) -> Float64[Tensor, " layer"]:
    """``layer / (n_layers - 1)`` for every layer, float64 (``[0.]`` for one layer).

    Computed as ``torch.linspace(0, 1, n_layers)``, the definition every profile uses, so
    that depths from different modules compare equal.
    """
    if n_layers > 1:
        return torch.linspace(0.0, 1.0, n_layers, dtype=torch.float64)
    return torch.zeros(1, dtype=torch.float64)
