"""Per-head signals: how one head's output at one position becomes one number.

What and why
------------
PhiID needs one scalar time series per unit. The protocol of Urbina-Rodriguez et al.
(arXiv 2601.06851, "Protocol of (B)" in ``docs/science.md``) takes, for every attention head and
every generated token, the L2 norm of the head's output *before* the output projection:
``blocks.{L}.attn.hook_z``, ``[batch, pos, head, d_head]``. That is ``"l2"`` here.
``"l2_out"`` is the norm of what the head actually writes to the residual stream,
``z @ W_O[head]`` (``[d_model]``): it weighs each direction of ``z`` by how much the output
projection amplifies it.

A signal is a function ``fn(z, *, adapter, layer) -> [batch, pos, head]``:

- ``z``: ``Float[Tensor, "batch pos head d_head"]``, the layer's ``hook_z`` at the positions
  being recorded (units are query heads, also for grouped-query attention);
- ``adapter``: the :class:`~synergy_lens.models.ModelAdapter` of the model;
- ``layer``: the layer index (bound with ``functools.partial``, never read from the hook).

It must act on each position separately (the recorder hands it only the generated
positions) and return one value per ``(batch, pos, head)``. Register your own with
:func:`register_signal`; weights a signal needs (like ``W_O``) should come from
:func:`layer_weight`, which computes them once per layer per recording.

>>> import torch
>>> z = torch.ones(1, 2, 3, 4)
>>> SIGNALS["l2"](z, adapter=None, layer=0)[0, 0]
tensor([2., 2., 2.])
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from synergy_lens._registry import Registry

__all__ = [
    "SIGNALS",
    "SignalFn",
    "get_signal",
    "layer_weight",
    "l2",
    "l2_out",
    "register_signal",
    "weight_cache",
]


@runtime_checkable
class SignalFn(Protocol):
    """``fn(z, *, adapter, layer) -> [batch, pos, head]`` (see the module docstring)."""

    def __call__(
        self, z: Float[Tensor, "batch pos head d_head"], *, adapter: Any, layer: int
    ) -> Float[Tensor, "batch pos head"]: ...


# -- per-recording weight cache --------------------------------------------------------
_CACHE: contextvars.ContextVar[dict[tuple[str, int], Tensor] | None] = contextvars.ContextVar(
    "synergy_lens_weight_cache", default=None
)


@contextlib.contextmanager
def weight_cache() -> Iterator[None]:
    """Scope in which :func:`layer_weight` computes each weight once (one recording).

    The cache lives only inside the ``with`` block, so weights edited between two
    recordings (e.g. by ``noise_heads``) are always read afresh.
    """
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def layer_weight(adapter: Any, layer: int, name: str = "W_O") -> Tensor:
    """``adapter.W_O(layer)`` (or another per-layer weight method), cached per recording.

    Outside a :func:`weight_cache` block it is simply computed.
    """
    cache = _CACHE.get()
    if cache is not None and (name, layer) in cache:
        return cache[(name, layer)]
    weight = getattr(adapter, name)(layer).detach()
    if cache is not None:
        cache[(name, layer)] = weight
    return weight


# -- the built-in signals -------------------------------------------------------------
def l2(
    z: Float[Tensor, "batch pos head d_head"], *, adapter: Any, layer: int
) -> Float[Tensor, "batch pos head"]:
    """L2 norm of each head's output before W_O: the signal of Urbina-Rodriguez et al."""
    return torch.linalg.vector_norm(z, dim=-1)


def l2_out(
    z: Float[Tensor, "batch pos head d_head"], *, adapter: Any, layer: int
) -> Float[Tensor, "batch pos head"]:
    """L2 norm of each head's write to the residual stream, ``||z[h] @ W_O[layer, h]||``.

    ``W_O[layer]`` (``[head, d_head, d_model]``) is read once per layer per recording.
    """
    w_o = layer_weight(adapter, layer, "W_O").to(z.dtype)
    out = torch.einsum("bphd,hdm->bphm", z, w_o)
    return torch.linalg.vector_norm(out, dim=-1)


SIGNALS: Registry[Callable[..., Tensor]] = Registry(
    "signal",
    hint="register your own with synergy_lens.register_signal(name, fn)",
    entries=[("l2", l2), ("l2_out", l2_out)],
)
"""Signal registry, name -> function. Add to it with :func:`register_signal`."""


def register_signal(name: str, fn: Callable[..., Tensor] | None = None, *, overwrite: bool = False) -> Any:
    """Make ``fn`` available as ``record_head_activity(..., signal=name)``; returns ``fn``
    (without ``fn``, a decorator).

    Args:
        name: the registry key, stored in ``HeadActivity.settings["signal"]``.
        fn: ``fn(z, *, adapter, layer) -> [batch, pos, head]``, acting on each position
            separately (see the module docstring).
        overwrite: replace an existing signal of the same name (the built-ins included).

    Example:
        >>> @register_signal("l1")
        ... def l1(z, *, adapter, layer):
        ...     return z.abs().sum(-1)
        >>> "l1" in SIGNALS
        True
        >>> del SIGNALS["l1"]
    """

    def add(f: Callable[..., Tensor]) -> Callable[..., Tensor]:
        if not callable(f):
            raise TypeError(f"signal {name!r} must be callable as fn(z, *, adapter, layer)")
        return SIGNALS.register(name, f, overwrite=overwrite)

    return add if fn is None else add(fn)


def get_signal(name: str) -> Callable[..., Tensor]:
    """The registered signal function called ``name`` (clear error when unknown)."""
    if not isinstance(name, str):
        raise SIGNALS.unknown(name)
    return SIGNALS[name]  # an unknown name raises, listing the registered ones
