"""Analyse a PhiID result: head scores, the synergistic core, layer profile, controls,
significance against surrogates, graph topology and layer energy.

The stage of the pipeline after ``decompose`` (papers (A) arXiv 2603.29735 and (B) arXiv
2601.06851; see docs/ARCHITECTURE.md):

- ``scores``: :func:`synergy_scores` -> :class:`HeadScores` (mean sts/rtr, rank gradient,
  (B)'s released ``syn_minus_red``, synergy fraction, the syn/red Spearman, agreement
  between scores), score registry :data:`SCORES`; :func:`find_core` -> :class:`Core`.
- ``core``: :class:`Core` (abstract vs memory heads; exports to
  TransformerLens hook names, head masks, patching ``index_df`` and ``fwd_hooks``).
- ``profile``: :func:`layer_profile` -> :class:`LayerProfile` (bootstrap band over
  prompts, inverted-U index with CI).
- ``controls``: :func:`perturb_weights`, :func:`random_init_like`, :func:`compare_controls`.
- ``surrogates``: :func:`surrogate_test` (circular-shift / phase surrogates, per-pair and
  per-head p-values, :func:`benjamini_hochberg`).
- ``headline``: :func:`headline` -> :class:`Headline` (each score's inverted-U index with
  its CI and its p-value against the surrogate null; the core heads' FDR test).
- ``robustness``: :func:`robustness` -> :class:`Robustness` (the index under tau 10,
  detrended series, pooled estimation, CCS, per score).
- ``stability``: :func:`unit_stability` -> :class:`UnitStability` (heads too coarse to
  estimate). ``uncertainty``: :func:`rank_uncertainty` (bootstrap of ranks and core membership).
- ``topology``: :func:`head_graphs`, :func:`topology_table` (synergy vs redundancy graph).
- ``energy``: :func:`layer_energy` with a registry of definitions.
"""

from synergy_lens.analysis.controls import (
    ControlComparison,
    compare_controls,
    perturb_weights,
    random_init_like,
)
from synergy_lens.analysis.core import Core
from synergy_lens.analysis.energy import (
    ENERGY_DEFINITIONS,
    LayerEnergy,
    layer_energy,
    register_energy,
)
from synergy_lens.analysis.headline import HEADLINE_SCORES, Headline, headline, index_null
from synergy_lens.analysis.profile import LayerProfile, layer_profile
from synergy_lens.analysis.robustness import VARIANTS, Robustness, robustness
from synergy_lens.analysis.scores import (
    SCORES,
    HeadScores,
    ScoreName,
    find_core,
    head_mean,
    ordinal_rank,
    pair_fraction,
    rank_gradient,
    register_score,
    score_agreement,
    syn_minus_red,
    synergy_scores,
    tiedrank_floor,
)
from synergy_lens.analysis.stability import UnitStability, unit_stability
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
from synergy_lens.analysis.uncertainty import RankUncertainty, rank_uncertainty

__all__ = [
    "ENERGY_DEFINITIONS",
    "HEADLINE_SCORES",
    "SCORES",
    "SURROGATES",
    "VARIANTS",
    "ControlComparison",
    "Core",
    "HeadScores",
    "Headline",
    "LayerEnergy",
    "LayerProfile",
    "RankUncertainty",
    "Robustness",
    "ScoreName",
    "SurrogateTest",
    "UnitStability",
    "benjamini_hochberg",
    "compare_controls",
    "find_core",
    "graph_metrics",
    "head_graphs",
    "headline",
    "head_mean",
    "head_topology",
    "index_null",
    "layer_energy",
    "layer_profile",
    "layer_topology",
    "ordinal_rank",
    "pair_fraction",
    "perturb_weights",
    "random_init_like",
    "rank_uncertainty",
    "rank_gradient",
    "register_energy",
    "register_score",
    "robustness",
    "score_agreement",
    "surrogate_test",
    "syn_minus_red",
    "synergy_scores",
    "tiedrank_floor",
    "topology_table",
    "unit_stability",
]
