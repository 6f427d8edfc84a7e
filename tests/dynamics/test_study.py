"""The difficulty study: order parameters on planted data, the pipeline on a tiny model,
resuming, save/load, the command line; SmolLM2 end to end (slow)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from synergy_lens.dynamics import study_level
from synergy_lens.dynamics.order import BIMODALITY_THRESHOLD
from synergy_lens.dynamics.study import DifficultyStudy, difficulty_study, summary_text
from synergy_lens.dynamics.study_level import ORDER_PARAMETERS, order_parameters

SMALL = {"levels": (1, 2), "families": ["arithmetic", "relational"], "prompts_per_level": 2,
         "max_new_tokens": 10, "n_boot": 20, "progress": False}


def _planted(contrast: float, n_prompts: int = 6, n_layers: int = 6, n_heads: int = 4, seed: int = 0):
    """Per-prompt atoms of heads in two groups (middle layers synergistic, the rest redundant)
    whose contrast is ``contrast``; 0 gives one intermixed cloud."""
    g = torch.Generator().manual_seed(seed)
    u = n_layers * n_heads
    core = torch.zeros(u, dtype=torch.bool)
    core[2 * n_heads : 4 * n_heads] = True
    both, neither = core[:, None] & core[None, :], ~core[:, None] & ~core[None, :]
    per = []
    for _ in range(2 * n_prompts):
        m = 0.2 + 0.05 * torch.rand(u, u, generator=g)
        per.append((m + m.T) / 2)
    sts = torch.stack(per[:n_prompts]) + contrast * 0.3 * both
    rtr = torch.stack(per[n_prompts:]) + contrast * 0.3 * neither
    eye = torch.eye(u, dtype=torch.bool)
    sts[:, eye], rtr[:, eye] = math.nan, math.nan
    return SimpleNamespace(sts=sts.mean(0).double(), rtr=rtr.mean(0).double(), per_prompt_sts=sts.float(),
                           per_prompt_rtr=rtr.float(), n_layers=n_layers, n_heads=n_heads)


def test_order_parameters_high_on_planted_groups_low_on_intermixed():
    split, split_ci, boot, emb = order_parameters(_planted(1.0), n_boot=50)
    mixed, mixed_ci, _, _ = order_parameters(_planted(0.0), n_boot=50)
    assert emb.shape == (24, 2) and set(split) == set(ORDER_PARAMETERS)
    assert split["separation"] > 10 and mixed["separation"] < 4
    assert split["bimodality"] > BIMODALITY_THRESHOLD > mixed["bimodality"]
    assert split["inverted_u"] > 0.1 and abs(mixed["inverted_u"]) < 0.05
    for name in ORDER_PARAMETERS:
        assert split_ci[name][0] > mixed_ci[name][1], name  # the CIs do not overlap
        assert boot[name].shape == (50,)
    # deterministic for a seed
    again = order_parameters(_planted(1.0), n_boot=50)
    assert again[0] == split and again[1] == split_ci


def test_order_parameters_without_per_prompt_atoms_have_no_ci():
    res = _planted(1.0)
    res.per_prompt_sts = res.per_prompt_rtr = None
    values, cis, boots, _ = order_parameters(res, score="rank_gradient", n_boot=50)
    assert cis == {} and boots == {} and values["separation"] > 5


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny):
    # one folder per backend: a level's checkpoint names the model (name and weights), so
    # the other backend's tiny model is refused in a shared folder
    return tmp_path_factory.mktemp("difficulty")


@pytest.fixture(scope="module")
def study(tiny, study_dir):
    return difficulty_study(tiny, out=study_dir, **SMALL)


def test_study_on_a_tiny_model(study, study_dir):
    assert study.levels == [1, 2] and study.scores.shape == (2, 2, 4)
    acc = study.accuracy
    assert set(acc.family) == {"arithmetic", "relational", "all"}
    assert acc[acc.family == "all"].n.tolist() == [4, 4]
    assert list(study.order.columns) == ["level", "name", "value", "ci_low", "ci_high"]
    assert len(study.order) == 2 * len(ORDER_PARAMETERS)
    sep = study.order[study.order.name == "separation"]
    assert bool((sep.ci_low <= sep.ci_high).all()) and bool(sep.value.notna().all())
    # two layers have no middle third: the inverted-U index is undefined, not made up
    assert study.order[study.order.name == "inverted_u"].value.isna().all()
    assert set(study.embeddings) == {1, 2} and study.embeddings[1].shape == (8, 2)
    assert study.flows[1].n_layers == 2 and study.profile_embedding is not None
    assert study.level_table.n_phiid.tolist() == [4, 4]
    for lv in (1, 2):
        names = {p.name for p in (study_dir / f"level_{lv}").iterdir()}
        assert {"activity.pt", "phiid.pt", "scores.pt", "flow.pt", "summary.pt", "tasks.json"} <= names
    assert "transition of separation" in summary_text(study)


def test_saved_study_loads_back(study, study_dir):
    back = DifficultyStudy.load(study_dir)
    assert back.levels == study.levels and back.labels == study.labels
    assert back.order.equals(study.order) and back.accuracy.equals(study.accuracy)
    torch.testing.assert_close(back.scores, study.scores, equal_nan=True)
    torch.testing.assert_close(back.embeddings[2], study.embeddings[2])
    torch.testing.assert_close(back.flows[1].per_prompt, study.flows[1].per_prompt, equal_nan=True)
    assert back.transitions == study.transitions
    assert back.to_dataframe().shape[0] == len(study.order)


def test_study_resumes_finished_levels(tiny, study, study_dir, monkeypatch):
    """A rerun loads finished levels (nothing recorded) and only records the new one."""
    import synergy_lens.record as record

    calls = []
    real = record.record_head_activity
    monkeypatch.setattr(record, "record_head_activity", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = difficulty_study(tiny, out=study_dir, **SMALL)
    assert calls == [] and again.order.equals(study.order)
    more = difficulty_study(tiny, out=study_dir, **{**SMALL, "levels": (1, 2, 3)})
    assert calls == [1] and more.levels == [1, 2, 3]
    assert more.order[more.order.level <= 2].reset_index(drop=True).equals(study.order)


def test_study_refuses_a_folder_of_another_study(tiny, study, study_dir):
    with pytest.raises(ValueError, match="different study"):
        difficulty_study(tiny, out=study_dir, **{**SMALL, "max_new_tokens": 12})


def test_short_answers_are_kept_out_of_phiid(tiny, monkeypatch):
    monkeypatch.setitem(SMALL, "levels", (1,))
    with pytest.warns(RuntimeWarning, match="no PhiID"):
        st = difficulty_study(tiny, min_steps=11, **SMALL)  # 10 tokens < 11: no prompt qualifies
    assert st.level_table.n_short.tolist() == [4] and st.embeddings == {}
    assert st.order.value.isna().all() and st.accuracy.n.sum() == 8


def test_bad_arguments(tiny):
    with pytest.raises(ValueError, match="unknown task families"):
        difficulty_study(tiny, families=["chess"], **{k: v for k, v in SMALL.items() if k != "families"})
    with pytest.raises(ValueError, match="min_steps"):
        difficulty_study(tiny, min_steps=3, **SMALL)
    with pytest.raises(ValueError, match="levels is empty"):
        difficulty_study(tiny, **{**SMALL, "levels": ()})


def test_command_line(tmp_path, capsys):
    from synergy_lens.cli import main

    out = tmp_path / "cli"
    code = main(["difficulty", "--model", "tiny", "--out", str(out), "--levels", "1", "2",
                 "--families", "arithmetic", "--prompts-per-level", "3", "--max-new-tokens", "10",
                 "--n-boot", "10", "--no-progress"])
    assert code == 0
    assert "transition of" in capsys.readouterr().out
    for name in ("accuracy", "order_parameters", "residual_flow", "embedding_layer", "embedding_score"):
        assert (out / f"{name}.html").is_file()
    loaded = DifficultyStudy.load(out)
    assert loaded.n_layers == 3 and loaded.order[loaded.order.name == "inverted_u"].value.notna().all()


@pytest.mark.slow
def test_smollm2_study(smol, tmp_path):
    st = difficulty_study(smol, levels=(1, 2), families=["arithmetic"], prompts_per_level=3,
                          max_new_tokens=16, n_boot=10, out=tmp_path, checkpoint=False, progress=False)
    assert st.scores.shape == (2, 30, 9) and st.flows[1].n_layers == 30
    assert st.embeddings[1].shape == (270, 2)
    assert study_level.ORDER_PARAMETERS == ORDER_PARAMETERS
