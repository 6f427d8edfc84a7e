"""A cheap self-check that a model's cached decoding equals uncached decoding.

What and why
------------
Every recording is made during KV-cached generation (:mod:`synergy_lens.record.recorder`).
If the cache is silently ignored, every decoding step attends to itself alone: the model
babbles ("The-------"), every head's series is nearly constant, and PhiID returns NaN for
every pair. That happened with transformers 5.24, whose decoder layers hand the cache to
attention as ``cache=`` while TransformerLens's bridge attention (up to 4.3) reads only
``past_key_values`` or ``layer_past`` (docs/environment.md has the whole story). Nothing in
the installed packages failed; only the numbers were wrong.

So before a model generates for the first time, :func:`check_cached_decoding` generates a
few greedy tokens from two prompts of different lengths (so left padding is exercised
too) and compares the final residual stream (``blocks.{L-1}.hook_resid_post``) at each
cached step with an uncached, unpadded forward pass over the same tokens. Because the
comparison uses the tokens the cached run actually fed, near-ties in the logits cannot
cause a false alarm. The result is remembered per model object, so the check costs a few
forward passes once (about 0.3 s for SmolLM2 on a 2-core CPU).

A disagreement raises :class:`CachedDecodingError`, which names the installed transformers,
TransformerLens and torch versions and the fix. Setting the environment variable
``SYNERGY_LENS_DECODING_CHECK=0`` skips the check (not recommended).
"""

from __future__ import annotations

from typing import Any

from synergy_lens.models._decoding import (
    CHECK_PROMPTS,
    ENV_SWITCH,
    TOLERANCE,
    CachedDecodingError,
    DecodingCheck,
    installed_versions,
    verify,
)
from synergy_lens.models.adapter import adapt

__all__ = [
    "CHECK_PROMPTS",
    "ENV_SWITCH",
    "TOLERANCE",
    "CachedDecodingError",
    "DecodingCheck",
    "check_cached_decoding",
    "installed_versions",
]


def check_cached_decoding(
    model: Any, *, n_tokens: int = 4, force: bool = False, raise_error: bool = True
) -> DecodingCheck | None:
    """Compare a few greedy cached decoding steps with uncached forward passes.

    Args:
        model: a HookedTransformer, TransformerBridge or ``ModelAdapter``.
        n_tokens: greedy tokens to generate per prompt (the number of compared steps).
        force: run again even if this model object was checked before.
        raise_error: raise :class:`CachedDecodingError` on a disagreement (otherwise
            return the failed :class:`DecodingCheck`).

    Returns:
        The measurement (remembered per model object), or ``None`` when the check is
        switched off with ``SYNERGY_LENS_DECODING_CHECK=0``.
    """
    return verify(adapt(model), n_tokens=n_tokens, force=force, raise_error=raise_error)
