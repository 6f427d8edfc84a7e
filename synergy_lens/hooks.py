"""Hook names, axis orders and the hook-function signature, in one place.

TransformerLens names every activation with a hook point. synergy-lens only touches the
model through this surface, which HookedTransformer and TransformerBridge share. The axis
orders below are the ones both backends give (checked in ``tests/models``).

===========================  =================================
hook                          shape
===========================  =================================
``blocks.{L}.attn.hook_z``    ``[batch, pos, head, d_head]``
``blocks.{L}.attn.hook_pattern``  ``[batch, head, q_pos, k_pos]``
``blocks.{L}.hook_attn_out``  ``[batch, pos, d_model]``
``blocks.{L}.hook_mlp_out``   ``[batch, pos, d_model]``
``blocks.{L}.mlp.hook_post``  ``[batch, pos, d_mlp]``
``blocks.{L}.hook_resid_pre`` ``[batch, pos, d_model]``
``blocks.{L}.hook_resid_mid`` ``[batch, pos, d_model]``
``blocks.{L}.hook_resid_post`` ``[batch, pos, d_model]``
===========================  =================================

Hook functions follow TransformerLens: ``fn(tensor, *, hook) -> tensor | None``. Bind the
layer (and anything else) with :func:`functools.partial`; never read ``hook.name`` to find
out where you are, since on TransformerBridge it is an alias of the name you registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = [
    "HookFn",
    "FwdHook",
    "hook_z",
    "hook_pattern",
    "hook_attn_out",
    "hook_mlp_out",
    "hook_mlp_post",
    "HookName",
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "Z_AXES",
    "PATTERN_AXES",
    "StopForward",
]

Z_AXES = ("batch", "pos", "head", "d_head")
PATTERN_AXES = ("batch", "head", "q_pos", "k_pos")


@runtime_checkable
class HookFn(Protocol):
    """The TransformerLens hook signature: ``fn(tensor, *, hook) -> tensor | None``."""

    def __call__(self, tensor: torch.Tensor, *, hook: Any) -> torch.Tensor | None: ...


FwdHook = tuple[str, Callable[..., Any]]
"""A ``(hook_name, hook_fn)`` pair, as passed to ``model.hooks(fwd_hooks=[...])``."""


class StopForward(Exception):
    """Raised by a hook once everything wanted is recorded: the rest of the network is skipped.

    The caller runs the forward pass inside ``try: ... except StopForward: pass`` (the hooks
    are removed by ``model.hooks``'s ``finally`` either way).
    """


class HookName:
    """A per-layer hook point: ``name(layer) -> "blocks.{layer}...."``, with its shape.

    >>> hook_z(3)
    'blocks.3.attn.hook_z'
    """

    def __init__(self, template: str, shape: str) -> None:
        self.template, self.shape = template, shape
        self.__doc__ = f"``{template}``, ``{shape}``."

    def __call__(self, layer: int) -> str:
        return self.template.format(layer=int(layer))

    def __repr__(self) -> str:
        return f"HookName({self.template!r})"


hook_z = HookName("blocks.{layer}.attn.hook_z", "[batch, pos, head, d_head]")
"""Per-head attention output before W_O."""
hook_pattern = HookName("blocks.{layer}.attn.hook_pattern", "[batch, head, q_pos, k_pos]")
"""Attention probabilities."""
hook_attn_out = HookName("blocks.{layer}.hook_attn_out", "[batch, pos, d_model]")
"""What the attention sub-layer writes to the residual stream."""
hook_mlp_out = HookName("blocks.{layer}.hook_mlp_out", "[batch, pos, d_model]")
"""What the MLP sub-layer writes to the residual stream."""
hook_mlp_post = HookName("blocks.{layer}.mlp.hook_post", "[batch, pos, d_mlp]")
"""The MLP's hidden activation (after the nonlinearity, times the gate in gated MLPs): one
value per neuron, the input of the output projection."""
hook_resid_pre = HookName("blocks.{layer}.hook_resid_pre", "[batch, pos, d_model]")
"""Residual stream entering block ``layer``."""
hook_resid_mid = HookName("blocks.{layer}.hook_resid_mid", "[batch, pos, d_model]")
"""Residual stream after attention, before the MLP."""
hook_resid_post = HookName("blocks.{layer}.hook_resid_post", "[batch, pos, d_model]")
"""Residual stream leaving block ``layer``."""
