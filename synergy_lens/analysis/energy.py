"""Layer "energy": how much activity each layer's heads spend per generated token.

What and why
------------
Paper (A) (arXiv 2603.29735) compares the "energy" of layers in its brain-like
"intelligence economy" but gives no definition. We offer documented definitions as a
registry (:data:`ENERGY_DEFINITIONS`, :func:`register_energy`) and make the choice a
parameter. All work on a recording (``HeadActivity``: ``values[prompt, time, layer,
head]``, NaN past each prompt's ``lengths``). With the default signal, the L2 norm of
the head output before W_O (``hook_z``), ``s^2`` is the squared norm of that output, so
``sum_h s^2`` is the squared norm of the layer's concatenated head outputs.

For prompt p with valid steps t = 0..n_p - 1 and layer l, e_t = sum_h s[p, t, l, h]^2:

- ``"mean_sq_norm"`` (default): ``E_l = mean_t e_t``, the mean squared head-output norm per
  token.
- ``"per_dim"``: ``E_l / (n_heads * d_head)``, the mean squared activation per output
  coordinate; comparable across models of different widths.
- ``"compute_weighted"``: ``sum_t c_t e_t / sum_t c_t`` with ``c_t = len(prompt_ids) + t``,
  the number of key positions the query that produced generated token t attends to. The
  attention FLOPs spent on a token (``QK^T`` and ``AV``) are proportional to ``c_t``, so
  this is the activity per unit of attention compute, weighting late tokens of long
  contexts more. Without ``prompt_ids`` the prompt length is taken as 1.

Each prompt gives one ``[layer]`` vector; the reported energy is their mean (every prompt
weighs the same, as the prompt-averaged PhiID atoms), and ``per_prompt`` is kept for CIs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from synergy_lens._io import SavedFields
from synergy_lens._registry import Registry
from synergy_lens.units import normalised_depth

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ENERGY_DEFINITIONS", "EnergyFn", "LayerEnergy", "layer_energy", "register_energy"]

EnergyFn = Callable[[Tensor, dict[str, Any]], Tensor]
"""``fn(values [time, layer, head] of one prompt's valid steps, context) -> [layer]``.

``context`` holds ``prompt_len`` (int or None), ``d_head`` (int or None), ``n_heads``."""


ENERGY_DEFINITIONS: Registry[EnergyFn] = Registry("energy definition", hint="add one with register_energy")
"""Registry of layer-energy definitions (module docstring); the built-in ones register below."""


register_energy = ENERGY_DEFINITIONS.register
"""``register_energy(name, fn=None, *, overwrite=False)`` adds a layer-energy definition
:data:`EnergyFn` (module docstring); usable as a decorator."""


@register_energy("mean_sq_norm")
def _mean_sq_norm(v: Tensor, ctx: dict[str, Any]) -> Tensor:
    return v.pow(2).sum(-1).mean(0)


@register_energy("per_dim")
def _per_dim(v: Tensor, ctx: dict[str, Any]) -> Tensor:
    if not ctx.get("d_head"):
        raise ValueError("definition 'per_dim' needs d_head: the activity's model_config has none")
    return _mean_sq_norm(v, ctx) / (ctx["n_heads"] * ctx["d_head"])


@register_energy("compute_weighted")
def _compute_weighted(v: Tensor, ctx: dict[str, Any]) -> Tensor:
    start = ctx.get("prompt_len") or 1
    weights = torch.arange(v.shape[0], dtype=v.dtype, device=v.device) + start
    return (weights[:, None] * v.pow(2).sum(-1)).sum(0) / weights.sum()


@dataclass
class LayerEnergy(SavedFields):
    """Energy per layer under one definition.

    Attributes:
        definition: the registry name used.
        values: ``[layer]``, the mean over prompts of ``per_prompt``.
        per_prompt: ``[prompt, layer]``.
        depth: normalised depth ``layer / (n_layers - 1)``.
    """

    FORMAT = "synergy_lens.LayerEnergy/1"  # save/load: SavedFields

    definition: str
    values: Float[Tensor, " layer"]
    per_prompt: Float[Tensor, "prompt layer"]
    depth: Float[Tensor, " layer"]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per layer: layer, depth, energy, and its standard error over prompts."""
        import pandas as pd

        n = self.per_prompt.shape[0]
        sem = (
            self.per_prompt.std(0, correction=1) / n**0.5
            if n > 1
            else torch.full_like(self.values, float("nan"))
        )
        return pd.DataFrame(
            {
                "layer": range(self.values.shape[0]),
                "depth": self.depth.numpy(),
                "energy": self.values.numpy(),
                "sem": sem.numpy(),
            }
        )

def layer_energy(activity: Any, *, definition: str | EnergyFn = "mean_sq_norm") -> LayerEnergy:
    """Per-layer energy of a recording under a documented definition.

    Args:
        activity: a ``HeadActivity`` (``values [prompt, time, layer, head]``, ``lengths``;
            optional ``prompt_ids`` and ``model_config["d_head"]``).
        definition: ``"mean_sq_norm"``, ``"per_dim"``, ``"compute_weighted"``, a registered
            name, or a callable (see :data:`EnergyFn`).

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> act = SimpleNamespace(values=torch.ones(1, 3, 2, 4), lengths=torch.tensor([3]))
        >>> layer_energy(act).values.tolist()  # four heads of norm 1 per layer
        [4.0, 4.0]
    """
    if callable(definition):
        name, fn = getattr(definition, "__name__", "custom"), definition
    else:
        name, fn = definition, ENERGY_DEFINITIONS[definition]  # unknown: lists the registered
    values = torch.as_tensor(activity.values).to(torch.float64)
    if values.ndim != 4:
        raise ValueError(
            f"activity.values must be [prompt, time, layer, head], got shape {tuple(values.shape)}"
        )
    lengths = [int(n) for n in torch.as_tensor(activity.lengths).tolist()]
    config = dict(getattr(activity, "model_config", None) or {})
    prompt_ids = getattr(activity, "prompt_ids", None)
    n_layers = values.shape[2]
    rows = []
    for p, n in enumerate(lengths):
        v = values[p, :n]
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"prompt {p} has NaN/inf within its first {n} steps; check lengths")
        ctx = {
            "prompt_len": len(prompt_ids[p]) if prompt_ids is not None else None,
            "d_head": config.get("d_head"),
            "n_heads": values.shape[3],
        }
        rows.append(fn(v, ctx))
    per_prompt = torch.stack(rows)
    depth = normalised_depth(n_layers)
    return LayerEnergy(
        definition=name,
        values=per_prompt.mean(0),
        per_prompt=per_prompt,
        depth=depth,
        meta={
            "n_prompts": len(lengths),
            "signal": (getattr(activity, "settings", None) or {}).get("signal"),
        },
    )
