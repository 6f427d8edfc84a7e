"""Tests of the graded task suite.

Every generated answer is checked by a solver written here, independently of the
generator: arithmetic via Python's ``ast`` on the prompt text; ARC by brute force over
the rule space with NumPy primitives (lists: every program up to the level's length;
grids: every (cell permutation, colour map) pair, since recolouring commutes with the
geometric moves); relational chains by graph search over the facts parsed from the prompt.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from synergy_lens.record import tasks as T

LEVELS = range(1, 9)
BUILTIN = ("arithmetic", "arc", "relational")

# ----------------------------------------------------------------------------- arithmetic


def _eval_ast(node: ast.AST) -> tuple[int, int, int]:
    """(value, number of binary operations, max digits) of a +,-,* integer expression."""
    if isinstance(node, ast.Expression):
        return _eval_ast(node.body)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value, 0, len(str(node.value))
    if isinstance(node, ast.BinOp):
        a, na, da = _eval_ast(node.left)
        b, nb, db = _eval_ast(node.right)
        ops: dict[type, Callable[[int, int], int]] = {
            ast.Add: lambda x, y: x + y,
            ast.Sub: lambda x, y: x - y,
            ast.Mult: lambda x, y: x * y,
        }
        return ops[type(node.op)](a, b), na + nb + 1, max(da, db)
    raise AssertionError(f"unexpected syntax {ast.dump(node)}")


def solve_arithmetic(prompt: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"What is (.+)\? Answer with just the number\.", prompt)
    assert m, prompt
    return _eval_ast(ast.parse(m.group(1), mode="eval"))


@pytest.mark.parametrize("level", LEVELS)
def test_arithmetic_answers_verified(level: int) -> None:
    for seed in range(10):
        for task in T.generate_tasks("arithmetic", level, 5, seed=seed):
            value, n_ops, digits = solve_arithmetic(task.prompt)
            assert task.answer == str(value)
            assert (n_ops, digits) == (task.meta["n_operations"], task.meta["max_digits"])
            if level < 5:
                assert value >= 0
            if level >= 5:
                assert "(" in task.prompt


def test_arithmetic_level1_is_single_digit_addition() -> None:
    for task in T.generate_tasks("arithmetic", 1, 20, seed=3):
        assert re.fullmatch(r"What is [1-9] \+ [1-9]\? Answer with just the number\.", task.prompt)


# ----------------------------------------------------------------------------- arc

_LIST_OPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "reverse": lambda x: x[:, ::-1],
    "sort": lambda x: np.sort(x, axis=1),
    "sort_desc": lambda x: -np.sort(-x, axis=1),
    "double": lambda x: x * 2,
    "rotate_left": lambda x: np.roll(x, -1, axis=1),
    "rotate_right": lambda x: np.roll(x, 1, axis=1),
    **{f"add{k}": (lambda x, k=k: x + k) for k in range(1, 10)},
}
_GEOMETRIC: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "rot90": lambda g: np.rot90(g, -1),
    "rot180": lambda g: np.rot90(g, 2),
    "rot270": lambda g: np.rot90(g, 1),
    "flip_h": np.fliplr,
    "flip_v": np.flipud,
    "transpose": lambda g: g.T,
    "shift_down": lambda g: np.roll(g, 1, axis=0),
    "shift_right": lambda g: np.roll(g, 1, axis=1),
}
PALETTE = 3


def _ints(s: str) -> list[int]:
    return [int(t) for t in re.findall(r"-?\d+", s)]


def parse_arc(prompt: str) -> tuple[str, list[np.ndarray], list[np.ndarray], np.ndarray]:
    """(kind, example inputs, example outputs, query) from the prompt text."""
    if "input list" in prompt:
        pairs = re.findall(r"Input: \[([\d, ]*)\] -> Output: \[([\d, ]*)\]", prompt)
        query = re.search(r"Input: \[([\d, ]*)\] -> Output: \?", prompt)
        assert pairs and query
        ins = [np.array(_ints(a)) for a, _ in pairs]
        outs = [np.array(_ints(b)) for _, b in pairs]
        return "list", ins, outs, np.array(_ints(query.group(1)))
    blocks: dict[str, list[list[int]]] = {}
    current = None
    for line in prompt.splitlines():
        if re.fullmatch(r"[\d ]+", line) and current is not None:
            blocks[current].append(_ints(line))
        elif line.endswith(":"):
            current = line
            blocks[current] = []
        else:
            current = None
    ins = [np.array(v) for k, v in blocks.items() if re.fullmatch(r"Example \d+ input:", k)]
    outs = [np.array(v) for k, v in blocks.items() if re.fullmatch(r"Example \d+ output:", k)]
    query = np.array(blocks["Apply the rule to this input grid:"])
    return "grid", ins, outs, query


def brute_force_lists(
    inputs: np.ndarray, outputs: np.ndarray, max_len: int, primitives: list[str]
) -> tuple[set[tuple[int, ...]], int | None]:
    """Query outputs of all programs (len <= max_len) matching the examples, and the
    shortest length of a program matching examples + expected query output (the last row
    of ``outputs`` is the expected query output; it is excluded from matching)."""
    answers: set[tuple[int, ...]] = set()
    lengths: list[int] = []
    n_ex = len(outputs) - 1

    def visit(x: np.ndarray, length: int) -> None:  # depth-first over every program
        if np.array_equal(x[:n_ex], outputs[:n_ex]):
            answers.add(tuple(x[n_ex].tolist()))
            if np.array_equal(x, outputs):
                lengths.append(length)
        if length < max_len:
            for name in primitives:
                visit(_LIST_OPS[name](x), length + 1)

    visit(inputs, 0)
    return answers, min(lengths, default=None)


def _closure(start: tuple, moves: list[Callable[[tuple], tuple]], max_len: int) -> dict[tuple, int]:
    lengths = {start: 0}
    frontier = [start]
    for depth in range(1, max_len + 1):
        frontier = [m(s) for s in frontier for m in moves]
        frontier = [s for s in dict.fromkeys(frontier) if s not in lengths]
        lengths.update({s: depth for s in frontier})
    return lengths


def brute_force_grids(
    inputs: np.ndarray, outputs: np.ndarray, max_len: int
) -> tuple[set[bytes], int | None]:
    """Same as :func:`brute_force_lists` for grids, via (permutation, colour map) pairs."""
    m, n, _ = inputs.shape
    cells = np.arange(n * n).reshape(n, n)
    perms = _closure(
        tuple(cells.ravel()),
        [lambda p, f=f: tuple(f(np.array(p).reshape(n, n)).ravel()) for f in _GEOMETRIC.values()],
        max_len,
    )
    recolours = [(a, b) for a in range(PALETTE) for b in range(PALETTE) if a != b]
    maps = _closure(
        tuple(range(PALETTE)),
        [lambda c, a=a, b=b: tuple(b if v == a else v for v in c) for a, b in recolours],
        max_len,
    )
    luts = np.array(list(maps))  # [map, colour]
    map_len = np.array(list(maps.values()))
    flat_in = inputs.reshape(m, -1)
    flat_out = outputs.reshape(m, -1)
    n_ex = m - 1
    answers: set[bytes] = set()
    shortest = None
    for perm, p_len in perms.items():
        # out[c, k, j] = lut_c[input_k[perm_j]]: gather the source cell, then recolour.
        moved = luts[:, flat_in[:, list(perm)]]  # [map, input, cell]
        ok = (p_len + map_len <= max_len) & (moved[:, :n_ex] == flat_out[:n_ex]).all(axis=(1, 2))
        for c in np.flatnonzero(ok):
            answers.add(moved[c, n_ex].tobytes())
            if (moved[c] == flat_out).all():
                total = p_len + int(map_len[c])
                shortest = total if shortest is None else min(shortest, total)
    return answers, shortest


def _check_arc(task: T.Task) -> tuple[str, int, int]:
    kind, ins, outs, query = parse_arc(task.prompt)
    expected = T.extract_grid(task.answer) if kind == "grid" else T.extract_list(task.answer)
    assert expected is not None
    expected_arr = np.array(expected)
    inputs = np.stack([*ins, query])
    outputs = np.stack([*outs, expected_arr])
    steps = task.meta["n_steps"]
    # 1) the stated rule, applied with NumPy, reproduces every example and the answer.
    ops = _LIST_OPS if kind == "list" else None
    for x, y in zip(inputs, outputs, strict=True):
        for name in task.meta["program"]:
            if ops is not None:
                x = ops[name](x[None])[0]
            elif name.startswith("recolour_"):
                a, b = map(int, name.split("_")[1:])
                x = np.where(x == a, b, x)
            else:
                x = _GEOMETRIC[name](x)
        np.testing.assert_array_equal(x, y)
    # 2) brute force: every rule of <= steps primitives that fits the examples agrees on
    #    the query, and no shorter rule produces the whole table (true complexity).
    if kind == "list":
        prims = list(T.EASY_LIST_PRIMITIVES) if task.level == 1 else list(_LIST_OPS)
        answers, shortest = brute_force_lists(inputs, outputs, steps, prims)
        assert answers == {tuple(expected_arr.tolist())}
    else:
        answers_b, shortest = brute_force_grids(inputs, outputs, steps)
        assert answers_b == {expected_arr.tobytes()}
    assert shortest == steps
    assert all(not np.array_equal(a, b) for a, b in zip(inputs, outputs, strict=True))
    return kind, steps, inputs[0].size


@pytest.mark.parametrize("level", LEVELS)
def test_arc_answers_verified_by_brute_force(level: int) -> None:
    n_seeds = 8 if level <= 4 else 4
    for seed in range(n_seeds):
        for task in T.generate_tasks("arc", level, 2, seed=seed):
            _check_arc(task)


@pytest.mark.parametrize("level", [2, 5])
def test_arc_adds_examples_until_identified(level: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # From one example, many rules of these levels are ambiguous: the generator must add
    # examples until the brute-force solver finds a single answer.
    monkeypatch.setattr(T, "_ARC_MIN_EXAMPLES", 1)
    tasks = [t for seed in range(4) for t in T.generate_tasks("arc", level, 2, seed=seed)]
    for task in tasks:
        _check_arc(task)
    assert max(t.meta["n_examples"] for t in tasks) > 1


def test_arc_level1_is_reverse_or_sort() -> None:
    for task in T.generate_tasks("arc", 1, 20, seed=11):
        assert task.meta["program"] in (["reverse"], ["sort"], ["sort_desc"])
        assert task.prompt.rstrip().endswith("Answer with just the output list.")


# ----------------------------------------------------------------------------- relational

_FACT = re.compile(r"(\w+) is (\w+) than (\w+)\.")
_QUESTION = re.compile(r"Who is (?:the )?(\w+)\? Answer with just the name\.$")
# comparative / superlative -> (attribute, +1 for "more")
_WORDS = {
    "taller": ("height", 1), "shorter": ("height", -1), "tallest": ("height", 1), "shortest": ("height", -1),
    "older": ("age", 1), "younger": ("age", -1), "oldest": ("age", 1), "youngest": ("age", -1),
    "faster": ("speed", 1), "slower": ("speed", -1), "fastest": ("speed", 1), "slowest": ("speed", -1),
    "heavier": ("weight", 1), "lighter": ("weight", -1), "heaviest": ("weight", 1), "lightest": ("weight", -1),
}  # fmt: skip


def solve_relational(prompt: str) -> tuple[str, int, int]:
    """(answer, relevant facts, distractor facts) by graph search over parsed facts."""
    q = _QUESTION.search(prompt)
    assert q, prompt
    attribute, direction = _WORDS[q.group(1)]
    edges: dict[str, set[str]] = {}  # a -> b: a has more of the asked-for attribute
    people: set[str] = set()
    relevant = distractors = 0
    for a, word, b in _FACT.findall(prompt):
        people |= {a, b}
        attr, sign = _WORDS[word]
        if attr != attribute:
            distractors += 1
            continue
        relevant += 1
        hi, lo = (a, b) if sign * direction > 0 else (b, a)  # edge toward "less of the asked"
        edges.setdefault(hi, set()).add(lo)

    def reach(start: str) -> set[str]:
        seen, stack = {start}, [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    winners = [p for p in people if reach(p) == people]
    assert len(winners) == 1, f"answer not determined: {winners}"
    return winners[0], relevant, distractors


@pytest.mark.parametrize("level", LEVELS)
def test_relational_answers_verified_by_graph_search(level: int) -> None:
    for seed in range(10):
        for task in T.generate_tasks("relational", level, 5, seed=seed):
            answer, hops, distractors = solve_relational(task.prompt)
            assert task.answer == answer
            assert (hops, distractors) == (task.meta["n_hops"], task.meta["n_distractors"])
            assert set(task.meta["names"]) >= {answer}


# ----------------------------------------------------------------------------- difficulty


def test_difficulty_knobs_grow_with_level() -> None:
    arith = [
        solve_arithmetic(t.prompt)[1:]
        for lv in LEVELS
        for t in T.generate_tasks("arithmetic", lv, 3, seed=5)
    ]
    per_level = [set(arith[3 * i : 3 * i + 3]) for i in range(len(LEVELS))]
    assert all(len(s) == 1 for s in per_level)  # knobs are fixed within a level
    ops_digits = [next(iter(s)) for s in per_level]
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in itertools.pairwise(ops_digits))
    assert all(sum(b) > sum(a) for a, b in itertools.pairwise(ops_digits))

    arc = [_check_arc(T.generate_tasks("arc", lv, 1, seed=5)[0]) for lv in LEVELS]
    steps = [s for _, s, _ in arc]
    cells = [c for _, _, c in arc]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    assert all(b > a for a, b in itertools.pairwise(cells))

    rel = [solve_relational(T.generate_tasks("relational", lv, 1, seed=5)[0].prompt) for lv in LEVELS]
    hops = [h for _, h, _ in rel]
    assert all(b > a for a, b in itertools.pairwise(hops))
    distractors = [d for _, _, d in rel]
    assert distractors[:4] == [0, 0, 0, 0]  # distractor facts from level 5 on, then more
    assert all(b > a for a, b in itertools.pairwise(distractors[3:]))


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_tasks_and_prefix_property() -> None:
    for family in BUILTIN:
        a = T.generate_tasks(family, 3, 6, seed=42)
        assert a == T.generate_tasks(family, 3, 6, seed=42)
        assert a[:2] == T.generate_tasks(family, 3, 2, seed=42)


def test_different_seeds_and_levels_differ() -> None:
    for family in BUILTIN:
        prompts = {t.prompt for s in range(4) for t in T.generate_tasks(family, 2, 5, seed=s)}
        assert len(prompts) >= 18  # 20 tasks, near-certainly almost all distinct
        assert T.generate_tasks(family, 2, 5, seed=0) != T.generate_tasks(family, 2, 5, seed=1)


def test_streams_are_independent_of_generation_order() -> None:
    first = T.generate_tasks("relational", 4, 3, seed=7)
    T.generate_tasks("arithmetic", 4, 50, seed=7)  # must not perturb other streams
    assert T.generate_tasks("relational", 4, 3, seed=7) == first
    suite = T.task_suite(levels=[1, 2], n_per_level=2, seed=7)
    expected = [t for f in BUILTIN for lv in (1, 2) for t in T.generate_tasks(f, lv, 2, seed=7)]
    assert suite == expected


def test_seed_stream_is_pinned() -> None:
    # A stable hash (SHA-256), not hash(): this value holds in every process and version.
    assert (
        T.generate_tasks("arithmetic", 1, 1, seed=0)[0].prompt
        == "What is 2 + 9? Answer with just the number."
    )


# ----------------------------------------------------------------------------- scoring


def _task(family: str, answer: str, **meta: object) -> T.Task:
    return T.Task(family, 1, "prompt", answer, dict(meta))


@pytest.mark.parametrize(
    ("answer", "completion", "ok"),
    [
        ("7", "7", True),
        ("7", "The answer is 7. Because three plus four makes seven, and 12 is wrong.", True),
        ("7", "3 + 4 = 7", True),
        ("7", "Sure! 3 + 4 = 7.\n\nI hope this helps with 2 more questions.", True),
        ("7", "**7**", True),
        ("7", "7.0", True),
        ("57", "(12 + 7) * 3 = 19 * 3 = 57", True),
        ("-802", "The result is −802.", True),
        ("-802", "-802", True),
        ("1234", "1,234", True),
        ("12", "121", False),
        ("121", "12", False),
        ("12", "12.5", False),
        ("-802", "802", False),
        ("7", "8. Not 7.", False),
        ("7", "seven", False),
        ("7", "", False),
    ],
)
def test_arithmetic_scorer(answer: str, completion: str, ok: bool) -> None:
    assert T.score_answer(_task("arithmetic", answer), completion) is ok


@pytest.mark.parametrize(
    ("completion", "ok"),
    [
        ("[2, 1, 3]", True),
        ("Output: [2,1,3]\nThe rule reverses the list, e.g. [1, 2] -> [2, 1].", True),
        ("2, 1, 3", True),
        ("2 1 3", True),
        ("[2, 1, 3, 4]", False),
        ("[2, 1]", False),
        ("[1, 2, 3]", False),
        ("[3, 1, 2] becomes [2, 1, 3]", False),  # first list wins
        ("no idea", False),
    ],
)
def test_arc_list_scorer(completion: str, ok: bool) -> None:
    assert T.score_answer(_task("arc", "[2, 1, 3]", kind="list"), completion) is ok


GRID_ANSWER = "1 0 2\n0 1 1\n2 2 0"


@pytest.mark.parametrize(
    ("completion", "ok"),
    [
        (GRID_ANSWER, True),
        ("Output:\n1 0 2\n0 1 1\n2 2 0\n\nThe grid was rotated 3 times.", True),
        ("Here is the 3x3 grid:\n```\n1 0 2\n0 1 1\n2 2 0\n```", True),
        ("Output: 1 0 2\n0 1 1\n2 2 0", True),
        ("[[1, 0, 2], [0, 1, 1], [2, 2, 0]]", True),
        ("102\n011\n220", True),
        ("1, 0, 2\n0, 1, 1\n2, 2, 0", True),
        ("1 0 2\n0 1 1\n2 2 1", False),
        ("1 0 2\n0 1 1\n2 2 0\n1 1 1", False),
        ("1 0 2\n0 1 1", False),
        ("1 0 2\n0 1 2\n2 1 0", False),  # transposed
        ("no grid", False),
    ],
)
def test_arc_grid_scorer(completion: str, ok: bool) -> None:
    assert T.score_answer(_task("arc", GRID_ANSWER, kind="grid"), completion) is ok


@pytest.mark.parametrize(
    ("completion", "ok"),
    [
        ("Anna", True),
        ("Anna is the tallest.", True),
        ("anna", True),
        ("The tallest is Anna, since Ben is shorter than Anna.", True),
        ("Ben", False),
        ("Ben is shorter than Anna, so Anna.", False),  # first name mentioned wins
        ("Annabel", False),
        ("", False),
    ],
)
def test_relational_scorer(completion: str, ok: bool) -> None:
    assert (
        T.score_answer(_task("relational", "Anna", names=["Anna", "Ben", "Carl"]), completion) is ok
    )


@pytest.mark.parametrize("family", BUILTIN)
def test_generated_answers_score_correct_and_perturbations_wrong(family: str) -> None:
    for level in LEVELS:
        for task in T.generate_tasks(family, level, 2, seed=9):
            assert T.score_answer(task, task.answer)
            assert T.score_answer(
                task, f"{task.answer}\n\nExplanation: I worked it out step by step."
            )
            if family == "arithmetic":
                wrong = [str(int(task.answer) + 1), task.answer + "1"]
            elif family == "arc":
                last = list(re.finditer(r"\d+", task.answer))[-1]
                bumped = str(int(last.group()) + 1)
                wrong = [task.answer[: last.start()] + bumped + task.answer[last.end() :]]
            else:
                wrong = [n for n in task.meta["names"] if n != task.answer]
            for w in wrong:
                assert not T.score_answer(task, w), (task.answer, w)


# ----------------------------------------------------------------------------- API


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="arithmetic, arc, relational"):
        T.generate_tasks("sudoku", 1, 1)
    with pytest.raises(ValueError, match="level"):
        T.generate_tasks("arc", 0, 1)
    with pytest.raises(ValueError, match=r"1\.\.8"):
        T.generate_tasks("arc", 9, 1)
    with pytest.raises(ValueError, match="n must be"):
        T.generate_tasks("arc", 1, 0)
    with pytest.raises(ValueError, match="unknown task family"):
        T.score_answer(T.Task("sudoku", 1, "p", "a", {}), "a")
    with pytest.raises(ValueError, match="already registered"):
        T.register_family("arc", T._generate_arc, T._score_arc)


@pytest.fixture
def custom_family():
    name = "echo_test_family"

    def gen(rng, level):
        word = rng.choice(["alpha", "beta", "gamma"]) * level
        return f"Repeat: {word}", word, {"len": len(word)}

    T.register_family(name, gen, lambda task, c: c.strip() == task.answer)
    yield name
    T._FAMILIES.pop(name, None)


def test_register_family(custom_family: str) -> None:
    assert custom_family in T.FAMILIES
    tasks = T.generate_tasks(custom_family, 12, 3, seed=1)  # unbounded levels
    assert all(t.family == custom_family and t.meta["len"] == len(t.answer) for t in tasks)
    assert T.score_answer(tasks[0], f" {tasks[0].answer} ") and not T.score_answer(tasks[0], "x")
    assert {t.family for t in T.task_suite(levels=[1], n_per_level=1)} == {*BUILTIN, custom_family}


def test_wilson_interval_reference_values() -> None:
    # Reference values of the Wilson score interval at 95% (Newcombe 1998, Table I style).
    np.testing.assert_allclose(T.wilson_interval(5, 10), (0.2366, 0.7634), atol=1e-4)
    np.testing.assert_allclose(T.wilson_interval(0, 10), (0.0, 0.2775), atol=1e-4)
    np.testing.assert_allclose(T.wilson_interval(10, 10), (0.7225, 1.0), atol=1e-4)


def test_accuracy_table() -> None:
    tasks = T.task_suite(levels=[1, 2], n_per_level=4, seed=0)
    # correct on the first 3 of each (family, level), wrong on the 4th.
    completions = [t.answer if i % 4 < 3 else "wrong" for i, t in enumerate(tasks)]
    table = T.accuracy_table(tasks, completions)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == [
        "family",
        "level",
        "n",
        "n_correct",
        "accuracy",
        "ci_low",
        "ci_high",
    ]
    assert list(zip(table.family, table.level, strict=True)) == [
        (f, lv) for f in BUILTIN for lv in (1, 2)
    ]
    assert (table.n == 4).all() and (table.n_correct == 3).all()
    np.testing.assert_allclose(table.accuracy, 0.75)
    low, high = T.wilson_interval(3, 4)
    np.testing.assert_allclose(table.ci_low, low)
    np.testing.assert_allclose(table.ci_high, high)
    assert ((table.ci_low < table.accuracy) & (table.accuracy < table.ci_high)).all()
    with pytest.raises(ValueError, match="one completion per task"):
        T.accuracy_table(tasks, completions[:-1])


def test_wilson_interval_is_one_function_with_clear_errors() -> None:
    from synergy_lens.intervene import wilson_interval as from_intervene

    assert from_intervene is T.wilson_interval
    assert all(math.isnan(v) for v in T.wilson_interval(0, 0))
    for bad in [(3, 2), (-1, 5), (0, -1)]:
        with pytest.raises(ValueError, match="successes"):
            T.wilson_interval(*bad)
    with pytest.raises(ValueError, match="confidence"):
        T.wilson_interval(1, 2, confidence=1.5)
