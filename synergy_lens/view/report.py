"""The synergy-lens HTML report: every figure and table of a run, in one offline file.

:func:`build_report` turns a :class:`~synergy_lens.view.results.RunResults` (what
``synergy-lens run``/``demo`` save, or what a notebook assembles) into a
:class:`~synergy_lens.view.page.Report`; :func:`write_report` saves it. Sections appear
only for the results the run has:

1. Summary: model, prompts, one sentence per score (profile shape, inverted-U index, CI,
   p against the autocorrelation-preserving surrogate null; ``analysis.headline``), the
   core heads with their bootstrap core frequency and null test, unstable heads, the
   scores' profiles side by side with their agreement, the robustness table, the syn/red
   Spearman warning, and the per-layer table (``analysis.tables.layer_summary``).
2. Settings used.
3. Layer profile(s), with a control overlay when the run has one.
3b. Robustness: small multiples and the table of ``analysis.robustness``.
4. Heads: layer x head grid (core outlined, unstable heads crossed), the mean-sts vs
   mean-rtr scatter, and the rank uncertainty of the top heads.
5. Pairwise PhiID matrices (sts, rtr).
6. The synergistic core (abstract) and memory heads.
7. Topology: the synergy/redundancy graph table and the two graphs.
8. Causal tests: ablation curves, layer skipping, integrated gradients, accuracy.
9. Task difficulty: order parameter, functional embeddings, residual flow.
10. CircuitsVis: attention of the top heads; text coloured by the top head's activity.
11. Prompts and completions (escaped).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from synergy_lens.analysis.tables import core_table, layer_summary
from synergy_lens.view import matrices as M
from synergy_lens.view.page import Report
from synergy_lens.view.results import RunResults

__all__ = ["build_report", "core_table", "headline_lines", "layer_summary", "write_report"]


def _fmt_ci(ci: Any) -> str:
    return "" if ci is None else f" (95% CI {ci[0]:.2f} to {ci[1]:.2f})"


def headline_lines(run: RunResults) -> list[str]:
    """The Summary's statements about the layer profile, one per score.

    With a tested headline (``run["headline"]``, ``analysis.headline``) each line says the
    profile's shape, index, CI and whether it exceeds the autocorrelation-preserving null;
    without one, the profile is described as untested (never as a finding).
    """
    hl = run.get("headline")
    if hl is not None:
        return [s + "." for s in hl.sentences()]
    lines = []
    for score, prof in run.profiles().items():
        if math.isfinite(prof.inverted_u):
            from synergy_lens.analysis.headline import shape_word

            lines.append(f"{score}: {shape_word(prof.inverted_u, prof.inverted_u_ci)}, index "
                         f"{prof.inverted_u:.2f}{_fmt_ci(prof.inverted_u_ci)}; not tested against a surrogate null "
                         "(descriptive only).")
    return lines


def _summary(page: Report, run: RunResults) -> None:
    act, scores, core = run.get("activity"), run.get("scores"), run.get("core")
    hl, rob, ranks = run.get("headline"), run.get("robustness"), run.get("ranks")
    profiles = run.profiles()
    page.section("Summary")
    lines = []
    if act is not None:
        lines.append(f"Recorded {act.n_prompts} prompts, up to {act.n_steps} generated tokens each, "
                     f"{act.n_layers} layers x {act.n_heads} heads ({act.n_units} units).")
    for line in lines:
        page.text(line)
    profile_lines = headline_lines(run)
    if profile_lines:
        what = (f"Layer profiles (inverted-U index of the min-max scaled profile, {round(100 * (1 - hl.alpha))}% "
                f"bootstrap CI over prompts, one-sided p against {hl.n_surrogates} circular-shift surrogates that keep "
                "each head's own dynamics):") if hl is not None else "Layer profiles:"
        page.raw_html(f"<p>{_html_escape(what)}</p><ul>"
                      + "".join(f"<li>{_html_escape(x)}</li>" for x in profile_lines) + "</ul>")
    if hl is not None:
        passed = [s for k, s in enumerate(hl.scores) if hl.significant(s) and float(hl.index[k]) > 0]
        verdict = ("No score shows an inverted U above what the heads' own autocorrelation produces: the "
                   "profile, whatever its shape, is not evidence of integration here." if not passed else
                   f"Inverted U above the null under: {', '.join(passed)} (the smallest p possible with "
                   f"{hl.n_surrogates} surrogates is {1 / (1 + hl.n_surrogates):.2g}).")
        page.text(verdict, note=not passed)
    if rob is not None:
        page.text(rob.verdict(), note=any(len(rob.holds(v)) < len(rob.scores) for v in rob.variants
                                          if not rob.settings[v].get("skipped")))
    if core is not None:
        heads = core.labels_of("abstract")
        shown = ", ".join(heads[:12]) + (f", ... ({len(heads)} heads)" if len(heads) > 12 else "")
        text = f"Synergistic core (top {100 * core.q:.0f}% by {core.score}, strongest first): {shown}."
        if ranks is not None:
            freq = ranks.core_frequency[ranks.in_core]
            text += (f" {int((freq >= 0.9).sum())} of {len(freq)} are in the core in at least 90% of prompt "
                     f"resamples (median {float(freq.median()):.0%}).")
        page.text(text)
    if hl is not None:
        page.text(hl.core_sentence())
    if scores is not None and scores.unstable is not None and bool(scores.unstable.any()):
        stab = run.get("stability")
        why = stab.reasons() if stab is not None else {}
        names = ", ".join(f"{lab} ({why[lab]})" if lab in why else lab for lab in scores.unstable_labels())
        action = "left out of every score" if scores.excluded else "marked (x) in the figures, kept in the scores"
        page.text(f"Unstable heads, whose series are too coarse for a stable estimate: {names}; {action}.", note=True)
    if scores is not None and math.isfinite(scores.spearman) and scores.spearman > 0.8:
        page.text(f"Mean sts and mean rtr are strongly rank-correlated across heads (Spearman "
                  f"{scores.spearman:.2f}): both grow with a head's overall information flow, so the rank "
                  "gradient may cancel a real layer profile. Compare the scores below.", note=True)
    if hl is not None:
        from synergy_lens.view.headline import plot_score_profiles

        page.figure(plot_score_profiles(hl), "The three scores side by side: where does each say the synergy is, "
                    "and does the surrogate null (the heads' own dynamics) already give the same shape?")
        page.table(hl.to_dataframe(), "Per score: observed index and CI, the aligned index tested, the null's mean "
                   "and 95th percentile, the p-value.", index=False)
        page.table(hl.agreement_table(), "Agreement of the scores' layer profiles (Pearson r over layers).")
    if scores is not None and scores.agreement:
        page.table(scores.agreement_table(), "Agreement of the scores over heads (Spearman rank correlation).")
    if rob is not None:
        page.table(_robustness_table(rob), "Robustness (section below): the inverted-U index under each analysis "
                   "choice, with its CI and p against that choice's own surrogate null.", index=False)
    main = profiles.get(scores.score) if scores is not None else None
    if scores is not None:
        page.table(layer_summary(scores, main, core), "Per layer: mean atoms (nats), mean score, profile "
                   "and band, core heads per layer, strongest head.")


def _robustness_table(rob: Any) -> Any:
    frame = rob.to_dataframe()
    keep = ["choice", "score", "inverted_u", "ci_low", "ci_high", "null_mean", "p", "above_null", "n_prompts", "note"]
    return frame[keep]


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=False)


def _robustness(page: Report, run: RunResults) -> None:
    rob = run.get("robustness")
    if rob is None:
        return
    from synergy_lens.view.headline import plot_robustness

    page.section("Robustness", "The layer profile recomputed under the choices a reviewer would ask about, one change "
                 "at a time from the papers' protocol. First differences remove drift and most autocorrelation; "
                 "MMI PhiID alone cannot tell integration from autocorrelation (Varley 2024, arXiv 2407.16601).")
    page.figure(plot_robustness(rob))
    page.table(rob.to_dataframe(), "Every choice x score: index, CI, the null's mean index, p.", index=False)


def _profiles(page: Report, run: RunResults) -> None:
    profiles = run.profiles()
    comparison = run.get("control")
    if not profiles and comparison is None:
        return
    page.section("Layer profile", "Mean score of each layer's heads against normalised depth, with the "
                 "bootstrap band over prompts. An inverted U (high in the middle) marks the synergistic core "
                 "of paper (B); a randomised network should be flat.")
    for score, profile in profiles.items():
        control = None
        if comparison is not None and score in comparison.scores:
            control = comparison.profiles["control"][score]
        page.figure(M.plot_layer_profile(profile, control, control_name="control"),
                    f"Score: {score}. Index = mean of the middle third of depth minus the outer thirds.")
    if comparison is not None:
        page.table(comparison.index_table(), f"Trained vs control ({comparison.control}): inverted-U index on "
                   "the scaled and raw profiles, with bootstrap CIs.", index=False)


def _heads(page: Report, run: RunResults) -> None:
    scores, core, res = run.get("scores"), run.get("core"), run.get("phiid")
    if scores is not None:
        page.section("Heads", "Each cell is one attention head; colour is its score. Outlined: the core "
                     "(abstract, red squares) and memory (blue circles) heads.")
        page.figure(M.plot_head_grid(scores, core=core))
        if scores.score != "synergy_fraction":
            page.figure(M.plot_head_grid(scores, "synergy_fraction"),
                        "The per-pair normalised score, robust to the syn/red rank correlation.")
        page.figure(M.plot_score_scatter(scores), "Points on a rising line mean synergy and redundancy "
                    "track the same thing (a head's overall information flow).")
        ranks = run.get("ranks")
        if ranks is not None:
            from synergy_lens.view.headline import plot_rank_uncertainty

            page.figure(plot_rank_uncertainty(ranks, unstable=scores.unstable),
                        "How far each head's rank moves when the prompts are resampled, and how often it is in "
                        "the core. A core head near 50% is a coin flip.")
            core_rows = ranks.to_dataframe()
            core_rows = core_rows[core_rows["in_core"]].copy()
            hl = run.get("headline")
            caption = "Core heads: rank, its bootstrap interval and the fraction of resamples in the core."
            if hl is not None and hl.core_score == ranks.score:
                q_of = dict(zip(hl.core, hl.core_q.tolist()))
                core_rows["q_mean_sts_vs_null"] = [q_of.get(lab, float("nan")) for lab in core_rows["label"]]
                caption += (f" q: Benjamini-Hochberg adjusted p of the head's mean sts against the surrogate null "
                            f"(significant at q <= {hl.fdr:g}).")
            page.table(core_rows, caption, index=False)
    if res is not None and hasattr(res, "atom"):
        page.section("Pairwise PhiID")
        page.figure(M.plot_matrices(res), "sts[i, j] and rtr[i, j] in nats for every pair of heads, "
                    "ordered by layer.")
    elif res is not None:  # phiid.stream: no matrix, the strongest pairs
        page.section("Pairwise PhiID (streamed)", f"PhiID of {res.n_units} units was streamed over blocks of "
                     "pairs: it keeps per-unit means over partners and the strongest pairs, not whole matrices.")
        for atom in ("sts", "rtr"):
            top = res.to_dataframe(f"top_{atom}")
            if len(top):
                page.table(top.head(25)[["rank", "source", "target", "sts", "rtr"]],
                           f"The 25 pairs with the largest {atom} (nats).", index=False)
    if core is not None:
        page.section("Synergistic core", f"Abstract heads: the top {100 * core.q:.0f}% by {core.score}; "
                     "memory heads: the bottom ones. Export with core.to_index_df() or core.fwd_hooks(...).")
        page.table(core_table(core), "Per layer, strongest first (score in brackets).", text=True)


def _topology(page: Report, run: RunResults) -> None:
    res, table = run.get("phiid"), run.get("topology")
    if table is None:
        return
    from synergy_lens.view.graphs import plot_graphs

    page.section("Topology", "The sts and rtr matrices as graphs of heads (strongest pairs kept). Papers "
                 "(A) and (B): the synergy graph is more integrated (global efficiency), the redundancy "
                 "graph more segregated (modularity).")
    page.table(table, "'higher' says which graph has the larger value; 'papers_expect' what the papers report.")
    if res is not None:
        density = float(_setting(run, "analysis", "density", 0.10))
        page.figure(plot_graphs(res, density=density, metrics=table))


def _causal(page: Report, run: RunResults) -> None:
    from synergy_lens.view import causal as C

    figures = C.causal_figures(run)
    if not figures:
        return
    page.section("Causal tests", "Interventions on the heads and layers the analysis singled out.")
    for fig, caption in figures:
        page.figure(fig, caption)


def _dynamics(page: Report, run: RunResults) -> None:
    from synergy_lens.view import dynamics as D

    figures = D.dynamics_figures(run)
    if not figures:
        return
    page.section("Task difficulty and dynamics")
    for fig, caption in figures:
        page.figure(fig, caption)


def _circuits(page: Report, run: RunResults) -> None:
    from synergy_lens.view.circuits import activity_tokens_view, attention_view

    attention, act, scores = run.get("attention"), run.get("activity"), run.get("scores")
    tokens = run.get("tokens")
    if attention is None and (act is None or scores is None):
        return
    page.section("Inside the heads (CircuitsVis)")
    if attention is not None:
        page.circuitsvis(attention_view(attention), f"Attention patterns of the top heads ({', '.join(attention.labels)}) "
                         "on one prompt and its generation; click a thumbnail to enlarge, hover a token.")
    if act is not None and scores is not None:
        flat = scores.values.flatten()
        unit = int(np.nanargmax(flat.numpy())) if np.isfinite(flat.numpy()).any() else 0
        label = scores.labels[unit]
        prompt = int(_setting(run, "view", "view_prompt", 0))
        prompt = prompt if prompt < act.n_prompts else 0
        toks = tokens[prompt] if isinstance(tokens, list) and prompt < len(tokens) else None
        page.circuitsvis(activity_tokens_view(act, label, prompt, tokens=toks),
                         f"Generated text of prompt #{prompt}, each token coloured by the activity of {label} "
                         f"(the highest-scoring {_unit_word(act)}) at the step that produced it.")


def _unit_word(activity: Any) -> str:
    """What one unit of the recording is, in words."""
    return {"heads": "head", "attn": "attention sub-layer", "mlp": "MLP sub-layer", "mlp_neurons": "MLP neuron",
            "experts": "expert", "custom": "unit", "sae": "SAE latent"}.get(getattr(activity, "unit_kind", "heads"), "unit")


def build_report(run: RunResults, *, title: str | None = None) -> Report:
    """The full report of a run (sections for whatever results it holds; module docstring)."""
    act = run.get("activity")
    model = run.settings.get("model") or (act.model_name if act is not None else "model")
    sub = []
    if act is not None:
        sub.append(f"{act.n_prompts} prompts x {act.n_steps} tokens")
    res = run.get("phiid")
    if res is not None:
        sub.append(f"PhiID {res.redundancy}, tau = {res.tau}, {res.aggregate}")
    page = Report(title or f"synergy-lens report: {model}", subtitle=", ".join(sub) or None)
    _summary(page, run)
    if run.settings:
        flat = {f"{k}.{name}" if isinstance(v, dict) else k: (value if isinstance(v, dict) else v)
                for k, v in run.settings.items()
                for name, value in (v.items() if isinstance(v, dict) else [(None, v)])}
        page.section("Settings").settings(flat, "Everything needed to reproduce this run.")
    _profiles(page, run)
    _robustness(page, run)
    _heads(page, run)
    _topology(page, run)
    _causal(page, run)
    _dynamics(page, run)
    _circuits(page, run)
    if act is not None:
        page.section("Prompts and completions")
        page.texts(act.prompts, act.completions, categories=act.categories)
    return page


def write_report(run: RunResults | str | Path, path: str | Path | None = None, *, title: str | None = None) -> Path:
    """Build and save the report of a run (a ``RunResults`` or a results folder).

    ``path`` defaults to ``report.html`` inside the run's folder. Returns the path written.
    """
    if not isinstance(run, RunResults):
        run = RunResults.load(run)
    if path is None:
        if run.folder is None:
            raise ValueError("this run has no folder: pass path= for the report")
        path = run.folder / "report.html"
    return build_report(run, title=title).save(path)


def _setting(run: RunResults, section: str, name: str, default: Any) -> Any:
    """A run's setting: ``settings[section][name]`` (the configs' sections), or the flat
    ``settings[name]`` of folders written before configs (version 0.1 of the manifest)."""
    part = run.settings.get(section)
    if isinstance(part, dict) and name in part:
        return part[name]
    return run.settings.get(name, default)
