"""The CLI's headline: every score's profile printed with its null p-value, the robustness
table printed and saved, and the options that size them."""

from __future__ import annotations

from synergy_lens.view.results import RunResults

from .test_cli import FAST, invoke


def test_run_prints_tested_profiles_and_robustness(tmp_path, capsys):
    out_dir = tmp_path / "r"
    code, out, _ = invoke(["run", *FAST, "--out", str(out_dir), "--no-report", "--quiet", "--n-surrogates", "4",
                           "--robustness", "detrended"], capsys)
    assert code == 0
    run = RunResults.load(out_dir)
    hl, rob = run["headline"], run["robustness"]
    assert hl.n_surrogates == 4 and hl.scores == ["rank_gradient", "syn_minus_red", "synergy_fraction"]
    for sentence in hl.sentences():
        assert sentence in out and "autocorrelation null" in sentence and "p = " in sentence
    assert "middle layers most synergistic" not in out
    assert rob.variants == ["baseline", "detrended"] and "Robustness (inverted-U index" in out
    assert run.settings["analysis"]["n_surrogates"] == 4 and run.settings["analysis"]["robustness"] == ["detrended"]
    assert {"stability", "ranks", "surrogates", "profile_syn_minus_red"} <= set(run.items)


def test_no_test_when_asked(tmp_path, capsys):
    code, out, _ = invoke(["run", *FAST, "--out", str(tmp_path / "r"), "--no-report", "--quiet",
                           "--n-surrogates", "0", "--robustness", "none"], capsys)
    assert code == 0
    assert "not tested against a surrogate null" in out and "Robustness (" not in out
