"""Command line: ``synergy-lens demo | run | report | ablate | difficulty | sweep``.

- ``demo``: the README's main job. The default model (SmolLM2-135M-Instruct, offline), the
  default 60-prompt suite, 100 new tokens, the full analysis (record, PhiID, scores, layer
  profiles, core, topology, a short ablation curve, CircuitsVis views) and the HTML
  report. ``--quick`` uses small settings (a minute or two on a laptop CPU).
- ``run``: the same analysis with every setting on the command line.
- ``report``: the HTML report of a saved results folder (no model needed).
- ``ablate``: ablation curves (core-first vs random order) for a saved run.
- ``difficulty``: the task-difficulty study (``synergy_lens.dynamics.study``).
- ``sweep``: the analysis over training checkpoints (``synergy_lens.cli_sweep``).

``run`` and ``demo`` also run under ``torchrun --nproc-per-node N -m synergy_lens ...``:
every rank records and decomposes its share of the prompts, rank 0 does the rest and
writes ``--out`` (``synergy_lens.distributed``).

Results go to ``--out`` (default ``./synergy-lens-out``) as files that load back
(:class:`~synergy_lens.view.results.RunResults`), each stage saved as soon as it is done
and reused by a rerun with the same settings (:mod:`synergy_lens.runfolder`; a folder is
locked while a command writes it). Everything that can be checked (options, paths,
device, writability) is checked before the model loads. Errors in arguments or paths, and
a folder locked by another command, exit with status 2 and a one-line message; failures
during a run exit with status 1 (add ``--debug`` for the traceback); Ctrl-C exits with
130 and says how to resume. Heavy modules are imported only when a command runs, so
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synergy_lens.cli_common import (
    CLIError,
    _add_output_flags,
    _Formatter,
    _int_at_least,
    _load_prompts,
    add_fields,
    round_robin,
)
from synergy_lens.configs import QUICK

__all__ = ["CLIError", "build_parser", "main", "round_robin"]

DEFAULT_OUT = "synergy-lens-out"
TINY = "tiny"
QUICK_PROMPTS = 12  # demo --quick: prompts (the other --quick settings: synergy_lens.configs.QUICK)


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
    g.add_argument("--device", default=None, help="torch device, e.g. cuda or cuda:1 (default: CPU); checked "
                                                  "before anything runs")
    g.add_argument("--threads", type=_int_at_least(1), default=None, metavar="N",
                   help="CPU threads torch may use (default: torch's choice, one per core); use 1 or 2 when other "
                        "jobs share the cores, since oversubscription slows a run several-fold")


def _add_analysis_options(p: argparse.ArgumentParser, *, demo: bool) -> None:
    g = p.add_argument_group("recording")
    g.add_argument("--prompts", default="default", metavar="PATH|default",
                   help="'default' for the 60-prompt suite (6 categories x 10), or a .txt file (one prompt per "
                        "line) or .jsonl file ({\"prompt\": ..., \"category\": ...} per line)")
    quick = f"; --quick: {QUICK_PROMPTS}" if demo else ""
    g.add_argument("--n-prompts", type=_int_at_least(1), default=None, metavar="N",
                   help=f"use only N prompts, taken round-robin over categories (default: all{quick})")
    _add_config_options(g, "record", quick=demo)
    g.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="save the recording after every batch to FILE and resume from it if it exists "
                        "(default: a checkpoint file in the --out folder, removed once the recording is saved)")
    a = p.add_argument_group("analysis")
    _add_config_options(a, "decompose", quick=demo)
    _add_config_options(a, "analysis", quick=demo)
    o = p.add_argument_group("output")
    o.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="results folder (created if needed); each stage is saved there as soon as it is done")
    o.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse the stages a run with the same settings already saved in --out (--no-resume: "
                        "compute everything again)")
    o.add_argument("--no-report", action="store_true", help="skip the HTML report")
    _add_output_flags(o)
    if demo:
        p.add_argument("--quick", action="store_true",
                       help=f"small settings: {QUICK_PROMPTS} prompts x {QUICK['max_new_tokens']} tokens, "
                            f"{QUICK['n_boot']} bootstrap resamples, a shorter ablation curve")
    else:
        p.add_argument("--ablate", action="store_true", help="also compute a short ablation curve")


def _add_ablation_options(p: argparse.ArgumentParser, *, quick: bool = True) -> None:
    _add_config_options(p.add_argument_group("ablation"), "ablation", quick=quick)


def _add_config_options(group: Any, stage: str, *, quick: bool) -> None:
    """One option per field of a stage's config (synergy_lens.configs). Options that ``--quick``
    changes default to None here and are filled in by :func:`_run_config`."""
    from synergy_lens import configs as C

    cls = type(getattr(C.RunConfig(ablation=C.AblationConfig()), stage))
    add_fields(group, cls, prefix="ablation_" if stage == "ablation" else "",
               quick=C.QUICK if quick else None, late=set(C.QUICK))


def _run_config(args: argparse.Namespace, *, quick: bool, ablation: bool) -> Any:
    """The :class:`~synergy_lens.configs.RunConfig` of the parsed options (with ``--quick``'s
    defaults where the user set nothing); the options left None are filled in ``args`` too."""
    from synergy_lens import configs as C

    flat: dict[str, Any] = {}
    for stage, name, f, opt in C.options():
        if not opt.cli or not hasattr(args, name) or (stage == "ablation" and not ablation):
            continue
        value = getattr(args, name)
        if value is None and name in C.QUICK:
            value = C.QUICK[name] if quick else f.default
            setattr(args, name, value)
        if isinstance(value, list):
            value = tuple(v for v in value if v != "none")
        flat[name] = value
    config = C.RunConfig(ablation=C.AblationConfig() if ablation else None)
    return config.replace(**flat)


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
               "  synergy-lens difficulty --help\n"
               "  synergy-lens sweep --train-demo          # the core over a training run made here\n"
               "  torchrun --nproc-per-node 4 -m synergy_lens run --device cuda --out runs/big\n",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"synergy-lens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    analyses = {
        "demo": ("full analysis of the default model + report",
                 "The main job: default model, default 60-prompt suite, 100 new tokens, record + PhiID + scores + "
                 "profiles + core + topology + a short ablation curve + the HTML report, all saved under --out."),
        "run": ("record, decompose and analyse, settings of your own",
                "Record head activity, compute PhiID for every pair of heads and analyse it (scores, layer profiles, "
                "core, topology); save everything under --out and write the report."),
    }
    for name, (short, long) in analyses.items():
        p = sub.add_parser(name, formatter_class=_Formatter, help=short, description=long)
        _add_model_options(p)
        _add_analysis_options(p, demo=name == "demo")
        _add_ablation_options(p, quick=name == "demo")

    rep = sub.add_parser("report", formatter_class=_Formatter, help="HTML report of a saved results folder",
                         description="Build the self-contained HTML report from a results folder written by "
                                     "`run` or `demo` (no model needed).")
    rep.add_argument("--from", dest="source", required=True, metavar="DIR", help="results folder")
    rep.add_argument("--out", default=None, metavar="FILE", help="report file (default: DIR/report.html)")
    rep.add_argument("--title", default=None, help="report title")
    rep.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    rep.add_argument("--quiet", action="store_true", help="print nothing but errors")

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
    _add_output_flags(abl)

    _add_difficulty(sub)
    from synergy_lens.cli_sweep import add_sweep_parser

    add_sweep_parser(sub)
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
    _add_output_flags(o)


# ----------------------------------------------------------------------------- helpers


def phiid_min_steps(tau: int) -> int:
    """Fewest steps a prompt's series needs for PhiID at lag ``tau``: ``tau + 5``, so that at
    least 5 lag pairs estimate the 4 x 4 covariance (4 or fewer make it singular: all NaN)."""
    return tau + 5


class _Stages:
    """``[k/n] what`` lines on stderr (stdout keeps only the results), and the total time."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.k, self.quiet = total, 0, quiet
        self.t0 = time.perf_counter()

    def __call__(self, text: str) -> None:
        self.k += 1
        if not self.quiet:
            print(f"[{self.k}/{self.total}] {text}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """A line that is not a stage of its own."""
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def done(self) -> None:
        if not self.quiet:
            print(f"done in {time.perf_counter() - self.t0:.0f} s", file=sys.stderr, flush=True)


def _check_out_dir(path: str, option: str = "--out") -> Path:
    """The folder exists (created if needed) and a file can be written in it."""
    from synergy_lens.runfolder import check_writable

    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise CLIError(f"{option} {path}: exists and is not a folder")
    try:
        check_writable(out)
    except OSError as err:
        raise CLIError(f"{option} {path}: {err.strerror}; choose a folder you can write to") from None
    return out


def _check_device(device: str | None) -> None:
    """``--device``: a device torch knows and this machine has."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise CLIError(f"--device {device}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "a CPU-only build of torch" if torch.version.cuda is None else "no usable CUDA GPU"
            raise CLIError(f"--device {device}: CUDA is not available here ({built}); leave --device out "
                           "to run on the CPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CLIError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                           f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {device}: MPS is not available here; leave --device out to run on the CPU")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise CLIError(f"--device {device}: synergy-lens runs on cpu, cuda or mps")


def _setup_runtime(args: argparse.Namespace) -> None:
    """``--threads`` and ``--no-progress`` (also for the transformers / hub loading bars)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    if getattr(args, "no_progress", False):
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        with contextlib.suppress(ImportError):
            import transformers

            transformers.utils.logging.disable_progress_bar()


def _check_results_dir(path: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CLIError(f"--from {path}: no such folder")
    if not (folder / "manifest.json").is_file():
        raise CLIError(f"--from {path}: not a synergy-lens results folder (no manifest.json); make one with "
                       "`synergy-lens run --out DIR` or `synergy-lens demo`")
    return folder


def load_cli_model(name: str | None, backend: str, device: str | None) -> Any:
    """``--model``: None = the default model; ``'tiny'`` = a tiny random model; else a hub name."""
    import synergy_lens as sl

    if name == TINY:
        # a context long enough for the difficulty tasks' prompts (bytes are tokens here)
        model = sl.tiny_model(backend, n_layers=3, n_heads=4, n_kv_heads=2, d_head=8, n_ctx=2048, seed=0)
        return model if device is None else model.to(device)
    return sl.load_model(name, backend=backend, device=device)  # type: ignore[arg-type]


def _settings(args: argparse.Namespace, model: Any, n_prompts: int) -> dict[str, Any]:
    """What a run saves besides its config: the command, model, prompts and version."""
    from synergy_lens import __version__
    from synergy_lens.models import DEFAULT_MODEL, adapt

    adapter = adapt(model)
    return {"command": args.command, "model": args.model or DEFAULT_MODEL, "model_name": adapter.name,
            "backend": args.backend, "prompts": args.prompts, "n_prompts": n_prompts,
            "synergy_lens_version": __version__}


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
    from synergy_lens.view.report import headline_lines

    lines = headline_lines(run)
    if lines:
        hl = run.get("headline")
        print("\nLayer profiles" + ("" if hl is None else f" (inverted-U index [95% CI]; p against {hl.n_surrogates} "
                                     "autocorrelation-preserving surrogates)") + ":")
        for line in lines:
            print(f"  {line}")
        if hl is not None:
            print(f"  {hl.core_sentence()}")
    if scores.unstable is not None and bool(scores.unstable.any()):
        print(f"Unstable heads ({'excluded' if scores.excluded else 'marked'}): {', '.join(scores.unstable_labels())}")
    rob = run.get("robustness")
    if rob is not None:
        frame = rob.to_dataframe()[["choice", "score", "inverted_u", "ci_low", "ci_high", "null_mean", "p", "note"]]
        with pd.option_context("display.width", 160, "display.float_format", "{:.3g}".format):
            print("\nRobustness (inverted-U index per analysis choice, p against its own surrogate null):")
            print(frame.to_string(index=False))
            print(rob.verdict())
    if run.folder is not None:
        print(f"\nResults: {run.folder.resolve()}")
    if report is not None:
        print(f"Report:  {report.resolve()}")


# ----------------------------------------------------------------------------- commands


def _ablation_config(args: argparse.Namespace) -> Any:
    """``ablate``'s :class:`~synergy_lens.configs.AblationConfig` (``--quick`` defaults where unset)."""
    return _run_config(args, quick=bool(args.quick), ablation=True).ablation


def _check_ablation_mode(mode: str) -> None:
    from synergy_lens.intervene import ABLATIONS

    if mode not in ABLATIONS:
        raise CLIError(f"--ablation-mode {mode}: unknown; registered modes: {', '.join(sorted(ABLATIONS))}")


def cmd_analyse(args: argparse.Namespace) -> int:
    """``run`` and ``demo``: check everything, then record, decompose, analyse, (ablate) and
    report, each stage saved into ``--out`` as soon as it is done (resumable)."""
    from synergy_lens.runfolder import StageStore, lock_folder

    quick = bool(getattr(args, "quick", False))
    if args.n_prompts is None and quick:
        args.n_prompts = QUICK_PROMPTS
    do_ablation = args.command == "demo" or bool(getattr(args, "ablate", False))
    user_set = {k: getattr(args, k, None) for k in ("ablation_prompts", "ablation_tokens", "ablation_steps",
                                                    "ablation_seeds")}
    config = _run_config(args, quick=quick, ablation=do_ablation)
    _check_series_options(args)
    config = config.replace(min_steps=args.min_steps)
    prompts = _load_prompts(args.prompts, args.n_prompts)
    if args.checkpoint is not None and Path(args.checkpoint).is_dir():
        raise CLIError(f"--checkpoint {args.checkpoint}: is a folder; give a file path")
    if do_ablation:
        _check_ablation_mode(args.ablation_mode)
        if user_set["ablation_prompts"] is not None and user_set["ablation_prompts"] > len(prompts):
            raise CLIError(f"--ablation-prompts {args.ablation_prompts} is more than the {len(prompts)} prompts of "
                           "the run; lower it or raise --n-prompts")
        if user_set["ablation_tokens"] is not None and user_set["ablation_tokens"] > args.max_new_tokens:
            raise CLIError(f"--ablation-tokens {args.ablation_tokens} is more than --max-new-tokens "
                           f"{args.max_new_tokens}; lower it")
    elif any(v is not None for v in user_set.values()):
        raise CLIError("--ablation-* options are set but no ablation runs; add --ablate (run) or drop them")
    _check_device(args.device)
    from synergy_lens.distributed import init_from_env, is_main

    args.device = init_from_env(args.device)  # under torchrun: join the group, one device per rank
    if not is_main():
        return _analyse_worker(args, prompts, config)
    out = _check_out_dir(args.out)
    _setup_runtime(args)
    stages = _Stages(8 + do_ablation + (config.analysis.control != "none") + (not args.no_report), quiet=args.quiet)
    with lock_folder(out, command=f"synergy-lens {args.command}"):
        StageStore(out).manifest()  # a damaged manifest.json is reported now, not after the recording
        stages(f"loading model {args.model or '(default SmolLM2-135M-Instruct)'}")
        model = load_cli_model(args.model, args.backend, args.device)
        settings = _settings(args, model, len(prompts))
        store = StageStore(out, settings=settings, resume=args.resume)
        run = _run_analyse(args, model, prompts, config, settings=settings, stages=stages,
                           store=store, progress=not args.no_progress)
        from synergy_lens._collective import leave

        leave(wait=False)  # analyse ended its collective steps with a barrier on every rank
        stages.note(f"results saved in {out}" + (f" (reused: {', '.join(store.skipped)})" if store.skipped else ""))
        report = None
        if not args.no_report:
            from synergy_lens.view.report import write_report

            stages("writing the HTML report")
            report = write_report(run, out / "report.html")
    _print_summary(run, report)
    stages.done()
    return 0


def _run_analyse(args: argparse.Namespace, model: Any, prompts: list[Any], config: Any, **kwargs: Any) -> Any:
    """:func:`synergy_lens.analyse` with the command line's config (every rank calls it alike)."""
    from synergy_lens.pipeline import analyse

    return analyse(model, prompts, config, checkpoint=args.checkpoint, **kwargs)


def _analyse_worker(args: argparse.Namespace, prompts: list[Any], config: Any) -> int:
    """A rank other than 0 under torchrun: its share of the recording, PhiID, null tests and
    ablation (rank 0 writes everything, so this rank touches no folder)."""
    from synergy_lens._collective import leave

    _setup_runtime(args)
    model = load_cli_model(args.model, args.backend, args.device)
    _run_analyse(args, model, prompts, config, progress=False)
    leave(wait=False)  # analyse ended its collective steps with a barrier on every rank
    return 0


def _check_series_options(args: argparse.Namespace) -> None:
    """``--tau``, ``--max-new-tokens`` and ``--min-steps`` fit together (before any work)."""
    need = phiid_min_steps(args.tau)
    if args.max_new_tokens < need:
        raise CLIError(
            f"--tau {args.tau} needs series of at least tau + 5 = {need} steps (PhiID estimates a 4 x 4 "
            f"covariance from the lag pairs), but --max-new-tokens is {args.max_new_tokens}: use "
            f"--max-new-tokens {need} or more, or --tau {max(1, args.max_new_tokens - 5)} or less")
    if args.min_steps is None:
        args.min_steps = max(8, need)
    elif args.min_steps < need:
        raise CLIError(f"--min-steps {args.min_steps}: with --tau {args.tau} PhiID needs at least {need} steps; "
                       f"use --min-steps {need} or more")
    if args.min_steps > args.max_new_tokens:
        raise CLIError(f"--min-steps {args.min_steps} is more than --max-new-tokens {args.max_new_tokens}: no "
                       "answer could be that long; lower --min-steps or raise --max-new-tokens")


def cmd_report(args: argparse.Namespace) -> int:
    """``report --from DIR``: writes only the report file (the folder's results are read)."""
    from synergy_lens.runfolder import lock_folder

    folder = _check_results_dir(args.source)
    target = Path(args.out).expanduser() if args.out else folder / "report.html"
    if target.is_dir():
        raise CLIError(f"--out {args.out}: is a folder; give a file name such as report.html")
    try:
        from synergy_lens.runfolder import check_writable

        check_writable(target.parent)
    except OSError as err:
        if args.out is None:
            raise CLIError(f"--from {args.source}: the report goes to {target} by default, but {err.strerror}; "
                           "pass --out FILE to write it elsewhere") from None
        raise CLIError(f"--out {args.out}: {err.strerror}; choose a file in a folder you can write to") from None
    from synergy_lens.view.report import write_report
    from synergy_lens.view.results import RunResults

    inside = target.resolve().parent == folder.resolve()
    with lock_folder(folder, command="synergy-lens report") if inside else contextlib.nullcontext():
        path = write_report(RunResults.load(folder), target, title=args.title)
    if not args.quiet:
        print(f"Report: {path.resolve()} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _ablate_worker(args: argparse.Namespace, folder: Path) -> int:
    """A rank other than 0 under torchrun: its share of the ablation's forward passes (reads
    the run, writes nothing; rank 0 holds the folder's lock and saves the curve)."""
    from synergy_lens.models import DEFAULT_MODEL
    from synergy_lens.pipeline import ablation_step
    from synergy_lens.view.results import RunResults

    run = RunResults.load(folder, only=["activity", "scores"])
    if "activity" not in run or "scores" not in run:
        raise CLIError(f"--from {args.source}: the folder has no activity.pt / scores.pt to ablate from")
    model_name = args.model if args.model is not None else run.settings.get("model")
    model = load_cli_model(None if model_name == DEFAULT_MODEL else model_name, args.backend, args.device)
    ablation_step(model, run["activity"], run["scores"], _ablation_config(args), seed=args.seed, progress=False,
                  distributed=True)
    from synergy_lens._collective import leave

    leave()
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    """``ablate --from DIR``: adds ``ablation.pt`` (and refreshes the report); nothing else changes."""
    from synergy_lens.models import DEFAULT_MODEL
    from synergy_lens.runfolder import StageStore, digest, lock_folder

    folder = _check_results_dir(args.source)
    _check_ablation_mode(args.ablation_mode)
    _check_device(args.device)
    try:
        from synergy_lens.runfolder import check_writable

        check_writable(folder)
    except OSError as err:
        raise CLIError(f"--from {args.source}: {err.strerror}, and ablate adds ablation.pt to the folder: copy it "
                       "somewhere writable (cp -r DIR NEW) and run ablate --from NEW") from None
    from synergy_lens.distributed import init_from_env, is_main

    args.device = init_from_env(args.device)  # under torchrun: the forward passes are shared out
    _setup_runtime(args)
    if not is_main():
        return _ablate_worker(args, folder)
    stages = _Stages(3 + (not args.no_report), quiet=args.quiet)
    with lock_folder(folder, command="synergy-lens ablate"):
        from synergy_lens.pipeline import ablation_step
        from synergy_lens.view.results import RunResults

        run = RunResults.load(folder, only=["activity", "scores"])
        if "activity" not in run or "scores" not in run:
            raise CLIError(f"--from {args.source}: the folder has no activity.pt / scores.pt to ablate from")
        model_name = args.model if args.model is not None else run.settings.get("model")
        if model_name == DEFAULT_MODEL:
            model_name = None
        stages(f"loading model {model_name or '(default SmolLM2-135M-Instruct)'}")
        model = load_cli_model(model_name, args.backend, args.device)
        config = _ablation_config(args)
        store = StageStore(folder)
        stages("ablation curve (core first vs random orders)")
        curve = ablation_step(model, run["activity"], run["scores"], config, seed=args.seed,
                              progress=not args.no_progress, distributed=True)
        from synergy_lens._collective import leave

        leave()
        stages(f"adding ablation.pt to {folder}")
        store.save("ablation", curve, key=digest({"ablation": dataclasses.asdict(config), "seed": args.seed,
                                                  "scores": run["scores"].score}), needs=("activity", "scores"))
        store.update_settings({"ablation": dataclasses.asdict(config)})
        report = None
        if not args.no_report:
            from synergy_lens.view.report import write_report

            stages("refreshing the HTML report")
            report = write_report(RunResults.load(folder), folder / "report.html")
    _print_ablation(curve)
    if report is not None:
        print(f"Report: {report.resolve()}")
    stages.done()
    return 0


def _print_ablation(curve: Any) -> None:
    """The numbers of an ablation curve: divergence per step, and the areas under the curves."""
    import pandas as pd

    with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
        print("Ablation: behaviour divergence (nats, mean over prompts) after removing the first k heads")
        print(curve.summary().to_string(index=False))
    auc = curve.auc()
    print("Area under the curve: " + ", ".join(f"{k} {v:.4g}" for k, v in auc.items()))


def cmd_difficulty(args: argparse.Namespace) -> int:
    """``synergy-lens difficulty``: run the study, save results and figures into ``--out``."""
    from synergy_lens.dynamics.study import difficulty_study, summary_text
    from synergy_lens.runfolder import lock_folder
    from synergy_lens.view.dynamics import write_figures

    _check_device(args.device)
    _check_out_dir(args.out)
    _setup_runtime(args)
    with lock_folder(args.out, command="synergy-lens difficulty"):
        return _difficulty(args, difficulty_study, summary_text, write_figures)


def _difficulty(args: argparse.Namespace, difficulty_study: Any, summary_text: Any, write_figures: Any) -> int:
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


_DEFAULT_SHOWWARNING = warnings.showwarning


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Warnings as one line each (``synergy-lens: warning: ...``), without the source line."""
    print(f"synergy-lens: warning: {message}", file=sys.stderr if file is None else file, flush=True)


def _out_folder(args: argparse.Namespace) -> Path | None:
    """The results folder a command writes stage by stage (None for report)."""
    if args.command in ("run", "demo", "difficulty"):
        folder = Path(args.out).expanduser()
    elif args.command == "ablate":
        folder = Path(args.source).expanduser()
    else:
        return None
    return folder if folder.is_dir() else None


def _saved_note(args: argparse.Namespace) -> str:
    """Where the finished stages of a failed run are (run/demo/ablate with a manifest)."""
    folder = _out_folder(args) if args.command in ("run", "demo", "ablate") else None
    if folder is None or not (folder / "manifest.json").is_file():
        return ""
    return f"\nThe stages finished before the failure are saved in {folder}; the same command reuses them."


def cmd_sweep(args: argparse.Namespace) -> int:
    from synergy_lens.cli_sweep import cmd_sweep as sweep

    return sweep(args)


_COMMANDS = {"demo": cmd_analyse, "run": cmd_analyse, "report": cmd_report, "ablate": cmd_ablate,
             "difficulty": cmd_difficulty, "sweep": cmd_sweep}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synergy-lens`` script; returns the exit status."""
    from synergy_lens.runfolder import FolderLocked

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            if warnings.showwarning is _DEFAULT_SHOWWARNING:  # not when a caller records warnings
                warnings.showwarning = _show_warning
            return _COMMANDS[args.command](args)
    except CLIError as err:
        parser.exit(2, f"synergy-lens {args.command}: error: {err}\n")
    except KeyboardInterrupt as err:
        notes = "".join(f"\n{note}" for note in getattr(err, "__notes__", []))  # e.g. how to resume a recording
        where = _out_folder(args)
        saved = (f"\nFinished stages are saved in {where}; run the same command again to resume."
                 if where is not None else "")
        print(f"\nsynergy-lens: interrupted{notes}{saved}", file=sys.stderr)
        return 130
    except FolderLocked as err:
        parser.exit(2, f"synergy-lens {args.command}: error: {err}\n")
    except (FileNotFoundError, ValueError, TypeError, RuntimeError, OSError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"synergy-lens {args.command}: error: {err}{_saved_note(args)}\n(run again with --debug for the "
              "traceback)", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: still one clear message, and what is saved
        if getattr(args, "debug", False):
            raise
        print(f"synergy-lens {args.command}: internal error: {type(err).__name__}: {err}{_saved_note(args)}\n"
              "(run again with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
