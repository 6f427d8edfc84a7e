"""Ablating mixture-of-experts experts: remove or replace chosen experts' contributions.

What and why
------------
An expert unit ``L{layer}E{expert}`` (:mod:`synergy_lens.record.experts`) is the weighted
output ``g_e(x) * E_e(x)`` that the expert adds to its layer's MoE output. Ablating it
changes that term only; the router's choice and the other experts' terms stay as they are:

- ``"zero"``: the term is removed, so the block writes the sum of the other experts' terms
  (shared experts, if the family has them, included). Equal to the model with the expert's
  down-projection set to zero (``tests/intervene/test_expert_ablation.py``).
- ``"mean"``: the term is replaced, at every token, by its mean over all tokens of a
  reference set (tokens the expert was not routed to count as 0, as in its unit value).
- ``"resample"``: the term is replaced by its value on a reference sequence at the same
  position; batch row ``b`` takes reference row ``b % n_ref``.

The hooks act on full teacher-forced passes over ``[batch, pos]`` (the ablation curve's
passes), not on the single-token steps of cached generation. One hook stores the MoE
block's input (the expert units' own hook, :func:`~synergy_lens.record.experts.moe_input_hook`);
a second on ``blocks.{L}.hook_mlp_out`` computes the selected experts' terms from that
input and changes the block's output by ``replacement - term`` where the mask says so.
Positions and batch rows with nothing ablated keep the block's output bit for bit.

Use :func:`prepare_expert_reference` once for "mean"/"resample" and pass its result as
``state=`` to every :func:`expert_ablation_hooks` call.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from jaxtyping import Bool
from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens.intervene.ablate import reference_rows
from synergy_lens.record.experts import MoELayer, expert_contributions, moe_layer
from synergy_lens.record.spec import UnitSpec

__all__ = ["EXPERT_ABLATIONS", "ExpertAblation", "ExpertReference", "expert_ablation_hooks",
           "prepare_expert_reference"]

ExpertAblation = Literal["zero", "mean", "resample"]
EXPERT_ABLATIONS: tuple[str, ...] = get_args(ExpertAblation)


@dataclass(frozen=True)
class ExpertReference:
    """What "mean" and "resample" expert ablation replace a contribution with.

    Attributes:
        mode: ``"mean"`` or ``"resample"``.
        layers: the spec's rows (model layers) it was computed for.
        means: ``"mean"``: ``[row, expert, d_model]``, each expert's mean weighted output over
            every token of the reference set.
        inputs: ``"resample"``: per row, the activation at the units' hook on the reference
            sequences, ``[ref, pos, d_model]`` right-padded (contributions are computed
            from it for the ablated experts only).
        lengths: ``"resample"``: ``[ref]`` the length of each reference sequence.
    """

    mode: str
    layers: tuple[int, ...]
    means: Tensor | None = None
    inputs: tuple[Tensor, ...] = ()
    lengths: Tensor | None = None


def _check_spec(spec: UnitSpec) -> None:
    if spec.kind != "experts":
        raise ValueError(
            f"expert ablation needs a units='experts' spec, got kind {spec.kind!r}: build one "
            "with resolve_units(model, 'experts')"
        )


def _check_mode(mode: str) -> None:
    if mode not in EXPERT_ABLATIONS:
        raise ValueError(f"unknown expert ablation mode {mode!r}: use one of {list(EXPERT_ABLATIONS)}")


def _moe_inputs(
    adapter: Any, spec: UnitSpec, seqs: Sequence[Sequence[int]], batch_size: int
) -> tuple[list[Tensor], Tensor]:
    """The activation at every row's hook on ``seqs`` (right-padded), and their lengths."""
    seqs = [[int(t) for t in s] for s in seqs if len(s)]
    if not seqs:
        raise ValueError("the expert ablation reference has no tokens: pass non-empty token-id lists")
    width = max(len(s) for s in seqs)
    out = [torch.zeros(len(seqs), width, adapter.d_model, dtype=adapter.dtype, device=adapter.device)
           for _ in spec.layers]
    last = spec.layers[-1]

    def grab(act: Tensor, *, hook: Any, row: int, layer: int, rows: slice) -> None:
        out[row][rows, : act.shape[1]] = act.detach()
        if layer == last:
            raise H.StopForward  # nothing after the last recorded layer is needed

    with torch.inference_mode():
        for start in range(0, len(seqs), batch_size):
            chunk = seqs[start : start + batch_size]
            ids, _ = adapter.pad(chunk, side="right")
            fwd = spec.hooks(functools.partial(grab, rows=slice(start, start + len(chunk))))
            try:
                adapter.forward(ids, fwd_hooks=fwd)
            except H.StopForward:
                pass
    return out, torch.tensor([len(s) for s in seqs], device=adapter.device)


def prepare_expert_reference(
    adapter: Any, spec: UnitSpec, mode: str, reference_token_seqs: list[list[int]], *,
    batch_size: int = 8,
) -> ExpertReference | None:
    """The ``state`` of "mean" or "resample" expert ablation, from reference token sequences.

    Args:
        adapter: a :class:`~synergy_lens.models.ModelAdapter` of an MoE model.
        spec: the ``"experts"`` spec whose rows will be ablated.
        mode: ``"mean"`` or ``"resample"`` (``"zero"`` needs no state: returns None).
        reference_token_seqs: token-id lists, taken as given (no BOS added).
        batch_size: reference sequences per forward pass.

    "mean" keeps ``[row, expert, d_model]`` means (each valid token counts once, padding
    excluded); "resample" keeps the MoE inputs of the reference sequences.
    """
    _check_spec(spec)
    _check_mode(mode)
    if mode == "zero":
        return None
    inputs, lengths = _moe_inputs(adapter, spec, reference_token_seqs, batch_size)
    if mode == "resample":
        return ExpertReference("resample", spec.layers, inputs=tuple(inputs), lengths=lengths)
    valid = torch.arange(inputs[0].shape[1], device=lengths.device)[None, :] < lengths[:, None]
    means = []
    with torch.inference_mode():
        for row, layer in enumerate(spec.layers):
            terms = expert_contributions(adapter, layer, inputs[row][valid])  # [tokens, expert, d]
            means.append(terms.float().mean(0).to(adapter.dtype))
    return ExpertReference("mean", spec.layers, means=torch.stack(means))


def _keep(act: Tensor, *, hook: Any, store: dict[int, Tensor], layer: int) -> None:
    store[layer] = act


def _replace(
    out: Tensor, *, hook: Any, store: dict[int, Tensor], adapter: Any, moe: MoELayer, row: int,
    rows: Tensor, mode: str, state: ExpertReference | None,
) -> Tensor:
    """The block output with the ablated experts' terms replaced (``rows``: ``[1 | batch, expert]``)."""
    act = store.pop(moe.layer)
    batch, pos = out.shape[:2]
    if rows.shape[0] not in (1, batch):
        raise ValueError(
            f"per-batch expert mask has {rows.shape[0]} rows but the forward batch has {batch}: "
            "stack exactly one condition per batch element"
        )
    rows = rows.expand(batch, -1)
    experts = rows.any(0).nonzero().flatten().tolist()
    terms = expert_contributions(adapter, moe.layer, act, experts, moe=moe)  # [b, p, sel, d]
    if mode == "zero":
        new = torch.zeros_like(terms)
    elif mode == "mean":
        assert state is not None and state.means is not None
        new = state.means[row, experts].to(terms.dtype)[None, None].expand_as(terms)
    else:
        assert state is not None and state.lengths is not None
        ref = reference_rows(state.lengths.to(out.device), batch, pos)
        new = expert_contributions(adapter, moe.layer, state.inputs[row][ref, :pos], experts, moe=moe)
    chosen = rows[:, experts][:, None, :, None]  # [b, 1, sel, 1]
    delta = torch.where(chosen, new - terms, torch.zeros_like(terms)).sum(-2)
    touched = rows.any(-1)[:, None, None]
    return torch.where(touched, out + delta.to(out.dtype), out)


def expert_ablation_hooks(
    adapter: Any, spec: UnitSpec, mask: Bool[Tensor, "batch row expert"] | Bool[Tensor, "row expert"],
    *, mode: str = "zero", state: ExpertReference | None = None,
) -> list[H.FwdHook]:
    """The ``(hook name, fn)`` pairs that ablate the experts selected by ``mask``.

    Args:
        adapter: a :class:`~synergy_lens.models.ModelAdapter` of an MoE model.
        spec: the ``"experts"`` :class:`~synergy_lens.record.kinds.UnitSpec` (rows = its layers).
        mask: bool ``[batch or 1, n_rows, n_experts]`` over the spec's grid, each batch
            element its own set of ablated experts (a ``[n_rows, n_experts]`` mask is the same
            set for every element).
        mode: ``"zero"``, ``"mean"`` or ``"resample"`` (see the module docstring).
        state: for "mean"/"resample", the result of :func:`prepare_expert_reference`.

    Returns:
        The hooks (none when the mask selects nothing), for ``adapter.forward(ids,
        fwd_hooks=...)`` or ``adapter.hooks(...)``.
    """
    _check_spec(spec)
    _check_mode(mode)
    if not (isinstance(mask, Tensor) and mask.dtype == torch.bool):
        raise TypeError("the expert mask must be a bool tensor [batch or 1, n_rows, n_experts]")
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or tuple(mask.shape[1:]) != (spec.n_rows, spec.size):
        raise ValueError(
            f"expert mask has shape {tuple(mask.shape)}; expected [batch or 1, {spec.n_rows}, "
            f"{spec.size}] (rows = the spec's layers {list(spec.layers)}, columns = experts)"
        )
    if not bool(mask.any()):
        return []
    if mode != "zero":
        if state is None:
            raise ValueError(
                f"expert ablation mode {mode!r} needs state=prepare_expert_reference(adapter, spec, "
                f"{mode!r}, reference_token_seqs)"
            )
        if state.mode != mode or state.layers != spec.layers:
            raise ValueError(
                f"the state was prepared for mode {state.mode!r} on layers {list(state.layers)}, not "
                f"{mode!r} on {list(spec.layers)}: prepare it again for this spec and mode"
            )
    device_mask = mask.to(adapter.device)
    store: dict[int, Tensor] = {}
    fwd: list[H.FwdHook] = []
    for row, layer in enumerate(spec.layers):
        if not bool(mask[:, row].any()):
            continue
        fn = functools.partial(_replace, store=store, adapter=adapter, moe=moe_layer(adapter, layer),
                               row=row, rows=device_mask[:, row], mode=mode, state=state)
        fwd.append((spec.hook(layer), functools.partial(_keep, store=store, layer=layer)))
        fwd.append((H.hook_mlp_out(layer), fn))
    return fwd
