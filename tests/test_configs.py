"""Run configs (synergy_lens/configs.py): one declaration per option, and the command line,
``analyse`` and the saved settings all built from it."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import get_args

import pytest

from synergy_lens import configs as C
from synergy_lens.cli import _run_config, build_parser
from synergy_lens.pipeline import resolve_config


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def _config_actions(command: str) -> dict[str, argparse.Action]:
    names = {flat for _, flat, _, opt in C.options() if opt.cli}
    return {a.dest: a for a in _subparser(command)._actions if a.dest in names}


@pytest.mark.parametrize("command", ["run", "demo"])
def test_every_config_option_is_a_flag_and_nothing_else_is(command: str) -> None:
    want = {flat for s, flat, _, opt in C.options() if opt.cli}
    assert set(_config_actions(command)) == want  # 24 options, none forgotten, none invented
    assert len(want) == 24


def test_flags_keep_their_names_and_choices() -> None:
    actions = _config_actions("run")
    flags = {dest: a.option_strings[0] for dest, a in actions.items()}
    assert flags["q"] == "--core-fraction" and flags["stop_at_eos"] == "--full-length"
    assert flags["ablation_steps"] == "--ablation-steps" and flags["max_new_tokens"] == "--max-new-tokens"
    assert tuple(actions["redundancy"].choices) == ("MMI", "CCS")
    assert tuple(actions["chat_template"].choices) == ("auto", "yes", "no")
    assert tuple(actions["control"].choices) == get_args(C.Control)
    assert tuple(actions["robustness"].choices) == (*C.ROBUSTNESS_NAMES, "none")
    assert flags["units"] == "--units" and flags["layers"] == "--unit-layers"
    assert tuple(actions["units"].choices) == ("heads", "attn", "mlp", "mlp_neurons", "experts")


def test_parsed_defaults_are_the_config_defaults() -> None:
    args = build_parser().parse_args(["run"])
    assert _run_config(args, quick=False, ablation=False) == C.RunConfig()
    args = build_parser().parse_args(["run", "--ablate"])
    assert _run_config(args, quick=False, ablation=True) == C.RunConfig(ablation=C.AblationConfig())


def test_quick_changes_exactly_the_quick_options() -> None:
    args = build_parser().parse_args(["demo", "--quick"])
    quick = _run_config(args, quick=True, ablation=True)
    full = C.RunConfig(ablation=C.AblationConfig())
    changed = {k for k, v in quick.flat().items() if full.flat()[k] != v}
    assert changed == set(C.QUICK)
    assert quick.record.max_new_tokens == 40 and quick.ablation is not None and quick.ablation.prompts == 4
    # an option the user sets wins over --quick
    args = build_parser().parse_args(["demo", "--quick", "--max-new-tokens", "64"])
    assert _run_config(args, quick=True, ablation=True).record.max_new_tokens == 64


def test_flags_reach_their_fields() -> None:
    args = build_parser().parse_args([
        "run", "--full-length", "--chat-template", "no", "--tau", "3", "--redundancy", "CCS", "--core-fraction", "0.1",
        "--robustness", "none", "--control", "perturb", "--exclude-unstable", "--ablate", "--ablation-mode", "mean"])
    cfg = _run_config(args, quick=False, ablation=True)
    assert cfg.record.stop_at_eos is False and cfg.record.chat() is False
    assert cfg.decompose == C.DecomposeConfig(tau=3, redundancy="CCS")
    assert cfg.analysis.q == 0.1 and cfg.analysis.robustness == () and cfg.analysis.control == "perturb"
    assert cfg.analysis.exclude_unstable is True and cfg.ablation is not None and cfg.ablation.mode == "mean"


def test_configs_check_values_with_the_command_lines_words() -> None:
    with pytest.raises(ValueError, match=r"redundancy='IMI': 'IMI' is not allowed; it must be one of \['MMI', 'CCS'\]"):
        C.DecomposeConfig(redundancy="IMI")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"q must be in \(0.0, 0.5\], got 0.75"):
        C.AnalysisConfig(q=0.75)
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 8, got 4"):
        C.RecordConfig(max_new_tokens=4)
    with pytest.raises(ValueError, match="takes a sequence"):
        C.AnalysisConfig(robustness="pooled")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['taus'\]; the options are: max_new_tokens"):
        C.RunConfig().replace(taus=2)


def test_saved_settings_are_asdict_and_load_back() -> None:
    cfg = C.RunConfig.from_options(tau=2, robustness=["pooled"], ablation_seeds=5)
    data = json.loads(json.dumps(cfg.asdict()))  # what a run's manifest holds
    assert data["decompose"] == dataclasses.asdict(cfg.decompose)
    assert data["analysis"]["robustness"] == ["pooled"] and data["ablation"]["seeds"] == 5
    assert C.RunConfig.from_dict(data) == cfg
    assert hash(C.RunConfig.from_dict(data)) == hash(cfg)  # lists come back as tuples
    with pytest.raises(ValueError, match="unknown config section 'recording'"):
        C.RunConfig.from_dict({"recording": {}})


def test_analyse_keywords_of_the_older_form_map_onto_the_config() -> None:
    cfg = resolve_config(None, {"chat_template": False, "control": None, "robustness": None,
                                "ablation": {"ablation_prompts": 3, "mode": "mean"}, "q": 0.2})
    assert cfg.record.chat_template == "no" and cfg.analysis.control == "none" and cfg.analysis.robustness == ()
    assert cfg.ablation == C.AblationConfig(prompts=3, mode="mean") and cfg.analysis.q == 0.2
    assert resolve_config(cfg, {"ablation": None}).ablation is None
    assert resolve_config(None, {"ablation": True}).ablation == C.AblationConfig()
    base = C.RunConfig.from_options(tau=4)
    assert resolve_config(base, {}) is base
