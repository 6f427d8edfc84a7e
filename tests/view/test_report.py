"""The HTML report: self-contained (scripts inlined once, no URL), every text escaped; run folders load back."""

from __future__ import annotations

import json
import re

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from plotly.offline import get_plotlyjs

from synergy_lens.view.circuits import attention_view, circuitsvis_js
from synergy_lens.view.page import Report, escape
from synergy_lens.view.report import build_report, layer_summary, write_report
from synergy_lens.view.results import RunResults

from .conftest import SCRIPT

# a src/href that leaves the file: http(s)://, protocol-relative //, or any <script src=...>
EXTERNAL = re.compile(r"""<script[^>]*\bsrc\s*=|<link[^>]*\bhref\s*=|\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def strip_bundles(page: str) -> str:
    """The page without the two vendored JS bundles (their string literals mention URLs)."""
    return page.replace(get_plotlyjs(), "").replace(circuitsvis_js(), "")


def test_escape():
    assert escape(SCRIPT) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escape('a"b\'c&') == "a&quot;b&#x27;c&amp;"
    assert escape("\x00x\x1b") == "\\x00x\\x1b"


def test_report_texts_tables_settings_escaped():
    frame = pd.DataFrame({"<th>": [SCRIPT], "v": [1.5]}, index=["<i>row</i>"])
    page = (Report(SCRIPT, subtitle=SCRIPT).section(SCRIPT, SCRIPT).text(SCRIPT).table(frame, SCRIPT)
            .settings({SCRIPT: SCRIPT, "nested": {"k": SCRIPT}}).texts([SCRIPT], [SCRIPT], categories=[SCRIPT]))
    html = page.to_html()
    assert "<script>alert(1)</script>" not in html
    assert "alert(1)</script" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8
    assert "&lt;th&gt;" in html and "&lt;i&gt;row&lt;/i&gt;" in html
    assert "<script" not in html  # no figure, no view: no script at all


def test_plotly_inlined_once_and_figures_without_js():
    page = Report("figs").section("a")
    for k in range(3):
        page.figure(go.Figure(go.Scatter(x=[1, 2], y=[k, k], text=[SCRIPT, "x"])), caption=SCRIPT)
    html = page.to_html()
    assert html.count(get_plotlyjs()) == 1
    assert html.count('class="plotly-graph-div"') == 3
    rest = strip_bundles(html)
    assert not EXTERNAL.search(rest)
    assert "<script>alert(1)" not in rest  # figure text is JSON-escaped by plotly (\u003c)
    assert "plotly.com" not in rest  # no logo link (displaylogo=False)


def test_circuitsvis_bundle_once(attention):
    page = Report("cv").circuitsvis(attention_view(attention)).circuitsvis(attention_view(attention))
    html = page.to_html()
    assert html.count(circuitsvis_js()) == 1
    assert html.count("CircuitsVis.render(") == 2
    assert not EXTERNAL.search(strip_bundles(html))


def test_circuitsvis_rejects_cdn_views():
    import circuitsvis

    with pytest.raises(TypeError, match="OfflineHTML"):
        Report("x").circuitsvis(circuitsvis.tokens.colored_tokens(["a"], [1.0]))


def test_build_report_full_run(run, tmp_path):
    page = build_report(run)
    html = page.to_html()
    for title in ("Summary", "Settings", "Layer profile", "Robustness", "Heads", "Pairwise PhiID", "Synergistic core",
                  "Topology", "Causal tests", "Inside the heads (CircuitsVis)", "Prompts and completions"):
        assert f">{title}</h2>" in html, title
    summary = html[html.index(">Summary</h2>"):html.index(">Settings</h2>")]
    for sentence in run["headline"].sentences():  # one tested sentence per score, in the Summary
        assert sentence.replace("&", "&amp;") in summary
    assert "middle layers most synergistic" not in summary
    assert "Robustness (section below)" in summary and "Agreement of the scores" in summary
    assert "Rank uncertainty of the top" in html
    assert html.count(get_plotlyjs()) == 1 and html.count(circuitsvis_js()) == 1
    rest = strip_bundles(html)
    assert not EXTERNAL.search(rest)
    assert "<script>alert(" not in rest and "</pre><script>" not in rest
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rest  # the prompt, shown as text
    assert "\\x00control\\x1bchars" in rest
    path = write_report(run, tmp_path / "sub" / "r.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_build_report_partial_run(activity, scores):
    html = build_report(RunResults().add("activity", activity).add("scores", scores)).to_html()
    assert ">Heads</h2>" in html and ">Topology</h2>" not in html and ">Causal tests</h2>" not in html


def test_layer_summary(scores, profile, core):
    table = layer_summary(scores, profile, core)
    assert list(table.index) == [0, 1, 2]
    torch.testing.assert_close(torch.tensor(table["score"].to_numpy()), scores.values.nanmean(1))
    torch.testing.assert_close(torch.tensor(table["low"].to_numpy()), profile.low)
    assert table["abstract"].sum() == len(core)
    assert table["top_head"][0] == f"L0H{int(scores.values[0].argmax())}"


def test_run_folder_round_trip(run, tmp_path):
    folder = run.save(tmp_path / "run")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["items"]["phiid"] == {"file": "phiid.pt", "type": "synergy_lens.phiid.result:PhiIDResult"}
    back = RunResults.load(folder)
    assert sorted(back.items) == sorted(run.items) and back.settings == run.settings
    assert torch.equal(back["activity"].values.nan_to_num(-1), run["activity"].values.nan_to_num(-1))
    assert torch.equal(back["phiid"].atoms.nan_to_num(-1), run["phiid"].atoms.nan_to_num(-1))
    assert torch.equal(back["scores"].values, run["scores"].values)
    assert torch.equal(back["core"].abstract, run["core"].abstract)
    assert torch.equal(back["ablation"].random, run["ablation"].random)
    assert back["tokens"] == run["tokens"]
    pd.testing.assert_frame_equal(back["topology"], run["topology"], check_names=False)
    assert back.profiles().keys() == {"rank_gradient", "synergy_fraction"}
    assert build_report(back).to_html().count("plotly-graph-div") == build_report(run).to_html().count("plotly-graph-div")
    only = RunResults.load(folder, only=["scores"])
    assert list(only.items) == ["scores"]


def test_run_folder_errors(tmp_path, scores):
    with pytest.raises(FileNotFoundError, match="no results folder"):
        RunResults.load(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        RunResults.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        RunResults.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"format": "synergy_lens.Run/1", "items": {"x": {"file": "x.pt", "type": "os:system"}}}))
    (tmp_path / "x.pt").write_text("")
    with pytest.raises(ValueError, match="not a synergy_lens class"):
        RunResults.load(tmp_path)
    with pytest.raises(ValueError, match="letters"):
        RunResults().add("../evil", scores)
    with pytest.raises(TypeError, match="save"):
        RunResults().add("thing", object()).save(tmp_path / "out")
    with pytest.raises(KeyError, match="has no 'phiid'"):
        RunResults()["phiid"]


def test_core_table(core):
    from synergy_lens.view.report import core_table

    table = core_table(core)
    joined = " ".join(table["abstract heads"]) + " " + " ".join(table["memory heads"])
    for label in core.labels_of("abstract") + core.labels_of("memory"):
        assert f"{label} (" in joined
    first = core.pairs("abstract")[0]
    assert table.loc[first[0], "abstract heads"].startswith(f"L{first[0]}H{first[1]} (")


def test_untested_profiles_are_described_as_untested(activity, result, scores, profile):
    from synergy_lens.view.report import headline_lines

    run = RunResults().add("activity", activity).add("scores", scores).add("profile_rank_gradient", profile)
    lines = headline_lines(run)
    assert len(lines) == 1 and "not tested against a surrogate null" in lines[0]
    html = build_report(run).to_html()
    assert "not tested against a surrogate null" in html


def test_unstable_heads_named_in_the_summary(activity, result):
    from synergy_lens.analysis import find_core, synergy_scores

    marked = synergy_scores(result, unstable=["L1H2"])
    run = RunResults().add("activity", activity).add("scores", marked).add("core", find_core(marked))
    html = build_report(run).to_html()
    assert "Unstable heads" in html and "L1H2" in html and "marked (x)" in html
