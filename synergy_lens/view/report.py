"""The synergy-lens HTML report: every figure and table of a run, in one offline file.

:func:`build_report` turns a :class:`~synergy_lens.view.results.RunResults` (what
``synergy-lens run``/``demo`` save, or what a notebook assembles) into a
:class:`~synergy_lens.view.page.Report`; :func:`write_report` saves it. Sections appear
only for the results the run has:

1. Summary: model, prompts, the inverted-U index with its CI, the core heads, the
   syn/red Spearman warning, and the per-layer table (:func:`layer_summary`).
2. Settings used.
3. Layer profile(s), with a control overlay when the run has one.
4. Heads: layer x head grid (core outlined) and the mean-sts vs mean-rtr scatter.
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

from synergy_lens.view import matrices as M
from synergy_lens.view.page import Report
from synergy_lens.view.results import RunResults

__all__ = ["build_report", "core_table", "layer_summary", "write_report"]


def layer_summary(scores: Any, profile: Any = None, core: Any = None) -> Any:
    """One row per layer: the numbers behind the layer profile, as a DataFrame.

    Columns: ``layer``, ``depth``, ``mean_sts``, ``mean_rtr`` (means over the layer's heads,
    nats), ``score`` (mean of ``scores.values``), ``profile`` / ``low`` / ``high`` (the
    plotted profile and its band, when given), ``abstract`` / ``memory`` (core heads in the
    layer, when given) and ``top_head`` (the layer's highest-scoring head).
    """
    import pandas as pd

    values = scores.values.detach().cpu().numpy()
    n_layers = values.shape[0]
    depth = np.linspace(0.0, 1.0, n_layers) if n_layers > 1 else np.zeros(1)
    with np.errstate(all="ignore"):
        frame: dict[str, Any] = {
            "layer": np.arange(n_layers),
            "depth": depth,
            "mean_sts": np.nanmean(scores.mean_sts.numpy(), axis=1),
            "mean_rtr": np.nanmean(scores.mean_rtr.numpy(), axis=1),
            "score": np.nanmean(values, axis=1),
        }
    if profile is not None:
        frame["profile"] = profile.values.numpy()
        if profile.low is not None and profile.high is not None:
            frame["low"], frame["high"] = profile.low.numpy(), profile.high.numpy()
    if core is not None:
        frame["abstract"] = core.abstract.sum(1).numpy()
        frame["memory"] = core.memory.sum(1).numpy()
    top = []
    for layer in range(n_layers):
        row = values[layer]
        top.append(f"L{layer}H{int(np.nanargmax(row))}" if np.isfinite(row).any() else "")
    frame["top_head"] = top
    return pd.DataFrame(frame).set_index("layer")


def core_table(core: Any) -> Any:
    """One row per layer: its abstract (core) heads and its memory heads, strongest first,
    each as ``"L5H3 (41)"`` with the head's score; layers with neither are left out."""
    import pandas as pd

    rows = []
    values = core.values
    for layer in range(core.n_layers):
        cells = {}
        for group in ("abstract", "memory"):
            pairs = [(lay, h) for lay, h in core.pairs(group) if lay == layer]
            cells[group] = ", ".join(f"L{lay}H{h} ({float(values[lay, h]):.3g})" for lay, h in pairs)
        if cells["abstract"] or cells["memory"]:
            rows.append({"layer": layer, "abstract heads": cells["abstract"], "memory heads": cells["memory"]})
    return pd.DataFrame(rows, columns=["layer", "abstract heads", "memory heads"]).set_index("layer")


def _fmt_ci(ci: Any) -> str:
    return "" if ci is None else f" (95% CI {ci[0]:.2f} to {ci[1]:.2f})"


def _summary(page: Report, run: RunResults) -> None:
    act, scores, core = run.get("activity"), run.get("scores"), run.get("core")
    profiles = run.profiles()
    page.section("Summary")
    lines = []
    if act is not None:
        lines.append(f"Recorded {act.n_prompts} prompts, up to {act.n_steps} generated tokens each, "
                     f"{act.n_layers} layers x {act.n_heads} heads ({act.n_units} units).")
    main = profiles.get(scores.score) if scores is not None else None
    if main is not None and math.isfinite(main.inverted_u):
        shape = "an inverted U (middle layers most synergistic)" if main.inverted_u > 0 else "no inverted U"
        lines.append(f"Layer profile of {main.score}: inverted-U index {main.inverted_u:.2f}"
                     f"{_fmt_ci(main.inverted_u_ci)}: {shape}.")
    if core is not None:
        heads = core.labels_of("abstract")
        shown = ", ".join(heads[:12]) + (f", ... ({len(heads)} heads)" if len(heads) > 12 else "")
        lines.append(f"Synergistic core (top {100 * core.q:.0f}% by {core.score}, strongest first): {shown}.")
    for line in lines:
        page.text(line)
    if scores is not None and math.isfinite(scores.spearman) and scores.spearman > 0.8:
        page.text(f"Mean sts and mean rtr are strongly rank-correlated across heads (Spearman "
                  f"{scores.spearman:.2f}): both grow with a head's overall information flow, so the rank "
                  "gradient may cancel a real layer profile. Compare with the synergy-fraction profile.", note=True)
    if scores is not None:
        page.table(layer_summary(scores, main, core), "Per layer: mean atoms (nats), mean score, profile "
                   "and band, core heads per layer, strongest head.")


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
    if res is not None:
        page.section("Pairwise PhiID")
        page.figure(M.plot_matrices(res), "sts[i, j] and rtr[i, j] in nats for every pair of heads, "
                    "ordered by layer.")
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
        density = float(run.settings.get("density", 0.10))
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
        prompt = int(run.settings.get("view_prompt", 0))
        prompt = prompt if prompt < act.n_prompts else 0
        toks = tokens[prompt] if isinstance(tokens, list) and prompt < len(tokens) else None
        page.circuitsvis(activity_tokens_view(act, label, prompt, tokens=toks),
                         f"Generated text of prompt #{prompt}, each token coloured by the activity of {label} "
                         "(the highest-scoring head) at the step that produced it.")


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
        page.section("Settings").settings(run.settings, "Everything needed to reproduce this run.")
    _profiles(page, run)
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
