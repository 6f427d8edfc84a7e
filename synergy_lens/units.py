"""Units, their labels and their depth, defined once for every stage.

A recording arranges its units on a grid ``[layer, unit-in-layer]`` (``unit = row * per_row
+ column``, ARCHITECTURE.md). Each kind of unit has its own label, which always names the
model layer it lives in:

============== ============================================ =============
kind           one unit is                                  label
============== ============================================ =============
``heads``      an attention (query) head                    ``L5H3``
``attn``       a layer's attention sub-layer                ``L5.attn``
``mlp``        a layer's MLP sub-layer                      ``L5.mlp``
``mlp_neurons`` one MLP neuron                              ``L5N1023``
``experts``    one expert of a mixture-of-experts layer     ``L5E7``
``custom``     one value of a user reducer on a hook point  ``L5U3``
``sae``        one sparse-autoencoder latent                ``L5F12``
============== ============================================ =============

Normalised depth places row ``r`` of ``n_layers`` rows at ``r / (n_layers - 1)`` in [0, 1]
(0 for a single row), the x axis of every layer profile (papers (A) arXiv 2603.29735 and (B)
arXiv 2601.06851). When a recording holds a subset of the model's layers (MLP neurons of six
layers, say), its rows are those layers in order and the depth runs over them: first recorded
layer at 0, last at 1. :func:`layer_depth` gives the depth in the whole model instead.

>>> unit_label(5, 3), parse_label("L5H3")
('L5H3', (5, 3))
>>> unit_labels(2, 2)
['L0H0', 'L0H1', 'L1H0', 'L1H1']
>>> unit_labels(2, 1, kind="mlp"), unit_labels(2, 2, kind="mlp_neurons", layers=[3, 7])
(['L0.mlp', 'L1.mlp'], ['L3N0', 'L3N1', 'L7N0', 'L7N1'])
>>> parse_unit("L7N1023"), parse_unit("L2.attn")
(UnitRef(layer=7, kind='mlp_neurons', number=1023), UnitRef(layer=2, kind='attn', number=0))
>>> normalised_depth(5).tolist()
[0.0, 0.25, 0.5, 0.75, 1.0]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import torch
from jaxtyping import Float64
from torch import Tensor

__all__ = [
    "KIND_TAGS",
    "LABEL_PATTERN",
    "UNIT_PATTERN",
    "UnitRef",
    "label_layers",
    "layer_depth",
    "normalised_depth",
    "parse_label",
    "parse_unit",
    "unit_label",
    "unit_labels",
]

KIND_TAGS: dict[str, str] = {
    "heads": "H",
    "attn": ".attn",
    "mlp": ".mlp",
    "mlp_neurons": "N",
    "experts": "E",
    "custom": "U",
    "sae": "F",
}
"""The label tag of each kind of unit: ``L{layer}{tag}{index}``, or ``L{layer}{tag}`` for the
one-per-layer kinds (those whose tag starts with a dot)."""

_KIND_OF_TAG = {tag: kind for kind, tag in KIND_TAGS.items()}

LABEL_PATTERN = re.compile(r"^L(\d+)H(\d+)$")
"""A head label: ``L<layer>H<head>`` with decimal layer and head."""

UNIT_PATTERN = re.compile(r"^L(\d+)(?:([HNEUF])(\d+)|(\.attn|\.mlp))$")
"""Any unit label (see the table in the module docstring)."""


class UnitRef(NamedTuple):
    """A parsed unit label: model layer, kind, number within the layer (0 for sub-layers)."""

    layer: int
    kind: str
    number: int


def unit_label(layer: int, index: int, kind: str = "heads") -> str:
    """``"L{layer}H{index}"`` for heads; the tag of ``kind`` otherwise (``L5.mlp``, ``L5N3``)."""
    tag = KIND_TAGS.get(kind)
    if tag is None:
        raise ValueError(f"unknown unit kind {kind!r}: the kinds are {sorted(KIND_TAGS)}")
    return f"L{layer}{tag}" if tag.startswith(".") else f"L{layer}{tag}{index}"


def unit_labels(
    n_layers: int, n_heads: int, *, kind: str = "heads", layers: Sequence[int] | None = None
) -> list[str]:
    """The labels of a ``[n_layers, n_heads]`` grid in unit order (``unit = row * n_heads + col``).

    ``layers`` names the model layer of each row (default ``0 .. n_layers - 1``).
    """
    rows = list(range(n_layers)) if layers is None else [int(v) for v in layers]
    if len(rows) != n_layers:
        raise ValueError(f"layers has {len(rows)} entries for {n_layers} rows")
    return [unit_label(layer, i, kind) for layer in rows for i in range(n_heads)]


def parse_unit(label: str) -> UnitRef:
    """``"L5N1023" -> UnitRef(5, "mlp_neurons", 1023)``; whitespace around is ignored.

    Raises:
        ValueError: not a unit label (see the module docstring for the forms).
    """
    m = UNIT_PATTERN.match(label.strip()) if isinstance(label, str) else None
    if m is None:
        raise ValueError(
            f"bad unit label {label!r}: write units as L<layer>H<head> (heads), L<layer>.attn, "
            "L<layer>.mlp, L<layer>N<neuron>, L<layer>E<expert>, L<layer>U<index> or "
            "L<layer>F<latent> (e.g. 'L5H3', 'L5.mlp', 'L5N1023')"
        )
    layer, tag, index, sub = m.groups()
    if sub is not None:
        return UnitRef(int(layer), _KIND_OF_TAG[sub], 0)
    return UnitRef(int(layer), _KIND_OF_TAG[tag], int(index))


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


def label_layers(labels: Sequence[str], n_heads: int) -> list[int]:
    """The model layer of each grid row, read from the labels of its first unit."""
    if n_heads < 1 or len(labels) % n_heads:
        raise ValueError(f"{len(labels)} labels do not fill rows of {n_heads} units")
    return [parse_unit(labels[r * n_heads]).layer for r in range(len(labels) // n_heads)]


def normalised_depth(n_layers: int) -> Float64[Tensor, " layer"]:
    """``row / (n_layers - 1)`` for every row, float64 (``[0.]`` for one row).

    Computed as ``torch.linspace(0, 1, n_layers)``, the definition every profile uses, so
    that depths from different modules compare equal.
    """
    if n_layers > 1:
        return torch.linspace(0.0, 1.0, n_layers, dtype=torch.float64)
    return torch.zeros(1, dtype=torch.float64)


def layer_depth(layers: Sequence[int], n_model_layers: int) -> Float64[Tensor, " layer"]:
    """``layer / (n_model_layers - 1)`` for the given model layers: depth in the whole model."""
    scale = max(n_model_layers - 1, 1)
    return torch.tensor([int(v) / scale for v in layers], dtype=torch.float64)
