"""Kinds of unit: where each kind is read in the model and how it becomes one number.

What and why
------------
PhiID needs one scalar series per unit. Attention heads are the papers' units (the L2 norm of
``hook_z``, :mod:`synergy_lens.record.signals`), but circuit work also looks at whole
sub-layers, MLP neurons, mixture-of-experts experts and sparse-autoencoder latents. A
:class:`UnitSpec` says, for one model, which layers are recorded (the rows of the unit grid),
how many units each row has, which hook point each row reads and how the hook's activation
at the recorded positions becomes ``[batch, pos, unit]``:

================ ============================= ============================================
kind             hook (per layer)              value of a unit at a position
================ ============================= ============================================
``heads``        ``blocks.L.attn.hook_z``      the signal (default: L2 norm of ``z[head]``)
``attn``         ``blocks.L.hook_attn_out``    L2 norm of the sub-layer's residual write
``mlp``          ``blocks.L.hook_mlp_out``     L2 norm of the sub-layer's residual write
``mlp_neurons``  ``blocks.L.mlp.hook_post``    the neuron's activation
``experts``      the MoE block's input (*)     norm of the expert's weighted output
                                               (0 when the token is not routed to it)
``custom``       any hook point                a user reducer ``fn(act, layer) -> [b, p, n]``
``sae``          any hook point                a user encoder ``fn(act) -> [b, p, latents]``
================ ============================= ============================================

(*) ``blocks.L.mlp.hook_in`` on TransformerBridge, ``blocks.L.ln2.hook_normalized`` (the
norm's weight applied by the reducer) on HookedTransformer; see :mod:`synergy_lens.record.experts`.

Build a spec with :func:`resolve_units` (``units="mlp_neurons", layers=[0, 6]``) or, for your
own units, :func:`hook_units` and :func:`sae_units`. Every reducer acts on each position
separately (the recorder hands it the generated positions only).

>>> spread_layers(30, 6)
[0, 6, 12, 17, 23, 29]
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens.record.signals import get_signal
from synergy_lens.record.spec import Reducer, UnitSpec

__all__ = [
    "UNIT_KINDS",
    "UnitSpec",
    "head_spec",
    "hook_units",
    "parse_layers",
    "resolve_units",
    "sae_units",
    "spread_layers",
]

UNIT_KINDS = ("heads", "attn", "mlp", "mlp_neurons", "experts")
"""The built-in kinds ``resolve_units`` accepts by name."""



def spread_layers(n_layers: int, k: int) -> list[int]:
    """``k`` layers spread evenly over ``n_layers`` (the first and the last included)."""
    if not 1 <= k <= n_layers:
        raise ValueError(f"cannot pick {k} layers of {n_layers}")
    if k == 1:
        return [0]
    return sorted({round(i * (n_layers - 1) / (k - 1)) for i in range(k)})


def parse_layers(layers: Sequence[int] | int | str | None, n_layers: int) -> Sequence[int] | None:
    """Layers as given to a recording: indices, one index, ``"0,6,12"``, ``"spread:K"``
    (:func:`spread_layers`) or ``"all"`` / None (every layer).

    >>> parse_layers("spread:3", 5), parse_layers("1, 3", 5), parse_layers("all", 5)
    ([0, 2, 4], [1, 3], None)
    """
    if not isinstance(layers, str):
        return [layers] if isinstance(layers, int) else layers
    text = layers.strip().lower()
    if text in ("all", ""):
        return None
    try:
        if text.startswith("spread:"):
            return spread_layers(n_layers, int(text.removeprefix("spread:")))
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"bad layers {layers!r}: write layer indices like '0,6,12', 'spread:K' for K layers spread "
            f"over the model's {n_layers}, or 'all'"
        ) from None


def _check_layers(layers: Sequence[int] | int | str | None, n_layers: int) -> tuple[int, ...]:
    layers = parse_layers(layers, n_layers)
    if layers is None:
        return tuple(range(n_layers))
    out = sorted({int(v) for v in layers})
    bad = [v for v in out if not 0 <= v < n_layers]
    if bad or not out:
        raise ValueError(
            f"layers {list(layers)} are not all in 0..{n_layers - 1} (this model has {n_layers} "
            "layers); pass a non-empty list of layer indices, or None for every layer"
        )
    return tuple(out)


def _norm(act: Tensor, layer: int) -> Tensor:
    return torch.linalg.vector_norm(act.float(), dim=-1, keepdim=True)


def _identity(act: Tensor, layer: int) -> Tensor:
    return act


def _apply_signal(signal_fn: Callable[..., Tensor], adapter: Any, z: Tensor, layer: int) -> Tensor:
    return signal_fn(z, adapter=adapter, layer=layer)


def head_spec(adapter: Any, signal_fn: Callable[..., Tensor], layers: tuple[int, ...] | None = None) -> UnitSpec:
    """Attention heads through a signal function ``fn(z, *, adapter, layer)``."""
    rows = tuple(range(adapter.n_layers)) if layers is None else layers
    reduce = functools.partial(_apply_signal, signal_fn, adapter)
    return UnitSpec("heads", rows, adapter.n_heads, H.hook_z, reduce, {"kind": "heads"}, adapter.n_layers)


def _is_moe(adapter: Any) -> bool:
    return int(getattr(adapter.cfg, "num_experts", None) or 0) > 0


def resolve_units(
    adapter: Any, units: str | UnitSpec = "heads", *, layers: Sequence[int] | int | str | None = None,
    signal: str = "l2",
) -> UnitSpec:
    """The :class:`UnitSpec` of ``units`` on this model.

    Args:
        adapter: a :class:`~synergy_lens.models.ModelAdapter`.
        units: a kind name (:data:`UNIT_KINDS`) or a spec from :func:`hook_units` /
            :func:`sae_units` (returned unchanged).
        layers: record these model layers only (default: all): indices, ``"0,6,12"`` or
            ``"spread:K"`` (see :func:`parse_layers`).
        signal: for ``"heads"``, the registered signal (``"l2"``, ``"l2_out"``, ...).

    Raises:
        ValueError: an unknown kind, layers out of range, ``"mlp_neurons"`` on a
            mixture-of-experts model, ``"experts"`` on a dense one.
    """
    if isinstance(units, UnitSpec):
        if layers is not None:
            raise ValueError("give the layers to hook_units/sae_units, not to the recording, for your own units")
        return units
    if units not in UNIT_KINDS:
        raise ValueError(
            f"unknown units {units!r}: use one of {list(UNIT_KINDS)}, or your own with "
            "synergy_lens.hook_units(hook, reducer) / synergy_lens.sae_units(hook, encoder)"
        )
    rows = _check_layers(layers, adapter.n_layers)
    n = adapter.n_layers
    if units == "heads":
        return head_spec(adapter, get_signal(signal), rows)
    if units in ("attn", "mlp"):
        hook = H.hook_attn_out if units == "attn" else H.hook_mlp_out
        return UnitSpec(units, rows, 1, hook, _norm, {"kind": units, "value": "l2 norm"}, n)
    if units == "mlp_neurons":
        if _is_moe(adapter):
            raise ValueError(
                "this is a mixture-of-experts model: its MLP layers have no single set of "
                "neurons. Record units='experts' instead"
            )
        return UnitSpec("mlp_neurons", rows, int(adapter.cfg.d_mlp), H.hook_mlp_post, _identity,
                        {"kind": "mlp_neurons"}, n)
    from synergy_lens.record.experts import expert_spec

    return expert_spec(adapter, rows)


def _hook_template(hook: str | Callable[[int], str], layers: Sequence[int] | int | None) -> tuple[Callable[[int], str], tuple[int, ...]]:
    if callable(hook):
        if layers is None:
            raise ValueError("a hook given as a function of the layer needs layers=[...]")
        return hook, _as_rows(layers)
    if "{layer}" in hook:
        if layers is None:
            raise ValueError(f"hook {hook!r} has a {{layer}} field: give layers=[...] to fill it")
        return (lambda layer: hook.format(layer=layer)), _as_rows(layers)
    m = re.match(r"^blocks\.(\d+)\.", hook)
    if m is None:
        raise ValueError(
            f"cannot tell the layer of hook {hook!r}: write it as 'blocks.{{layer}}....' with "
            "layers=[...], or give layers=<its layer>"
        )
    layer = int(m.group(1))
    if layers is not None and _as_rows(layers) != (layer,):
        raise ValueError(f"hook {hook!r} is in layer {layer}, but layers={layers!r}")
    return (lambda _layer: hook), (layer,)


def _as_rows(layers: Sequence[int] | int) -> tuple[int, ...]:
    return tuple(sorted({int(v) for v in ([layers] if isinstance(layers, int) else layers)}))


def hook_units(
    hook: str | Callable[[int], str], reducer: Reducer, *, size: int,
    layers: Sequence[int] | int | None = None, kind: str = "custom", name: str = "",
) -> UnitSpec:
    """Your own units: ``size`` numbers per layer computed from any hook point.

    Args:
        hook: a hook name (``"blocks.3.hook_resid_post"``), a template with ``{layer}``
            (``"blocks.{layer}.hook_resid_post"``, with ``layers``) or ``layer -> name``.
        reducer: ``fn(activation [batch, pos, ...], layer) -> [batch, pos, size]``, acting on
            each position separately.
        size: units per layer.
        layers: the model layers (required for a template or a function).
        kind: the label form (``"custom"``: ``L3U0``, ``L3U1``, ...).
        name: a name stored in the recording's settings (and its checkpoint key).

    Example:
        >>> spec = hook_units("blocks.{layer}.hook_resid_post",
        ...                   lambda act, layer: act[..., :4], size=4, layers=[0, 1])
        >>> spec.labels()[:3], spec.hook(1)
        (['L0U0', 'L0U1', 'L0U2'], 'blocks.1.hook_resid_post')
    """
    if not callable(reducer):
        raise TypeError("reducer must be callable as fn(activation, layer) -> [batch, pos, size]")
    fn, rows = _hook_template(hook, layers)
    describe = {"kind": kind, "hook": hook if isinstance(hook, str) else getattr(hook, "__name__", "fn"),
                "name": name or getattr(reducer, "__name__", "reducer"), "size": int(size)}
    return UnitSpec(kind, rows, int(size), fn, reducer, describe, 0)


def sae_units(
    hook: str | Callable[[int], str], encoder: Callable[[Tensor], Tensor], *, n_latents: int,
    layers: Sequence[int] | int | None = None, name: str = "sae",
) -> UnitSpec:
    """Sparse-autoencoder latents as units: ``encoder(activation) -> [batch, pos, n_latents]``.

    Any callable works (an SAELens ``SAE.encode``, a ``torch.nn.Module``, a function); no SAE
    library is needed. Labels are ``L{layer}F{latent}``. With several layers, one encoder
    serves all of them; pass a ``hook_units`` reducer to use one encoder per layer.

    Example:
        >>> w = torch.randn(8, 16)
        >>> spec = sae_units("blocks.2.hook_resid_post", lambda x: torch.relu(x @ w), n_latents=16)
        >>> spec.labels()[:2], spec.layers
        (['L2F0', 'L2F1'], (2,))
    """
    if not callable(encoder):
        raise TypeError("encoder must be callable as encoder(activation) -> [batch, pos, n_latents]")

    def reduce(act: Tensor, layer: int) -> Tensor:
        return encoder(act)

    spec = hook_units(hook, reduce, size=n_latents, layers=layers, kind="sae", name=name)
    return spec
