"""The cached-decoding check's machinery, below the adapter that runs it (see
:mod:`synergy_lens.models.selfcheck` for what and why). Functions take a ``ModelAdapter``."""

from __future__ import annotations

import contextlib
import functools
import os
import weakref
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import torch
from torch import Tensor

from synergy_lens import hooks as H

__all__ = ["verify"]  # and the names synergy_lens.models.selfcheck re-exports

ENV_SWITCH = "SYNERGY_LENS_DECODING_CHECK"
CHECK_PROMPTS = ("The capital of France is", "Hi")
"""Two prompts of different token lengths: the shorter one is left-padded in the batch."""

TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 2e-2}
"""Largest allowed relative difference ||cached - uncached|| / ||uncached|| of the final
residual stream, by model dtype. Healthy float32 models differ by about 1e-6; a cache that
is ignored gives differences of order 1."""

_CHECKED: weakref.WeakKeyDictionary[Any, DecodingCheck] = weakref.WeakKeyDictionary()


class CachedDecodingError(RuntimeError):
    """Cached decoding disagrees with uncached decoding: generation cannot be trusted."""


@dataclass(frozen=True)
class DecodingCheck:
    """What the check measured on one model."""

    max_rel_diff: float
    """Largest relative difference of the final residual stream over all checked steps."""
    worst_step: int
    """The generation step (0 = the prompt's last position) where it occurred."""
    n_steps: int
    tolerance: float
    versions: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.max_rel_diff <= self.tolerance


def installed_versions() -> dict[str, str]:
    """Versions of the packages whose combination decides whether decoding works."""
    out = {}
    for name in ("transformers", "transformer-lens", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def verify(adapter: Any, *, n_tokens: int = 4, force: bool = False, raise_error: bool = True) -> DecodingCheck | None:
    """:func:`synergy_lens.models.selfcheck.check_cached_decoding` of a ``ModelAdapter``
    (what ``ModelAdapter.generate`` runs before its first generation)."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    result = None if force else _CHECKED.get(adapter.model)
    if result is None:
        # dropout would make any two passes differ: measure in eval mode
        mode = adapter.eval_mode() if adapter.model.training else contextlib.nullcontext()
        with mode:
            result = _measure(adapter, n_tokens)
        _CHECKED[adapter.model] = result
    if raise_error and not result.ok:
        raise CachedDecodingError(_message(adapter, result))
    return result


def _measure(adapter: Any, n_tokens: int) -> DecodingCheck:
    prompts = [adapter.tokenize(text)[: max(1, adapter.n_ctx - n_tokens)] for text in CHECK_PROMPTS]
    last = adapter.n_layers - 1
    steps: list[Tensor] = []

    def grab_last(x: Tensor, *, hook: Any) -> None:
        steps.append(x[:, -1].detach().double().cpu())

    with adapter.hooks([(H.hook_resid_post(last), grab_last)]):
        fed = adapter.generate(
            prompts, max_new_tokens=n_tokens, stop_at_eos=False, check=False
        )
    n_steps = min(len(steps), min(len(f) for f in fed))
    cached = torch.stack(steps[:n_steps], dim=1)  # [batch, step, d_model]

    worst, worst_step = 0.0, 0
    for row, (prompt, new) in enumerate(zip(prompts, fed)):
        full: list[Tensor] = []
        seq = torch.tensor([[*prompt, *new[: n_steps - 1]]], device=adapter.device)
        grab = functools.partial(_grab_all, out=full)
        with torch.inference_mode():
            adapter.forward(seq, fwd_hooks=[(H.hook_resid_post(last), grab)])
        positions = torch.arange(n_steps) + len(prompt) - 1
        uncached = full[0][0, positions]  # [step, d_model]
        diff = (cached[row] - uncached).norm(dim=-1) / uncached.norm(dim=-1).clamp_min(1e-30)
        if float(diff.max()) > worst or not bool(torch.isfinite(diff).all()):
            worst = float(diff.nan_to_num(float("inf")).max())
            worst_step = int(diff.nan_to_num(float("inf")).argmax())
    return DecodingCheck(
        max_rel_diff=worst,
        worst_step=worst_step,
        n_steps=n_steps,
        tolerance=TOLERANCE.get(adapter.dtype, 5e-2),
        versions=installed_versions(),
    )


def _grab_all(x: Tensor, *, hook: Any, out: list[Tensor]) -> None:
    out.append(x.detach().double().cpu())


def _message(adapter: Any, result: DecodingCheck) -> str:
    v = result.versions
    installed = ", ".join(f"{k} {val}" for k, val in v.items())
    known = ""
    tf = v.get("transformers", "")
    if adapter.backend == "bridge" and _at_least(tf, (5, 24)):
        known = (
            " Known cause: transformers >= 5.24 hands the KV cache to attention as `cache=`, "
            "which TransformerLens's bridge attention (<= 4.3) does not read, so every "
            "cached step attends to itself alone."
        )
    return (
        f"cached decoding disagrees with uncached decoding on {adapter.name} "
        f"({adapter.backend} backend): the final residual stream differs by "
        f"{result.max_rel_diff:.3g} (relative) at generation step {result.worst_step}, "
        f"tolerance {result.tolerance:g}. Generation, and every recording made with it, "
        f"would be wrong. Installed: {installed}.{known} Fix: install the tested versions: "
        "from a clone of synergy-lens run `make env` (it installs locks/lock-tl4.txt), or "
        "`pip install -c locks/lock-tl4.txt -e .`; with pip alone, "
        "`pip install \"transformers>=5.0,<5.24\"`. To skip this check (not recommended), "
        f"set {ENV_SWITCH}=0."
    )


def _at_least(version: str, minimum: tuple[int, int]) -> bool:
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= minimum
