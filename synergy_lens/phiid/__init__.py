"""Exact Gaussian PhiID (Integrated Information Decomposition) for all pairs of units.

The stage of the pipeline that turns recorded head activity into the 16 PhiID atoms of
every pair of heads (Mediano, Rosas et al., arXiv 2109.13186; protocol of
Urbina-Rodriguez et al., arXiv 2601.06851).

- :data:`ATOMS`: the 16 atom names, canonical order (``phyid``'s), defined once.
- :func:`all_pairs`: ``[..., unit, time]`` -> ``[..., 16, unit, unit]``, exact, chunked,
  CPU or GPU. MMI in closed form from covariances; CCS from local values.
- :func:`pair`: one pair, average or local (per-sample) atoms, for teaching and checking.
- :class:`PhiIDStats`: mergeable sufficient statistics (means and lagged co-moments);
  :func:`all_pairs_from_stats` decomposes merged statistics without the raw series.
- :func:`decompose` / :class:`PhiIDResult`: a ``HeadActivity`` in, labelled atoms out.
- :func:`pair_summaries` / :class:`PairSummaries`: the streaming engine for many units:
  per-unit means of every atom and the top-k pairs, never ``[16, unit, unit]``
  (``decompose`` switches to it above :data:`STREAM_ABOVE_UNITS` units).
- :func:`register_redundancy`: plug in another redundancy function.

Layout: ``atoms`` (lattice), ``redundancy`` (registry), ``stats``, ``gaussian`` (pure
closed-form kernels), ``local`` (per-sample kernels, CCS), ``estimate`` (user functions,
input checks), ``result`` (result object, decompose), ``stream`` (streaming engine) and
``summaries`` (its result object).
"""

from synergy_lens.phiid.atoms import ATOMS, MIRROR, atom_index
from synergy_lens.phiid.estimate import add_jitter, all_pairs, all_pairs_from_stats, pair
from synergy_lens.phiid.redundancy import (
    RedundancyFunction,
    RedundancyName,
    get_redundancy,
    register_redundancy,
    registered_redundancies,
)
from synergy_lens.phiid.result import STREAM_ABOVE_UNITS, Aggregate, PhiIDResult, decompose
from synergy_lens.phiid.stats import PhiIDStats
from synergy_lens.phiid.stream import pair_summaries
from synergy_lens.phiid.summaries import PairSummaries

__all__ = [
    "ATOMS",
    "MIRROR",
    "STREAM_ABOVE_UNITS",
    "Aggregate",
    "PairSummaries",
    "PhiIDResult",
    "PhiIDStats",
    "RedundancyFunction",
    "RedundancyName",
    "add_jitter",
    "all_pairs",
    "all_pairs_from_stats",
    "atom_index",
    "decompose",
    "get_redundancy",
    "pair",
    "pair_summaries",
    "register_redundancy",
    "registered_redundancies",
]
