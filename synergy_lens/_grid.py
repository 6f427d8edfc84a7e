"""The layer (and head) grid of a result, read from the shape of one of its tensors.

Results hold tensors with a ``layer`` axis (``[layer, head]`` scores, ``[score, layer, head]``
p-values, ``[metric, prompt, layer]`` flows). Their ``n_layers``, ``n_heads``, ``n_units``,
``depth`` and, where a class does not store them, ``labels`` are derived here, from the
shape, so that no result keeps a copy that could disagree with its tensors.

:class:`LabelledGrid` adds the fields most per-head results share, ``labels`` (stored: a
recording may label its units its own way) and ``meta``, keyword-only, with the first
columns of their per-head tables (:func:`unit_columns`).

A class names the tensor and the position of its layer axis in ``GRID``; the head axis, if
any, follows it::

    @dataclass
    class Core(LayerGrid, SavedFields):
        GRID = ("values", 0)  # values: [layer, head]
        values: Float[Tensor, "layer head"]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jaxtyping import Bool, Float64
from torch import Tensor

from synergy_lens.units import normalised_depth, unit_labels

__all__ = ["HeadLabels", "LabelledGrid", "LayerAxis", "LayerGrid", "unit_columns"]


def unit_columns(labels: Sequence[str], n_heads: int) -> dict[str, list[Any]]:
    """The ``label``, ``layer`` and ``head`` columns of a table with one row per unit, in unit
    order (``unit = layer * n_heads + head``)."""
    units = range(len(labels))
    return {"label": list(labels), "layer": [u // n_heads for u in units], "head": [u % n_heads for u in units]}


class LayerAxis:
    """``n_layers`` and ``depth`` from the axis ``GRID[1]`` of the tensor field ``GRID[0]``."""

    GRID: ClassVar[tuple[str, int]]

    def _grid_sizes(self) -> tuple[int, ...]:
        """The sizes from the layer axis on (``(n_layers, n_heads)`` for a head grid)."""
        name, axis = self.GRID
        return tuple(int(n) for n in getattr(self, name).shape[axis:])

    @property
    def n_layers(self) -> int:
        return self._grid_sizes()[0]

    @property
    def depth(self) -> Float64[Tensor, " layer"]:
        """Normalised depth ``layer / (n_layers - 1)`` in [0, 1] (0 for a one-layer model)."""
        return normalised_depth(self.n_layers)


class LayerGrid(LayerAxis):
    """:class:`LayerAxis` plus ``n_heads`` (the axis after the layer axis) and ``n_units``."""

    @property
    def n_heads(self) -> int:
        return self._grid_sizes()[1]

    @property
    def n_units(self) -> int:
        """``n_layers * n_heads`` (``unit = layer * n_heads + head``)."""
        return self.n_layers * self.n_heads


class HeadLabels(LayerGrid):
    """:class:`LayerGrid` plus ``labels`` derived from the grid, for classes that do not store them."""

    @property
    def labels(self) -> list[str]:
        """``"L{layer}H{head}"`` per unit, in unit order."""
        return unit_labels(self.n_layers, self.n_heads)


@dataclass(kw_only=True, repr=False, eq=False)
class LabelledGrid(LayerGrid):
    """:class:`LayerGrid` plus the stored fields ``labels`` (one per unit) and ``meta``
    (JSON-able extras), keyword-only, and what is read from them."""

    labels: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def labels_where(self, mask: Bool[Tensor, "layer head"]) -> list[str]:
        """Labels of the units where ``mask`` is true, in unit order."""
        return [label for label, hit in zip(self.labels, mask.flatten().tolist()) if hit]

    def unit_columns(self) -> dict[str, list[Any]]:
        """``label``, ``layer``, ``head`` per unit: the first columns of a per-head table."""
        return unit_columns(self.labels, self.n_heads)
