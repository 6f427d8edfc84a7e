"""The NaN-aware mean over prompts, shared by decompose, the bootstrap and the surrogates.

A pair of units can be undefined (NaN) in one prompt and defined in others (a unit constant
in that prompt, too few steps). Every prompt average in synergy-lens skips the prompts that
leave an entry undefined: ``sum_p w_p x_p / sum_p w_p`` over the prompts ``p`` where ``x_p``
is finite, NaN where no prompt defines it. ``w_p`` is 1 for the plain mean and the number
of times prompt ``p`` was drawn for a bootstrap resample.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["PromptValues", "mean_of_defined"]


def mean_of_defined(total: Tensor, count: Tensor) -> Tensor:
    """``total / count`` where ``count > 0``, NaN where it is 0 (no prompt defines the entry).

    ``total`` is the (weighted) sum over the prompts that define an entry and ``count`` their
    (weighted) number; ``count`` broadcasts against ``total``.
    """
    defined = count > 0
    return torch.where(defined, total / torch.where(defined, count, 1), torch.full_like(total, math.nan))


class PromptValues:
    """Per-prompt values ready for NaN-aware means under any prompt weights.

    Holds ``values`` (float64 on the CPU, NaN set to 0) and ``defined`` (1.0 where finite),
    both ``[prompt, entry]`` with the trailing dimensions flattened; :meth:`mean` applies
    weights ``[k, prompt]`` with two matrix products.
    """

    def __init__(self, per_prompt: Float[Tensor, "prompt *rest"]) -> None:
        m = per_prompt.detach().to("cpu", torch.float64)
        self.shape = tuple(m.shape[1:])
        m = m.reshape(m.shape[0], -1)
        ok = torch.isfinite(m)
        self.values = torch.where(ok, m, 0.0)
        self.defined = ok.to(torch.float64)

    def mean(self, weights: Float[Tensor, "k prompt"]) -> Float[Tensor, "k *rest"]:
        """The weighted mean over prompts of every entry, one row per row of ``weights``."""
        w = weights.to(torch.float64)
        return mean_of_defined(w @ self.values, w @ self.defined).reshape(-1, *self.shape)
