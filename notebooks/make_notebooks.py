"""Write the three synergy-lens notebooks (run from the repository root after editing).

    python notebooks/make_notebooks.py

The .ipynb files are committed without outputs; tests/view/test_notebooks.py executes them
on the default model with small settings (it overrides the cell tagged ``parameters``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip())


def code(text: str, *, parameters: bool = False) -> nbformat.NotebookNode:
    cell = new_code_cell(text.strip())
    if parameters:
        cell.metadata["tags"] = ["parameters"]
    return cell


LOAD = """
import synergy_lens as sl
from synergy_lens import view

model = sl.load_model()          # SmolLM2-135M-Instruct, offline; or your own model (below)
model.cfg.n_layers, model.cfg.n_heads
"""

RECORD = """
from synergy_lens.record import CATEGORIES

prompts = [p for c in CATEGORIES for p in sl.default_prompts(c)[:PROMPTS_PER_CATEGORY]]
activity = sl.record_head_activity(model, prompts, max_new_tokens=MAX_NEW_TOKENS)
result = sl.decompose(activity)
scores = sl.synergy_scores(result)
activity, scores
"""


def quickstart() -> nbformat.NotebookNode:
    cells = [
        md("""
# synergy-lens quickstart: the synergistic core of your model

Drop these cells into a notebook where you already have a TransformerLens model. They
record every attention head's activity while the model generates, decompose every pair of
heads with Integrated Information Decomposition (PhiID), and plot where the **synergistic**
heads (information only the pair carries, jointly) and the **redundant** heads (information
each carries alone) sit.

Colours are the same in every figure: **synergy vermillion, redundancy blue**, controls grey.
Nothing here calls `.show()`: the last expression of a cell is displayed.
"""),
        md("Settings. The protocol of the papers uses all 60 prompts (10 per category) and 100 new "
           "tokens; these defaults take a few minutes on a laptop CPU."),
        code("PROMPTS_PER_CATEGORY = 2   # 6 categories: 12 prompts\nMAX_NEW_TOKENS = 48\nN_BOOT = 200",
             parameters=True),
        md("## 1. Your model\n`sl.load_model()` returns a `TransformerBridge` of SmolLM2-135M-Instruct "
           "(30 layers x 9 heads), read offline from the embedded GGUF file."),
        code(LOAD),
        md("""
Any TransformerLens model works as it is, nothing is subclassed or patched:

```python
from transformer_lens.model_bridge import TransformerBridge      # TransformerLens 3.9 and 4.x
model = TransformerBridge.boot_transformers("gpt2")

from transformer_lens import HookedTransformer                    # TransformerLens <= 3.9
model = HookedTransformer.from_pretrained("gpt2")
```
"""),
        md("## 2. Record, decompose, score\nOne value per head per generated token (the L2 norm of "
           "`hook_z`), PhiID of every pair of heads per prompt (Gaussian, MMI, tau = 1), then per-head "
           "scores: the synergy-redundancy **rank gradient** of paper (B) and the **synergy fraction**."),
        code(RECORD),
        code('scores.to_dataframe().sort_values("rank").head(10)'),
        md("## 3. The pair matrices\nPersistent synergy (sts) and persistent redundancy (rtr) of every "
           "pair of heads, heads ordered by layer."),
        code("view.plot_matrices(result)"),
        md("## 4. The layer profile\nMean score per layer against depth, with a bootstrap band over "
           "prompts. The papers find an **inverted U**: the middle layers are the synergistic ones. Look "
           "at both scores: when mean sts and mean rtr are strongly rank-correlated the rank gradient "
           "can cancel a real profile (the scatter below shows it)."),
        code("from synergy_lens.analysis import layer_profile\n\n"
             "profile = layer_profile(result, score=\"rank_gradient\", n_boot=N_BOOT)\n"
             "view.plot_layer_profile(profile)"),
        code("profile_fraction = layer_profile(result, score=\"synergy_fraction\", n_boot=N_BOOT)\n"
             "view.plot_layer_profile(profile_fraction)"),
        code("view.plot_score_scatter(scores)"),
        md("## 5. The synergistic core\nThe top 25% of heads by score (abstract heads) and the bottom 25% "
           "(memory heads). `core.to_index_df()` is the `index_df` TransformerLens's patching functions "
           "take; `core.fwd_hooks(fn)` gives ready hooks."),
        code("core = scores.core(0.25)\nview.plot_head_grid(scores, core=core)"),
        code("core.to_index_df().head()"),
        md("## 6. Networks\nThe strongest 10% of pairs as graphs: synergy should be integrated across "
           "layers, redundancy modular."),
        code("from synergy_lens.analysis import topology_table\n\n"
             "topology = topology_table(result)\nview.plot_graphs(result, metrics=topology)"),
        md("## 7. Inside the heads (CircuitsVis, offline)\nAttention patterns of the core heads on the first "
           "prompt and its generation; then the generated text coloured by the top head's activity."),
        code("attention = view.head_attention(model, activity.full_ids(0), core, k=4)\n"
             "view.attention_view(attention)"),
        code("view.activity_tokens_view(activity, core.labels_of()[0], prompt=0, tokenizer=model.tokenizer)"),
        md("## 8. A report to share\nOne self-contained HTML file (works offline): figures, tables, "
           "settings, prompts and completions."),
        code("""
run = view.RunResults(settings={"model": "SmolLM2-135M-Instruct", "n_prompts": len(prompts),
                                "max_new_tokens": MAX_NEW_TOKENS, "n_boot": N_BOOT})
run.add("activity", activity).add("phiid", result).add("scores", scores).add("core", core)
run.add("profile_rank_gradient", profile).add("profile_synergy_fraction", profile_fraction)
run.add("topology", topology).add("attention", attention)
view.write_report(run, "quickstart_report.html")
"""),
    ]
    return new_notebook(cells=cells, metadata=_metadata())


def causal() -> nbformat.NotebookNode:
    cells = [
        md("""
# Causal tests: what do the synergistic heads do?

PhiID is correlational. These cells intervene on the model to test what the analysis
found (papers (A) and (B)):

1. **Ablation curve**: remove heads cumulatively, synergistic first vs redundant first vs
   random orders, and measure how far the model's next-token distributions move (KL, nats).
2. **Accuracy under ablation**: add noise to the top 25% synergistic vs redundant vs random
   heads and score arithmetic answers.
3. **Layer skipping**: skip one layer at a time.
4. **Integrated gradients**: attribute an answer's log-probability to layers and heads.

Every intervention is a context manager that restores the model afterwards.
"""),
        code("PROMPTS_PER_CATEGORY = 1   # 6 prompts for the recording\nMAX_NEW_TOKENS = 32\n"
             "ABLATION_STEP = 27         # heads added per step of the curve\nN_RANDOM = 3\n"
             "N_TASKS = 20\nSKIP_LAYERS = list(range(0, 30, 3))\nIG_PROMPTS = 4\nIG_STEPS = 16", parameters=True),
        code(LOAD),
        code(RECORD),
        md("## 1. Cumulative ablation (paper (B), ablation 1)"),
        code("from synergy_lens.intervene import ablation_curve\n\n"
             "curve = ablation_curve(model, activity, scores, step=ABLATION_STEP, n_random=N_RANDOM)\n"
             "view.plot_ablation(curve)"),
        code("curve.summary()"),
        md("## 2. Accuracy with groups of heads disrupted (paper (B), ablation 2)\nGaussian noise "
           "(std 0.5) on the W_Q rows and W_O columns of each head of a group, on graded arithmetic tasks."),
        code("from synergy_lens.intervene import accuracy_under_ablation, default_tasks\n\n"
             "tasks = default_tasks(N_TASKS)\n"
             "accuracy = accuracy_under_ablation(model, scores, tasks, n_random=N_RANDOM)\n"
             "view.plot_accuracy(accuracy)"),
        code("accuracy.summary()"),
        md("## 3. Layer skipping (paper (A))"),
        code("from synergy_lens.intervene import layer_skip_sweep\n\n"
             "skip = layer_skip_sweep(model, activity, tasks, layers=SKIP_LAYERS)\n"
             "view.plot_layer_skip(skip)"),
        md("## 4. Integrated gradients (paper (A))\nAttribution of the log-probability of each task's "
           "answer (its first token) to what each layer writes, then to each head's output."),
        code("""
from synergy_lens.intervene import integrated_gradients

ig_tasks = tasks[:IG_PROMPTS]
prompts_ig = [model.tokenizer.apply_chat_template([{"role": "user", "content": t.prompt}], tokenize=False,
                                                  add_generation_prompt=True) for t in ig_tasks]
targets = [t.answer for t in ig_tasks]
ig_layers = integrated_gradients(model, prompts_ig, targets, point="writes", steps=IG_STEPS)
view.plot_integrated_gradients(ig_layers)
"""),
        code("ig_heads = integrated_gradients(model, prompts_ig, targets, point=\"z\", steps=IG_STEPS)\n"
             "view.plot_integrated_gradients(ig_heads)"),
        md("## 5. Into the report"),
        code("""
run = view.RunResults(settings={"model": "SmolLM2-135M-Instruct", "n_prompts": len(prompts)})
run.add("activity", activity).add("phiid", result).add("scores", scores).add("ablation", curve)
page = view.build_report(run, title="Causal tests")
page.section("More causal tests").figure(view.plot_accuracy(accuracy)).figure(view.plot_layer_skip(skip))
page.figure(view.plot_integrated_gradients(ig_layers)).save("causal_report.html")
"""),
    ]
    return new_notebook(cells=cells, metadata=_metadata())


def difficulty() -> nbformat.NotebookNode:
    cells = [
        md("""
# Task difficulty: do the heads split as tasks get harder?

Paper (A) reports that head organisation is dynamic: on easy tasks the heads are intermixed,
past a difficulty threshold they split into synergistic (abstract) and redundant (memory)
groups, and the residual stream changes its flow in the middle layers.
`difficulty_study` records the model on graded tasks (arithmetic, ARC-like grids,
relational reasoning) at each level and computes, per level, three **order parameters**
(cluster separation of the heads' functional embedding, bimodality of the head score,
inverted-U index), their bootstrap CIs, the accuracy, and the residual flow; then the
transition level of each.
"""),
        code("LEVELS = [1, 2, 3, 4]\nFAMILIES = None             # all: arithmetic, arc, relational\n"
             "PROMPTS_PER_LEVEL = 6       # per family\nMAX_NEW_TOKENS = 48\nN_BOOT = 100\n"
             "OUT = \"difficulty-out\"      # per-level results; an interrupted study resumes", parameters=True),
        code(LOAD),
        code("from synergy_lens.dynamics.study import difficulty_study\n\n"
             "study = difficulty_study(model, levels=LEVELS, families=FAMILIES, prompts_per_level=PROMPTS_PER_LEVEL,\n"
             "                         max_new_tokens=MAX_NEW_TOKENS, n_boot=N_BOOT, out=OUT)\n"
             "study.to_dataframe()"),
        code("study.transition_table()"),
        md("## Order parameters and accuracy vs difficulty"),
        code("view.plot_order_parameter(study)"),
        code("view.plot_accuracy_levels(study)"),
        md("## Functional embedding of the heads, per level\nEach head is placed by its PhiID profile "
           "(its row of the sts/rtr matrices); two clusters at hard levels is the split."),
        code("view.plot_embedding(study, \"layer\")"),
        code("view.plot_embedding(study, \"score\")"),
        md("## Residual flow\nCosine of each block's attention and MLP writes with the residual stream: "
           "near 0 in the middle layers means orthogonal (rotating) writes."),
        code("view.plot_residual_flow(study)"),
        md("## Report"),
        code("""
page = view.Report("Difficulty study", subtitle=repr(study))
page.section("Order parameters").figure(view.plot_order_parameter(study)).table(study.transition_table(), index=False)
page.section("Embeddings").figure(view.plot_embedding(study, "score"))
page.section("Residual flow").figure(view.plot_residual_flow(study))
page.save("difficulty_report.html")
"""),
    ]
    return new_notebook(cells=cells, metadata=_metadata())


def _metadata() -> dict:
    return {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}}


def main() -> None:
    for name, build in (("01_quickstart", quickstart), ("02_causal_tests", causal), ("03_difficulty", difficulty)):
        nb = build()
        nbformat.validate(nb)
        path = HERE / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
