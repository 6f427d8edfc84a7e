"""Mixture-of-experts experts as units: how much each routed expert writes for each token.

What and why
------------
In a mixture-of-experts (MoE) layer a router picks ``k`` of the layer's ``n`` experts for every
token and the layer's output is the weighted sum of the picked experts' outputs:

    out(x) = sum_e  g_e(x) * E_e(x),     g_e(x) = 0 for the experts the router did not pick.

One unit is one ``(layer, expert)`` pair, labelled ``L{layer}E{expert}``. Its value at a token
is the L2 norm of the expert's contribution ``g_e(x) * E_e(x)`` (a ``d_model`` vector): the
size of what that expert writes to the residual stream there, and exactly 0 when the token is
not routed to it. The values of one token therefore have exactly ``k`` non-zero entries, and
the contributions (the vectors, before the norm) add up to the MoE block's output
``blocks.{L}.hook_mlp_out`` (``tests/record/test_experts.py`` checks both on every family).

``g_e`` is the family's own routing weight, read from the model's own router:

- Mixtral: softmax over the router logits, top-k, the k weights renormalised to sum to 1
  (the same as a softmax over the top-k logits);
- OLMoE: softmax, top-k, *not* renormalised (the k weights sum to less than 1);
- Qwen3-MoE: softmax, top-k, renormalised when the config's ``norm_topk_prob`` is set.

Shared experts (the always-on experts of Qwen2-MoE or DeepSeek-MoE blocks, outside the
router) are not units: their output is part of the block's output but of no unit's value,
and an expert ablation leaves it in place.

Relation to paper (B). Urbina-Rodriguez et al. (arXiv 2601.06851) state their units as
"attention heads (MoE experts for MoE models)"; they give no more detail of what value an
expert takes at a token (docs/science.md, "Sources"). The norm of the weighted contribution
is our choice, made to parallel the head signal (the L2 norm of a head's output): a
reproduction of (B) on an MoE model may differ from theirs in this definition.

How it is computed
------------------
No routing maths is rewritten where the model has it as a module. On the TransformerBridge
the unit reads ``blocks.{L}.mlp.hook_in`` (the MoE block's input) and calls the wrapped
transformers block's own router (``gate``, returning logits, top-k weights and top-k
indices) and its own fused ``experts`` module, once per expert, with each token routed to
that expert alone and the router's weight for it: the module then returns exactly the
expert's weighted output for those tokens. On TransformerLens 3.9's HookedTransformer the
MoE layer routes inline, so the unit reads ``blocks.{L}.ln2.hook_normalized``, finishes the
norm with ``ln2``'s own weight and bias where it has them (``from_pretrained`` folds them into
the MoE weights by default, leaving ``RMSNormPre``), and repeats ``MoE.forward``'s routing (softmax,
top-k, renormalised when ``cfg.norm_topk_prob``) with the layer's own ``W_gate`` and expert
modules. Checked on Mixtral, OLMoE and Qwen3-MoE (bridge; Mixtral and OLMoE also hooked).
Another transformers family whose block has the same ``gate``/``experts`` interface works
the same way; one without it raises a ``ValueError`` that names the block.

The cost of the values of one layer is that of the layer's routed experts (each expert runs
on the tokens routed to it), plus one router call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from synergy_lens.hooks import HookName
from synergy_lens.record.spec import UnitSpec

__all__ = [
    "MoELayer",
    "expert_contributions",
    "expert_norms",
    "expert_spec",
    "moe_input_hook",
    "moe_layer",
    "routed_experts",
]

bridge_moe_in = HookName("blocks.{layer}.mlp.hook_in", "[batch, pos, d_model]")
"""TransformerBridge: the MoE block's input (the normalised residual stream)."""
hooked_moe_in = HookName("blocks.{layer}.ln2.hook_normalized", "[batch, pos, d_model]")
"""HookedTransformer: ``ln2``'s normalised input, before its weight (and bias)."""

_FIX = "record units='mlp' (one unit per MLP sub-layer) or units='mlp_neurons' (one per neuron)"


@dataclass(frozen=True)
class MoELayer:
    """One layer's router and routed experts, as the model's own modules compute them.

    Attributes:
        layer: the model layer.
        n_experts: routed experts of the layer (shared experts excluded).
        top_k: experts per token.
        finish: ``activation at moe_input_hook -> MoE block input`` (identity on the bridge).
        route: ``x [tokens, d_model] -> (indices [tokens, k], weights [tokens, k])``.
        weighted: ``(x [n, d_model], expert, weight [n]) -> weight * expert(x)``, ``[n, d_model]``.
    """

    layer: int
    n_experts: int
    top_k: int
    finish: Callable[[Tensor], Tensor]
    route: Callable[[Tensor], tuple[Tensor, Tensor]]
    weighted: Callable[[Tensor, int, Tensor], Tensor]


def _unwrap(module: Any) -> Any:
    """The module that owns the weights, below any bridge wrappers."""
    while isinstance(getattr(module, "original_component", None), torch.nn.Module):
        module = module.original_component
    return module


def _n_experts(adapter: Any) -> int:
    return int(getattr(adapter.cfg, "num_experts", None) or 0)


def _not_moe(adapter: Any) -> ValueError:
    return ValueError(
        f"units='experts' needs a mixture-of-experts model, and {adapter.name} has no experts "
        f"(its config has no num_experts): {_FIX}"
    )


def _bridge_layer(adapter: Any, layer: int) -> MoELayer:
    block = _unwrap(adapter.model.blocks[layer].mlp)
    router, experts = getattr(block, "gate", None), getattr(block, "experts", None)
    if router is None or not isinstance(experts, torch.nn.Module) or isinstance(experts, torch.nn.ModuleList):
        raise ValueError(
            f"layer {layer}'s MLP ({type(block).__name__}) is not a routed mixture-of-experts block "
            "that synergy-lens can read: it needs a `gate` router returning (logits, top-k weights, "
            f"top-k indices) and a fused `experts` module. For this model, {_FIX}"
        )
    router = _unwrap(router)
    n_experts = int(getattr(experts, "num_experts", 0) or _n_experts(adapter))
    top_k = int(getattr(router, "top_k", 0) or adapter.cfg.experts_per_token)

    def route(x: Tensor) -> tuple[Tensor, Tensor]:
        out = router(x)
        if not (isinstance(out, tuple) and len(out) == 3 and out[2].shape == (x.shape[0], top_k)):
            raise ValueError(
                f"the router of layer {layer} ({type(router).__name__}) does not return "
                f"(logits, top-k weights, top-k indices) with {top_k} experts per token; "
                f"units='experts' cannot read this family: {_FIX}"
            )
        _, weights, indices = out
        return indices, weights

    def weighted(x: Tensor, expert: int, weight: Tensor) -> Tensor:
        index = torch.full((x.shape[0], 1), expert, dtype=torch.long, device=x.device)
        return experts(x, index, weight[:, None])

    return MoELayer(layer, n_experts, top_k, lambda act: act, route, weighted)


def _hooked_layer(adapter: Any, layer: int) -> MoELayer:
    block = adapter.model.blocks[layer]
    moe = block.mlp
    if not (hasattr(moe, "W_gate") and isinstance(getattr(moe, "experts", None), torch.nn.ModuleList)):
        raise ValueError(
            f"layer {layer}'s MLP ({type(moe).__name__}) is not TransformerLens's MoE layer; "
            f"for this model, {_FIX}"
        )
    ln2, cfg = block.ln2, adapter.cfg
    top_k = int(moe.experts_per_token)

    def finish(act: Tensor) -> Tensor:  # the rest of ln2.forward after hook_normalized
        act = act.to(cfg.dtype)
        if getattr(ln2, "w", None) is not None:
            act = act * ln2.w
        if getattr(ln2, "b", None) is not None:
            act = act + ln2.b
        return act

    def route(x: Tensor) -> tuple[Tensor, Tensor]:  # as MoE.forward
        probs = torch.softmax(moe.W_gate(x), dim=-1, dtype=torch.float)
        weights, indices = torch.topk(probs, top_k, dim=-1)
        if cfg.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return indices, weights.to(x.dtype)

    def weighted(x: Tensor, expert: int, weight: Tensor) -> Tensor:
        mlp = moe.experts[expert]  # MoEGatedMLP.forward without its hook points
        out = mlp.W_out(mlp.act_fn(mlp.W_gate(x)) * mlp.W_in(x))
        return (out * weight[:, None]).to(x.dtype)

    return MoELayer(layer, int(moe.num_experts), top_k, finish, route, weighted)


def moe_layer(adapter: Any, layer: int) -> MoELayer:
    """The router and experts of ``layer`` (see the module docstring).

    Raises:
        ValueError: a dense model, a dense layer, or an MoE block of another form; the
            message names the block and the unit kinds to use instead.
    """
    if _n_experts(adapter) < 1:
        raise _not_moe(adapter)
    if not 0 <= layer < adapter.n_layers:
        raise ValueError(f"layer {layer} is out of range: this model has layers 0..{adapter.n_layers - 1}")
    if adapter.backend == "hooked":
        return _hooked_layer(adapter, layer)
    return _bridge_layer(adapter, layer)


def moe_input_hook(adapter: Any) -> HookName:
    """``layer -> hook name`` of the activation the expert units read on this backend."""
    return hooked_moe_in if adapter.backend == "hooked" else bridge_moe_in


def _routed(
    moe: MoELayer, act: Tensor, experts: Sequence[int]
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """``(i, token indices, weighted outputs [n, d_model])`` for each ``experts[i]`` with tokens.

    ``act`` is the activation at :func:`moe_input_hook`, flattened to ``[tokens, d_model]``.
    """
    x = moe.finish(act)
    indices, weights = moe.route(x)
    for i, expert in enumerate(experts):
        token, slot = (indices == expert).nonzero(as_tuple=True)
        if token.numel():
            yield i, token, moe.weighted(x[token], expert, weights[token, slot])


def _experts_arg(moe: MoELayer, experts: Sequence[int] | None) -> list[int]:
    chosen = list(range(moe.n_experts)) if experts is None else [int(e) for e in experts]
    bad = [e for e in chosen if not 0 <= e < moe.n_experts]
    if bad:
        raise ValueError(f"experts {bad} are out of range: layer {moe.layer} has experts 0..{moe.n_experts - 1}")
    return chosen


def expert_contributions(
    adapter: Any, layer: int, act: Float[Tensor, "*tok d_model"], experts: Sequence[int] | None = None,
    *, moe: MoELayer | None = None,
) -> Float[Tensor, "*tok expert d_model"]:
    """Each expert's weighted output ``g_e(x) * E_e(x)`` at every token (0 where not routed).

    Args:
        adapter: a :class:`~synergy_lens.models.ModelAdapter` of an MoE model.
        layer: the model layer.
        act: the activation at ``moe_input_hook(adapter)(layer)``, any leading shape.
        experts: these experts only, in this order (default: all).
        moe: the layer's :class:`MoELayer`, when the caller has built it already.

    The sum over all experts is the MoE block's output (shared experts aside).
    """
    moe = moe or moe_layer(adapter, layer)
    chosen = _experts_arg(moe, experts)
    flat = act.reshape(-1, act.shape[-1])
    out = flat.new_zeros(flat.shape[0], len(chosen), flat.shape[-1])
    for col, token, values in _routed(moe, flat, chosen):
        out[token, col] = values.to(out.dtype)
    return out.reshape(*act.shape[:-1], len(chosen), act.shape[-1])


def expert_norms(
    adapter: Any, layer: int, act: Float[Tensor, "*tok d_model"], *, moe: MoELayer | None = None
) -> Float[Tensor, "*tok expert"]:
    """The unit values: L2 norm of every expert's weighted output, float32, 0 where not routed."""
    moe = moe or moe_layer(adapter, layer)
    with torch.no_grad():
        return _norms(moe, act)


def _norms(moe: MoELayer, act: Tensor) -> Tensor:
    flat = act.reshape(-1, act.shape[-1])
    out = torch.zeros(flat.shape[0], moe.n_experts, dtype=torch.float32, device=flat.device)
    for expert, token, values in _routed(moe, flat, range(moe.n_experts)):
        out[token, expert] = torch.linalg.vector_norm(values.float(), dim=-1)
    return out.reshape(*act.shape[:-1], moe.n_experts)


def routed_experts(
    adapter: Any, layer: int, act: Float[Tensor, "*tok d_model"]
) -> tuple[Int[Tensor, "*tok k"], Float[Tensor, "*tok k"]]:
    """The router's choice at every token: ``(expert indices, routing weights)``, ``[..., k]``."""
    moe = moe_layer(adapter, layer)
    flat = act.reshape(-1, act.shape[-1])
    with torch.no_grad():
        indices, weights = moe.route(moe.finish(flat))
    lead = act.shape[:-1]
    return indices.reshape(*lead, moe.top_k), weights.reshape(*lead, moe.top_k)


def expert_spec(adapter: Any, rows: tuple[int, ...]) -> UnitSpec:
    """The ``"experts"`` :class:`UnitSpec`: one unit per routed expert of each layer in ``rows``.

    ``size`` is the number of routed experts; ``hook`` is :func:`moe_input_hook`; ``reduce``
    maps that activation ``[batch, pos, d_model]`` to the contribution norms
    ``[batch, pos, n_experts]`` (:func:`expert_norms`).

    Raises:
        ValueError: a dense model (use ``units="mlp"`` or ``"mlp_neurons"``) or a layer
            whose MLP is not a routed MoE block this module reads.
    """
    if _n_experts(adapter) < 1:
        raise _not_moe(adapter)
    layers = {layer: moe_layer(adapter, layer) for layer in rows}  # fails early on a dense layer
    sizes = {moe.n_experts for moe in layers.values()}
    if len(sizes) != 1:
        raise ValueError(f"layers {list(rows)} have different numbers of experts ({sorted(sizes)}): record them separately")

    def reduce(act: Tensor, layer: int) -> Tensor:
        return expert_norms(adapter, layer, act, moe=layers[layer])

    first = next(iter(layers.values()))
    describe = {"kind": "experts", "value": "l2 norm of routing weight x expert output",
                "n_experts": first.n_experts, "top_k": first.top_k}
    return UnitSpec("experts", tuple(rows), first.n_experts, moe_input_hook(adapter), reduce, describe,
                    adapter.n_layers)
