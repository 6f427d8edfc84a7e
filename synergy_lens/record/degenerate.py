"""Stop a recording in which no unit varies: the sign of broken generation, not of a model.

PhiID at lag 1 estimates the covariance of ``(x_t, y_t, x_{t+1}, y_{t+1})`` per prompt.
A unit whose past (``x[:-1]``) or future (``x[1:]``) is constant, or that has fewer lag
pairs than the estimator needs, gives NaN for every pair it is in. One such unit is
ordinary (a head that never fires); *every* unit in *every* prompt being so means the
model's generation is broken: a KV cache that is ignored makes each decoding step attend
to itself alone, so the same token and the same head outputs repeat after the first step
("The-------"). Without this check such a run fails three stages later with a message
about selected heads that says nothing of the cause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from synergy_lens.record.activity import HeadActivity

__all__ = ["MIN_LAG_PAIRS", "DegenerateRecordingError", "check_not_degenerate", "degenerate_mask"]

MIN_LAG_PAIRS = 5
"""Fewest lag pairs per prompt for which a lag-1 Gaussian PhiID estimate is non-singular."""

_ULPS = 8.0
"""A series is constant when its spread is within this many float32 ulps of its size."""


class DegenerateRecordingError(RuntimeError):
    """Every unit of a recording is constant or too short in every prompt.

    The finished recording is kept on the exception as ``err.activity`` (inspect its
    ``completions``; ``err.activity.save(path)`` keeps it).
    """

    def __init__(self, message: str, activity: HeadActivity) -> None:
        super().__init__(message)
        self.activity = activity


def degenerate_mask(activity: HeadActivity) -> torch.Tensor:
    """``[prompt, unit]`` bool: the unit's series in that prompt cannot enter lag-1 PhiID."""
    series = activity.unit_series()  # [prompt, unit, time], NaN past each length
    unit_level = torch.stack([_unit_level(x.double()) for x in series]) if len(series) else (
        torch.zeros(series.shape[:2], dtype=torch.bool))
    return unit_level | _few_states(activity)[:, None]


def _unit_level(x: torch.Tensor) -> torch.Tensor:
    """``[unit]`` bool for one prompt's ``[unit, time]`` series (one prompt at a time keeps the
    float64 copies small: 9,216 neurons x 100 steps is 7 MB, the whole recording 0.4 GB)."""
    finite = torch.isfinite(x)
    n_valid = finite.sum(-1)
    past, future = x[..., :-1], x[..., 1:]
    both = finite[..., :-1] & finite[..., 1:]
    return (n_valid - 1 < MIN_LAG_PAIRS) | _constant(past, both) | _constant(future, both)


def _few_states(activity: HeadActivity) -> torch.Tensor:
    """``[prompt]`` bool: fewer than ``MIN_LAG_PAIRS`` distinct lag rows of all units.

    The lag rows of a pair, ``(x_t, y_t, x_{t+1}, y_{t+1})``, are a function of the rows
    ``(v_t, v_{t+1})`` of the whole activity vector ``v``. With at most four distinct such
    rows, the centred rows span at most three dimensions, so every pair's 4x4 covariance
    is singular. This is what an ignored KV cache gives: after the first steps the model
    feeds itself the same token and every unit repeats its value.
    """
    out = torch.zeros(activity.n_prompts, dtype=torch.bool)
    values = activity.values.flatten(2)  # [prompt, time, unit]
    lengths = activity.lengths
    assert lengths is not None  # filled in by HeadActivity.__post_init__
    for p, n in enumerate(lengths.tolist()):
        v = values[p, :n]
        if n < 2:
            out[p] = True
            continue
        rows = torch.cat([v[:-1], v[1:]], dim=1).nan_to_num(nan=float("inf"))
        out[p] = torch.unique(rows, dim=0).shape[0] < MIN_LAG_PAIRS
    return out


def _constant(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    big = torch.finfo(torch.float64).max
    hi = torch.where(valid, x, -big).amax(-1)
    lo = torch.where(valid, x, big).amin(-1)
    size = torch.maximum(hi.abs(), lo.abs())
    return (hi - lo) <= _ULPS * torch.finfo(torch.float32).eps * size


def check_not_degenerate(activity: HeadActivity) -> None:
    """Raise :class:`DegenerateRecordingError` when every unit is degenerate in every prompt."""
    if activity.n_prompts == 0 or not bool(degenerate_mask(activity).all()):
        return
    from synergy_lens.models.selfcheck import installed_versions

    shown = "; ".join(repr(c[:60]) for c in activity.completions[:2])
    versions = ", ".join(f"{k} {v}" for k, v in installed_versions().items())
    raise DegenerateRecordingError(
        f"every one of the {activity.n_units} units is constant, shorter than "
        f"{MIN_LAG_PAIRS} lag pairs, or cycles through fewer than {MIN_LAG_PAIRS} joint "
        f"states in every one of the {activity.n_prompts} prompts, so PhiID would be NaN "
        "for every pair. This points at generation, not at the model's "
        f"heads: the completions begin {shown}. Usual causes: a broken KV cache in the "
        f"installed packages ({versions}; `make env` installs the tested lock), a hook that "
        "overwrites hook_z, or max_new_tokens too small. The recording is kept as "
        "err.activity.",
        activity,
    )
