"""Record head activity: model + prompts -> one signal time series per attention head.

- :func:`record_head_activity` generates from each prompt and records every head's
  ``hook_z`` signal at every generated token (batched, exact, resumable);
  :func:`record_activity` does the same for any kind of unit (``units="attn"``, ``"mlp"``,
  ``"mlp_neurons"``, ``"experts"``, :func:`hook_units`, :func:`sae_units`; see
  :mod:`synergy_lens.record.kinds`);
- :class:`HeadActivity` holds the result (``values[prompt, time, layer, head]``), with
  ``unit_series()``, ``to_dataframe()``, ``save()`` / ``load()``;
- :data:`SIGNALS` / :func:`register_signal`: how a head's output becomes one number
  (``"l2"``, the paper's, and ``"l2_out"``);
- :func:`default_prompts` (the 60-prompt suite in six categories) and :func:`load_prompts`
  (.txt / .jsonl);
- ``tasks``: the graded task suite with verifiable answers (``generate_tasks``,
  ``score_answer``, the :data:`~synergy_lens.record.tasks.FAMILIES` registry), used by
  ``intervene.accuracy_under_ablation`` and the difficulty study (re-exported by ``dynamics``).
"""

from synergy_lens.record.activity import HeadActivity
from synergy_lens.record.kinds import (
    UNIT_KINDS,
    UnitSpec,
    hook_units,
    parse_layers,
    sae_units,
    spread_layers,
)
from synergy_lens.record.prompts import CATEGORIES, Category, Prompt, default_prompts, load_prompts
from synergy_lens.record.recorder import (
    MIN_NEW_TOKENS,
    GenerationRecorder,
    batch_plan,
    record_activity,
    record_head_activity,
    teacher_forced_signals,
)
from synergy_lens.record.signals import SIGNALS, SignalFn, layer_weight, register_signal

__all__ = [
    "CATEGORIES",
    "Category",
    "GenerationRecorder",
    "HeadActivity",
    "UNIT_KINDS",
    "UnitSpec",
    "MIN_NEW_TOKENS",
    "Prompt",
    "SIGNALS",
    "SignalFn",
    "batch_plan",
    "default_prompts",
    "hook_units",
    "layer_weight",
    "load_prompts",
    "parse_layers",
    "record_activity",
    "record_head_activity",
    "register_signal",
    "sae_units",
    "spread_layers",
    "teacher_forced_signals",
]
