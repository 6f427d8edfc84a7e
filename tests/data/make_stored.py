"""Write one small example of every saved result class into a folder (``tests/data/stored_v1``).

The files in ``tests/data/stored_v1`` were written by this script at commit 022660b (the
torch-file formats, before the safetensors format), those in ``tests/data/stored_safetensors``
by the commit that added that format; ``tests/test_stored_formats.py`` loads them with the
current code and compares them with values it rebuilds on its own. Run it again only to add a
folder of another format version: ``python tests/data/make_stored.py DIR``.
Every value is a small closed-form tensor (``_ramp``) or a literal, so the test can rebuild it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import torch


def _ramp(*shape: int, dtype: torch.dtype = torch.float64, start: float = 0.0) -> torch.Tensor:
    """``(start + arange(n)) / 4`` in ``shape``: the values every example is built from."""
    n = math.prod(shape)
    return ((torch.arange(n, dtype=torch.float64) + start) / 4).reshape(shape).to(dtype)


def _nan_diag(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    idx = torch.arange(t.shape[-1])
    t[..., idx, idx] = math.nan
    return t


LABELS = ["L0H0", "L0H1", "L1H0", "L1H1"]


def _stored(cls: type, **values: object) -> dict[str, object]:
    """Those of ``values`` that ``cls`` stores as fields (format 1 of ``UnitStability`` stored
    ``unstable`` and ``eps``, format 1 of ``RankUncertainty`` ``in_core``; since format 2 they
    are derived)."""
    import dataclasses

    stored = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return {k: v for k, v in values.items() if k in stored}


def _sizes(cls: type) -> dict[str, object]:
    """``labels``/``n_layers``/``n_heads`` for a class that stores them (format 1 of the sweep
    results did; since format 2 they are derived from the tensors' shapes)."""
    return _stored(cls, labels=list(LABELS), n_layers=2, n_heads=2)
META = {"model": "tiny", "note": "é ✓", "nested": {"a": [1, 2.5, None]}}


def examples() -> dict[str, object]:
    from synergy_lens.analysis.controls import ControlComparison
    from synergy_lens.analysis.core import Core
    from synergy_lens.analysis.energy import LayerEnergy
    from synergy_lens.analysis.headline import Headline
    from synergy_lens.analysis.profile import LayerProfile
    from synergy_lens.analysis.robustness import Robustness
    from synergy_lens.analysis.scores import HeadScores
    from synergy_lens.analysis.stability import UnitStability
    from synergy_lens.analysis.surrogates import SurrogateTest
    from synergy_lens.analysis.uncertainty import RankUncertainty
    from synergy_lens.dynamics.flow import ResidualFlow
    from synergy_lens.dynamics.order import TransitionPoint
    from synergy_lens.dynamics.study import DifficultyStudy
    from synergy_lens.dynamics.study_level import LevelSummary
    from synergy_lens.intervene.accuracy import AccuracyResult, LayerSkipResult
    from synergy_lens.intervene.attribution import IGResult
    from synergy_lens.intervene.divergence import AblationCurve
    from synergy_lens.phiid.result import PhiIDResult
    from synergy_lens.phiid.summaries import PairSummaries
    from synergy_lens.record.activity import HeadActivity
    from synergy_lens.sweep import CheckpointSummary, SweepResult
    from synergy_lens.view.circuits import HeadAttention

    values = _ramp(2, 3, 2, 2, dtype=torch.float32)
    values[1, 2:] = math.nan
    grid = _ramp(2, 2, start=1.0)
    grid[1, 1] = math.nan
    mask = torch.tensor([[True, False], [False, True]])

    def profile(score: str, start: float) -> LayerProfile:
        return LayerProfile(score=score, depth=torch.tensor([0.0, 1.0], dtype=torch.float64),
                            raw=_ramp(2, start=start), values=torch.tensor([0.0, 1.0], dtype=torch.float64),
                            inverted_u=-0.5, low=_ramp(2, start=start - 1), high=_ramp(2, start=start + 1),
                            boot=_ramp(3, 2, start=start), boot_inverted_u=_ramp(3, start=-start),
                            inverted_u_ci=(-0.75, 0.25), inverted_u_raw=math.nan, boot_inverted_u_raw=None,
                            inverted_u_raw_ci=None, spearman=0.5, alpha=0.1, n_boot=3, seed=7, minmax=True,
                            meta=dict(META))

    flow = ResidualFlow(per_prompt=_ramp(3, 2, 2), counts=torch.arange(12).reshape(3, 2, 2),
                        n_undefined=torch.zeros(3, 2, dtype=torch.int64),
                        metrics=["attn_cos", "mlp_cos", "resid_cos"], positions="generated", meta=dict(META))
    accuracy = pd.DataFrame({"family": ["arithmetic", "all"], "level": [1, 1], "n": [2, 2],
                             "n_correct": [1, 2], "accuracy": [0.5, 1.0], "ci_low": [0.1, 0.3],
                             "ci_high": [0.9, 1.0]})
    return {
        "HeadActivity": HeadActivity(
            values=values, lengths=torch.tensor([3, 2]), prompts=["2+2=", "héllo ✓"],
            categories=["math", "text"], prompt_ids=[[1, 5, 6], [1, 7]], generated_ids=[[8, 9, 2], [10, 2]],
            completions=["4", "!"], model_name="tiny-llama", model_config={"n_layers": 2, "n_heads": 2, "d_head": 8},
            settings={"signal": "l2", "max_new_tokens": 3, "seed": 0}, prompt_texts=["<s>2+2=", "<s>héllo ✓"]),
        "PhiIDResult": PhiIDResult(
            atoms=_nan_diag(_ramp(16, 4, 4)), n_layers=2, n_heads=2, labels=list(LABELS), tau=2,
            redundancy="MMI", aggregate="mean_over_prompts", per_prompt_sts=_nan_diag(_ramp(2, 4, 4, dtype=torch.float32)),
            per_prompt_rtr=None, meta=dict(META)),
        "PairSummaries": PairSummaries(
            unit_mean=_ramp(16, 4), n_partners=torch.tensor([3, 3, 2, 3]), fraction_mean=_ramp(4, start=-1),
            top_sts_pairs=torch.tensor([[0, 1], [2, 3]]), top_sts_atoms=_ramp(2, 16), top_rtr_pairs=None,
            top_rtr_atoms=None, labels=list(LABELS), n_layers=2, n_heads=2, tau=1, redundancy="MMI",
            aggregate="mean_over_prompts", n_prompts=5, constant_units=[3], collinear_pairs=[[0, 2]],
            partial_pairs=1, meta=dict(META)),
        "HeadScores": HeadScores(
            mean_sts=grid, mean_rtr=_ramp(2, 2, start=2), rank_gradient=_ramp(2, 2, start=3),
            synergy_fraction=_ramp(2, 2, start=4), score="synergy_fraction", values=_ramp(2, 2, start=4),
            spearman=0.25, spearman_p=math.nan, labels=list(LABELS), meta=dict(META),
            syn_minus_red=_ramp(2, 2, start=-2), unstable=mask, excluded=True,
            agreement={"synergy_fraction": {"rank_gradient": 0.5, "synergy_fraction": 1.0}}),
        "LayerProfile": profile("synergy_fraction", 1.0),
        "Core": Core(values=grid, abstract=mask, memory=~mask, score="rank_gradient", q=0.25, labels=list(LABELS)),
        "UnitStability": UnitStability(distinct=_ramp(2, 2), spread_ulp=_ramp(2, 2, start=100), dtype="float32",
                                       min_distinct=0.5, min_spread_ulp=16.0, labels=list(LABELS), meta=dict(META),
                                       **_stored(UnitStability, unstable=mask, eps=2.0 ** -23)),
        "LayerEnergy": LayerEnergy(definition="mean_sq_norm", values=_ramp(2), per_prompt=_ramp(3, 2),
                                   depth=torch.tensor([0.0, 1.0], dtype=torch.float64), meta=dict(META)),
        "Robustness": Robustness(
            variants=["baseline", "tau2"], scores=["synergy_fraction"],
            settings={"baseline": {"label": "as run", "n_prompts": 4}, "tau2": {"label": "tau 2", "skipped": "short"}},
            index=_ramp(2, 1), ci_low=_ramp(2, 1, start=-1), ci_high=_ramp(2, 1, start=1), p=_ramp(2, 1, start=0.1),
            null_mean=_ramp(2, 1, start=-3), profile=_ramp(2, 1, 2), null_profile=_ramp(2, 1, 2, start=5),
            alpha=0.05, n_surrogates=19, n_boot=20, seed=3, meta=dict(META)),
        "Headline": Headline(
            scores=["rank_gradient", "synergy_fraction"], index=_ramp(2), ci_low=_ramp(2, start=-1),
            ci_high=_ramp(2, start=1), aligned_index=_ramp(2, start=2), null_index=_ramp(3, 2),
            p=torch.tensor([0.05, math.nan], dtype=torch.float64), profile=_ramp(2, 2), low=_ramp(2, 2, start=-1),
            high=_ramp(2, 2, start=1), null_profile_mean=_ramp(2, 2, start=3), core=["L0H1", "L1H0"],
            core_q=_ramp(2, start=0.2), core_score="synergy_fraction", fdr=0.1, alpha=0.05, n_surrogates=3,
            method="phase", seed=1, tau=1, redundancy="MMI", agreement={"a": {"b": 0.5}}, unstable=["L1H1"],
            meta=dict(META)),
        "RankUncertainty": RankUncertainty(
            score="synergy_fraction", q=0.25, alpha=0.05, rank=_ramp(2, 2, start=4), rank_low=_ramp(2, 2),
            rank_high=_ramp(2, 2, start=8), core_frequency=_ramp(2, 2) / 2, n_boot=10, seed=2,
            labels=list(LABELS), meta=dict(META), **_stored(RankUncertainty, in_core=mask)),
        "SurrogateTest": SurrogateTest(
            scores=["synergy_fraction"], observed=_ramp(1, 2, 2), aligned=_ramp(1, 2, 2, start=1),
            null_mean=_ramp(1, 2, 2, start=2), null_std=_ramp(1, 2, 2, start=3), null=_ramp(3, 1, 2, 2),
            p_head=_ramp(1, 2, 2, start=0.5), q_head=_ramp(1, 2, 2, start=0.25),
            observed_pair=_nan_diag(_ramp(2, 4, 4)), aligned_pair=_nan_diag(_ramp(2, 4, 4, start=1)),
            p_pair=_nan_diag(_ramp(2, 4, 4, start=2)), q_pair=_nan_diag(_ramp(2, 4, 4, start=3)), fdr=0.1,
            method="phase", pvalue="empirical", n_surrogates=3, seed=4, tau=1, redundancy="MMI",
            labels=list(LABELS), meta=dict(META)),
        "ControlComparison": ControlComparison(
            profiles={"trained": {"synergy_fraction": profile("synergy_fraction", 1.0)},
                      "control": {"synergy_fraction": profile("synergy_fraction", 2.0)}},
            control="null AR(1)", meta=dict(META)),
        "AblationCurve": AblationCurve(
            steps=torch.tensor([0, 1, 2]), curves={"core": _ramp(3), "anti core": _ramp(3, start=1)},
            per_prompt={"core": _ramp(3, 2), "anti core": _ramp(3, 2, start=1)}, random=_ramp(2, 3, start=2),
            random_per_prompt=_ramp(2, 3, 2, start=3), orders={"core": ["L0H0", "L1H1"], "anti core": ["L1H0"]},
            meta=dict(META)),
        "IGResult": IGResult(
            attributions=_ramp(2, 2, 2), per_position=_ramp(2, 2, 2, 3), components={"attn": _ramp(2, 2), "mlp": _ramp(2, 2, start=1)},
            f_input=_ramp(2), f_baseline=_ramp(2, 2), completeness_error=_ramp(2, 2, start=-1), point="head",
            method="riemann", steps=8, meta=dict(META)),
        "AccuracyResult": AccuracyResult(
            conditions=["clean", "core"], seeds=[-1, 0], correct=torch.tensor([[True, False], [False, False]]),
            heads=[[], ["L0H1"]], completions=[["4", "x"], ["5", "y"]], answers=["4", "y"], meta=dict(META)),
        "LayerSkipResult": LayerSkipResult(
            layers=torch.tensor([0, 1]), divergence=_ramp(2), divergence_per_prompt=_ramp(2, 3),
            correct=torch.tensor([[True, False, True], [False, False, True]]),
            clean_correct=torch.tensor([True, True, False]), meta=dict(META)),
        "ResidualFlow": flow,
        "DifficultyStudy": DifficultyStudy(
            levels=[1, 2], accuracy=accuracy,
            order=pd.DataFrame({"level": [1, 2], "name": ["separation", "separation"], "value": [0.5, math.nan],
                                "ci_low": [0.25, math.nan], "ci_high": [0.75, math.nan]}),
            order_boot={"separation": _ramp(3, 2), "accuracy": _ramp(3, 2, start=1)},
            transitions={"separation": TransitionPoint(estimate=1.5, method="largest_jump", ci=(1.0, 2.0), params=None),
                         "accuracy": None},
            level_table=pd.DataFrame({"level": [1, 2], "n_prompts": [4, 4], "spearman": [0.5, math.nan]}),
            embeddings={1: _ramp(4, 2), 2: _ramp(4, 2, start=8)}, scores=_ramp(2, 2, 2),
            profile_embedding=_ramp(4, 2, start=-4), flows={1: flow}, labels=list(LABELS),
            settings={"model_name": "tiny", "levels": [1, 2]}),
        "LevelSummary": LevelSummary(
            level=2, accuracy=accuracy, order={"separation": 0.5, "bimodality": math.nan},
            ci={"separation": (0.25, 0.75)}, boot={"separation": _ramp(3), "accuracy": _ramp(3, start=1)},
            info={"n_prompts": 4, "spearman": math.nan}, scores=grid, embedding=_ramp(4, 2),
            fingerprint={"level": 2, "prompts": "abc"}),
        "HeadAttention": HeadAttention(tokens=["<s>", "a", "é"], patterns=torch.tril(_ramp(2, 3, 3, dtype=torch.float32)),
                                       labels=["L0H1", "L1H0"], meta=dict(META)),
        "CheckpointSummary": CheckpointSummary(
            name="step100", step=100.0, scores=["synergy_fraction"], index=_ramp(1), ci_low=_ramp(1, start=-1),
            ci_high=_ramp(1, start=1), p=_ramp(1, start=0.2), profile=_ramp(1, 2), ranks=_ramp(4, start=4),
            core=["L0H1"], synred_spearman=0.5, settings={"seed": 0}, **_sizes(CheckpointSummary)),
        "SweepResult": SweepResult(
            checkpoints=["step100", "step200"], steps=torch.tensor([100.0, 200.0], dtype=torch.float64),
            scores=["synergy_fraction"], score="synergy_fraction", index=_ramp(2, 1), ci_low=_ramp(2, 1, start=-1),
            ci_high=_ramp(2, 1, start=1), p=_ramp(2, 1, start=0.2), profile=_ramp(2, 1, 2), ranks=_ramp(2, 4),
            core=[["L0H1"], []], synred_spearman=_ramp(2), settings={"seed": 0}, **_sizes(SweepResult)),
    }


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, obj in examples().items():
        obj.save(folder / (name if name in ("ControlComparison", "DifficultyStudy") else f"{name}.pt"))
    from synergy_lens.record.checkpoint import Checkpoint, RecordingState

    state = RecordingState.empty(3, 2, 2, 2)
    state.put([0, 2], _ramp(2, 2, 2, 2, dtype=torch.float32), [[5, 6], [7, 2]])
    Checkpoint(folder / "recording.ckpt", {"prompts": "p", "model": "m", "settings": "s"}).save(state)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "stored_v1")
