"""RunResults is a typed dataclass: one field per result, the mapping form names them as files do."""

from __future__ import annotations

import dataclasses
import typing

import pandas as pd
import pytest
import torch

from synergy_lens.analysis import HeadScores, LayerProfile, layer_profile
from synergy_lens.view.results import RunResults


def test_fields_are_typed_and_the_mapping_form_is_the_same_object(tmp_path, result) -> None:
    import synergy_lens.view.results as R

    # the annotations name the stages' classes (imported for type checkers only): resolve them
    names = {n: getattr(m, n) for m in (__import__("synergy_lens.analysis", fromlist=["x"]),)
             for n in ("Core", "HeadScores", "LayerProfile", "ControlComparison")}
    from synergy_lens.analysis.headline import Headline
    from synergy_lens.analysis.robustness import Robustness
    from synergy_lens.analysis.stability import UnitStability
    from synergy_lens.analysis.surrogates import SurrogateTest
    from synergy_lens.analysis.uncertainty import RankUncertainty
    from synergy_lens.intervene import AblationCurve
    from synergy_lens.phiid import PhiIDResult
    from synergy_lens.record import HeadActivity
    from synergy_lens.record.attention import HeadAttention

    names.update(Headline=Headline, Robustness=Robustness, UnitStability=UnitStability, SurrogateTest=SurrogateTest,
                 RankUncertainty=RankUncertainty, AblationCurve=AblationCurve, PhiIDResult=PhiIDResult,
                 HeadActivity=HeadActivity, HeadAttention=HeadAttention, pd=pd)
    hints = typing.get_type_hints(RunResults, globalns=vars(R), localns=names)
    assert hints["scores"] == HeadScores | None
    assert hints["layer_profiles"] == dict[str, LayerProfile]
    assert hints["topology"] == pd.DataFrame | None
    table = pd.DataFrame({"layer": [0, 1], "value": [0.5, float("nan")]})
    run = RunResults().add("topology", table).add("tokens", [["a", "b"]]).add("notes", {"x": 1})
    assert run.topology is table and run["topology"] is table and run.tokens == [["a", "b"]]
    assert run.extra == {"notes": {"x": 1}} and "notes" in run and "scores" not in run
    assert run.scores is None and run.get("scores", 7) == 7
    with pytest.raises(KeyError, match=r"this run has no 'scores'; it has \['notes', 'tokens', 'topology'\]"):
        run["scores"]
    # the profile entries: profile_<score> in the mapping form, layer_profiles[score] typed
    profile = layer_profile(result, n_boot=0)
    run.add("profile_rank_gradient", profile)
    assert run.layer_profiles == {"rank_gradient": profile} and run["profile_rank_gradient"] is profile
    assert run.profiles() == {"rank_gradient": profile}
    back = RunResults.load(run.save(tmp_path))
    assert sorted(back.items) == sorted(run.items) == ["notes", "profile_rank_gradient", "tokens", "topology"]
    assert torch.equal(back.layer_profiles["rank_gradient"].values, profile.values) and back.extra == {"notes": {"x": 1}}
    pd.testing.assert_frame_equal(back.topology, table, check_dtype=False)
    assert {f.name for f in dataclasses.fields(RunResults)} >= {"activity", "phiid", "headline", "ablation"}
