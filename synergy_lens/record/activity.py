"""HeadActivity: one scalar time series per unit (an attention head by default) and prompt.

What and why
------------
Every later stage (PhiID, scores, ablations, views) reads the per-head activity recorded
during generation (Urbina-Rodriguez et al., arXiv 2601.06851; "Protocol of (B)" in
``docs/science.md``). :class:`HeadActivity` keeps the reduced signal, never a full activation
cache, plus everything needed to reproduce or interpret it: the exact token ids fed to the
model, the generated tokens, the decoded texts, the model's sizes and the settings.

Time index. ``values[p, t]`` is the head activity at the step that *produced* generated token
``t``: position ``len(prompt_ids[p]) - 1 + t`` of a teacher-forced pass over the full
sequence, which is what a hook sees at generation step ``t`` (the last position). A
generated EOS is a generated token, so the step that produced it counts:
``lengths[p] == len(generated_ids[p])``, and ``values[p, lengths[p]:]`` is NaN.

Units. Unit ``u = layer * n_heads + head``, labelled ``f"L{layer}H{head}"``; for
grouped-query attention the units are the query heads. Recordings of other kinds of unit
(:func:`~synergy_lens.record.record_activity`: sub-layers, MLP neurons, experts, your own)
use the same grid: ``values[p, t, row, unit]`` with ``unit_kind`` naming the kind, ``layers``
the model layer of each row when not every layer was recorded, and ``unit_labels()``
(``L5.mlp``, ``L5N1023``, ...) naming each unit. ``n_layers``/``n_heads`` are then the rows
and the units per row.

>>> import torch
>>> act = HeadActivity(values=torch.rand(2, 10, 3, 4), lengths=torch.tensor([10, 7]))
>>> act.unit_series().shape, act.unit_labels()[5]
(torch.Size([2, 12, 10]), 'L1H1')
>>> bool(act.values[1, 7:].isnan().all())
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from synergy_lens._grid import LayerGrid
from synergy_lens._io import SavedFields, atomic_torch_save
from synergy_lens.units import KIND_TAGS, unit_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HeadActivity", "atomic_torch_save", "drop_short_prompts"]

_DICT_FORMAT = "synergy_lens.HeadActivity/1"  # the tag of to_dict(), the in-memory exchange form


@dataclass
class HeadActivity(LayerGrid, SavedFields):
    """Per-head activity recorded during generation (see the module docstring).

    Attributes:
        values: float32 ``[prompt, time, layer, head]``; ``time`` has ``max_new_tokens``
            steps, NaN past each prompt's length.
        lengths: int64 ``[prompt]``, valid generated steps per prompt (the EOS step
            included). Derived from ``values`` when not given (leading steps that are not
            all NaN).
        prompts: the user's prompt texts.
        categories: category label per prompt, or None when the prompts had none.
        prompt_ids: the exact token ids fed to the model (chat template and BOS applied).
        generated_ids: the continuation of each prompt; ends with EOS if generation stopped
            there.
        completions: the decoded continuations (special tokens skipped).
        model_name: the model's name.
        model_config: ``n_layers, n_heads, d_head, n_kv_heads, backend`` (and a few more).
        settings: ``signal, max_new_tokens, chat_template, do_sample, seed, batch_size``.
        prompt_texts: the decoded ``prompt_ids``, what the model saw (template included).

    Only ``values`` is required, so synthetic activity for tests and examples is one line;
    missing lists are filled with empty entries.

    ``save(path)`` / ``load(path)`` (:class:`~synergy_lens._io.SavedFields`): a safetensors file,
    values and ids round-trip bit for bit; files of the earlier torch format load too.
    """

    FORMAT = "synergy_lens.HeadActivity/1"  # save/load: SavedFields
    GRID = ("values", 2)  # n_layers (rows: the recorded layers), n_heads (units per row), n_units
    values: Float[Tensor, "prompt time layer head"]
    lengths: Int[Tensor, " prompt"] | None = None
    prompts: list[str] = field(default_factory=list)
    categories: list[str] | None = None
    prompt_ids: list[list[int]] = field(default_factory=list)
    generated_ids: list[list[int]] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    model_name: str = ""
    model_config: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    prompt_texts: list[str] = field(default_factory=list)
    unit_kind: str = "heads"
    layers: list[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.values, Tensor) or self.values.ndim != 4:
            raise ValueError(
                "HeadActivity.values must be a [prompt, time, layer, head] tensor, got "
                f"{getattr(self.values, 'shape', type(self.values).__name__)}"
            )
        self.values = self.values.detach().to("cpu", torch.float32)
        n, steps = self.values.shape[:2]
        if self.lengths is None:
            alive = ~self.values.isnan().flatten(2).all(-1)  # [prompt, time]
            self.lengths = (alive.cumprod(dim=1)).sum(dim=1)
        self.lengths = torch.as_tensor(self.lengths, dtype=torch.long).detach().cpu()
        if self.lengths.shape != (n,):
            raise ValueError(f"lengths has shape {tuple(self.lengths.shape)}, expected ({n},)")
        if n and (int(self.lengths.min()) < 0 or int(self.lengths.max()) > steps):
            raise ValueError(f"lengths must lie in [0, {steps}] (the time axis of values)")
        past = torch.arange(steps)[None, :] >= self.lengths[:, None]  # [prompt, time]
        if bool((~self.values[past].isnan()).any()):  # keep the contract: NaN past lengths
            self.values = self.values.clone()
            self.values[past] = float("nan")
        self.prompts = _fill(self.prompts, n, "", "prompts")
        self.prompt_ids = _fill(self.prompt_ids, n, [], "prompt_ids")
        self.generated_ids = _fill(self.generated_ids, n, [], "generated_ids")
        self.completions = _fill(self.completions, n, "", "completions")
        self.prompt_texts = _fill(self.prompt_texts, n, "", "prompt_texts")
        self._check_units()
        if self.categories is not None and len(self.categories) != n:
            raise ValueError(f"categories has {len(self.categories)} entries for {n} prompts")
        for i, gen in enumerate(self.generated_ids):
            if gen and len(gen) != int(self.lengths[i]):
                raise ValueError(
                    f"prompt {i}: {len(gen)} generated tokens but lengths[{i}] = "
                    f"{int(self.lengths[i])} (they must agree: one value per generated token)"
                )

    def _check_units(self) -> None:
        if self.unit_kind not in KIND_TAGS:
            raise ValueError(f"unknown unit_kind {self.unit_kind!r}: the kinds are {sorted(KIND_TAGS)}")
        if self.layers is not None:
            self.layers = [int(v) for v in self.layers]
            if len(self.layers) != self.values.shape[2]:
                raise ValueError(f"layers has {len(self.layers)} entries for {self.values.shape[2]} rows of values")
            if self.layers == list(range(len(self.layers))):
                self.layers = None  # every layer: the default form

    # -- sizes ------------------------------------------------------------------------
    @property
    def n_prompts(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_steps(self) -> int:
        """Length of the time axis (``max_new_tokens`` of the recording)."""
        return int(self.values.shape[1])

    @property
    def model_layers(self) -> list[int]:
        """The model layer of each row."""
        return list(range(self.n_layers)) if self.layers is None else list(self.layers)

    # -- views ------------------------------------------------------------------------
    def full_ids(self, i: int) -> list[int]:
        """Prompt and continuation of prompt ``i``: ``prompt_ids[i] + generated_ids[i]``."""
        return [*self.prompt_ids[i], *self.generated_ids[i]]

    def unit_labels(self) -> list[str]:
        """``["L0H0", "L0H1", ...]`` (or ``L5.mlp``, ``L5N3``, ... by ``unit_kind``): unit =
        row * n_heads + index."""
        return unit_labels(self.n_layers, self.n_heads, kind=self.unit_kind, layers=self.layers)

    def unit_series(self) -> Float[Tensor, "prompt unit time"]:
        """The series as PhiID reads them: ``[prompt, unit, time]``, unit = layer * n_heads + head."""
        n, steps = self.values.shape[:2]
        return self.values.reshape(n, steps, self.n_units).transpose(1, 2).contiguous()

    def to_dataframe(self) -> pd.DataFrame:
        """A long table, one row per (prompt, valid time step, head).

        Columns: ``prompt, category, time, layer, head, unit, label, value``. Steps past a
        prompt's length (the NaN padding) are left out.
        """
        import numpy as np
        import pandas as pd

        n, steps, n_layers, n_heads = self.values.shape
        assert self.lengths is not None  # set in __post_init__
        p, t, layer, head = np.meshgrid(
            np.arange(n), np.arange(steps), np.arange(n_layers), np.arange(n_heads), indexing="ij"
        )
        keep = (t < self.lengths.numpy()[:, None, None, None]).ravel()
        p, t, layer, head = (a.ravel()[keep] for a in (p, t, layer, head))
        unit = layer * n_heads + head
        labels = np.asarray(self.unit_labels(), dtype=object)
        cats = np.asarray(
            self.categories if self.categories is not None else [None] * n, dtype=object
        )
        return pd.DataFrame(
            {
                "prompt": p,
                "category": cats[p] if n else np.asarray([], dtype=object),
                "time": t,
                "layer": np.asarray(self.model_layers, dtype=np.int64)[layer] if len(layer) else layer,
                "head": head,
                "unit": unit,
                "label": labels[unit] if len(unit) else np.asarray([], dtype=object),
                "value": self.values.numpy().ravel()[keep],
            }
        )

    def __repr__(self) -> str:
        if self.unit_kind == "heads" and self.layers is None:
            units = f"layers={self.n_layers}, heads={self.n_heads}, signal={self.settings.get('signal')!r}"
        else:
            rows = f"layers {self.model_layers}" if self.layers is not None else f"{self.n_layers} layers"
            units = f"units={self.unit_kind!r}: {rows} x {self.n_heads}"
        return f"HeadActivity(model={self.model_name!r}, prompts={self.n_prompts}, steps={self.n_steps}, {units})"

    def select(self, indices: list[int]) -> HeadActivity:
        """The recording of the prompts ``indices`` only (in that order); settings unchanged."""
        idx = [int(i) for i in indices]

        def pick(items: list[Any]) -> list[Any]:
            return [items[i] for i in idx]

        return HeadActivity(
            values=self.values[idx], lengths=None if self.lengths is None else self.lengths[idx],
            prompts=pick(self.prompts), categories=None if self.categories is None else pick(self.categories),
            prompt_ids=pick(self.prompt_ids), generated_ids=pick(self.generated_ids),
            completions=pick(self.completions), model_name=self.model_name,
            model_config=dict(self.model_config), settings=dict(self.settings),
            prompt_texts=pick(self.prompt_texts), unit_kind=self.unit_kind, layers=self.layers,
        )

    # -- persistence ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict: two tensors and a JSON string (what ``torch.distributed`` gathers)."""
        meta = {
            "prompts": self.prompts,
            "categories": self.categories,
            "prompt_ids": self.prompt_ids,
            "generated_ids": self.generated_ids,
            "completions": self.completions,
            "prompt_texts": self.prompt_texts,
            "model_name": self.model_name,
            "model_config": self.model_config,
            "settings": self.settings,
            "unit_kind": self.unit_kind,
            "layers": self.layers,
        }
        return {
            "format": _DICT_FORMAT,
            "values": self.values,
            "lengths": self.lengths,
            "meta": json.dumps(meta),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadActivity:
        if data.get("format") != _DICT_FORMAT:
            raise ValueError(
                f"not a saved HeadActivity (format {data.get('format')!r}, expected {_DICT_FORMAT!r})"
            )
        meta = json.loads(data["meta"])
        return cls(values=data["values"], lengths=data["lengths"], **meta)

    @classmethod
    def _from_old_file(cls, tensors: dict[str, Any], header: dict[str, Any], version: int) -> HeadActivity:
        """Format 1: ``values``, ``lengths`` and the rest as one JSON string ``meta``."""
        return cls(values=tensors["values"], lengths=tensors.get("lengths"), **json.loads(header["meta"]))


def _fill(items: list[Any], n: int, empty: Any, name: str) -> list[Any]:
    if not items:
        return [type(empty)() for _ in range(n)]
    if len(items) != n:
        raise ValueError(f"{name} has {len(items)} entries for {n} prompts")
    return list(items)


def drop_short_prompts(
    activity: HeadActivity, min_steps: int, *, min_prompts: int = 2
) -> tuple[HeadActivity, list[int]]:
    """Leave out prompts whose series is shorter than ``min_steps`` (a short answer that ended
    at EOS); returns the rest and the indices left out, with a warning naming them.

    Raises ``ValueError`` when fewer than ``min_prompts`` prompts remain: generate every
    series to full length (``stop_at_eos=False``, CLI ``--full-length``) or lower
    ``min_steps`` (CLI ``--min-steps``).
    """
    import warnings

    assert activity.lengths is not None
    lengths = [int(n) for n in activity.lengths.tolist()]
    short = [i for i, n in enumerate(lengths) if n < min_steps]
    if not short:
        return activity, []

    def describe(i: int) -> str:
        text = activity.prompts[i] if i < len(activity.prompts) else ""
        text = text if len(text) <= 40 else text[:37] + "..."
        return f"{i} ({lengths[i]} tokens: {text!r})"

    listed = ", ".join(describe(i) for i in short[:8]) + (f" and {len(short) - 8} more" if len(short) > 8 else "")
    fix = ("generate every series to max_new_tokens steps with stop_at_eos=False (CLI: --full-length), "
           "or lower min_steps (CLI: --min-steps)")
    keep = [i for i in range(activity.n_prompts) if i not in set(short)]
    if len(keep) < min_prompts:
        raise ValueError(
            f"only {len(keep)} of {activity.n_prompts} prompts have at least min_steps={min_steps} "
            f"generated tokens (the model ended the others at EOS: {listed}); PhiID needs at least "
            f"{min_prompts}. To fix: {fix}"
        )
    warnings.warn(
        f"leaving out {len(short)} prompt(s) whose answers are shorter than min_steps={min_steps} tokens: "
        f"{listed}. To keep them: {fix}",
        UserWarning,
        stacklevel=2,
    )
    return activity.select(keep), short
