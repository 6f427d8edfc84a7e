"""UnitSpec: the units of one recording on one model (see :mod:`synergy_lens.record.kinds`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens.units import KIND_TAGS, unit_labels

__all__ = ["Reducer", "UnitSpec"]

Reducer = Callable[[Tensor, int], Tensor]
"""``reduce(activation [batch, pos, ...], layer) -> [batch, pos, unit]``."""


@dataclass(frozen=True)
class UnitSpec:
    """The units of one recording on one model (:mod:`synergy_lens.record.kinds`).

    Attributes:
        kind: a key of :data:`synergy_lens.units.KIND_TAGS` (the label form).
        layers: the model layer of each row of the unit grid, increasing.
        size: units per row.
        hook: ``layer -> hook name`` of the activation each row reads.
        reduce: ``(activation at the recorded positions, layer) -> [batch, pos, size]``.
        describe: JSON-able description, stored in the recording's settings.
        n_model_layers: layers of the whole model (for depth in the model).
    """

    kind: str
    layers: tuple[int, ...]
    size: int
    hook: Callable[[int], str]
    reduce: Reducer
    describe: dict[str, Any] = field(default_factory=dict)
    n_model_layers: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KIND_TAGS:
            raise ValueError(f"unknown unit kind {self.kind!r}: the kinds are {sorted(KIND_TAGS)}")
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"layers must be distinct and increasing, got {list(self.layers)}")
        if self.size < 1:
            raise ValueError(f"a unit kind needs at least one unit per layer, got {self.size}")

    @property
    def n_rows(self) -> int:
        return len(self.layers)

    @property
    def n_units(self) -> int:
        return self.n_rows * self.size

    @property
    def all_layers(self) -> bool:
        """Whether every layer of the model is recorded (rows are layers 0..n-1)."""
        return list(self.layers) == list(range(self.n_model_layers))

    def labels(self) -> list[str]:
        return unit_labels(self.n_rows, self.size, kind=self.kind, layers=self.layers)

    def hooks(self, fn: Callable[..., Any]) -> list[H.FwdHook]:
        """``(hook name, fn bound to row and layer)`` for every row."""
        return [(self.hook(layer), functools.partial(fn, row=r, layer=layer)) for r, layer in enumerate(self.layers)]


