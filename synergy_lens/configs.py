"""Run configurations as plain dataclasses (no heavy imports: the CLI builds its options from
them before torch loads).

Each field is one option: its name, default and type live here once, and a run saves the
config's ``dataclasses.asdict`` with its results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["SCORE_NAMES", "ScoreName", "SweepConfig"]

ScoreName = Literal["rank_gradient", "syn_minus_red", "synergy_fraction"]
SCORE_NAMES: tuple[str, ...] = get_args(ScoreName)
"""The three headline scores (docs/science.md, "Scores and their sources")."""


@dataclass(frozen=True)
class SweepConfig:
    """The analysis that :func:`synergy_lens.checkpoint_sweep` runs on every checkpoint."""

    max_new_tokens: int = 48
    """Tokens generated per prompt (each prompt runs to full length)."""
    batch_size: int = 8
    stop_at_eos: bool = False
    tau: int = 1
    score: ScoreName = "syn_minus_red"
    """The score whose core, ranks and stability the sweep follows."""
    scores: tuple[str, ...] = SCORE_NAMES
    q: float = 0.25
    """Core = the top q of heads by ``score``."""
    n_surrogates: int = 19
    """Autocorrelation-null replicates per checkpoint (19 gives p >= 0.05)."""
    n_boot: int = 500
    seed: int = 0
