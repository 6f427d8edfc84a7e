"""Control networks and the trained-vs-control comparison of layer profiles.

What and why
------------
Paper (B) (arXiv 2601.06851) checks that the inverted-U synergy profile is learned: it is
absent early in training and in randomised networks, whose control "adds N(0, 10^2) noise
to every weight". This module gives both controls and one call that compares them:

- :func:`perturb_weights`: every parameter ``p`` becomes ``p + N(0, scale^2)`` (seeded).
  ``inplace=False`` (default) returns a perturbed deep copy and leaves ``model`` alone;
  ``inplace=True`` returns a context manager that perturbs on entry and restores every
  parameter bit for bit on exit (``torch.equal``), which needs no second copy of a large
  model.
- :func:`random_init_like`: a deep copy with freshly initialised weights (see its
  docstring for the rule) -- the "untrained network" control.
- :func:`compare_controls`: record, decompose and profile a model and its control on the
  same prompts; :class:`ControlComparison` holds both profiles per score, the inverted-U
  indices with CIs and the paired bootstrap CI of their difference.

Weights are touched only through ``model.named_parameters()`` (the host model is never
subclassed or patched); noise is drawn on a seeded CPU generator in float32, in parameter
order, so the same seed gives the same control on any device.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from synergy_lens._io import SavedFields
from synergy_lens.analysis.profile import LayerProfile, layer_profile

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ControlComparison", "compare_controls", "control_model", "perturb_weights", "random_init_like"]


def _host(model: Any) -> Any:
    """The TransformerLens model inside a ``ModelAdapter`` (or the model itself)."""
    from synergy_lens.models.adapter import ModelAdapter

    return model.model if isinstance(model, ModelAdapter) else model


def _rewrap(original: Any, host: Any) -> Any:
    from synergy_lens.models.adapter import ModelAdapter, adapt

    return adapt(host, bos=original.bos) if isinstance(original, ModelAdapter) else host


@torch.no_grad()
def _add_noise(host: Any, scale: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _, p in host.named_parameters():
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * scale
        p.add_(noise.to(device=p.device, dtype=p.dtype))


class _InPlacePerturbation(contextlib.AbstractContextManager):
    """Perturbs the weights on ``__enter__``, restores them exactly on ``__exit__``."""

    def __init__(self, model: Any, scale: float, seed: int) -> None:
        self.model, self.scale, self.seed = model, scale, seed
        self._saved: dict[str, torch.Tensor] | None = None

    def __enter__(self) -> Any:
        if self._saved is not None:
            raise RuntimeError("this perturbation is already active; it cannot be entered twice")
        host = _host(self.model)
        self._saved = {n: p.detach().clone() for n, p in host.named_parameters()}
        _add_noise(host, self.scale, self.seed)
        return self.model

    def __exit__(self, *exc: object) -> None:
        saved, self._saved = self._saved, None
        if saved is None:
            return
        with torch.no_grad():
            for name, p in _host(self.model).named_parameters():
                p.copy_(saved[name])


def perturb_weights(
    model: Any, scale: float = 10.0, *, seed: int = 0, inplace: bool = False
) -> Any:
    """The randomised control of paper (B): N(0, ``scale``^2) noise added to every weight.

    Args:
        model: HookedTransformer, TransformerBridge or ``ModelAdapter``.
        scale: noise standard deviation (paper (B): 10).
        seed: noise seed (CPU generator, parameter order).
        inplace: False (default) -> return a perturbed deep copy (same kind as ``model``);
            True -> return a context manager that perturbs ``model`` itself on entry and
            restores it exactly on exit::

                with perturb_weights(model, seed=1, inplace=True) as control:
                    activity = record_head_activity(control, prompts)

    Every parameter is perturbed once (shared/tied parameters once); buffers (e.g. rotary
    frequencies) are not weights and are left alone.
    """
    if not scale >= 0:
        raise ValueError(f"scale must be a non-negative float, got {scale!r}")
    if inplace:
        return _InPlacePerturbation(model, scale, seed)
    host = copy.deepcopy(_host(model))
    _add_noise(host, scale, seed)
    return _rewrap(model, host)


def _initializer_range(host: Any) -> float:
    hf = getattr(host, "original_model", None)
    value = getattr(getattr(hf, "config", None), "initializer_range", None)
    if value is None:
        value = getattr(getattr(host, "cfg", None), "initializer_range", None)
    return float(value) if value is not None and value > 0 else 0.02


@torch.no_grad()
def random_init_like(model: Any, *, seed: int = 0, std: float | None = None) -> Any:
    """A deep copy of ``model`` with freshly initialised weights (the untrained control).

    The rule is the one Hugging Face's ``_init_weights`` applies to Llama-family models and
    TransformerLens's ``init_weights`` applies in its default ``"gpt2"`` mode, written once
    so both backends get it from ``named_parameters()``:

    - biases (``bias``, ``b_*``): 0;
    - other 1-D parameters (norm scales ``w``/``weight``): 1;
    - every matrix (embeddings, Q/K/V/O, MLP, unembedding): N(0, ``std``^2), with ``std``
      the model's ``initializer_range`` (HF config for the bridge, TL ``cfg`` for hooked;
      0.02 if absent) unless given.

    Args:
        model: HookedTransformer, TransformerBridge or ``ModelAdapter`` (returned as the same kind).
        seed: seeds a CPU generator; the same seed gives the same weights.
        std: override the matrix standard deviation.
    """
    host = copy.deepcopy(_host(model))
    sd = _initializer_range(host) if std is None else float(std)
    gen = torch.Generator().manual_seed(seed)
    for name, p in host.named_parameters():
        leaf = name.rsplit(".", 1)[-1].lstrip("_")
        if leaf == "bias" or leaf.startswith("b_"):
            p.zero_()
        elif p.dim() == 1:
            p.fill_(1.0)
        else:
            p.copy_(
                (torch.randn(p.shape, generator=gen, dtype=torch.float32) * sd).to(
                    p.device, p.dtype
                )
            )
    return _rewrap(model, host)


# ----------------------------------------------------------------------------- comparison


@dataclass
class ControlComparison(SavedFields):
    """Layer profiles of a trained model and its control, per score.

    Attributes:
        profiles: ``{"trained": {score: LayerProfile}, "control": {score: LayerProfile}}``.
        control: what the control was (e.g. ``"perturb_weights(scale=10.0, seed=0)"``).
        results: the two ``PhiIDResult`` objects (kept in memory, not saved).
        meta: JSON-able extras.
    """

    FORMAT = "synergy_lens.ControlComparison/1"  # one file (a folder of files before SavedFields)
    UNSAVED = ("results",)

    profiles: dict[str, dict[str, LayerProfile]]
    control: str
    results: dict[str, Any] = field(default_factory=dict, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def scores(self) -> list[str]:
        return list(self.profiles["trained"])

    @classmethod
    def from_results(
        cls,
        trained: Any,
        control: Any,
        *,
        scores: Sequence[str] = ("rank_gradient", "synergy_fraction"),
        n_boot: int = 1000,
        alpha: float = 0.05,
        seed: int = 0,
        control_name: str = "control",
    ) -> ControlComparison:
        """Profile two ``PhiIDResult`` objects under each score (same resamples for both)."""
        profiles = {
            cond: {
                s: layer_profile(res, score=s, n_boot=n_boot, alpha=alpha, seed=seed)
                for s in scores
            }
            for cond, res in (("trained", trained), ("control", control))
        }
        return cls(
            profiles=profiles,
            control=control_name,
            results={"trained": trained, "control": control},
            meta={"n_boot": n_boot, "alpha": alpha, "seed": seed},
        )

    def difference(
        self, score: str, *, scaled: bool = False
    ) -> tuple[float, tuple[float, float] | None]:
        """Trained minus control inverted-U index, with a bootstrap CI.

        ``scaled=False`` (default) compares the unscaled indices (``inverted_u_raw``): both
        profiles are in the score's units, and min-max scaling would stretch a flat
        control's noise to full range (see ``profile.py``). ``scaled=True`` compares the
        indices of the min-max scaled profiles.

        With the same prompts (same count) and seed, replicate b of both profiles used the
        same prompt resample, so the CI is a paired bootstrap; with different prompt
        counts the replicates are independent draws and the CI is the unpaired one.
        """
        t, c = self.profiles["trained"][score], self.profiles["control"][score]
        attr = "inverted_u" if scaled else "inverted_u_raw"
        diff = getattr(t, attr) - getattr(c, attr)
        bt, bc = getattr(t, f"boot_{attr}"), getattr(c, f"boot_{attr}")
        if bt is None or bc is None:
            return diff, None
        d = (bt - bc).numpy()
        d = d[np.isfinite(d)]
        if not d.size:
            return diff, None
        alpha = t.alpha
        lo, hi = np.percentile(d, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        return diff, (float(lo), float(hi))

    def index_table(self) -> pd.DataFrame:
        """One row per (condition, score): inverted-U index on the scaled profile and on the
        raw profile, each with its CI, and the syn/red Spearman; plus trained - control rows."""
        import pandas as pd

        nan2 = (math.nan, math.nan)
        rows = []
        for cond, by_score in self.profiles.items():
            for s, p in by_score.items():
                ci, ci_raw = p.inverted_u_ci or nan2, p.inverted_u_raw_ci or nan2
                rows.append(
                    {
                        "condition": cond,
                        "score": s,
                        "inverted_u": p.inverted_u,
                        "ci_low": ci[0],
                        "ci_high": ci[1],
                        "inverted_u_raw": p.inverted_u_raw,
                        "raw_ci_low": ci_raw[0],
                        "raw_ci_high": ci_raw[1],
                        "spearman_syn_red": p.spearman,
                    }
                )
        for s in self.scores:
            diff, maybe_ci = self.difference(s, scaled=True)
            diff_raw, maybe_ci_raw = self.difference(s)
            ci, ci_raw = maybe_ci or nan2, maybe_ci_raw or nan2
            rows.append(
                {
                    "condition": "trained - control",
                    "score": s,
                    "inverted_u": diff,
                    "ci_low": ci[0],
                    "ci_high": ci[1],
                    "inverted_u_raw": diff_raw,
                    "raw_ci_low": ci_raw[0],
                    "raw_ci_high": ci_raw[1],
                    "spearman_syn_red": math.nan,
                }
            )
        return pd.DataFrame(rows)

    def to_dataframe(self) -> pd.DataFrame:
        """Long format: condition, score, layer, depth, raw, value, low, high."""
        import pandas as pd

        frames = []
        for cond, by_score in self.profiles.items():
            for s, p in by_score.items():
                frames.append(p.to_dataframe().assign(condition=cond, score=s))
        return pd.concat(frames, ignore_index=True)

    def save(self, path: str | Path) -> None:
        """One file (``SavedFields``: both conditions' profiles nested in it; ``results`` is not
        saved). A folder of the earlier layout at ``path`` is replaced."""
        path = Path(path).expanduser()
        if path.is_dir():
            _remove_old_folder(path)
        super().save(path)

    @classmethod
    def load(cls, path: str | Path) -> ControlComparison:
        """Read a file written by :meth:`save`, or a folder of the earlier layout (one
        ``LayerProfile`` file per condition and score plus ``comparison.json``)."""
        import json

        d = Path(path).expanduser()
        if not d.is_dir():
            return super().load(d)
        head = json.loads((d / "comparison.json").read_text())
        if head.get("format") != "synergy_lens.ControlComparison/1":
            raise ValueError(f"{d} holds no saved ControlComparison")
        profiles = {
            cond: {s: LayerProfile.load(d / f"profile_{cond}_{s}.pt") for s in head["scores"]}
            for cond in ("trained", "control")
        }
        return cls(profiles=profiles, control=head["control"], meta=head["meta"])


def _remove_old_folder(d: Path) -> None:
    """Delete a ControlComparison folder of the earlier layout (only its own files)."""
    import json

    try:
        head = json.loads((d / "comparison.json").read_text())
    except (OSError, ValueError):
        head = None
    if not isinstance(head, dict) or head.get("format") != "synergy_lens.ControlComparison/1":
        raise ValueError(f"{d} is a folder, not a saved ControlComparison: pass a file path")
    for cond in ("trained", "control"):
        for s in head.get("scores", []):
            (d / f"profile_{cond}_{s}.pt").unlink(missing_ok=True)
    (d / "comparison.json").unlink()
    d.rmdir()  # fails, leaving the rest, if the folder holds anything else


def _select_prompts(activity: Any, keep: list[int]) -> Any:
    """The same kind of recording restricted to prompts ``keep`` (dataclass fields sliced)."""
    n = int(torch.as_tensor(activity.lengths).shape[0])
    if len(keep) == n:
        return activity
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(activity):
        value = getattr(activity, f.name)
        if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n:
            changes[f.name] = value[keep]
        elif isinstance(value, list) and len(value) == n:
            changes[f.name] = [value[i] for i in keep]
    return dataclasses.replace(activity, **changes)


@contextlib.contextmanager
def control_model(model: Any, control: Any, scale: float = 10.0, seed: int = 0) -> Iterator[tuple[Any, str]]:
    """``(control model, its description)`` for the duration of the block: ``"perturb"``
    (:func:`perturb_weights` in place, restored on exit), ``"random_init"``
    (:func:`random_init_like`) or a ready model."""
    if control == "perturb":
        with perturb_weights(model, scale, seed=seed, inplace=True) as m:
            yield m, f"perturb_weights(scale={scale}, seed={seed})"
    elif control == "random_init":
        yield random_init_like(model, seed=seed), f"random_init_like(seed={seed})"
    elif isinstance(control, str):
        raise ValueError(f"control must be 'perturb', 'random_init' or a model, got {control!r}")
    else:
        yield control, f"given model {type(control).__name__}"


def compare_controls(
    model: Any,
    prompts: Sequence[Any] | None = None,
    *,
    control: Any = "perturb",
    scale: float = 10.0,
    seed: int = 0,
    scores: Sequence[str] = ("rank_gradient", "synergy_fraction"),
    n_boot: int = 1000,
    alpha: float = 0.05,
    record_kwargs: dict[str, Any] | None = None,
    decompose_kwargs: dict[str, Any] | None = None,
    recorder: Any = None,
    save_dir: str | Path | None = None,
    min_length: int = 8,
) -> ControlComparison:
    """Trained vs control layer profiles in one call (paper (B)'s randomisation control).

    Records head activity of ``model`` and of its control on the same prompts
    (``synergy_lens.record.record_head_activity``), decomposes both
    (``synergy_lens.phiid.decompose``) and profiles each under every score in ``scores``.

    Args:
        model: the trained model (HookedTransformer, TransformerBridge or adapter).
        prompts: user texts; default ``synergy_lens.record.default_prompts()`` (60 prompts).
        control: ``"perturb"`` (:func:`perturb_weights` in place, restored after),
            ``"random_init"`` (:func:`random_init_like`) or a ready control model.
        scale, seed: noise scale and seed of the control (seed also seeds the bootstrap).
        scores: head scores to profile (both by default: docs/science.md, "Pitfalls").
        n_boot, alpha: bootstrap over prompts for bands and CIs.
        record_kwargs, decompose_kwargs: passed on (e.g. ``{"max_new_tokens": 100}``).
        recorder: replaces ``record_head_activity`` (``recorder(model, prompts, **kw)``).
        save_dir: if given, the two recordings and PhiID results are saved there
            (``activity_{trained,control}.pt``, ``phiid_{trained,control}.pt``).
        min_length: prompts with fewer valid generated steps in *either* recording (a
            completion that hit EOS early) are dropped from both, so the two conditions
            keep the same prompts and their bootstraps stay paired.
    """
    from synergy_lens.phiid import decompose

    if recorder is None:
        try:
            from synergy_lens.record import record_head_activity as recorder
        except ImportError as err:  # pragma: no cover - depends on the record stage being present
            raise ImportError(
                "compare_controls needs synergy_lens.record.record_head_activity (or pass recorder=)"
            ) from err
    if prompts is None:
        from synergy_lens.record import default_prompts

        prompts = default_prompts()
    rk, dk = dict(record_kwargs or {}), dict(decompose_kwargs or {})
    out_dir = Path(save_dir) if save_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    activities = {"trained": recorder(model, list(prompts), **rk)}
    with control_model(model, control, scale, seed) as (ctl, name):
        activities["control"] = recorder(ctl, list(prompts), **rk)
    lengths = torch.stack([torch.as_tensor(a.lengths) for a in activities.values()]).amin(0)
    keep = [i for i, n in enumerate(lengths.tolist()) if n >= min_length]
    if len(keep) < 2:
        raise ValueError(
            f"only {len(keep)} prompt(s) have >= {min_length} generated steps in both recordings; "
            "use longer prompts/answers, raise max_new_tokens or lower min_length"
        )
    results = {}
    for cond, activity in activities.items():
        results[cond] = decompose(_select_prompts(activity, keep), **dk)
        if out_dir is not None:
            if hasattr(activity, "save"):
                activity.save(out_dir / f"activity_{cond}.pt")
            results[cond].save(out_dir / f"phiid_{cond}.pt")
    trained, ctl_result = results["trained"], results["control"]
    return ControlComparison.from_results(
        trained, ctl_result, scores=scores, n_boot=n_boot, alpha=alpha, seed=seed, control_name=name
    )
