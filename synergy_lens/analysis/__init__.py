"""Analyse a PhiID result: head scores, the synergistic core, layer profile, controls,
significance against surrogates, graph topology and layer energy.

The stage of the pipeline after ``decompose`` (papers (A) arXiv 2603.29735 and (B) arXiv
2601.06851; see docs/ARCHITECTURE.md):

- ``scores``: :func:`synergy_scores` -> :class:`HeadScores` (mean sts/rtr, rank gradient,
  synergy fraction, the syn/red Spearman), score registry :data:`SCORES`.
- ``core``: :func:`find_core` -> :class:`Core` (abstract vs memory heads; exports to
  TransformerLens hook names, head masks, patching ``index_df`` and ``fwd_hooks``).
- ``profile``: :func:`layer_profile` -> :class:`LayerProfile` (bootstrap band over
  prompts, inverted-U index with CI).
- ``controls``: :func:`perturb_weights`, :func:`random_init_like`, :func:`compare_controls`.
- ``surrogates``: :func:`surrogate_test` (circular-shift / phase surrogates, per-pair and
  per-head p-values, :func:`benjamini_hochberg`).
- ``topology``: :func:`head_graphs`, :func:`topology_table` (synergy vs redundancy graph).
- ``energy``: :func:`layer_energy` with a registry of definitions.
"""

from synergy_lens.analysis.controls import (
    ControlComparison,
    compare_controls,
    perturb_weights,
    random_init_like,
)
from synergy_lens.analysis.core import Core, find_core
from synergy_lens.analysis.energy import (
    ENERGY_DEFINITIONS,
    LayerEnergy,
    layer_energy,
    register_energy,
)
from synergy_lens.analysis.profile import LayerProfile, layer_profile
from synergy_lens.analysis.scores import (
    SCORES,
    HeadScores,
    ScoreName,
    head_mean,
    pair_fraction,
    rank_gradient,
    register_score,
    synergy_scores,
    tiedrank_floor,
)
from synergy_lens.analysis.surrogates import (
    SURROGATES,
    SurrogateTest,
    benjamini_hochberg,
    surrogate_test,
)
from synergy_lens.analysis.topology import (
    graph_metrics,
    head_graphs,
    head_topology,
    layer_topology,
    topology_table,
)

__all__ = [
    "ENERGY_DEFINITIONS",
    "SCORES",
    "SURROGATES",
    "ControlComparison",
    "Core",
    "HeadScores",
    "LayerEnergy",
    "LayerProfile",
    "ScoreName",
    "SurrogateTest",
    "benjamini_hochberg",
    "compare_controls",
    "find_core",
    "graph_metrics",
    "head_graphs",
    "head_mean",
    "head_topology",
    "layer_energy",
    "layer_profile",
    "layer_topology",
    "pair_fraction",
    "perturb_weights",
    "random_init_like",
    "rank_gradient",
    "register_energy",
    "register_score",
    "surrogate_test",
    "synergy_scores",
    "tiedrank_floor",
    "topology_table",
]
