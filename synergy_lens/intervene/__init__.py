"""Intervene: show what heads do by removing them (paper (B) ablations, paper (A) skipping/IG).

- Interventions (context managers that restore the model on exit, also on error):
  :func:`ablate_heads` (modes from :data:`ABLATIONS`, add yours with
  :func:`register_ablation`), :func:`noise_heads`, :func:`skip_layers`.
- Measurements: :func:`behaviour_divergence` and :func:`ablation_curve` (KL of the ablated
  model teacher-forced on the clean generation), :func:`accuracy_under_ablation` (task
  accuracy with confidence intervals), :func:`layer_skip_sweep`, and
  :func:`integrated_gradients` per layer and per head.
"""

from synergy_lens.intervene.ablate import (
    ABLATIONS,
    AblationMode,
    ablate_heads,
    ablation_hooks,
    head_means,
    noise_heads,
    prepare_reference,
    register_ablation,
    skip_hooks,
    skip_layers,
)
from synergy_lens.intervene.accuracy import (
    AccuracyResult,
    LayerSkipResult,
    accuracy_under_ablation,
    builtin_arithmetic,
    default_tasks,
    layer_skip_sweep,
    wilson_interval,
)
from synergy_lens.intervene.attribution import (
    POINTS,
    QUADRATURES,
    IGResult,
    integrated_gradients,
    quadrature,
)
from synergy_lens.intervene.divergence import (
    AblationCurve,
    ablation_curve,
    behaviour_divergence,
    score_orders,
    teacher_forced_sequences,
)
from synergy_lens.intervene.heads import head_label, head_mask, parse_head
from synergy_lens.intervene.units import (
    UnitGrid,
    ablate_units,
    unit_ablation_hooks,
    unit_grid,
    unit_mask,
)

__all__ = [
    "ABLATIONS",
    "POINTS",
    "QUADRATURES",
    "AblationCurve",
    "AblationMode",
    "AccuracyResult",
    "IGResult",
    "LayerSkipResult",
    "UnitGrid",
    "ablate_heads",
    "ablate_units",
    "ablation_curve",
    "ablation_hooks",
    "accuracy_under_ablation",
    "behaviour_divergence",
    "builtin_arithmetic",
    "default_tasks",
    "head_label",
    "unit_ablation_hooks",
    "unit_grid",
    "unit_mask",
    "head_mask",
    "head_means",
    "integrated_gradients",
    "layer_skip_sweep",
    "noise_heads",
    "parse_head",
    "prepare_reference",
    "quadrature",
    "register_ablation",
    "score_orders",
    "skip_hooks",
    "skip_layers",
    "teacher_forced_sequences",
    "wilson_interval",
]
