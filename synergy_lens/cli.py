"""Command line: ``synergy-lens demo | run | report | ablate | difficulty``.

- ``demo``: the README's main job. The default model (SmolLM2-135M-Instruct, offline), the
  default 60-prompt suite, 100 new tokens, the full analysis (record, PhiID, scores, layer
  profiles, core, topology, a short ablation curve, CircuitsVis views) and the HTML
  report. ``--quick`` uses small settings (a minute or two on a laptop CPU).
- ``run``: the same analysis with every setting on the command line.
- ``report``: the HTML report of a saved results folder (no model needed).
- ``ablate``: ablation curves (core-first vs random order) for a saved run.
- ``difficulty``: the task-difficulty study (``synergy_lens.dynamics.study``).

Results go to ``--out`` (default ``./synergy-lens-out``) as files that load back
(:class:`~synergy_lens.view.results.RunResults`). Errors in arguments or paths exit with
status 2 and a one-line message; failures during a run exit with status 1 (add
``--debug`` for the traceback). Heavy modules are imported only when a command runs, so
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CLIError", "build_parser", "main"]

DEFAULT_OUT = "synergy-lens-out"
TINY = "tiny"
SCORES = ("rank_gradient", "synergy_fraction", "mean_sts", "mean_rtr")
QUICK: dict[str, Any] = {"n_prompts": 12, "max_new_tokens": 40, "n_boot": 200, "ablation_prompts": 4, "ablation_tokens": 24,
         "ablation_seeds": 2, "ablation_steps": 6}
FULL: dict[str, Any] = {"n_prompts": None, "max_new_tokens": 100, "n_boot": 1000, "ablation_prompts": 12, "ablation_tokens": 48,
        "ablation_seeds": 3, "ablation_steps": 10}


class CLIError(Exception):
    """A bad argument or path, found before any work starts (exit status 2)."""


# ----------------------------------------------------------------------------- argument types


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _fraction(low_open: float, high: float) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low_open < value <= high:
            raise argparse.ArgumentTypeError(f"must be in ({low_open}, {high}], got {value}")
        return value

    parse.__name__ = "fraction"
    return parse


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults (unless the help already says, or there is none) and keeps line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or "default" in text:
            return text
        return super()._get_help_string(action) or text


# ----------------------------------------------------------------------------- parser


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, metavar="NAME",
                   help="model to analyse: omit for the embedded SmolLM2-135M-Instruct (offline); a "
                        "TransformerLens/Hugging Face name (gpt2, Qwen/Qwen3-0.6B, ...) loads from the hub; "
                        f"'{TINY}' builds a tiny random model (for tests and teaching, seconds to run)")
    g.add_argument("--backend", choices=("auto", "bridge", "hooked"), default="auto",
                   help="TransformerLens backend: TransformerBridge, HookedTransformer (TL <= 3.9), or the "
                        "best available")
    g.add_argument("--device", default=None, help="torch device, e.g. cuda (default: CPU for the default model)")


def _add_analysis_options(p: argparse.ArgumentParser, *, demo: bool) -> None:
    g = p.add_argument_group("recording")
    g.add_argument("--prompts", default="default", metavar="PATH|default",
                   help="'default' for the 60-prompt suite (6 categories x 10), or a .txt file (one prompt per "
                        "line) or .jsonl file ({\"prompt\": ..., \"category\": ...} per line)")
    quick = f"; --quick: {QUICK['n_prompts']}" if demo else ""
    g.add_argument("--n-prompts", type=_int_at_least(1), default=None, metavar="N",
                   help=f"use only N prompts, taken round-robin over categories (default: all{quick})")
    quick = f"; --quick: {QUICK['max_new_tokens']}" if demo else ""
    g.add_argument("--max-new-tokens", type=_int_at_least(8), default=None, metavar="N",
                   help="tokens generated per prompt: the length of each head's time series (paper (B): 100; "
                        f"default: {FULL['max_new_tokens']}{quick})")
    g.add_argument("--batch-size", type=_int_at_least(1), default=8, metavar="N",
                   help="prompts generated and recorded together")
    g.add_argument("--chat-template", choices=("auto", "yes", "no"), default="auto",
                   help="wrap prompts in the tokenizer's chat template (auto: when it has one)")
    g.add_argument("--full-length", action="store_true",
                   help="keep generating past EOS so every series has exactly --max-new-tokens steps "
                        "(default: a prompt's series ends at its EOS)")
    g.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="save the recording after every batch to FILE and resume from it if it exists")
    a = p.add_argument_group("analysis")
    a.add_argument("--tau", type=_int_at_least(1), default=1, help="PhiID lag in generated tokens")
    a.add_argument("--redundancy", choices=("MMI", "CCS"), default="MMI",
                   help="redundancy function of PhiID (papers: MMI)")
    a.add_argument("--aggregate", choices=("mean_over_prompts", "pooled"), default="mean_over_prompts",
                   help="PhiID per prompt then averaged (papers), or one estimate from pooled statistics")
    a.add_argument("--score", choices=SCORES, default="rank_gradient",
                   help="per-head score that defines the core and the main profile (both rank_gradient and "
                        "synergy_fraction profiles are always saved)")
    a.add_argument("--core-fraction", type=_fraction(0.0, 0.5), default=0.25, metavar="Q",
                   help="fraction of heads in the synergistic core (and in the memory group)")
    quick = f"; --quick: {QUICK['n_boot']}" if demo else ""
    a.add_argument("--n-boot", type=_int_at_least(0), default=None, metavar="N",
                   help=f"bootstrap resamples of prompts for the profile band and CIs (0: none; default: "
                        f"{FULL['n_boot']}{quick})")
    a.add_argument("--density", type=_fraction(0.0, 1.0), default=0.10,
                   help="fraction of head pairs kept as edges in the synergy/redundancy graphs")
    a.add_argument("--control", choices=("none", "perturb", "random_init"), default="none",
                   help="also analyse a randomised control (perturb: N(0, 10^2) noise on every weight, paper "
                        "(B)); doubles the run time")
    a.add_argument("--seed", type=int, default=0, help="seed of the bootstrap, controls and ablation orders")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="results folder (created if needed)")
    o.add_argument("--no-report", action="store_true", help="skip the HTML report")
    o.add_argument("--no-progress", action="store_true", help="hide progress bars")
    o.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    if demo:
        p.add_argument("--quick", action="store_true",
                       help=f"small settings: {QUICK['n_prompts']} prompts x {QUICK['max_new_tokens']} tokens, "
                            f"{QUICK['n_boot']} bootstrap resamples, a shorter ablation curve")
    else:
        p.add_argument("--ablate", action="store_true", help="also compute a short ablation curve")


def _add_ablation_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ablation")
    g.add_argument("--ablation-prompts", type=_int_at_least(1), default=None, metavar="N",
                   help=f"prompts of the run used for the divergence (default {FULL['ablation_prompts']}; "
                        f"--quick: {QUICK['ablation_prompts']})")
    g.add_argument("--ablation-tokens", type=_int_at_least(2), default=None, metavar="N",
                   help=f"generated tokens compared per prompt (default {FULL['ablation_tokens']})")
    g.add_argument("--ablation-steps", type=_int_at_least(1), default=None, metavar="N",
                   help=f"points on the curve (default {FULL['ablation_steps']})")
    g.add_argument("--ablation-seeds", type=_int_at_least(1), default=None, metavar="N",
                   help=f"random orders for the baseline spread (default {FULL['ablation_seeds']})")
    g.add_argument("--ablation-mode", default="zero", help="how a head is removed (a registered ablation mode)")


def build_parser() -> argparse.ArgumentParser:
    """The ``synergy-lens`` parser."""
    from synergy_lens import __version__

    parser = argparse.ArgumentParser(
        prog="synergy-lens",
        description="Find the synergistic core of a language model with Integrated Information "
                    "Decomposition (PhiID), test it causally, and see it in an offline HTML report.",
        epilog="examples:\n"
               "  synergy-lens demo --quick                # a first look, a minute or two on a CPU\n"
               "  synergy-lens demo                        # the full protocol of paper (B)\n"
               "  synergy-lens run --prompts my.jsonl --max-new-tokens 64 --out runs/mine\n"
               "  synergy-lens report --from runs/mine --out mine.html\n"
               "  synergy-lens ablate --from runs/mine\n"
               "  synergy-lens difficulty --help\n",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"synergy-lens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser("demo", formatter_class=_Formatter, help="full analysis of the default model + report",
                          description="The main job: default model, default 60-prompt suite, 100 new tokens, "
                                      "record + PhiID + scores + profiles + core + topology + a short ablation "
                                      "curve + the HTML report, all saved under --out.")
    _add_model_options(demo)
    _add_analysis_options(demo, demo=True)
    _add_ablation_options(demo)

    run = sub.add_parser("run", formatter_class=_Formatter, help="record, decompose and analyse, settings of your own",
                         description="Record head activity, compute PhiID for every pair of heads and analyse it "
                                     "(scores, layer profiles, core, topology); save everything under --out and "
                                     "write the report.")
    _add_model_options(run)
    _add_analysis_options(run, demo=False)
    _add_ablation_options(run)

    rep = sub.add_parser("report", formatter_class=_Formatter, help="HTML report of a saved results folder",
                         description="Build the self-contained HTML report from a results folder written by "
                                     "`run` or `demo` (no model needed).")
    rep.add_argument("--from", dest="source", required=True, metavar="DIR", help="results folder")
    rep.add_argument("--out", default=None, metavar="FILE", help="report file (default: DIR/report.html)")
    rep.add_argument("--title", default=None, help="report title")
    rep.add_argument("--debug", action="store_true", help="show the full traceback on errors")

    abl = sub.add_parser("ablate", formatter_class=_Formatter, help="ablation curves for a saved run",
                         description="Remove heads cumulatively, core first vs in random orders, and measure "
                                     "the divergence from the clean model (paper (B), ablation 1). Reloads the "
                                     "run's model; adds ablation.pt to the folder and refreshes the report.")
    abl.add_argument("--from", dest="source", required=True, metavar="DIR", help="results folder")
    _add_model_options(abl)
    _add_ablation_options(abl)
    abl.add_argument("--seed", type=int, default=0, help="seed of the random orders")
    abl.add_argument("--quick", action="store_true", help="small settings (as demo --quick)")
    abl.add_argument("--no-report", action="store_true", help="do not refresh the HTML report")
    abl.add_argument("--no-progress", action="store_true", help="hide progress bars")
    abl.add_argument("--debug", action="store_true", help="show the full traceback on errors")

    _add_difficulty(sub)
    return parser


def _add_difficulty(sub: Any) -> None:
    p = sub.add_parser(
        "difficulty", formatter_class=_Formatter,
        help="task-difficulty study: head organisation vs difficulty",
        description="Record and analyse the heads on graded tasks of rising difficulty: order "
                    "parameters, functional embeddings, residual flow (paper (A)).",
    )
    _add_model_options(p)
    g = p.add_argument_group("study")
    g.add_argument("--out", required=True, metavar="DIR", help="results folder (per-level files; resumable)")
    g.add_argument("--levels", type=_int_at_least(1), nargs="+", default=[1, 2, 3, 4, 5], metavar="L",
                   help="difficulty levels (1 = easiest, 8 = hardest)")
    g.add_argument("--families", nargs="+", default=None, metavar="F",
                   help="task families (default: all registered: arithmetic arc relational)")
    g.add_argument("--prompts-per-level", type=_int_at_least(2), default=10, metavar="N",
                   help="tasks per family at each level")
    g.add_argument("--max-new-tokens", type=_int_at_least(8), default=48, metavar="N",
                   help="tokens generated per prompt (PhiID time series)")
    g.add_argument("--min-steps", type=_int_at_least(4), default=8, metavar="N",
                   help="shortest answer (tokens) that enters PhiID; shorter answers count for accuracy only")
    g.add_argument("--batch-size", type=_int_at_least(1), default=8, metavar="N")
    g.add_argument("--chat-template", choices=("auto", "yes", "no"), default="auto",
                   help="wrap prompts in the tokenizer's chat template (auto: when it has one)")
    a = p.add_argument_group("analysis")
    a.add_argument("--tau", type=_int_at_least(1), default=1, help="PhiID lag")
    a.add_argument("--score", default="synergy_fraction",
                   choices=("synergy_fraction", "rank_gradient", "mean_sts", "mean_rtr"), help="per-head score")
    a.add_argument("--features", choices=("row", "summary"), default="row", help="head features to embed")
    a.add_argument("--embedding", choices=("pca", "umap"), default="pca", help="2-D projection")
    a.add_argument("--flow-positions", choices=("all", "generated"), default="all",
                   help="tokens averaged in the residual flow")
    a.add_argument("--n-boot", type=_int_at_least(0), default=200, metavar="N", help="bootstrap resamples")
    a.add_argument("--seed", type=int, default=0, help="seed of the tasks and the bootstrap")
    o = p.add_argument_group("output")
    o.add_argument("--no-checkpoint", action="store_true", help="do not checkpoint recordings")
    o.add_argument("--no-figures", action="store_true", help="skip the HTML figures")
    o.add_argument("--no-progress", action="store_true", help="hide progress bars")
    o.add_argument("--debug", action="store_true", help="show the full traceback on errors")


# ----------------------------------------------------------------------------- helpers


class _Stages:
    """``[k/n] what`` lines on stderr (stdout keeps only the results), and the total time."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.k, self.quiet = total, 0, quiet
        self.t0 = time.perf_counter()

    def __call__(self, text: str) -> None:
        self.k += 1
        if not self.quiet:
            print(f"[{self.k}/{self.total}] {text}", file=sys.stderr, flush=True)

    def done(self) -> None:
        if not self.quiet:
            print(f"done in {time.perf_counter() - self.t0:.0f} s", file=sys.stderr, flush=True)


def _check_out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {path}: exists and is not a folder")
    parent = out if out.exists() else out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise CLIError(f"--out {path}: cannot write in {parent}")
    return out


def _check_results_dir(path: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise CLIError(f"--from {path}: no such folder")
    if not (folder / "manifest.json").is_file():
        raise CLIError(f"--from {path}: not a synergy-lens results folder (no manifest.json); make one with "
                       "`synergy-lens run --out DIR` or `synergy-lens demo`")
    return folder


def _load_prompts(spec: str, n: int | None) -> list[Any]:
    from synergy_lens.record import default_prompts, load_prompts

    if spec == "default":
        prompts = default_prompts()
    else:
        path = Path(spec)
        if not path.is_file():
            raise CLIError(f"--prompts {spec}: no such file (use 'default' or a .txt / .jsonl file)")
        if path.suffix.lower() not in (".txt", ".jsonl"):
            raise CLIError(f"--prompts {spec}: use a .txt file (one prompt per line) or a .jsonl file")
        try:
            prompts = load_prompts(path)
        except ValueError as err:
            raise CLIError(f"--prompts {spec}: {err}") from None
    return round_robin(prompts, n) if n is not None else prompts


def round_robin(prompts: Sequence[Any], n: int) -> list[Any]:
    """The first ``n`` prompts taking one per category in turn (file order within a category)."""
    groups: dict[Any, list[Any]] = {}
    for p in prompts:
        groups.setdefault(getattr(p, "category", None), []).append(p)
    out: list[Any] = []
    queues = [list(g) for g in groups.values()]
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def load_cli_model(name: str | None, backend: str, device: str | None) -> Any:
    """``--model``: None = the default model; ``'tiny'`` = a tiny random model; else a hub name."""
    import synergy_lens as sl

    if name == TINY:
        return sl.tiny_model(backend, n_layers=3, n_heads=4, n_kv_heads=2, d_head=8, seed=0)
    return sl.load_model(name, backend=backend, device=device)  # type: ignore[arg-type]


def _settings(args: argparse.Namespace, model: Any, n_prompts: int) -> dict[str, Any]:
    from synergy_lens import __version__
    from synergy_lens.models import DEFAULT_MODEL, adapt

    adapter = adapt(model)
    keys = ("backend", "prompts", "max_new_tokens", "batch_size", "chat_template", "full_length", "tau", "redundancy",
            "aggregate", "score", "core_fraction", "n_boot", "density", "control", "seed")
    out = {"command": args.command, "model": args.model or DEFAULT_MODEL, "model_name": adapter.name,
           "n_prompts": n_prompts}
    out.update({k: getattr(args, k) for k in keys if hasattr(args, k)})
    out["synergy_lens_version"] = __version__
    return out


def _print_summary(run: Any, report: Path | None) -> None:
    import pandas as pd

    from synergy_lens.view.report import layer_summary

    scores = run["scores"]
    table = layer_summary(scores, run.profiles().get(scores.score), run.get("core"))
    with pd.option_context("display.max_rows", 500, "display.width", 160, "display.float_format", "{:.4g}".format):
        print(f"\nPer-layer summary (score: {scores.score}; Spearman(mean sts, mean rtr) = {scores.spearman:.3f})")
        print(table.to_string())
    core = run.get("core")
    if core is not None:
        print(f"\nSynergistic core ({len(core)} heads): {', '.join(core.labels_of('abstract'))}")
    profile = run.profiles().get(scores.score)
    if profile is not None:
        ci = profile.inverted_u_ci
        print(f"Inverted-U index ({profile.score}): {profile.inverted_u:.3f}"
              + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"))
    if run.folder is not None:
        print(f"\nResults: {run.folder.resolve()}")
    if report is not None:
        print(f"Report:  {report.resolve()}")


# ----------------------------------------------------------------------------- commands


def _ablation_settings(args: argparse.Namespace, quick: bool) -> dict[str, int]:
    base = QUICK if quick else FULL
    return {k: int(getattr(args, k, None) or base[k])
            for k in ("ablation_prompts", "ablation_tokens", "ablation_steps", "ablation_seeds")}


def _check_ablation_mode(mode: str) -> None:
    from synergy_lens.intervene import ABLATIONS

    if mode not in ABLATIONS:
        raise CLIError(f"--ablation-mode {mode}: unknown; registered modes: {', '.join(sorted(ABLATIONS))}")


def cmd_analyse(args: argparse.Namespace) -> int:
    """``run`` and ``demo``: record, decompose, analyse, (ablate), save, report."""
    from synergy_lens.view.pipeline import analyse

    quick = bool(getattr(args, "quick", False))
    for key in ("n_prompts", "max_new_tokens", "n_boot"):
        if getattr(args, key) is None:  # not set by the user
            setattr(args, key, (QUICK if quick else FULL)[key])
    out = _check_out_dir(args.out)
    prompts = _load_prompts(args.prompts, args.n_prompts)
    if args.checkpoint is not None and Path(args.checkpoint).is_dir():
        raise CLIError(f"--checkpoint {args.checkpoint}: is a folder; give a file path")
    do_ablation = args.command == "demo" or bool(getattr(args, "ablate", False))
    if do_ablation:
        _check_ablation_mode(args.ablation_mode)
    stages = _Stages(7 + do_ablation + (args.control != "none") + (not args.no_report), quiet=args.no_progress)
    stages(f"loading model {args.model or '(default SmolLM2-135M-Instruct)'}")
    model = load_cli_model(args.model, args.backend, args.device)
    run = analyse(
        model, prompts, settings=_settings(args, model, len(prompts)), stages=stages,
        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
        chat_template={"auto": None, "yes": True, "no": False}[args.chat_template], checkpoint=args.checkpoint,
        stop_at_eos=not args.full_length, tau=args.tau, redundancy=args.redundancy, aggregate=args.aggregate, score=args.score,
        q=args.core_fraction, n_boot=args.n_boot, density=args.density, seed=args.seed,
        control=None if args.control == "none" else args.control,
        ablation=_ablation_settings(args, quick) | {"mode": args.ablation_mode} if do_ablation else None,
        progress=not args.no_progress,
    )
    stages(f"saving results to {out}")
    run.save(out)
    report = None
    if not args.no_report:
        from synergy_lens.view.report import write_report

        stages("writing the HTML report")
        report = write_report(run, out / "report.html")
    _print_summary(run, report)
    stages.done()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from synergy_lens.view.report import write_report
    from synergy_lens.view.results import RunResults

    folder = _check_results_dir(args.source)
    target = Path(args.out) if args.out else folder / "report.html"
    if target.is_dir():
        raise CLIError(f"--out {args.out}: is a folder; give a file name such as report.html")
    if not os.access(target.parent if target.parent.exists() else Path("."), os.W_OK):
        raise CLIError(f"--out {args.out}: cannot write there")
    path = write_report(RunResults.load(folder), target, title=args.title)
    size = path.stat().st_size / 1e6
    print(f"Report: {path.resolve()} ({size:.1f} MB)")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from synergy_lens.view.pipeline import ablation_step
    from synergy_lens.view.report import write_report
    from synergy_lens.view.results import RunResults

    folder = _check_results_dir(args.source)
    run = RunResults.load(folder)
    if "activity" not in run or "scores" not in run:
        raise CLIError(f"--from {args.source}: the folder has no activity.pt / scores.pt to ablate from")
    _check_ablation_mode(args.ablation_mode)
    stages = _Stages(3, quiet=args.no_progress)
    model_name = args.model if args.model is not None else run.settings.get("model")
    from synergy_lens.models import DEFAULT_MODEL

    if model_name == DEFAULT_MODEL:
        model_name = None
    stages(f"loading model {model_name or '(default SmolLM2-135M-Instruct)'}")
    model = load_cli_model(model_name, args.backend, args.device)
    settings = _ablation_settings(args, args.quick) | {"mode": args.ablation_mode}
    stages("ablation curve (core first vs random orders)")
    run.add("ablation", ablation_step(model, run["activity"], run["scores"], settings, seed=args.seed,
                                      progress=not args.no_progress))
    run.settings["ablation"] = settings
    stages(f"saving to {folder}")
    run.save(folder)
    if not args.no_report:
        print(f"Report: {write_report(run, folder / 'report.html').resolve()}")
    return 0


def cmd_difficulty(args: argparse.Namespace) -> int:
    """``synergy-lens difficulty``: run the study, save results and figures into ``--out``."""
    from synergy_lens.dynamics.study import difficulty_study, summary_text, write_figures

    try:
        model = load_cli_model(args.model, args.backend, args.device)
        template = {"auto": None, "yes": True, "no": False}[args.chat_template]
        study = difficulty_study(
            model, levels=args.levels, families=args.families, prompts_per_level=args.prompts_per_level,
            max_new_tokens=args.max_new_tokens, tau=args.tau, score=args.score, features=args.features,
            embedding=args.embedding, min_steps=args.min_steps, flow_positions=args.flow_positions,
            n_boot=args.n_boot, seed=args.seed, batch_size=args.batch_size, chat_template=template,
            out=args.out, checkpoint=not args.no_checkpoint, progress=not args.no_progress,
        )
        written = [] if args.no_figures else write_figures(study, args.out)
    except (ValueError, TypeError, ImportError, FileNotFoundError) as err:
        if args.debug:
            raise
        print(f"synergy-lens difficulty: error: {err}", file=sys.stderr)
        return 1
    print(summary_text(study))
    print(f"Results: {Path(args.out).resolve()}" + (f" ({len(written)} figures)" if written else ""))
    return 0


_COMMANDS = {"demo": cmd_analyse, "run": cmd_analyse, "report": cmd_report, "ablate": cmd_ablate,
             "difficulty": cmd_difficulty}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synergy-lens`` script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except CLIError as err:
        parser.exit(2, f"synergy-lens {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        print("\nsynergy-lens: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, TypeError, RuntimeError, OSError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"synergy-lens {args.command}: error: {err}\n(run again with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
