"""synergy-lens: find and test the synergistic core of a TransformerLens model.

Pipeline: model in -> record head activity -> decompose (PhiID) -> analyse -> intervene -> view.

>>> import synergy_lens as sl
>>> model = sl.load_model()                                   # doctest: +SKIP
>>> activity = sl.record_head_activity(model, sl.default_prompts())  # doctest: +SKIP
>>> result = sl.decompose(activity)                           # doctest: +SKIP
>>> scores = sl.synergy_scores(result)                        # doctest: +SKIP

Names are imported lazily, so ``import synergy_lens`` is quick and has no side effects.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # models
    "load_model": "synergy_lens.models",
    "tiny_model": "synergy_lens.models",
    "adapt": "synergy_lens.models",
    "ModelAdapter": "synergy_lens.models",
    "ModelLoadError": "synergy_lens.models",
    # record
    "record_head_activity": "synergy_lens.record",
    "record_activity": "synergy_lens.record",
    "hook_units": "synergy_lens.record",
    "sae_units": "synergy_lens.record",
    "spread_layers": "synergy_lens.record",
    "UnitSpec": "synergy_lens.record",
    "HeadActivity": "synergy_lens.record",
    "default_prompts": "synergy_lens.record",
    "load_prompts": "synergy_lens.record",
    "register_signal": "synergy_lens.record",
    # phiid
    "decompose": "synergy_lens.phiid",
    "all_pairs": "synergy_lens.phiid",
    "ATOMS": "synergy_lens.phiid",
    "PhiIDResult": "synergy_lens.phiid",
    # analysis
    "synergy_scores": "synergy_lens.analysis",
    "HeadScores": "synergy_lens.analysis",
    "perturb_weights": "synergy_lens.analysis",
    "random_init_like": "synergy_lens.analysis",
    "find_core": "synergy_lens.analysis",
    "Core": "synergy_lens.analysis",
    "layer_profile": "synergy_lens.analysis",
    "LayerProfile": "synergy_lens.analysis",
    "compare_controls": "synergy_lens.analysis",
    "surrogate_test": "synergy_lens.analysis",
    "topology_table": "synergy_lens.analysis",
    "head_graphs": "synergy_lens.analysis",
    "layer_energy": "synergy_lens.analysis",
    "headline": "synergy_lens.analysis",
    "robustness": "synergy_lens.analysis",
    "unit_stability": "synergy_lens.analysis",
    "rank_uncertainty": "synergy_lens.analysis",
    "pair_summaries": "synergy_lens.phiid",
    # whole runs
    "analyse": "synergy_lens.pipeline",
    "RunConfig": "synergy_lens.configs",
    "RecordConfig": "synergy_lens.configs",
    "DecomposeConfig": "synergy_lens.configs",
    "AnalysisConfig": "synergy_lens.configs",
    "AblationConfig": "synergy_lens.configs",
    "ViewConfig": "synergy_lens.configs",
    "checkpoint_sweep": "synergy_lens.sweep",
    "SweepConfig": "synergy_lens.sweep",
    "SweepResult": "synergy_lens.sweep",
    "record_sharded": "synergy_lens.distributed",
    "decompose_sharded": "synergy_lens.distributed",
    # dynamics
    "task_suite": "synergy_lens.dynamics",
    "difficulty_study": "synergy_lens.dynamics",
    "residual_flow": "synergy_lens.dynamics",
    # intervene
    "ablate_heads": "synergy_lens.intervene",
    "ablate_units": "synergy_lens.intervene",
    "noise_heads": "synergy_lens.intervene",
    "skip_layers": "synergy_lens.intervene",
    "ablation_curve": "synergy_lens.intervene",
    "integrated_gradients": "synergy_lens.intervene",
    "behaviour_divergence": "synergy_lens.intervene",
    "layer_skip_sweep": "synergy_lens.intervene",
    "accuracy_under_ablation": "synergy_lens.intervene",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'synergy_lens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
