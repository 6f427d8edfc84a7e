"""The command line: help, clear errors (exit 2), a full run on a tiny model, files that load back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synergy_lens.cli import build_parser, main, round_robin
from synergy_lens.view.results import RunResults

FAST = ["--model", "tiny", "--n-prompts", "4", "--max-new-tokens", "12", "--n-boot", "20", "--no-progress"]


def invoke(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in this process; returns (exit status, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One `synergy-lens run` on the tiny model (shared by the tests below)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["run", *FAST, "--full-length", "--out", str(out)]) == 0
    return out


def test_help_is_instant_and_imports_nothing_heavy():
    code = ("import sys, contextlib, io\n"
            "from synergy_lens.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as f:\n"
            "    try: main(['--help'])\n"
            "    except SystemExit as e: assert e.code == 0\n"
            "print('torch' in sys.modules, 'plotly' in sys.modules, 'demo' in f.getvalue())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["False", "False", "True"], res.stderr
    res = subprocess.run([sys.executable, "-m", "synergy_lens", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("synergy-lens ")


@pytest.mark.parametrize("command", ["demo", "run", "report", "ablate"])
def test_every_option_is_explained(command, capsys):
    code, out, _ = invoke([command, "--help"], capsys)
    assert code == 0
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings} has no help"
        assert action.option_strings[-1] in out


def test_tiny_model_is_documented(capsys):
    _, out, _ = invoke(["run", "--help"], capsys)
    assert "'tiny'" in out and "tests and teaching" in " ".join(out.split())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--max-new-tokens", "3"], "--max-new-tokens: must be at least 8"),
        (["run", "--max-new-tokens", "many"], "expected an integer"),
        (["run", "--core-fraction", "0.9"], "--core-fraction: must be in (0.0, 0.5]"),
        (["run", "--density", "0"], "--density: must be in"),
        (["run", "--tau", "0"], "--tau: must be at least 1"),
        (["run", "--score", "magic"], "invalid choice: 'magic'"),
        (["run", "--redundancy", "XYZ"], "invalid choice"),
        (["run", "--model", "tiny", "--prompts", "/no/such/prompts.txt"], "no such file"),
        (["demo", "--model", "tiny", "--ablation-mode", "vaporise"], "--ablation-mode vaporise: unknown"),
        (["report"], "the following arguments are required: --from"),
        (["report", "--from", "/no/such/folder"], "--from /no/such/folder: no such folder"),
        (["ablate", "--from", "/no/such/folder"], "no such folder"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    code, _, err = invoke(argv, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("prompts.csv", "a,b\n", ".txt file"),
        ("empty.txt", "\n\n", "contains no prompts"),
        ("broken.jsonl", '{"prompt": "ok"}\n{not json\n', "line 2: invalid JSON"),
    ],
)
def test_bad_prompt_files(name, text, message, tmp_path, capsys):
    path = tmp_path / name
    path.write_text(text)
    code, _, err = invoke(["run", "--model", "tiny", "--prompts", str(path)], capsys)
    assert code == 2 and message in err


def test_bad_paths(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    code, _, err = invoke(["run", *FAST, "--out", str(afile)], capsys)
    assert code == 2 and "not a folder" in err
    code, _, err = invoke(["report", "--from", str(tmp_path)], capsys)
    assert code == 2 and "not a synergy-lens results folder" in err


def test_run_saves_files_that_load_back(tiny_run):
    expected = {"manifest.json", "activity.pt", "phiid.pt", "scores.pt", "profile_rank_gradient.pt",
                "profile_synergy_fraction.pt", "core.pt", "topology.csv", "layer_summary.csv", "attention.pt",
                "tokens.json", "report.html"}
    assert expected <= {p.name for p in tiny_run.iterdir()}
    run = RunResults.load(tiny_run)
    assert run["activity"].n_prompts == 4 and run["activity"].n_steps == 12
    assert run["activity"].settings["stop_at_eos"] is False  # --full-length reached the recorder
    assert run["activity"].lengths.tolist() == [12] * 4
    assert run["phiid"].n_layers == 3 and run["phiid"].n_heads == 4
    assert run["scores"].score == "rank_gradient"
    assert len(run["core"]) == 3  # ceil(0.25 * 12)
    assert run.settings["record"]["max_new_tokens"] == 12 and run.settings["model"] == "tiny"
    assert len(run["tokens"]) == 4
    assert [p.category for p in round_robin(__import__("synergy_lens").default_prompts(), 4)] == \
        run["activity"].categories


def test_run_prints_summary_and_report_path(tmp_path, capsys):
    code, out, err = invoke(["run", *FAST, "--n-prompts", "3", "--out", str(tmp_path / "r"), "--no-report",
                             "--score", "synergy_fraction", "--core-fraction", "0.5", "--quiet"], capsys)
    assert code == 0
    assert "Per-layer summary (score: synergy_fraction" in out
    assert "Synergistic core (6 heads)" in out and "Report:" not in out
    assert not (tmp_path / "r" / "report.html").exists()
    assert err == ""  # --no-progress --quiet: nothing on stderr


def test_report_command(tiny_run, tmp_path, capsys):
    target = tmp_path / "nested" / "out.html"
    code, out, _ = invoke(["report", "--from", str(tiny_run), "--out", str(target), "--title", "<i>mine</i>"],
                          capsys)
    assert code == 0 and str(target.resolve()) in out
    html = target.read_text(encoding="utf-8")
    assert "<title>&lt;i&gt;mine&lt;/i&gt;</title>" in html
    code, _, err = invoke(["report", "--from", str(tiny_run), "--out", str(tmp_path)], capsys)
    assert code == 2 and "is a folder" in err


def test_ablate_command(tiny_run, tmp_path, capsys):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_run, folder)
    code, _, err = invoke(["ablate", "--from", str(folder), "--ablation-prompts", "2", "--ablation-tokens", "6",
                             "--ablation-steps", "3", "--ablation-seeds", "2", "--no-progress"], capsys)
    assert code == 0, err
    run = RunResults.load(folder)
    curve = run["ablation"]
    assert curve.random.shape[0] == 2 and set(curve.curves) == {"synergy-first", "redundancy-first"}
    assert int(curve.steps[-1]) == 12 and float(curve.curves["synergy-first"][0]) == 0.0
    assert "Causal tests" in (folder / "report.html").read_text(encoding="utf-8")
    assert json.loads((folder / "manifest.json").read_text())["settings"]["ablation"]["seeds"] == 2


def test_ablate_needs_a_full_run(tmp_path, capsys):
    RunResults(settings={"model": "tiny"}).add("tokens", [["a"]]).save(tmp_path)
    code, _, err = invoke(["ablate", "--from", str(tmp_path)], capsys)
    assert code == 2 and "no activity.pt" in err


def test_runtime_failure_exits_1_without_traceback(tmp_path, capsys, monkeypatch):
    import synergy_lens.cli as cli

    def fail(*a, **k):
        raise RuntimeError("could not load 'nope' from the hub")

    monkeypatch.setattr(cli, "load_cli_model", fail)
    code, _, err = invoke(["run", "--model", "nope", "--n-prompts", "2", "--out", str(tmp_path)], capsys)
    assert code == 1 and "could not load 'nope'" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        main(["run", "--model", "nope", "--n-prompts", "2", "--out", str(tmp_path), "--debug"])


def test_difficulty_is_wired(capsys):
    code, out, _ = invoke(["difficulty", "--help"], capsys)
    assert code == 0 and "--prompts-per-level" in out and "--levels" in out


def test_round_robin_takes_categories_in_turn():
    from synergy_lens.record import Prompt

    prompts = [Prompt(f"{c}{i}", c) for c in "abc" for i in range(3)]
    assert [p.text for p in round_robin(prompts, 5)] == ["a0", "b0", "c0", "a1", "b1"]
    assert len(round_robin(prompts, 100)) == 9


@pytest.mark.slow
def test_demo_quick_on_smollm2(tmp_path, capsys):
    """The README's main job, end to end on the real default model (small settings)."""
    out = tmp_path / "demo"
    code, stdout, err = invoke(["demo", "--quick", "--n-prompts", "6", "--max-new-tokens", "24", "--no-progress",
                                "--ablation-prompts", "2", "--ablation-tokens", "8", "--ablation-steps", "3",
                                "--ablation-seeds", "2", "--out", str(out)], capsys)
    assert code == 0, err
    run = RunResults.load(out)
    assert run["phiid"].n_layers == 30 and run["phiid"].n_heads == 9
    assert run["activity"].n_prompts == 6 and "ablation" in run
    assert "Per-layer summary" in stdout and str((out / "report.html").resolve()) in stdout
    assert (out / "report.html").stat().st_size > 5_000_000


def test_run_with_a_randomised_control(tmp_path, capsys):
    out = tmp_path / "ctl"
    code, _, err = invoke(["run", *FAST, "--n-prompts", "3", "--control", "perturb", "--out", str(out)], capsys)
    assert code == 0, err
    run = RunResults.load(out)
    comparison = run["control"]
    assert comparison.scores == ["rank_gradient", "synergy_fraction"]
    assert comparison.control.startswith("perturb_weights(scale=10.0")
    trained = comparison.profiles["trained"]["rank_gradient"]
    assert torch.equal(trained.values, run["profile_rank_gradient"].values)  # the same run's result
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Trained vs control" in html and '"name":"control"' in html
