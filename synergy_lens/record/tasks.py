"""A graded task suite that needs no download: generated tasks with verifiable answers.

Paper (A) (Zhang et al. 2026, arXiv 2603.29735) reports that the functional organisation
of attention heads changes abruptly with task difficulty (a "difficulty phase
transition").  Studying that needs tasks whose difficulty is a knob and whose answers
are known exactly.  This module generates them procedurally:

* ``"arithmetic"``: one integer expression; more operations and digits with level,
  ``*`` from level 4, parentheses (and possibly negative answers) from level 5.
* ``"arc"``: text versions of abstraction-and-reasoning puzzles.  A few input -> output
  examples of a hidden rule, then a query.  Levels 1-4 transform lists (level 1: reverse
  or sort), levels 5-8 transform square grids (rotations, flips, wrap-around shifts,
  recolouring).  The rule's *minimal* program length and the input size grow with level,
  and the examples always identify the answer (see :mod:`._solvers`).
* ``"relational"``: comparison chains ("Anna is taller than Ben. ... Who is the
  tallest?").  Level L has L hops (L + 1 people); facts are shuffled from level 3,
  phrased in both directions ("shorter than") from level 4, and mixed with facts about
  another attribute ("older than") from level 5.

Levels run from 1 (a 135M instruct model should solve it: "What is 3 + 4? Answer with
just the number.") to 8 (hard).  Every family is seeded and reproducible: the stream of
family F at level L is ``random.Random`` seeded from a SHA-256 of ``(seed, F, L)``, so
streams are independent of each other, of the order of generation, and of Python's
per-process ``hash`` randomisation; ``generate_tasks(F, L, 5)`` is a prefix of
``generate_tasks(F, L, 10)``.

Families live in a registry (:data:`FAMILIES`, :func:`register_family`), so users can add
their own generator and scorer.  Completions are scored by :func:`score_answer`
(extraction rules documented on each ``extract_*`` function) and summarised by
:func:`accuracy_table` with Wilson confidence intervals.

Example:
    >>> t = generate_tasks("arithmetic", 1, 1, seed=0)[0]
    >>> t.prompt.endswith("Answer with just the number.")
    True
    >>> score_answer(t, f"The answer is {t.answer}. Let me explain why.")
    True
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any, TypeAlias

import pandas as pd

from synergy_lens._binomial import wilson_interval
from synergy_lens._registry import Registry
from synergy_lens.record._solvers import (
    EASY_LIST_PRIMITIVES,
    LIST_DESCRIPTIONS,
    LIST_PRIMITIVES,
    Grid,
    apply_program,
    evaluate_tokens,
    extract_grid,
    extract_list,
    extract_name,
    extract_number,
    grid_primitives,
    is_identified,
    render_tokens,
    search_behaviours,
)

__all__ = [
    "FAMILIES",
    "TaskFamily",
    "MAX_LEVEL",
    "Task",
    "TaskGenerator",
    "TaskScorer",
    "accuracy_table",
    "extract_grid",
    "extract_list",
    "extract_name",
    "extract_number",
    "generate_tasks",
    "register_family",
    "score_answer",
    "task_suite",
    "wilson_interval",
]

MAX_LEVEL = 8
"""Highest level of the built-in families."""


@dataclass(frozen=True)
class Task:
    """One generated task.

    Attributes:
        family: registered family name, e.g. ``"arithmetic"``.
        level: difficulty level, 1 = easiest.
        prompt: the user message to send (already asks for a concise answer).
        answer: the reference answer as text (``"7"``, ``"[2, 1, 3]"``, ``"Anna"``; grids
            are rows of space-separated cells, one row per line).
        meta: family-specific details (difficulty knobs, the hidden rule, candidate names).
            Treat as read-only; excluded from hashing.
    """

    family: str
    level: int
    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False)


TaskGenerator: TypeAlias = Callable[[random.Random, int], tuple[str, str, dict[str, Any]]]
"""``(rng, level) -> (prompt, answer, meta)``; must draw all randomness from ``rng``."""
TaskScorer: TypeAlias = Callable[[Task, str], bool]
"""``(task, completion) -> correct?``"""



@dataclass(frozen=True)
class TaskFamily:
    """A registered family: its generator (call the family itself), scorer and top level."""

    generator: TaskGenerator
    scorer: TaskScorer
    max_level: int | None = None

    def __call__(self, rng: random.Random, level: int) -> tuple[str, str, dict[str, Any]]:
        return self.generator(rng, level)


_FAMILIES: Registry[TaskFamily] = Registry("task family", hint="add one with register_family")

FAMILIES: Mapping[str, TaskFamily] = MappingProxyType(_FAMILIES)
"""Read-only live view of the registry: family name -> :class:`TaskFamily` (registration
order); ``FAMILIES[name](rng, level)`` generates like the family's generator."""


def register_family(
    name: str,
    generator: TaskGenerator,
    scorer: TaskScorer,
    *,
    max_level: int | None = None,
    overwrite: bool = False,
) -> None:
    """Add a task family (or replace one with ``overwrite=True``).

    Args:
        name: family name used in :class:`Task` and :func:`generate_tasks`.
        generator: ``(rng, level) -> (prompt, answer, meta)``.  Use only ``rng`` for
            randomness so that seeds reproduce.
        scorer: ``(task, completion) -> bool``.  The ``extract_*`` helpers of this module
            implement the robust extraction rules of the built-in families.
        max_level: highest supported level (``None``: unbounded).
        overwrite: allow replacing an existing family.
    """
    if not callable(generator) or not callable(scorer):
        raise TypeError("generator and scorer must be callables")
    _FAMILIES.register(name, TaskFamily(generator, scorer, max_level), overwrite=overwrite)


def _stream(seed: int, family: str, level: int) -> random.Random:
    """Independent, stable random stream for (seed, family, level)."""
    digest = hashlib.sha256(f"synergy-lens/tasks/{seed}/{family}/{level}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def generate_tasks(family: str, level: int, n: int, *, seed: int = 0) -> list[Task]:
    """``n`` tasks of one family at one difficulty level.

    Same ``(family, level, seed)`` -> same tasks; a larger ``n`` extends the list.
    """
    spec = _FAMILIES[family]  # an unknown family raises, listing the registered ones
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise ValueError(f"level must be an integer >= 1, got {level!r}")
    top = spec.max_level
    if top is not None and level > top:
        raise ValueError(f"family {family!r} supports levels 1..{top}, got {level}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    rng = _stream(int(seed), family, level)
    tasks = []
    for _ in range(n):
        prompt, answer, meta = spec.generator(rng, level)
        tasks.append(Task(family, level, prompt, answer, dict(meta)))
    return tasks


def task_suite(
    families: Iterable[str] | None = None,
    levels: Iterable[int] = range(1, 6),
    n_per_level: int = 10,
    seed: int = 0,
) -> list[Task]:
    """Tasks for every (family, level): family-major, then level, then index.

    ``families=None`` uses every registered family in registration order.
    """
    names = list(_FAMILIES) if families is None else list(families)
    level_list = list(levels)
    if not level_list:
        raise ValueError("levels is empty; pass e.g. range(1, 6)")
    return [
        t for f in names for lv in level_list for t in generate_tasks(f, lv, n_per_level, seed=seed)
    ]


def score_answer(task: Task, completion: str) -> bool:
    """Whether a raw model completion answers ``task`` correctly (family's scorer)."""
    spec = _FAMILIES[task.family]
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    return bool(spec.scorer(task, completion))


# ----------------------------------------------------------------------------- arithmetic

_ARITHMETIC_LEVELS: dict[int, tuple[int, int, str]] = {
    # level: (operands, digits of the main operands, operators)
    1: (2, 1, "+"),
    2: (2, 2, "+-"),
    3: (3, 2, "+-"),
    4: (3, 3, "+-*"),
    5: (4, 3, "+-*"),
    6: (5, 3, "+-*"),
    7: (5, 4, "+-*"),
    8: (6, 4, "+-*"),
}
"""Operations + digits grow by one per level.  The right operand of ``*`` is a small
factor (2-9, or 10-99 from level 7) so products stay readable.  ``*`` appears at least
once from level 4; from level 5 one pair of parentheses groups a ``+``/``-`` next to a
``*`` or after a ``-``, and answers may be negative."""


def _generate_arithmetic(rng: random.Random, level: int) -> tuple[str, str, dict[str, Any]]:
    n_operands, digits, ops_allowed = _ARITHMETIC_LEVELS[level]
    n_ops = n_operands - 1
    while True:
        ops = [rng.choice(ops_allowed) for _ in range(n_ops)]
        if "*" in ops_allowed and "*" not in ops:
            ops[rng.randrange(n_ops)] = "*"
        group: tuple[int, int] | None = None
        if level >= 5:
            spans = [
                (i, j)
                for i in range(n_operands)
                for j in range(i + 1, n_operands)
                if (i, j) != (0, n_operands - 1)
                and any(op in "+-" for op in ops[i:j])
                and ((i > 0 and ops[i - 1] in "*-") or (j < n_ops and ops[j] == "*"))
            ]
            if not spans:
                continue
            group = rng.choice(spans)
        values = []
        for i in range(n_operands):
            if i > 0 and ops[i - 1] == "*":
                values.append(rng.randint(10, 99) if level >= 7 else rng.randint(2, 9))
            elif digits == 1:
                values.append(rng.randint(1, 9))
            else:
                values.append(rng.randint(10 ** (digits - 1), 10**digits - 1))
        tokens: list[int | str] = []
        for i, v in enumerate(values):
            if group is not None and i == group[0]:
                tokens.append("(")
            tokens.append(v)
            if group is not None and i == group[1]:
                tokens.append(")")
            if i < n_ops:
                tokens.append(ops[i])
        result = evaluate_tokens(tokens)
        if level < 5 and result < 0:
            continue
        expression = render_tokens(tokens)
        meta = {
            "expression": expression,
            "n_operations": n_ops,
            "max_digits": digits,
            "operators": sorted(set(ops)),
            "parentheses": group is not None,
        }
        return f"What is {expression}? Answer with just the number.", str(result), meta


def _score_arithmetic(task: Task, completion: str) -> bool:
    value = extract_number(completion)
    return value is not None and value == Fraction(task.answer)


# ----------------------------------------------------------------------------- arc

_ARC_LEVELS: dict[int, tuple[str, int, int]] = {
    # level: (kind, size, minimal rule length); size = list length or grid side
    1: ("list", 4, 1),  # one of reverse / sort / sort descending
    2: ("list", 5, 1),
    3: ("list", 6, 2),
    4: ("list", 7, 3),
    5: ("grid", 3, 3),
    6: ("grid", 4, 3),
    7: ("grid", 5, 4),
    8: ("grid", 6, 4),
}
_ARC_PALETTE = 3  # grid colours 0..2
_ARC_MIN_EXAMPLES, _ARC_MAX_EXAMPLES = 3, 6


def _format_list(xs: Sequence[int]) -> str:
    return "[" + ", ".join(str(x) for x in xs) + "]"


def _format_grid(g: Grid) -> str:
    return "\n".join(" ".join(str(c) for c in row) for row in g)


def _generate_arc(rng: random.Random, level: int) -> tuple[str, str, dict[str, Any]]:
    """Sample a rule of exactly the level's minimal length, add examples until identified.

    The rule is drawn uniformly among the distinct *behaviours* of minimal length
    ``steps`` on the sampled inputs (not among program strings, which would over-sample
    rules with many spellings).  Every example and the query must change under the rule.
    """
    kind, size, steps = _ARC_LEVELS[level]
    if kind == "list":
        names = EASY_LIST_PRIMITIVES if level == 1 else tuple(LIST_PRIMITIVES)
        prims: Mapping[str, Callable[[Any], Any]] = {k: LIST_PRIMITIVES[k] for k in names}

        def sample() -> Any:
            return tuple(rng.randrange(10) for _ in range(size))
    else:
        prims = grid_primitives(_ARC_PALETTE)

        def sample() -> Any:
            while True:
                g = tuple(
                    tuple(rng.randrange(_ARC_PALETTE) for _ in range(size)) for _ in range(size)
                )
                if len({c for row in g for c in row}) > 1:
                    return g

    for _ in range(200):
        inputs = [sample() for _ in range(_ARC_MIN_EXAMPLES + 1)]
        behaviours = search_behaviours(inputs, prims, steps)
        candidates = [
            b
            for b, p in behaviours.items()
            if len(p) == steps and all(o != i for o, i in zip(b, inputs, strict=True))
        ]
        if not candidates:
            continue
        target = rng.choice(candidates)
        program = behaviours[target]
        while (
            not is_identified(behaviours, target, len(inputs) - 1)
            and len(inputs) - 1 < _ARC_MAX_EXAMPLES
        ):
            new = sample()
            if apply_program(program, new, prims) == new:
                continue
            inputs.insert(len(inputs) - 1, new)
            behaviours = search_behaviours(inputs, prims, steps)
            target = tuple(apply_program(program, v, prims) for v in inputs)
        if is_identified(behaviours, target, len(inputs) - 1):
            return _render_arc(kind, inputs, target, program, steps, size)
    raise RuntimeError(
        f"could not generate an identifiable arc task at level {level}"
    )  # pragma: no cover


def _render_arc(
    kind: str,
    inputs: list[Any],
    outputs: tuple[Any, ...],
    program: tuple[str, ...],
    steps: int,
    size: int,
) -> tuple[str, str, dict[str, Any]]:
    n_ex = len(inputs) - 1
    if kind == "list":
        lines = ["Each input list is turned into its output list by the same hidden rule."]
        lines += [
            f"Input: {_format_list(i)} -> Output: {_format_list(o)}"
            for i, o in zip(inputs[:n_ex], outputs, strict=False)
        ]
        lines += [
            "Apply the rule to the last input.",
            f"Input: {_format_list(inputs[-1])} -> Output: ?",
        ]
        lines.append("Answer with just the output list.")
        answer = _format_list(outputs[-1])
        description = ", then ".join(LIST_DESCRIPTIONS[p] for p in program)
        n_cells = size
    else:
        lines = ["Each input grid is turned into its output grid by the same hidden rule.", ""]
        for k in range(n_ex):
            lines += [f"Example {k + 1} input:", _format_grid(inputs[k])]
            lines += [f"Example {k + 1} output:", _format_grid(outputs[k]), ""]
        lines += ["Apply the rule to this input grid:", _format_grid(inputs[-1]), ""]
        lines.append("Answer with just the output grid, one row per line.")
        answer = _format_grid(outputs[-1])
        description = ", then ".join(program)
        n_cells = size * size
    meta = {
        "kind": kind,
        "program": list(program),
        "description": description,
        "n_steps": steps,
        "n_cells": n_cells,
        "n_examples": n_ex,
    }
    return "\n".join(lines), answer, meta


def _score_arc(task: Task, completion: str) -> bool:
    if task.meta.get("kind") == "grid":
        got_grid = extract_grid(completion)
        return got_grid is not None and got_grid == extract_grid(task.answer)
    got = extract_list(completion)
    return got is not None and got == extract_list(task.answer)


# ----------------------------------------------------------------------------- relational

_RELATIONS = (
    ("taller", "shorter", "tallest", "shortest"),
    ("older", "younger", "oldest", "youngest"),
    ("faster", "slower", "fastest", "slowest"),
    ("heavier", "lighter", "heaviest", "lightest"),
)
_NAMES = (
    "Anna", "Ben", "Carl", "Dana", "Emma", "Finn", "Gina", "Hugo", "Ivan", "Jane", "Kate", "Leo",
    "Mia", "Nora", "Omar", "Paul", "Rita", "Sara", "Tom", "Uma", "Vera", "Wes", "Yuri", "Zoe",
)  # fmt: skip
_RELATIONAL_LEVELS: dict[int, tuple[bool, bool, int]] = {
    # level: (facts shuffled, both phrasings, distractor facts); hops = level, people = level + 1
    1: (False, False, 0),
    2: (False, False, 0),
    3: (True, False, 0),
    4: (True, True, 0),
    5: (True, True, 2),
    6: (True, True, 3),
    7: (True, True, 4),
    8: (True, True, 6),
}


def _generate_relational(rng: random.Random, level: int) -> tuple[str, str, dict[str, Any]]:
    """A chain of ``level`` comparisons over ``level + 1`` people; ask for an extreme.

    Facts are the adjacent links of a random total order (so every hop is needed to
    connect the ends).  Distractors compare the same people on another attribute, in an
    order whose extreme differs from the answer.
    """
    shuffled, mixed, n_distractors = _RELATIONAL_LEVELS[level]
    n_people = level + 1
    people = rng.sample(_NAMES, n_people)  # people[0] has the most of the attribute
    relation, distractor = rng.sample(_RELATIONS, 2)
    most = level == 1 or rng.random() < 0.5

    def phrase(hi: str, lo: str, rel: tuple[str, str, str, str]) -> str:
        if mixed and rng.random() < 0.5:
            return f"{lo} is {rel[1]} than {hi}."
        return f"{hi} is {rel[0]} than {lo}."

    facts = [phrase(people[i], people[i + 1], relation) for i in range(level)]
    if n_distractors:
        answer_pos = 0 if most else n_people - 1
        while True:
            other = rng.sample(people, n_people)
            if other[answer_pos] != people[answer_pos]:
                break
        links = sorted(rng.sample(range(n_people - 1), n_distractors))
        facts += [phrase(other[i], other[i + 1], distractor) for i in links]
    if shuffled:
        rng.shuffle(facts)
    if n_people == 2:
        question = f"Who is {relation[0] if most else relation[1]}?"
    else:
        question = f"Who is the {relation[2] if most else relation[3]}?"
    answer = people[0] if most else people[-1]
    prompt = " ".join(facts) + f" {question} Answer with just the name."
    meta = {
        "names": sorted(people),
        "order": list(people),
        "attribute": relation[0],
        "question": "most" if most else "least",
        "n_hops": level,
        "n_distractors": n_distractors,
    }
    return prompt, answer, meta


def _score_relational(task: Task, completion: str) -> bool:
    candidates = task.meta.get("names") or [task.answer]
    return extract_name(completion, candidates) == task.answer


register_family("arithmetic", _generate_arithmetic, _score_arithmetic, max_level=MAX_LEVEL)
register_family("arc", _generate_arc, _score_arc, max_level=MAX_LEVEL)
register_family("relational", _generate_relational, _score_relational, max_level=MAX_LEVEL)


# ----------------------------------------------------------------------------- summary


def accuracy_table(
    tasks: Sequence[Task], completions: Sequence[str], *, confidence: float = 0.95
) -> pd.DataFrame:
    """Accuracy per (family, level) with a Wilson confidence interval.

    Args:
        tasks: the tasks, e.g. from :func:`task_suite`.
        completions: one raw model completion per task, same order.
        confidence: coverage of the interval (0.95 -> Wilson 95% CI).

    Returns:
        DataFrame with columns ``family, level, n, n_correct, accuracy, ci_low, ci_high``,
        one row per (family, level); families in order of first appearance, levels ascending.
    """
    if len(tasks) != len(completions):
        raise ValueError(
            f"got {len(tasks)} tasks but {len(completions)} completions; pass one completion per task"
        )
    counts: dict[tuple[str, int], list[int]] = {}
    for task, completion in zip(tasks, completions, strict=True):
        c = counts.setdefault((task.family, task.level), [0, 0])
        c[0] += 1
        c[1] += score_answer(task, completion)
    family_order = {f: i for i, f in enumerate(dict.fromkeys(t.family for t in tasks))}
    rows = []
    for (family, level), (n, k) in sorted(
        counts.items(), key=lambda kv: (family_order[kv[0][0]], kv[0][1])
    ):
        low, high = wilson_interval(k, n, confidence)
        rows.append(
            {
                "family": family,
                "level": level,
                "n": n,
                "n_correct": k,
                "accuracy": k / n,
                "ci_low": low,
                "ci_high": high,
            }
        )
    columns = ["family", "level", "n", "n_correct", "accuracy", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)
