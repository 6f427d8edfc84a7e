"""Ablating any kind of unit: heads, sub-layers, MLP neurons, experts.

A recording of other units than heads (:func:`~synergy_lens.record.record_activity`) places
them on a grid ``[row, unit]`` (rows = the recorded layers). :class:`UnitGrid` is that grid
for interventions, and :func:`ablate_units` replaces the chosen units inside a ``with``
block through TransformerLens hooks, removed on exit:

================ ================================ ===========================================
kind             hook                             what an ablated unit's value becomes
================ ================================ ===========================================
``heads``        ``blocks.L.attn.hook_z``         as :func:`~synergy_lens.intervene.ablate_heads`
``attn``/``mlp`` ``hook_attn_out``/``hook_mlp_out`` the sub-layer's whole write to the residual
``mlp_neurons``  ``blocks.L.mlp.hook_post``       the neuron's activation
``experts``      the MoE block                    the expert's weighted contribution
================ ================================ ===========================================

Modes: ``"zero"`` (0), ``"mean"`` (the mean over every token of a reference set) and
``"resample"`` (the value on a reference sequence at the same position; batch element ``b``
takes reference row ``b % n_ref``). Units recorded through your own reducer (``custom``,
``sae``) are read from a hook but have no single place to write back, so they are not
ablated here: edit their hook point yourself with ``model.hooks``.

>>> grid = UnitGrid("mlp_neurons", (3, 7), 4)
>>> grid.position("L7N2"), grid.labels()[:2]
((1, 2), ['L3N0', 'L3N1'])
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens.intervene.ablate import (
    _ResampleState,
    ablation_hooks,
    hook_cache,
    reference_sequences,
    token_means,
)
from synergy_lens.intervene.heads import unit_order
from synergy_lens.models.adapter import ModelAdapter, adapt
from synergy_lens.units import label_layers, parse_unit, unit_label, unit_labels

__all__ = ["UnitGrid", "ablate_units", "unit_ablation_hooks", "unit_grid", "unit_mask"]

_HOOKS = {"attn": H.hook_attn_out, "mlp": H.hook_mlp_out, "mlp_neurons": H.hook_mlp_post}


@dataclass(frozen=True)
class UnitGrid:
    """The units of a recording as a grid: ``kind``, the model layer of each row, units per row.

    It stands in for a model's ``(n_layers, n_heads)`` wherever interventions take units:
    ``n_layers`` is the number of rows and ``n_heads`` the units per row.
    """

    kind: str
    layers: tuple[int, ...]
    size: int

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_heads(self) -> int:
        return self.size

    @property
    def n_units(self) -> int:
        return self.n_layers * self.size

    def labels(self) -> list[str]:
        return unit_labels(self.n_layers, self.size, kind=self.kind, layers=self.layers)

    def label(self, row: int, col: int) -> str:
        return unit_label(self.layers[row], col, self.kind)

    def position(self, label: str) -> tuple[int, int]:
        """``(row, unit)`` of a label of this grid's kind; clear errors otherwise."""
        ref = parse_unit(label)
        if ref.kind != self.kind:
            raise ValueError(f"unit {label!r} is of kind {ref.kind!r}, but these units are {self.kind!r}")
        if ref.layer not in self.layers:
            raise ValueError(f"unit {label!r} is out of range: layer {ref.layer} is not among the layers "
                             f"{list(self.layers)} of these units")
        if not 0 <= ref.number < self.size:
            raise ValueError(f"unit {label!r} is out of range: {self.size} units per layer")
        return self.layers.index(ref.layer), ref.number


def unit_grid(source: Any) -> UnitGrid:
    """The grid of a recording (``HeadActivity``), of a result with labels (``HeadScores``,
    ``PhiIDResult``, ``Core``), or of a model's heads (a model or ``ModelAdapter``)."""
    if isinstance(source, UnitGrid):
        return source
    labels = getattr(source, "labels", None)
    if callable(getattr(source, "unit_labels", None)) and hasattr(source, "values") and hasattr(source, "unit_kind"):
        labels = source.unit_labels()
    if isinstance(labels, list) and labels:
        n_heads = int(source.n_heads)
        return UnitGrid(parse_unit(labels[0]).kind, tuple(label_layers(labels, n_heads)), n_heads)
    adapter = adapt(source)
    return UnitGrid("heads", tuple(range(adapter.n_layers)), adapter.n_heads)


def unit_mask(grid: UnitGrid, units: Any) -> Bool[Tensor, "row unit"] | Bool[Tensor, "batch row unit"]:
    """A bool ``[row, unit]`` mask from labels / ``(row, unit)`` pairs, or a mask passed through
    (``[row, unit]`` or ``[batch, row, unit]``: one set of units per batch element)."""
    if isinstance(units, Tensor) and units.dtype == torch.bool:
        if tuple(units.shape[-2:]) != (grid.n_layers, grid.size) or units.ndim not in (2, 3):
            raise ValueError(
                f"unit mask has shape {tuple(units.shape)}; expected [row, unit] or [batch, row, unit] "
                f"with row={grid.n_layers}, unit={grid.size}"
            )
        return units.detach().cpu()
    items = [units] if isinstance(units, str) else list(units)
    mask = torch.zeros(grid.n_layers, grid.size, dtype=torch.bool)
    for row, col in unit_order(grid, items):
        mask[row, col] = True
    return mask


def _full_head_mask(adapter: ModelAdapter, grid: UnitGrid, mask: Tensor) -> Tensor:
    """A ``[batch, layer, head]`` mask over every layer from one over the grid's rows."""
    full = torch.zeros(mask.shape[0], adapter.n_layers, adapter.n_heads, dtype=torch.bool)
    full[:, list(grid.layers)] = mask
    return full


def _activation_cache(adapter: ModelAdapter, grid: UnitGrid, reference: Any) -> _ResampleState:
    """The activation at every row's hook on the reference sequences, on the model's device."""
    acts, lengths = hook_cache(adapter, reference, [_HOOKS[grid.kind](layer) for layer in grid.layers])
    return _ResampleState([a.to(adapter.device) for a in acts], torch.tensor(lengths, device=adapter.device), {})


def prepare_units(adapter: ModelAdapter, grid: UnitGrid, mode: str, reference: Any) -> Any:
    """The state of a mode for these units: None (zero), per-row means, or the reference cache."""
    if mode == "zero":
        return None
    if mode not in ("mean", "resample"):
        raise ValueError(f"unit ablation mode {mode!r}: use 'zero', 'mean' or 'resample'")
    if reference is None:
        raise ValueError(f"ablation mode {mode!r} needs reference=: a HeadActivity, texts or token ids")
    if grid.kind == "experts":
        from synergy_lens.intervene.experts import prepare_expert_reference

        return prepare_expert_reference(adapter, _spec(adapter, grid), mode, reference_sequences(adapter, reference))
    cache = reference if isinstance(reference, _ResampleState) else _activation_cache(adapter, grid, reference)
    if mode == "resample":
        return cache
    return token_means(cache.zs, cache.lengths)  # per row [width]


def _replace(act: Tensor, *, hook: Any, row: int, rows: Tensor, mode: str, state: Any) -> Tensor:
    """Ablated units of one row take the mode's values; ``rows`` is ``[1 or batch, size]``."""
    if rows.shape[0] not in (1, act.shape[0]):
        raise ValueError(
            f"per-batch unit mask has {rows.shape[0]} rows but the forward batch has {act.shape[0]}: "
            "stack exactly one condition per batch element"
        )
    if mode == "zero":
        values = act.new_zeros(())
    elif mode == "mean":
        values = state[row].to(act.dtype)[None, None]
    else:
        from synergy_lens.intervene.ablate import _replace_resample

        values = _replace_resample(act, row, state)
    return torch.where(rows[:, None, :], values, act)


def unit_ablation_hooks(
    model: Any, grid: UnitGrid, units: Any, *, mode: str = "zero", state: Any = None,
) -> list[H.FwdHook]:
    """The ``(hook_name, fn)`` pairs that :func:`ablate_units` adds; ``state`` from the mode's
    preparation (:func:`prepare_units`), or None for ``"zero"``."""
    adapter = adapt(model)
    mask = unit_mask(grid, units)
    mask = mask[None] if mask.ndim == 2 else mask
    if not bool(mask.any()):
        return []
    if grid.kind == "heads":
        return ablation_hooks(adapter, _full_head_mask(adapter, grid, mask), mode=mode, reference=state,
                              prepared=True)
    if grid.kind == "experts":
        from synergy_lens.intervene.experts import expert_ablation_hooks

        return expert_ablation_hooks(adapter, _spec(adapter, grid), mask, mode=mode, state=state)
    if grid.kind not in _HOOKS:
        raise ValueError(
            f"units of kind {grid.kind!r} come from your own reducer and have no single place to write "
            "back: ablate them with your own hook on their hook point (model.hooks)"
        )
    if isinstance(state, _ResampleState):
        state.offsets.clear()
    # sub-layers have one unit per row: its mask [batch, 1] broadcasts over d_model
    device_mask = mask.to(adapter.device)
    return [
        (_HOOKS[grid.kind](layer), functools.partial(_replace, row=r, rows=device_mask[:, r], mode=mode, state=state))
        for r, layer in enumerate(grid.layers) if bool(mask[:, r].any())
    ]


@contextlib.contextmanager
def ablate_units(
    model: Any, units: Iterable[str] | Tensor, *, mode: str = "zero", reference: Any = None,
    grid: UnitGrid | Any = None,
) -> Iterator[Tensor]:
    """Ablate units of any kind inside a ``with`` block (hooks removed on exit).

    Args:
        model: a HookedTransformer, TransformerBridge or ``ModelAdapter``.
        units: labels of one kind (``["L3.mlp"]``, ``["L5N1023", "L5N7"]``, ``["L2E3"]``,
            ``["L5H3"]``), or a bool ``[row, unit]`` / ``[batch, row, unit]`` mask over
            ``grid``.
        mode: ``"zero"``, ``"mean"`` or ``"resample"`` (see the module docstring).
        reference: for ``"mean"``/``"resample"``: a ``HeadActivity``, texts or token ids.
        grid: the units' grid (a :class:`UnitGrid` or a recording / result to take it from);
            default: every layer's units of the labels' kind.

    Yields:
        The mask in use over the grid.

    Example:
        >>> with ablate_units(model, ["L3.mlp", "L5.mlp"]):          # doctest: +SKIP
        ...     logits = model(tokens)
    """
    adapter = adapt(model)
    grid = _grid_for(adapter, units, grid)
    mask = unit_mask(grid, units)
    state = prepare_units(adapter, grid, mode, reference)
    with adapter.hooks(unit_ablation_hooks(adapter, grid, mask, mode=mode, state=state)):
        yield mask


def _grid_for(adapter: ModelAdapter, units: Any, grid: Any) -> UnitGrid:
    if grid is not None:
        return unit_grid(grid)
    if isinstance(units, Tensor):
        raise ValueError("a unit mask needs grid= (a UnitGrid or the recording it is over)")
    labels = [units] if isinstance(units, str) else list(units)
    if not labels or not all(isinstance(u, str) for u in labels):
        raise TypeError("give units as labels ('L3.mlp', 'L5N7', 'L2E3', 'L5H3') or a mask with grid=")
    kinds = {parse_unit(u).kind for u in labels}
    if len(kinds) > 1:
        raise ValueError(f"units of several kinds {sorted(kinds)}: ablate each kind in its own ablate_units block")
    return kind_grid(adapter, kinds.pop())


def _spec(adapter: ModelAdapter, grid: UnitGrid) -> Any:
    """The recording spec of the grid's units (its hooks and reducer)."""
    from synergy_lens.record.kinds import resolve_units

    return resolve_units(adapter, grid.kind, layers=list(grid.layers))


def kind_grid(adapter: ModelAdapter, kind: str, layers: Sequence[int] | None = None) -> UnitGrid:
    """Every unit of ``kind`` on this model (or on ``layers``)."""
    from synergy_lens.record.kinds import resolve_units

    spec = resolve_units(adapter, kind, layers=layers)
    return UnitGrid(spec.kind, spec.layers, spec.size)
