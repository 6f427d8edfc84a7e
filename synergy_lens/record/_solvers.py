"""Rule spaces and exact solvers behind the procedurally generated tasks.

The task generators in :mod:`synergy_lens.record.tasks` only sample; this module knows
the answers.  Two pieces live here:

* **Arithmetic.**  An expression is a flat token list (numbers, ``+ - *``, at most one
  pair of parentheses).  :func:`evaluate_tokens` evaluates it with the usual precedence
  (parentheses, then ``*``, then ``+``/``-`` left to right) without ``eval``.

* **ARC-style rules.**  A rule is a *program*: a short sequence of primitive transforms
  applied left to right (``("sort", "add2")`` sorts, then adds 2 to every element).  Lists
  are tuples of ints, grids are square tuples of row tuples.  :func:`search_behaviours`
  enumerates every program up to a depth breadth-first, but keyed by *behaviour* (the
  tuple of outputs a program produces on the given inputs) instead of by program text.
  Two programs that act identically on the inputs are one state, so the search stays
  small (rotations and flips form a finite group; colour maps are finite) and returns,
  for every reachable behaviour, its shortest program.  That gives the generator two
  guarantees: the sampled rule's *true* complexity (its minimal program length on these
  inputs) and *identifiability* (every program of at most that length that reproduces
  the examples predicts the same output for the query).

* **Answer extraction.**  ``extract_number``, ``extract_list``, ``extract_grid`` and
  ``extract_name`` read an answer out of a raw, possibly rambling, model completion;
  each documents its rule.  They are re-exported by ``tasks``.

Everything here is pure Python on tuples and deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import TypeAlias, TypeVar

IntList: TypeAlias = tuple[int, ...]
Grid: TypeAlias = tuple[tuple[int, ...], ...]
Program: TypeAlias = tuple[str, ...]
T = TypeVar("T")

# ----------------------------------------------------------------------------- arithmetic

OPERATORS = ("+", "-", "*")


def evaluate_tokens(tokens: Sequence[int | str]) -> int:
    """Evaluate ``[12, "+", "(", 3, "*", 4, ")"]``-style tokens with standard precedence.

    Parentheses bind first, then ``*``, then ``+``/``-`` left to right.  Integers only
    (no division), so the result is exact.
    """
    pos = 0

    def atom() -> int:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            value = additive()
            if tokens[pos] != ")":
                raise ValueError(f"unbalanced parentheses in {tokens!r}")
            pos += 1
            return value
        if isinstance(tok, str):
            raise TypeError(f"unexpected token {tok!r} in {tokens!r}")
        return tok

    def product() -> int:
        nonlocal pos
        value = atom()
        while pos < len(tokens) and tokens[pos] == "*":
            pos += 1
            value *= atom()
        return value

    def additive() -> int:
        nonlocal pos
        value = product()
        while pos < len(tokens) and tokens[pos] in ("+", "-"):
            op = tokens[pos]
            pos += 1
            rhs = product()
            value = value + rhs if op == "+" else value - rhs
        return value

    result = additive()
    if pos != len(tokens):
        raise ValueError(f"trailing tokens in {tokens!r}")
    return result


def render_tokens(tokens: Sequence[int | str]) -> str:
    """``[12, "+", "(", 3, ")"]`` -> ``"12 + (3)"`` (spaces around binary operators)."""
    out = ""
    for tok in tokens:
        if tok == "(":
            out += "("
        elif tok == ")":
            out += ")"
        elif isinstance(tok, str):
            out += f" {tok} "
        else:
            out += str(tok)
    return out


# ----------------------------------------------------------------------------- list rules


def _add(k: int) -> Callable[[IntList], IntList]:
    return lambda xs: tuple(x + k for x in xs)


LIST_PRIMITIVES: dict[str, Callable[[IntList], IntList]] = {
    "reverse": lambda xs: xs[::-1],
    "sort": lambda xs: tuple(sorted(xs)),
    "sort_desc": lambda xs: tuple(sorted(xs, reverse=True)),
    **{f"add{k}": _add(k) for k in range(1, 10)},
    "double": lambda xs: tuple(2 * x for x in xs),
    "rotate_left": lambda xs: xs[1:] + xs[:1],
    "rotate_right": lambda xs: xs[-1:] + xs[:-1],
}
"""List transforms; a rule composes them left to right.  ``add1``..``add9`` are all
primitives so that "add 6" is one step, not ``add3, add3``."""

EASY_LIST_PRIMITIVES = ("reverse", "sort", "sort_desc")
"""The level-1 rule space: one of these, on short lists."""

LIST_DESCRIPTIONS: dict[str, str] = {
    "reverse": "reverse the list",
    "sort": "sort ascending",
    "sort_desc": "sort descending",
    **{f"add{k}": f"add {k} to every element" for k in range(1, 10)},
    "double": "double every element",
    "rotate_left": "move the first element to the end",
    "rotate_right": "move the last element to the front",
}

# ----------------------------------------------------------------------------- grid rules


def _recolour(a: int, b: int) -> Callable[[Grid], Grid]:
    return lambda g: tuple(tuple(b if c == a else c for c in row) for row in g)


GRID_GEOMETRIC: dict[str, Callable[[Grid], Grid]] = {
    "rot90": lambda g: tuple(zip(*g[::-1], strict=True)),  # clockwise
    "rot180": lambda g: tuple(row[::-1] for row in g[::-1]),
    "rot270": lambda g: tuple(zip(*g, strict=True))[::-1],  # counter-clockwise
    "flip_h": lambda g: tuple(row[::-1] for row in g),  # mirror left <-> right
    "flip_v": lambda g: g[::-1],  # mirror top <-> bottom
    "transpose": lambda g: tuple(zip(*g, strict=True)),
    "shift_down": lambda g: g[-1:] + g[:-1],  # rows move down, last row wraps to top
    "shift_right": lambda g: tuple(row[-1:] + row[:-1] for row in g),
}
"""Cell permutations of a square grid (rotations clockwise, shifts wrap around)."""


def grid_primitives(palette: int) -> dict[str, Callable[[Grid], Grid]]:
    """Geometric transforms plus ``recolour_a_b`` (every cell of colour a becomes b)."""
    prims = dict(GRID_GEOMETRIC)
    for a in range(palette):
        for b in range(palette):
            if a != b:
                prims[f"recolour_{a}_{b}"] = _recolour(a, b)
    return prims


# ----------------------------------------------------------------------------- search


def apply_program(program: Program, value: T, primitives: Mapping[str, Callable[[T], T]]) -> T:
    """Apply the primitives named in ``program`` to ``value``, left to right."""
    for name in program:
        value = primitives[name](value)
    return value


def search_behaviours(
    inputs: Sequence[T], primitives: Mapping[str, Callable[[T], T]], max_depth: int
) -> dict[tuple[T, ...], Program]:
    """Every behaviour reachable by a program of at most ``max_depth`` primitives.

    A behaviour is the tuple of outputs on ``inputs``; the value is a shortest program
    producing it (breadth-first, primitives tried in mapping order, so deterministic).
    The identity behaviour maps to the empty program.
    """
    start = tuple(inputs)
    seen: dict[tuple[T, ...], Program] = {start: ()}
    frontier = [start]
    for _ in range(max_depth):
        nxt: list[tuple[T, ...]] = []
        for state in frontier:
            program = seen[state]
            for name, fn in primitives.items():
                out = tuple(fn(v) for v in state)
                if out not in seen:
                    seen[out] = (*program, name)
                    nxt.append(out)
        frontier = nxt
    return seen


def is_identified(
    behaviours: Mapping[tuple[T, ...], Program], target: tuple[T, ...], n_examples: int
) -> bool:
    """Whether the shown examples pin down the query output.

    ``behaviours`` comes from :func:`search_behaviours` on ``examples + [query]``;
    ``target`` is the rule's outputs on the same inputs.  True when every behaviour that
    reproduces the first ``n_examples`` outputs also gives ``target``'s query output.
    """
    shown, query = target[:n_examples], target[n_examples]
    return all(b[n_examples] == query for b in behaviours if b[:n_examples] == shown)


# ----------------------------------------------------------------------------- answer extraction
# Rules for reading an answer out of a raw (possibly rambling) model completion; the
# built-in scorers of tasks.py use them, and so can user-registered families.

_NUMBER_RE = re.compile(r"(?<![\w.])(-?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!\d)")
_NUM = r"\d[\d,]*(?:\.\d+)?"
_ECHO_RE = re.compile(rf"-?{_NUM}[ \t)]*(?:[-+*/×÷][ \t(]*-?{_NUM}[ \t)]*)+=")


def extract_number(text: str) -> Fraction | None:
    """The answer number in a completion: the first number not part of a restated sum.

    Rule: scan numbers left to right (``-12``, ``1,234`` and ``3.50`` are single numbers;
    a minus counts only when not glued to a preceding word or digit; the Unicode minus is
    accepted).  If a number starts a restated expression, numbers joined by operators
    and parentheses on one line and ending in ``=`` (``"3 + 4 = 7"``,
    ``"(12 + 7) * 3 = 19 * 3 = 57"``), skip past the ``=``.  The first remaining number
    is the answer.  So ``"7"``, ``"The answer is 7. Because 3 + 4 ..."`` and
    ``"3 + 4 = 7"`` all give 7, while ``"8, since 3 + 4 = 7"`` gives 8 and ``"121"``
    never matches 12.
    """
    text = text.replace("\u2212", "-")
    pos = 0
    while (m := _NUMBER_RE.search(text, pos)) is not None:
        echo = _ECHO_RE.match(text, m.start())
        if echo is not None:
            pos = echo.end()
            continue
        sign, whole, frac = m.groups()
        return Fraction(sign + whole.replace(",", "") + (frac or ""))
    return None


_BRACKET_LIST_RE = re.compile(r"\[([-\d\s,]*)\]")
_BARE_LIST_RE = re.compile(r"-?\d+(?:[ \t]*,[ \t]*-?\d+)+|(?m:^[ \t]*-?\d+(?:[ \t]+-?\d+)+[ \t]*$)")


def extract_list(text: str) -> IntList | None:
    """The first list of integers in a completion.

    Rule: the earliest of (a) a bracketed list of integers ``[2, 1, 3]`` (``[]`` is the
    empty list), (b) a bare comma-separated run ``2, 1, 3``, (c) a line holding only
    space-separated integers.  Compared exactly, so an extra or missing element is wrong.
    """
    matches = [m for m in (_BRACKET_LIST_RE.search(text), _BARE_LIST_RE.search(text)) if m]
    if not matches:
        return None
    m = min(matches, key=lambda m: m.start())
    return tuple(int(t) for t in re.findall(r"-?\d+", m.group(0)))


_LABEL_RE = re.compile(
    r"^\s*(?:the\s+|test\s+|final\s+)?(?:output|answer)(?:\s+grid)?(?:\s+is)?\s*[:=]?",
    re.IGNORECASE,
)
_ROW_RE = re.compile(r"^[\s\[\](),|]*\d[\d\s\[\](),|]*$")


def _parse_row(body: str) -> tuple[int, ...]:
    # Cells are single-digit colours, so "210" is read as 2 1 0.
    return tuple(int(d) for tok in re.findall(r"\d+", body) for d in tok)


def extract_grid(text: str) -> Grid | None:
    """The first grid in a completion, as a tuple of row tuples.

    Rule: a nested list ``[[1, 0], [2, 1]]`` if the completion contains ``[[``; otherwise
    the first block of consecutive lines that hold only digits and separators (spaces,
    commas, brackets, ``|``), after stripping a leading ``Output:``/``Answer:`` label.
    Lines before the block are ignored; the block ends at the first other line (a blank
    line, a code fence, prose).  Cells are single digits, so ``210`` reads as ``2 1 0``.
    """
    if "[[" in text:
        start = text.index("[[")
        end = text.find("]]", start)
        if end != -1:
            rows = tuple(
                _parse_row(r) for r in re.findall(r"\[([^\[\]]*)\]", text[start + 1 : end + 1])
            )
            if rows and all(rows):
                return rows
    rows_list: list[tuple[int, ...]] = []
    for line in text.splitlines():
        body = _LABEL_RE.sub("", line, count=1).strip()
        if body and _ROW_RE.match(body):
            rows_list.append(_parse_row(body))
        elif rows_list:
            break
    return tuple(rows_list) or None


def extract_name(text: str, candidates: Iterable[str]) -> str | None:
    """The candidate name mentioned first in ``text`` (whole word, case-insensitive)."""
    best: tuple[int, str] | None = None
    for name in candidates:
        m = re.search(rf"\b{re.escape(name)}\b", text, re.IGNORECASE)
        if m is not None and (best is None or m.start() < best[0]):
            best = (m.start(), name)
    return None if best is None else best[1]
