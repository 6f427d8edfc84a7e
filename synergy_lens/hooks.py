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


def hook_z(layer: int) -> str:
    """Per-head attention output before W_O, ``[batch, pos, head, d_head]``."""
    return f"blocks.{layer}.attn.hook_z"


def hook_pattern(layer: int) -> str:
    """Attention probabilities, ``[batch, head, q_pos, k_pos]``."""
    return f"blocks.{layer}.attn.hook_pattern"


def hook_attn_out(layer: int) -> str:
    """What the attention sub-layer writes to the residual stream, ``[batch, pos, d_model]``."""
    return f"blocks.{layer}.hook_attn_out"


def hook_mlp_out(layer: int) -> str:
    """What the MLP sub-layer writes to the residual stream, ``[batch, pos, d_model]``."""
    return f"blocks.{layer}.hook_mlp_out"


def hook_resid_pre(layer: int) -> str:
    """Residual stream entering block ``layer``, ``[batch, pos, d_model]``."""
    return f"blocks.{layer}.hook_resid_pre"


def hook_resid_mid(layer: int) -> str:
    """Residual stream after attention, before the MLP, ``[batch, pos, d_model]``."""
    return f"blocks.{layer}.hook_resid_mid"


def hook_resid_post(layer: int) -> str:
    """Residual stream leaving block ``layer``, ``[batch, pos, d_model]``."""
    return f"blocks.{layer}.hook_resid_post"
