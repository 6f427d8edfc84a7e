"""``synergy-lens sweep``: the analysis over training checkpoints (synergy_lens.sweep).

Three sources of checkpoints:

- ``--checkpoints DIR [DIR ...]``: transformers checkpoint folders on disk, in training order;
- ``--hub NAME --steps N [N ...]``: a family with published checkpoints (Pythia, ...), where
  the hub is reachable;
- ``--train-demo``: train a small Llama-style model here first (offline, minutes on a CPU;
  :func:`synergy_lens.models.train.train_tiny_lm`), then sweep its checkpoints.

Results go to ``--out``: ``checkpoints/checkpoint_NNN.pt`` as each checkpoint finishes (a
rerun with the same settings skips them, so an interrupted sweep resumes), then
``sweep.pt``, ``sweep.csv`` and the page ``sweep.html``. Under ``torchrun`` the checkpoints
are shared out over the ranks and rank 0 writes the results.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_sweep_parser", "cmd_sweep"]


def add_sweep_parser(sub: Any) -> None:
    from synergy_lens.cli_common import _add_output_flags, _Formatter, _int_at_least, add_fields
    from synergy_lens.configs import SweepConfig

    p = sub.add_parser("sweep", formatter_class=_Formatter, help="the analysis over training checkpoints",
                       description=__doc__)
    src = p.add_argument_group("checkpoints (one of)")
    src.add_argument("--checkpoints", nargs="+", metavar="DIR", help="checkpoint folders, in training order")
    src.add_argument("--hub", metavar="NAME", help="a model family with published checkpoints, e.g. "
                                                   "EleutherAI/pythia-160m (needs the hub)")
    src.add_argument("--steps", nargs="+", type=int, metavar="N", help="with --hub: the training steps to load")
    src.add_argument("--train-demo", action="store_true",
                     help="train a small Llama-style model here (offline) and sweep its checkpoints")
    src.add_argument("--train-steps", type=_int_at_least(1), default=600, help="with --train-demo: optimiser steps")
    p.add_argument("--backend", choices=("auto", "bridge", "hooked"), default="auto", help="TransformerLens backend")
    p.add_argument("--prompts", default="default", metavar="PATH|default",
                   help="'default' (the 60-prompt suite) or a .txt / .jsonl file")
    p.add_argument("--n-prompts", type=_int_at_least(1), default=None, metavar="N",
                   help="use only N prompts (round-robin over categories)")
    add_fields(p.add_argument_group("analysis of each checkpoint"), SweepConfig)
    p.add_argument("--out", default="synergy-lens-sweep", help="results folder")
    _add_output_flags(p)
    p.set_defaults(func=cmd_sweep)


def _source(args: argparse.Namespace, out: Path) -> tuple[list[str], Any]:
    from synergy_lens.cli_common import CLIError
    from synergy_lens.sweep import hub_checkpoints, local_checkpoints

    chosen = [bool(args.checkpoints), bool(args.hub), bool(args.train_demo)]
    if sum(chosen) != 1:
        raise CLIError("sweep: give exactly one of --checkpoints DIR..., --hub NAME --steps N..., --train-demo")
    if args.hub:
        if not args.steps:
            raise CLIError("sweep --hub: also give --steps N [N ...] (the training steps to load)")
        return hub_checkpoints(args.hub, args.steps, backend=args.backend)
    if args.checkpoints:
        try:
            return local_checkpoints(args.checkpoints, backend=args.backend)
        except FileNotFoundError as err:
            raise CLIError(f"sweep --checkpoints: {err}") from None
    import torch

    from synergy_lens.distributed import is_main
    from synergy_lens.models.train import train_tiny_lm

    def train() -> list[Path]:
        return train_tiny_lm(out / "trained", steps=args.train_steps, save_at=_demo_marks(args.train_steps),
                             progress=not args.no_progress and is_main())

    if is_main():
        train()  # one rank trains; the others then find the finished checkpoints
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return local_checkpoints(train(), backend=args.backend)


def _demo_marks(steps: int) -> list[int]:
    """Step 0 (random init), then roughly doubling intervals up to ``steps``."""
    marks, m = [0], max(1, steps // 24)
    while m < steps:
        marks.append(m)
        m *= 2
    return [*marks, steps]


def cmd_sweep(args: argparse.Namespace) -> int:
    import torch

    from synergy_lens.cli_common import _load_prompts
    from synergy_lens.configs import SweepConfig, fields_of
    from synergy_lens.distributed import is_main, launched_by_torchrun
    from synergy_lens.sweep import checkpoint_sweep
    from synergy_lens.view.sweep import sweep_report

    out = Path(args.out).expanduser()
    prompts = _load_prompts(args.prompts, args.n_prompts)
    if launched_by_torchrun() and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    names, load = _source(args, out)
    config = SweepConfig(**{f.name: getattr(args, f.name) for f, _ in fields_of(SweepConfig)})
    result = checkpoint_sweep(load, names, prompts, config=config, out=out / "checkpoints",
                              progress=not args.no_progress)
    if result is None or not is_main():
        return 0
    result.save(out / "sweep.pt")
    from synergy_lens._io import atomic_write_text

    frame = result.to_dataframe()
    atomic_write_text(out / "sweep.csv", frame.to_csv(index=False))
    sweep_report(result, out / "sweep.html")
    cols = ["checkpoint", "score", "index", "ci_low", "ci_high", "p_null", "core_jaccard_final"]
    print(frame[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out / 'sweep.html'}, {out / 'sweep.csv'} and {out / 'sweep.pt'}")
    return 0
