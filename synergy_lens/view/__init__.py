"""See the synergistic core: Plotly figures, CircuitsVis views and an offline HTML report.

The last stage of the pipeline (model in -> record -> decompose -> analyse -> intervene ->
**view**). Every function returns an object (a ``plotly.graph_objects.Figure``, an
:class:`~synergy_lens.view.circuits.OfflineHTML` CircuitsVis view, a
:class:`~synergy_lens.view.page.Report`) and never displays it: in a notebook, the last
expression of a cell shows it; elsewhere call ``fig.write_html(...)`` or ``report.save(...)``.

- ``style``: one colour scheme everywhere (synergy vermillion, redundancy blue, controls grey).
- ``matrices``: :func:`plot_matrices` (sts/rtr by layer), :func:`plot_head_grid`,
  :func:`plot_score_scatter`, :func:`plot_layer_profile`, :func:`plot_control_comparison`,
  :func:`plot_energy`.
- ``headline``: :func:`plot_score_profiles` (each score's profile against its surrogate null),
  :func:`plot_robustness` (small multiples per analysis choice), :func:`plot_rank_uncertainty`.
- ``graphs``: :func:`plot_graphs` (synergy vs redundancy networks).
- ``causal``: ablation curves, layer skipping, integrated gradients, accuracy under ablation.
- ``dynamics``: functional embeddings, order parameter and accuracy vs difficulty, residual flow.
- ``circuits``: :func:`attention_view`, :func:`activity_tokens_view` (offline CircuitsVis).
- ``page``: :class:`Report`, a self-contained HTML page; ``report``: :func:`build_report`,
  :func:`write_report`; ``results``: :class:`RunResults` (a run folder that loads back).
  The whole analysis in one call, :func:`synergy_lens.analyse`, sits above this stage
  (``synergy_lens.pipeline``).

Names are imported lazily, so ``import synergy_lens.view`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "plot_matrices": "matrices",
    "plot_head_grid": "matrices",
    "plot_score_scatter": "matrices",
    "plot_layer_profile": "matrices",
    "plot_control_comparison": "matrices",
    "plot_energy": "matrices",
    "plot_score_profiles": "headline",
    "plot_robustness": "headline",
    "plot_rank_uncertainty": "headline",
    "plot_graphs": "graphs",
    "plot_ablation": "causal",
    "plot_layer_skip": "causal",
    "plot_integrated_gradients": "causal",
    "plot_accuracy": "causal",
    "plot_embedding": "dynamics",
    "plot_accuracy_levels": "dynamics",
    "plot_order_parameter": "dynamics",
    "plot_residual_flow": "dynamics",
    "attention_view": "circuits",
    "activity_tokens_view": "circuits",
    "head_attention": "circuits",
    "HeadAttention": "circuits",
    "OfflineHTML": "circuits",
    "Report": "page",
    "build_report": "report",
    "write_report": "report",
    "layer_summary": "report",
    "RunResults": "results",
    "style_figure": "style",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'synergy_lens.view' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"synergy_lens.view.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
