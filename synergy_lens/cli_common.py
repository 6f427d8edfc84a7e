"""What every ``synergy-lens`` command shares: the error type, argument types, the help
formatter, the output flags, options built from config dataclasses, and prompt loading.
(``cli`` and ``cli_sweep`` both build on it; it imports nothing heavy.)"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CLIError", "add_fields", "round_robin"]


class CLIError(Exception):
    """A bad argument or path, found before any work starts (exit status 2)."""


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


def _add_output_flags(g: Any) -> None:
    g.add_argument("--no-progress", action="store_true",
                   help="hide progress bars (tqdm and the model-loading bar); the [k/N] stage lines stay")
    g.add_argument("--quiet", action="store_true", help="hide the [k/N] stage lines and the timing on stderr")
    g.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def add_fields(group: Any, cls: type, *, prefix: str = "", quick: dict[str, Any] | None = None,
               late: set[str] | frozenset[str] = frozenset()) -> None:
    """A command-line option for every option field of a config dataclass: the flag (``--`` +
    ``prefix + name`` with dashes, or the field's own), its type, choices (a ``Literal``),
    range, default and help all come from the field. Options named in ``late`` default to
    None (filled in later); their help gives the default and, with ``quick``, its value."""
    from synergy_lens import configs as C

    for f, opt in C.fields_of(cls):
        flat = prefix + f.name
        tp = C.field_type(cls, f.name)
        allowed = C.choices(tp)
        help_text = opt.help
        kw: dict[str, Any] = {"dest": flat, "default": f.default}
        if tp is bool:
            kw["action"] = "store_false" if opt.invert else "store_true"
        elif C.typing.get_origin(tp) is tuple:
            kw.update(nargs="+", choices=(*(allowed or ()), "none"), default=list(f.default or ()))  # type: ignore[arg-type]
        elif allowed is not None:
            kw["choices"] = allowed
        elif opt.minimum is not None:
            kw["type"] = _int_at_least(opt.minimum)
        elif opt.fraction is not None:
            kw["type"] = _fraction(*opt.fraction)
        else:
            kw["type"] = int if tp is int else float if tp is float else str
        if flat in late:  # the default depends on --quick: say both
            kw["default"] = None
            help_text += f" (default: {f.default}" + (f"; --quick: {quick[flat]})" if quick else ")")
        if opt.metavar is not None:
            kw["metavar"] = opt.metavar
        group.add_argument(opt.flag or "--" + flat.replace("_", "-"), help=help_text, **kw)


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
    if n is not None and n > len(prompts):
        raise CLIError(f"--n-prompts {n}: --prompts {spec} has only {len(prompts)} prompts; use --n-prompts "
                       f"{len(prompts)} or fewer, or leave it out")
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
