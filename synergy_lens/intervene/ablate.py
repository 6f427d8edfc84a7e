"""Interventions as context managers: head ablation, weight noise, layer skipping.

Each one changes the model only inside its ``with`` block and restores it on exit, also
when the block raises:

- :func:`ablate_heads` replaces chosen heads' output *before* the output projection
  (``blocks.{L}.attn.hook_z``, ``[batch, pos, head, d_head]``) through TransformerLens hooks
  added with ``model.hooks(...)``, which removes them in a ``finally``. Paper (B)'s first
  ablation ("Methods", behaviour divergence) zeroes that output; other modes come from the
  :data:`ABLATIONS` registry ("zero", "mean", "resample", or your own via
  :func:`register_ablation`). A ``[batch, layer, head]`` mask gives every batch element its
  own set of heads, so many conditions share one forward pass.
- :func:`noise_heads` is paper (B)'s second ablation (task accuracy): Gaussian noise added
  to a head's query weights (its rows of ``W_Q``) and output weights (its columns of
  ``W_O``), through :meth:`ModelAdapter.head_weight_views`. The original values are saved
  and copied back in a ``finally``: after the block the weights are bit-identical.
- :func:`skip_layers` makes a block pass its input through unchanged (paper (A)'s layer
  skipping): a hook on ``blocks.{L}.hook_resid_pre`` keeps the block's input and one on
  ``blocks.{L}.hook_resid_post`` returns it, so the block's writes are dropped. This equals
  the transformers model with that layer deleted (``tests/intervene/test_skip.py``).

All hooks follow the TransformerLens signature ``fn(tensor, *, hook)`` with layer indices
bound by :func:`functools.partial`; ``hook.name`` is never read.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens._registry import Registry
from synergy_lens.intervene.heads import HeadSpec, head_mask, mask_to_heads
from synergy_lens.models.adapter import ModelAdapter, adapt

__all__ = [
    "ABLATIONS",
    "AblationMode",
    "ReplaceFn",
    "ablate_heads",
    "ablation_hooks",
    "head_means",
    "hook_cache",
    "layer_mask",
    "noise_heads",
    "prepare_reference",
    "reference_rows",
    "reference_sequences",
    "token_means",
    "register_ablation",
    "skip_hooks",
    "skip_layers",
    "z_cache",
]

ReplaceFn = Callable[[Tensor, int, Any], Tensor]
"""``replace(z [batch, pos, head, d_head], layer, state) -> values broadcastable to z``.

The hook keeps ``z`` where a head is not ablated and takes these values where it is."""


@dataclass(frozen=True)
class AblationMode:
    """A registered way to ablate a head (see :data:`ABLATIONS`).

    Attributes:
        name: registry key.
        replace: the values ablated heads take (:data:`ReplaceFn`).
        prepare: ``(adapter, reference) -> state``, run once when a ``with`` block starts
            (or once up front via :func:`prepare_reference`); the state is passed to
            ``replace``. Heavy work (a pass over reference prompts) belongs here.
        needs_reference: ``reference=`` is required.
    """

    name: str
    replace: ReplaceFn
    prepare: Callable[[ModelAdapter, Any], Any] | None = None
    needs_reference: bool = False


ABLATIONS: Registry[AblationMode] = Registry("ablation mode", hint="add one with register_ablation")
"""Registry of head-ablation modes: name -> :class:`AblationMode`."""


def register_ablation(
    name: str,
    replace: ReplaceFn | None = None,
    *,
    prepare: Callable[[ModelAdapter, Any], Any] | None = None,
    needs_reference: bool = False,
    overwrite: bool = False,
) -> Any:
    """Add an ablation mode; usable as a decorator (``@register_ablation("half")``).

    Example (scale ablated heads by one half):
        >>> @register_ablation("half_demo", overwrite=True)
        ... def _half(z, layer, state):
        ...     return 0.5 * z
        >>> "half_demo" in ABLATIONS
        True
    """

    def add(fn: ReplaceFn) -> ReplaceFn:
        ABLATIONS.register(name, AblationMode(name, fn, prepare, needs_reference), overwrite=overwrite)
        return fn

    return add if replace is None else add(replace)


def _get_mode(mode: str | AblationMode) -> AblationMode:
    if isinstance(mode, AblationMode):
        return mode
    return ABLATIONS[mode]  # an unknown name raises, listing the registered ones


# ----------------------------------------------------------------------- reference passes


def reference_sequences(adapter: ModelAdapter, reference: Any) -> list[list[int]]:
    """Token sequences of a reference set for "mean"/"resample" ablation.

    Accepts a recording (anything with ``prompt_ids`` and ``generated_ids``, such as a
    ``HeadActivity``: its full teacher-forced sequences), a list of texts (tokenised with
    the adapter's BOS policy, no chat template), a list of token-id lists, or an integer
    ``[batch, pos]`` tensor.
    """
    if hasattr(reference, "prompt_ids") and hasattr(reference, "generated_ids"):
        seqs = [[*p, *g] for p, g in zip(reference.prompt_ids, reference.generated_ids)]
    elif isinstance(reference, Tensor) and not reference.is_floating_point():
        seqs = [list(map(int, row)) for row in reference.reshape(-1, reference.shape[-1]).tolist()]
    elif isinstance(reference, str):
        seqs = [adapter.tokenize(reference)]
    elif isinstance(reference, Sequence) and reference and all(isinstance(r, str) for r in reference):
        seqs = [adapter.tokenize(r) for r in reference]
    elif isinstance(reference, Sequence) and reference and all(
        isinstance(r, (Sequence, Tensor)) for r in reference
    ):
        seqs = [[int(t) for t in r] for r in reference]
    else:
        raise TypeError(
            f"cannot use {type(reference).__name__} as an ablation reference: pass a "
            "HeadActivity, a list of texts, a list of token-id lists or a [batch, pos] tensor"
        )
    seqs = [s for s in seqs if s]
    if not seqs:
        raise ValueError("the ablation reference has no tokens")
    return seqs


@torch.inference_mode()
def hook_cache(
    model: Any, reference: Any, names: Sequence[str], *, batch_size: int = 8
) -> tuple[list[Tensor], list[int]]:
    """The activation at each hook of ``names`` on reference sequences (right-padded, CPU,
    ``[ref, pos, ...]``, zero past each length) and the sequences' lengths."""
    adapter = adapt(model)
    seqs = reference_sequences(adapter, reference)
    width = max(len(s) for s in seqs)
    out: list[Tensor | None] = [None] * len(names)

    def grab(act: Tensor, *, hook: Any, k: int, rows: slice) -> None:
        if out[k] is None:  # the trailing shape is the hook's own
            out[k] = torch.zeros(len(seqs), width, *act.shape[2:], dtype=act.dtype)
        out[k][rows, : act.shape[1]] = act.detach().to("cpu")  # type: ignore[index]

    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        ids, _ = adapter.pad(chunk, side="right")
        rows = slice(start, start + len(chunk))
        adapter.forward(ids, fwd_hooks=[(name, functools.partial(grab, k=k, rows=rows)) for k, name in enumerate(names)])
    missing = [name for name, act in zip(names, out) if act is None]
    if missing:
        raise RuntimeError(f"hooks {missing} never ran on the reference sequences")
    return [act for act in out if act is not None], [len(s) for s in seqs]


def z_cache(
    model: Any, reference: Any, *, batch_size: int = 8
) -> tuple[list[Float[Tensor, "ref pos head d_head"]], list[int]]:
    """``hook_z`` of every layer on reference sequences (right-padded) and their lengths."""
    adapter = adapt(model)
    return hook_cache(adapter, reference, [H.hook_z(layer) for layer in range(adapter.n_layers)],
                      batch_size=batch_size)


def token_means(acts: Sequence[Tensor], lengths: Sequence[int] | Tensor) -> list[Tensor]:
    """Each ``[ref, pos, ...]`` activation's mean over every valid token (padding excluded)."""
    lengths = torch.as_tensor(lengths, device=acts[0].device)
    valid = torch.arange(acts[0].shape[1], device=acts[0].device)[None, :] < lengths[:, None]
    out = []
    for act in acts:
        w = valid.reshape(*valid.shape, *([1] * (act.ndim - 2))).to(act.dtype)
        out.append((act * w).sum((0, 1)) / w.sum())
    return out


def head_means(
    model: Any, reference: Any, *, batch_size: int = 8
) -> Float[Tensor, "layer head d_head"]:
    """Mean ``hook_z`` of every head over all tokens of a reference set ("mean" ablation).

    Every valid position of every reference sequence counts once (padding excluded).
    Compute it once and pass the tensor as ``reference=`` to reuse it.
    """
    zs, lengths = z_cache(model, reference, batch_size=batch_size)
    return torch.stack(token_means(zs, lengths))


@dataclass
class _ResampleState:
    zs: list[Tensor]  # per layer [ref, pos, head, d_head], on the model's device
    lengths: Tensor  # [ref]
    offsets: dict[int, int]  # per layer: position of the next incoming token (cached decoding)
    fixed_row: int | None = None  # every batch element takes this reference row (curves)


def _prepare_mean(adapter: ModelAdapter, reference: Any) -> Tensor:
    if isinstance(reference, Tensor) and reference.is_floating_point():
        want = (adapter.n_layers, adapter.n_heads, adapter.d_head)
        if tuple(reference.shape) != want:
            raise ValueError(
                f"a 'mean' reference tensor must be [layer, head, d_head] = {want}, "
                f"got {tuple(reference.shape)}"
            )
        means = reference
    else:
        means = head_means(adapter, reference)
    return means.to(adapter.device, adapter.dtype)


def _prepare_resample(adapter: ModelAdapter, reference: Any) -> _ResampleState:
    if isinstance(reference, _ResampleState):
        return reference
    zs, lengths = z_cache(adapter, reference)
    return _ResampleState(
        [z.to(adapter.device) for z in zs], torch.tensor(lengths, device=adapter.device), {}
    )


def _replace_zero(z: Tensor, layer: int, state: Any) -> Tensor:
    return z.new_zeros(())


def _replace_mean(z: Tensor, layer: int, state: Tensor) -> Tensor:
    return state[layer][None, None]


def reference_rows(lengths: Tensor, batch: int, need: int, *, fixed_row: int | None = None) -> Tensor:
    """The reference row each batch element takes in "resample" ablation (``b % n_ref``, or
    ``fixed_row`` for all), checked to hold at least ``need`` tokens (clear error otherwise)."""
    n_ref = lengths.shape[0]
    if fixed_row is None:
        rows = torch.arange(batch, device=lengths.device) % n_ref
    else:
        rows = torch.full((batch,), fixed_row % n_ref, device=lengths.device)
    short = lengths[rows] < need
    if bool(short.any()):
        raise ValueError(
            f"'resample' ablation: reference sequences must be at least as long as the input "
            f"({need} tokens); row {int(rows[short][0])} of the reference is "
            f"{int(lengths[rows[short][0]])}. Pass longer reference prompts."
        )
    return rows


def _replace_resample(z: Tensor, layer: int, state: _ResampleState) -> Tensor:
    pos = z.shape[1]
    # A multi-token call is a fresh pass (or a prefill); single tokens continue a cached decode.
    start = 0 if pos > 1 else state.offsets.get(layer, 0)
    state.offsets[layer] = start + pos
    rows = reference_rows(state.lengths, z.shape[0], start + pos, fixed_row=state.fixed_row)
    return state.zs[layer][rows, start : start + pos].to(z.dtype)


register_ablation("zero", _replace_zero)
register_ablation("mean", _replace_mean, prepare=_prepare_mean, needs_reference=True)
register_ablation("resample", _replace_resample, prepare=_prepare_resample, needs_reference=True)


def prepare_reference(model: Any, mode: str | AblationMode, reference: Any) -> Any:
    """Run a mode's reference pass once, so that repeated ``ablate_heads`` calls skip it.

    ``prepare_reference(model, "mean", prompts)`` returns the ``[layer, head, d_head]`` means;
    pass the result as ``reference=``. Modes without a reference return ``reference``.
    """
    spec = _get_mode(mode)
    if spec.prepare is None:
        return reference
    if reference is None:
        raise ValueError(
            f"ablation mode {spec.name!r} needs reference=: a HeadActivity, texts or token ids "
            "(see ablate_heads)"
        )
    return spec.prepare(adapt(model), reference)


# ----------------------------------------------------------------------------- hooks


def _ablate_hook(
    z: Tensor, *, hook: Any, rows: Tensor, layer: int, spec: AblationMode, state: Any
) -> Tensor:
    """Keep ``z`` for heads not ablated, take the mode's values for ablated heads.

    ``rows`` is the layer's bool mask ``[1 or batch, head]``.
    """
    if rows.shape[0] not in (1, z.shape[0]):
        raise ValueError(
            f"per-batch head mask has {rows.shape[0]} rows but the forward batch has "
            f"{z.shape[0]}: stack exactly one condition per batch element"
        )
    values = spec.replace(z, layer, state)
    return torch.where(rows[:, None, :, None], values.to(z.dtype), z)


def ablation_hooks(
    model: Any, heads: HeadSpec, *, mode: str | AblationMode = "zero", reference: Any = None,
    prepared: bool = False,
) -> list[H.FwdHook]:
    """The ``(hook_name, fn)`` pairs that :func:`ablate_heads` adds (for composing by hand).

    ``prepared=True`` says ``reference`` already went through :func:`prepare_reference`.
    """
    adapter = adapt(model)
    spec = _get_mode(mode)
    mask = head_mask(adapter, heads)
    if mask.ndim == 2:
        mask = mask[None]
    if not bool(mask.any()):
        return []
    if spec.needs_reference and reference is None:
        raise ValueError(
            f"ablation mode {spec.name!r} needs reference=: for 'mean' a [layer, head, d_head] "
            "tensor of mean hook_z (see head_means) or a HeadActivity / texts / token ids to "
            "compute it from; for 'resample' the texts or token ids whose activations replace "
            "the head's"
        )
    state = reference if (prepared or spec.prepare is None) else spec.prepare(adapter, reference)
    if isinstance(state, _ResampleState):
        state.offsets.clear()
    device_mask = mask.to(adapter.device)
    fwd: list[H.FwdHook] = []
    for layer in range(adapter.n_layers):
        if bool(mask[:, layer].any()):
            fn = functools.partial(
                _ablate_hook, rows=device_mask[:, layer], layer=layer, spec=spec, state=state
            )
            fwd.append((H.hook_z(layer), fn))
    return fwd


@contextlib.contextmanager
def ablate_heads(
    model: Any,
    heads: HeadSpec,
    *,
    mode: str | AblationMode = "zero",
    reference: Any = None,
) -> Iterator[Bool[Tensor, "..."]]:
    """Ablate attention heads inside a ``with`` block (hooks on ``hook_z``, removed on exit).

    Args:
        model: a HookedTransformer, TransformerBridge or ``ModelAdapter``.
        heads: ``(layer, head)`` pairs or ``"L5H3"`` labels, a bool ``[layer, head]`` mask,
            or a bool ``[batch, layer, head]`` mask giving each batch element its own heads
            (conditions stacked along the batch share one forward pass).
        mode: a name in :data:`ABLATIONS` or an :class:`AblationMode`:

            - ``"zero"``: the head's output before ``W_O`` set to 0 (paper (B), ablation 1).
              Ablating head h changes ``hook_attn_out`` by exactly ``-z_h @ W_O[h]``.
            - ``"mean"``: replaced by its mean over a reference set (``reference=`` a
              ``[layer, head, d_head]`` tensor from :func:`head_means`, or a HeadActivity /
              texts / token ids to compute it from).
            - ``"resample"``: replaced by the head's output on another input at the same
              position (``reference=`` texts / token ids / a HeadActivity; batch element b
              takes reference row ``b % n_ref``; the reference must be at least as long).
              During cached generation, single-token calls continue the position count.
        reference: see ``mode``. Reuse an expensive one with :func:`prepare_reference`.

    Yields:
        The boolean mask in use (``[layer, head]`` or ``[batch, layer, head]``).

    Example:
        >>> with ablate_heads(model, ["L3H1", (4, 0)]):          # doctest: +SKIP
        ...     logits = model(tokens)
    """
    adapter = adapt(model)
    mask = head_mask(adapter, heads)
    fwd = ablation_hooks(adapter, mask, mode=mode, reference=reference)
    with adapter.hooks(fwd):
        yield mask


# ----------------------------------------------------------------------------- weight noise


@contextlib.contextmanager
def noise_heads(
    model: Any,
    heads: HeadSpec,
    *,
    std: float = 0.5,
    seed: int = 0,
    weights: Sequence[str] = ("W_Q", "W_O"),
) -> Iterator[list[tuple[int, int]]]:
    """Add Gaussian noise to heads' weights inside a ``with`` block; restore them exactly.

    Paper (B)'s second ablation (task accuracy): N(0, std^2) noise (std 0.5 in their
    config) on the head's query weights (``W_Q`` rows) and output weights (``W_O``
    columns). The noise of each head is drawn from one CPU generator seeded with ``seed``,
    heads in unit order, each drawn in TransformerLens layout (``W_Q`` ``[d_model, d_head]``,
    ``W_O`` ``[d_head, d_model]``), so both backends get the same perturbation. The original
    values are copied back in a ``finally``: afterwards the weights are bit-identical
    (``torch.equal``), also if the block raised.

    Yields:
        The ``(layer, head)`` pairs that were perturbed.
    """
    adapter = adapt(model)
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std < 0:
        raise ValueError(f"std must be a finite number >= 0 (the noise scale; paper (B): 0.5), got {std!r}")
    bad = [w for w in weights if w not in ("W_Q", "W_O")]
    if bad:
        raise ValueError(f"unknown weights {bad}: noise_heads perturbs 'W_Q' and/or 'W_O'")
    mask = head_mask(adapter, heads, allow_batch=False)
    pairs = mask_to_heads(mask)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    saved: list[tuple[Tensor, Tensor]] = []
    try:
        with torch.no_grad():
            for layer, head in pairs:
                views = adapter.head_weight_views(layer, head)
                for name in weights:
                    view = views[name]
                    saved.append((view, view.detach().clone()))
                    tl_shape = view.shape if adapter.backend == "hooked" else view.shape[::-1]
                    noise = torch.randn(tuple(tl_shape), generator=gen) * std
                    if adapter.backend != "hooked":
                        noise = noise.T
                    view.add_(noise.to(view.device, view.dtype))
        yield pairs
    finally:
        with torch.no_grad():
            for view, original in reversed(saved):
                view.copy_(original)


# ----------------------------------------------------------------------------- layer skipping


def layer_mask(model: Any, layers: Any) -> Bool[Tensor, "layer"] | Bool[Tensor, "batch layer"]:
    """Bool mask of layers: from an int, an iterable of ints, or a bool ``[(batch,) layer]``."""
    n_layers = int(model.n_layers)
    if isinstance(layers, Tensor) and layers.dtype == torch.bool:
        if layers.shape[-1] != n_layers or layers.ndim not in (1, 2):
            raise ValueError(
                f"layer mask has shape {tuple(layers.shape)}; expected [layer] or "
                f"[batch, layer] with layer={n_layers}"
            )
        return layers.detach().cpu()
    items = [layers] if isinstance(layers, int) else list(layers)
    mask = torch.zeros(n_layers, dtype=torch.bool)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, torch.Tensor)):
            raise TypeError(f"bad layer {item!r}: layers are integers")
        layer = int(item)
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer {layer} is out of range: this model has layers 0..{n_layers - 1}")
        mask[layer] = True
    return mask


def _keep_input(resid: Tensor, *, hook: Any, store: dict[int, Tensor], layer: int) -> None:
    store[layer] = resid


def _pass_input(
    resid: Tensor, *, hook: Any, store: dict[int, Tensor], layer: int, rows: Tensor | None
) -> Tensor:
    kept = store.pop(layer)
    if rows is None:
        return kept
    if rows.shape[0] != resid.shape[0]:
        raise ValueError(
            f"per-batch layer mask has {rows.shape[0]} rows but the forward batch has "
            f"{resid.shape[0]}"
        )
    return torch.where(rows[:, None, None], kept, resid)


def skip_hooks(model: Any, layers: Any) -> list[H.FwdHook]:
    """The hooks :func:`skip_layers` adds (for composing by hand)."""
    adapter = adapt(model)
    mask = layer_mask(adapter, layers)
    store: dict[int, Tensor] = {}
    fwd: list[H.FwdHook] = []
    for layer in range(adapter.n_layers):
        col = mask[..., layer]
        if not bool(col.any()):
            continue
        rows = col.to(adapter.device) if mask.ndim == 2 else None
        fwd.append((H.hook_resid_pre(layer), functools.partial(_keep_input, store=store, layer=layer)))
        fwd.append(
            (H.hook_resid_post(layer), functools.partial(_pass_input, store=store, layer=layer, rows=rows))
        )
    return fwd


@contextlib.contextmanager
def skip_layers(model: Any, layers: int | Iterable[int] | Tensor) -> Iterator[None]:
    """Skip whole blocks inside a ``with`` block: each passes its input through unchanged.

    Paper (A)'s layer skipping. The residual stream entering block L
    (``blocks.{L}.hook_resid_pre``) is returned at its exit (``blocks.{L}.hook_resid_post``),
    so neither the attention nor the MLP of the block writes anything. Equivalent to the
    transformers model with that layer deleted (checked to 1e-5 on tiny models and 1e-4
    on SmolLM2 in the tests). The block still runs (its output is discarded).

    Args:
        layers: a layer index, several, a bool ``[layer]`` mask, or a bool
            ``[batch, layer]`` mask (a different set of skipped layers per batch element).
    """
    adapter = adapt(model)
    with adapter.hooks(skip_hooks(adapter, layers)):
        yield
