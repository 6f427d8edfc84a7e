"""Prompt suites: the 60-prompt suite shipped with the package, and the user's own files.

What and why
------------
Urbina-Rodriguez et al. (arXiv 2601.06851; "Protocol of (B)" in ``docs/science.md``) record head
activity on 60 prompts, 10 in each of six categories, and average PhiID over them. Their
prompt texts are not ours to ship, so ``synergy_lens/data/prompts.jsonl`` holds 60 prompts
written for this project in the same six categories (:data:`CATEGORIES`).

A :class:`Prompt` is a text with an optional category label;
:func:`~synergy_lens.record.record_head_activity` accepts plain strings or prompts and keeps
the labels in ``HeadActivity.categories``.

>>> suite = default_prompts()
>>> len(suite), suite[0].category
(60, 'grammar_correction')
>>> len(default_prompts(["numerical_reasoning"]))
10
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

__all__ = ["CATEGORIES", "Category", "Prompt", "default_prompts", "load_prompts", "as_prompts"]

Category = Literal[
    "grammar_correction",
    "pos_tagging",
    "numerical_reasoning",
    "common_sense_reasoning",
    "abstract_creative",
    "emotional_social",
]
"""The six prompt categories of (B): syntax/grammar correction, part-of-speech tagging,
basic numerical reasoning, common-sense reasoning, abstract reasoning & creative thinking,
emotional intelligence & social cognition."""

CATEGORIES: tuple[str, ...] = get_args(Category)

_SUITE = "data/prompts.jsonl"


@dataclass(frozen=True)
class Prompt:
    """One prompt: the user's text and, optionally, its category label."""

    text: str
    category: str | None = None

    def __str__(self) -> str:
        return self.text


def default_prompts(categories: str | Iterable[str] | None = None) -> list[Prompt]:
    """The 60 prompts shipped with synergy-lens (10 per category), in file order.

    Args:
        categories: keep only these categories (names from :data:`CATEGORIES`); ``None``
            keeps all six.
    """
    text = resources.files("synergy_lens").joinpath(_SUITE).read_text(encoding="utf-8")
    suite = _parse_jsonl(text.splitlines(), source=f"synergy_lens/{_SUITE}")
    if categories is None:
        return suite
    wanted = [categories] if isinstance(categories, str) else list(categories)
    unknown = [c for c in wanted if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown prompt categories {unknown}: use names from {list(CATEGORIES)}")
    return [p for p in suite if p.category in wanted]


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read prompts from a ``.txt`` file (one per line) or a ``.jsonl`` file.

    - ``.txt``: every non-blank line is one prompt (surrounding whitespace stripped); no
      categories.
    - ``.jsonl``: one JSON value per non-blank line, either an object with ``"prompt"`` (or
      ``"text"``) and an optional ``"category"``, or a bare string.

    Raises:
        FileNotFoundError: no such file.
        ValueError: another extension, invalid JSON (with the line number), an object
            without a prompt, an empty prompt, or a file with no prompts at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no prompt file at {path}")
    suffix = path.suffix.lower()
    lines = path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is not prompt text
    if suffix == ".txt":
        prompts = [Prompt(line.strip()) for line in lines if line.strip()]
    elif suffix == ".jsonl":
        prompts = _parse_jsonl(lines, source=str(path))
    else:
        raise ValueError(
            f"cannot read prompts from {path.name!r}: use a .txt file (one prompt per line) "
            'or a .jsonl file (one {"prompt": ..., "category": ...} object per line)'
        )
    if not prompts:
        raise ValueError(f"{path} contains no prompts")
    return prompts


def _parse_jsonl(lines: Sequence[str], *, source: str) -> list[Prompt]:
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item: Any = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}, line {number}: invalid JSON ({err.msg})") from err
        if isinstance(item, dict):
            text, category = item.get("prompt", item.get("text")), item.get("category")
            if not isinstance(text, str):
                raise ValueError(
                    f'{source}, line {number}: expected a "prompt" string, got keys {sorted(item)}'
                )
            if category is not None and not isinstance(category, str):
                raise ValueError(f'{source}, line {number}: "category" must be a string')
        elif isinstance(item, str):
            text, category = item, None
        else:
            raise ValueError(
                f"{source}, line {number}: expected an object or a string, "
                f"got {type(item).__name__}"
            )
        if not text.strip():
            raise ValueError(f"{source}, line {number}: empty prompt")
        out.append(Prompt(text, category))
    return out


def as_prompts(prompts: str | Prompt | Iterable[str | Prompt]) -> list[Prompt]:
    """Normalise user input to a list of :class:`Prompt` (a single text is one prompt)."""
    if isinstance(prompts, (str, Prompt)):
        prompts = [prompts]
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, Prompt):
            out.append(p)
        elif isinstance(p, str):
            out.append(Prompt(p))
        else:
            raise TypeError(
                f"prompt {i} is a {type(p).__name__}: pass strings or synergy_lens Prompt objects "
                "(see default_prompts() and load_prompts())"
            )
    return out
