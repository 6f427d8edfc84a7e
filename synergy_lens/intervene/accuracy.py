"""Task accuracy under ablation (paper (B), ablation 2) and the layer-skip sweep (paper (A)).

What and why
------------
Divergence says *that* behaviour changes; accuracy on tasks with checkable answers says
whether the change *matters*. Paper (B) ("Methods") perturbs the top 25% synergistic heads,
the top 25% redundant heads and random 25% sets with Gaussian weight noise (std 0.5 on the
heads' ``W_Q`` rows and ``W_O`` columns) and compares accuracy. Here:

- the model generates answers greedily *with the intervention active* (hooks and weight
  changes apply during cached generation on both backends), and each completion is scored
  by the task's scorer;
- "synergistic" = the ``fraction`` of heads with the highest score, "redundant" = the
  ``fraction`` with the lowest (the same score, e.g. the rank gradient of (B)), "random" =
  ``n_random`` random sets of the same size (seeds ``seed, seed + 1, ...``);
- accuracy comes with a Wilson score interval (binomial, ``confidence`` level). For the
  random condition the counts of all seeds are pooled (so the interval is narrower than
  that of one seed; the per-seed accuracies are in the table too).

Tasks: the graded suite (:mod:`synergy_lens.record.tasks`, ``generate_tasks`` and
``score_answer``) by default, or the small built-in arithmetic set
(:func:`builtin_arithmetic`, "What is 3 + 4? Answer with just the number.").

:func:`layer_skip_sweep` skips every layer in turn (:func:`~.ablate.skip_layers`) and
reports, per layer, the behaviour divergence on a recording and the task accuracy.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from synergy_lens._binomial import wilson_interval
from synergy_lens._io import SavedFields
from synergy_lens._repr import SummaryRepr
from synergy_lens.intervene.ablate import (
    AblationMode,
    ablate_heads,
    noise_heads,
    prepare_reference,
    skip_hooks,
    skip_layers,
)
from synergy_lens.intervene.divergence import _divergences, score_orders, teacher_forced_sequences
from synergy_lens.intervene.heads import head_label
from synergy_lens.intervene.units import UnitGrid, prepare_units, unit_ablation_hooks, unit_grid
from synergy_lens.models.adapter import ModelAdapter, adapt
from synergy_lens.record.tasks import generate_tasks, score_answer
from synergy_lens.units import normalised_depth

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AccuracyResult",
    "ArithmeticTask",
    "LayerSkipResult",
    "accuracy_under_ablation",
    "builtin_arithmetic",
    "default_tasks",
    "layer_skip_sweep",
    "wilson_interval",
]


# ----------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class ArithmeticTask:
    """A built-in task: ``prompt`` and the integer ``answer`` as text."""

    prompt: str
    answer: str
    family: str = "builtin-arithmetic"


def builtin_arithmetic(n: int, *, seed: int = 0) -> list[ArithmeticTask]:
    """``n`` one-step sums of one-digit numbers (a 135M instruct model mostly solves them)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        out.append(ArithmeticTask(f"What is {a} + {b}? Answer with just the number.", str(a + b)))
    return out


def _score_builtin(task: Any, completion: str) -> bool:
    """Correct when the first integer in the completion equals the answer."""
    m = re.search(r"-?\d+", completion.replace(",", ""))
    return m is not None and m.group(0).lstrip("+") == str(task.answer).strip()


def default_tasks(n: int = 40, *, level: int = 1, family: str = "arithmetic", seed: int = 0) -> list[Any]:
    """``n`` tasks of the graded suite (:func:`synergy_lens.record.tasks.generate_tasks`)."""
    return list(generate_tasks(family, level, n, seed=seed))


def _scorer(tasks: Sequence[Any], scorer: Callable[[Any, str], bool] | None) -> Callable[[Any, str], bool]:
    if scorer is not None:
        return scorer
    if tasks and not isinstance(tasks[0], ArithmeticTask):
        return score_answer
    return _score_builtin


def _generate_answers(
    adapter: ModelAdapter, prompt_ids: list[list[int]], *, max_new_tokens: int, batch_size: int
) -> list[str]:
    out: list[str] = []
    for i in range(0, len(prompt_ids), batch_size):
        new = adapter.generate(prompt_ids[i : i + batch_size], max_new_tokens=max_new_tokens)
        out += [adapter.tokenizer.decode(ids, skip_special_tokens=True) for ids in new]
    return out


def _prompt_ids(adapter: ModelAdapter, tasks: Sequence[Any], chat_template: bool | None) -> list[list[int]]:
    if not tasks:
        raise ValueError("no tasks to score")
    has_template = bool(getattr(adapter.tokenizer, "chat_template", None))
    use = has_template if chat_template is None else chat_template
    texts = [adapter.apply_chat_template(t.prompt) if use else t.prompt for t in tasks]
    return [adapter.tokenize(t) for t in texts]


# ----------------------------------------------------------------------------- accuracy


@dataclass(repr=False)
class AccuracyResult(SummaryRepr, SavedFields):
    """Task accuracy per ablation condition.

    Attributes:
        conditions: one name per row (``"clean"``, ``"synergistic"``, ``"redundant"``,
            ``"random"`` once per seed).
        seeds: the random seed of each row (-1 for non-random rows).
        correct: ``[row, task]`` whether each completion was right.
        heads: row index -> labels of the ablated heads.
        completions: ``[row][task]`` decoded completions.
        answers: the reference answers.
        meta: method, std, fraction, confidence, model name.
    """

    FORMAT: ClassVar[str] = "synergy_lens.AccuracyResult/1"

    conditions: list[str]
    seeds: list[int]
    correct: Bool[Tensor, "row task"]
    heads: list[list[str]]
    completions: list[list[str]]
    answers: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per condition and seed: ``n, n_correct, accuracy, ci_low, ci_high``."""
        import pandas as pd

        conf = float(self.meta.get("confidence", 0.95))
        rows = []
        for i, (name, seed) in enumerate(zip(self.conditions, self.seeds)):
            k, n = int(self.correct[i].sum()), int(self.correct.shape[1])
            lo, hi = wilson_interval(k, n, conf)
            rows.append((name, seed, len(self.heads[i]), n, k, k / n, lo, hi))
        cols = ["condition", "seed", "n_heads", "n", "n_correct", "accuracy", "ci_low", "ci_high"]
        return pd.DataFrame(rows, columns=cols)

    def summary(self) -> pd.DataFrame:
        """One row per condition; random seeds pooled (Wilson interval of the pooled counts)."""
        import pandas as pd

        conf = float(self.meta.get("confidence", 0.95))
        rows = []
        for name in dict.fromkeys(self.conditions):
            idx = [i for i, c in enumerate(self.conditions) if c == name]
            k, n = int(self.correct[idx].sum()), int(self.correct[idx].numel())
            lo, hi = wilson_interval(k, n, conf)
            per_seed = self.correct[idx].float().mean(1)
            rows.append((name, len(idx), n, k, k / n, lo, hi, float(per_seed.min()), float(per_seed.max())))
        cols = ["condition", "n_seeds", "n", "n_correct", "accuracy", "ci_low", "ci_high", "seed_min", "seed_max"]
        return pd.DataFrame(rows, columns=cols)


def _condition(
    adapter: ModelAdapter, heads: list[tuple[int, int]], method: str, *, std: float, seed: int,
    mode: str | AblationMode, reference: Any, grid: UnitGrid | None = None,
) -> contextlib.AbstractContextManager[Any]:
    if not heads:
        return contextlib.nullcontext()
    if grid is not None:  # units other than every layer's heads: their hooks, the mode's prepared state
        name = mode if isinstance(mode, str) else mode.name
        return adapter.hooks(unit_ablation_hooks(adapter, grid, heads, mode=name, state=reference))
    if method == "noise":
        return noise_heads(adapter, heads, std=std, seed=seed)
    return ablate_heads(adapter, heads, mode=mode, reference=reference)


def _units_of(adapter: ModelAdapter, scores: Any, method: str) -> UnitGrid | None:
    """The grid of the scores' units, or None for every layer's heads (the paper's case)."""
    grid = unit_grid(scores) if isinstance(getattr(scores, "labels", None), list) else unit_grid(adapter)
    if grid == unit_grid(adapter):
        return None
    if method == "noise":
        raise ValueError(
            f"method='noise' perturbs attention-head weights, but these scores are of {grid.kind!r} units: "
            "use method='ablate' (with mode='zero', 'mean' or 'resample')"
        )
    return grid


def accuracy_under_ablation(
    model: Any,
    scores: Any,
    tasks: Sequence[Any] | None = None,
    *,
    fraction: float = 0.25,
    method: str = "noise",
    std: float = 0.5,
    mode: str | AblationMode = "zero",
    reference: Any = None,
    n_random: int = 3,
    seed: int = 0,
    scorer: Callable[[Any, str], bool] | None = None,
    max_new_tokens: int = 12,
    batch_size: int = 16,
    chat_template: bool | None = None,
    confidence: float = 0.95,
    progress: bool = True,
) -> AccuracyResult:
    """Accuracy with the top synergistic vs top redundant vs random heads ablated (paper (B)).

    Args:
        model: a HookedTransformer, TransformerBridge or ``ModelAdapter``.
        scores: per-head scores, ``[layer, head]`` (larger = more synergistic) or a
            ``HeadScores``; the ``HeadScores`` of other units (``record_activity(units=...)``)
            ablate those units (``method="ablate"``, :func:`~.units.ablate_units`).
        tasks: objects with ``.prompt`` and ``.answer`` (default :func:`default_tasks`).
        fraction: share of heads in each ablated set (paper (B): 0.25).
        method: ``"noise"`` (paper (B): Gaussian noise on ``W_Q`` rows and ``W_O`` columns,
            :func:`~.ablate.noise_heads`) or ``"ablate"`` (head-output ablation with
            ``mode``/``reference``, :func:`~.ablate.ablate_heads`).
        std: noise standard deviation for ``method="noise"``; each condition draws its
            noise with ``seed`` (random sets: their own seed).
        n_random: random head sets (seeds ``seed + i``).
        scorer: ``(task, completion) -> bool``; default the suite's ``score_answer`` or the
            built-in first-integer match.
        max_new_tokens: greedy tokens generated per answer.
        chat_template: wrap prompts in the chat template (default: when the tokenizer has one).
        confidence: level of the Wilson intervals.

    Returns:
        :class:`AccuracyResult` (``.summary()``, ``.to_dataframe()``).
    """
    adapter = adapt(model)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if method not in ("noise", "ablate"):
        raise ValueError(f"unknown method {method!r}: use 'noise' (paper (B)) or 'ablate'")
    tasks = list(tasks) if tasks is not None else default_tasks()
    score_fn = _scorer(tasks, scorer)
    grid = _units_of(adapter, scores, method)
    units: Any = adapter if grid is None else grid
    k = max(1, round(fraction * units.n_units))
    if grid is not None:
        state = prepare_units(adapter, grid, mode if isinstance(mode, str) else mode.name, reference)
    else:
        state = prepare_reference(adapter, mode, reference) if method == "ablate" else None
    sets = _head_sets(units, scores, k, seed, n_random)
    ids = _prompt_ids(adapter, tasks, chat_template)
    it = sets
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(sets, desc="accuracy conditions", leave=False)
    correct, completions = [], []
    for _, s, heads in it:
        with _condition(adapter, heads, method, std=std, seed=s, mode=mode, reference=state, grid=grid):
            texts = _generate_answers(adapter, ids, max_new_tokens=max_new_tokens, batch_size=batch_size)
        completions.append(texts)
        correct.append([bool(score_fn(t, c)) for t, c in zip(tasks, texts)])
    return AccuracyResult(
        conditions=[name for name, _, _ in sets],
        seeds=[s if name == "random" else -1 for name, s, _ in sets],
        correct=torch.tensor(correct, dtype=torch.bool),
        heads=[[units.label(*lh) if grid is not None else head_label(*lh) for lh in heads] for _, _, heads in sets],
        completions=completions,
        answers=[str(t.answer) for t in tasks],
        meta={
            "method": method, "std": std, "mode": mode if isinstance(mode, str) else mode.name,
            "fraction": fraction, "n_ablated": k, "confidence": confidence,
            "model_name": adapter.name, "max_new_tokens": max_new_tokens,
        },
    )


def _head_sets(
    adapter: ModelAdapter | UnitGrid, scores: Any, k: int, seed: int, n_random: int
) -> list[tuple[str, int, list[tuple[int, int]]]]:
    """``(condition, seed, heads)``: clean, the top ``k`` synergistic and redundant units, and
    ``n_random`` random sets of ``k`` (seeds ``seed + i``), on the model's heads or a unit grid."""
    orders = score_orders(scores, adapter.n_layers, adapter.n_heads)
    sets: list[tuple[str, int, list[tuple[int, int]]]] = [
        ("clean", -1, []),
        ("synergistic", seed, orders["synergy-first"][:k]),
        ("redundant", seed, orders["redundancy-first"][:k]),
    ]
    for s in range(n_random):
        perm = torch.randperm(adapter.n_units, generator=torch.Generator().manual_seed(seed + s))
        sets.append(("random", seed + s, [(u // adapter.n_heads, u % adapter.n_heads) for u in perm[:k].tolist()]))
    return sets


# ----------------------------------------------------------------------------- layer skipping


@dataclass(repr=False)
class LayerSkipResult(SummaryRepr, SavedFields):
    """Every layer skipped in turn: behaviour divergence and task accuracy per layer.

    Attributes:
        layers: the skipped layer of each row, ``[layer]``.
        divergence: mean over prompts of the divergence (nats), ``[layer]`` (NaN if not measured).
        divergence_per_prompt: ``[layer, prompt]``.
        correct: ``[layer, task]`` (empty if accuracy was not measured).
        clean_correct: ``[task]`` without skipping.
        meta: confidence, model name, settings.
    """

    FORMAT: ClassVar[str] = "synergy_lens.LayerSkipResult/1"

    layers: Int[Tensor, " layer"]
    divergence: Float[Tensor, " layer"]
    divergence_per_prompt: Float[Tensor, "layer prompt"]
    correct: Bool[Tensor, "layer task"] | Bool[Tensor, "0 0"]
    clean_correct: Bool[Tensor, " task"]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> Float[Tensor, " layer"]:
        return self.correct.float().mean(1) if self.correct.numel() else torch.full_like(self.divergence, math.nan)

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean()) if self.clean_correct.numel() else math.nan

    def to_dataframe(self) -> pd.DataFrame:
        """One row per skipped layer: depth, divergence, accuracy and its Wilson interval."""
        import pandas as pd

        conf = float(self.meta.get("confidence", 0.95))
        layers = self.layers.tolist()
        n_layers = int(self.meta.get("n_layers", max(layers, default=-1) + 1))
        depth = normalised_depth(n_layers)
        rows = []
        for i, layer in enumerate(layers):
            if self.correct.numel():
                k, n = int(self.correct[i].sum()), int(self.correct.shape[1])
                lo, hi = wilson_interval(k, n, conf)
                acc = k / n
            else:
                n, acc, lo, hi = 0, math.nan, math.nan, math.nan
            rows.append((layer, float(depth[layer]), float(self.divergence[i]), n, acc, lo, hi))
        cols = ["layer", "depth", "divergence", "n_tasks", "accuracy", "ci_low", "ci_high"]
        return pd.DataFrame(rows, columns=cols)


def layer_skip_sweep(
    model: Any,
    activity: Any = None,
    tasks: Sequence[Any] | None = None,
    *,
    layers: Sequence[int] | None = None,
    accuracy: bool = True,
    scorer: Callable[[Any, str], bool] | None = None,
    max_new_tokens: int = 12,
    batched: bool = True,
    batch_size: int = 16,
    chat_template: bool | None = None,
    confidence: float = 0.95,
    progress: bool = True,
) -> LayerSkipResult:
    """Skip each layer in turn; measure divergence on ``activity`` and accuracy on ``tasks``.

    Args:
        activity: clean generations for the divergence (a ``HeadActivity`` or
            ``(prompt_ids, generated_ids)`` pairs); ``None`` skips the divergence.
        tasks: tasks with checkable answers (default :func:`default_tasks`); used when
            ``accuracy``. This is the slow part: every task is generated once per skipped
            layer plus once clean (on SmolLM2 on a 2-core CPU the default sweep took
            minutes); the progress bar says how many runs, ``accuracy=False`` skips it.
        layers: which layers (default all).
        batched: the divergence of all skipped layers is computed with per-batch-element
            layer masks, ``batch_size`` conditions per pass.
    """
    adapter = adapt(model)
    chosen = list(range(adapter.n_layers)) if layers is None else [int(x) for x in layers]
    for layer in chosen:
        if not 0 <= layer < adapter.n_layers:
            raise ValueError(f"layer {layer} is out of range: layers 0..{adapter.n_layers - 1}")
    conditions = torch.zeros(len(chosen), adapter.n_layers, dtype=torch.bool)
    conditions[torch.arange(len(chosen)), torch.tensor(chosen, dtype=torch.long)] = True
    if activity is not None:
        seqs = teacher_forced_sequences(activity)
        div_pp = _divergences(
            adapter, seqs, conditions, lambda rows: skip_hooks(adapter, rows),
            batched=batched, batch_size=batch_size, progress=progress,
        ).float()
        div = div_pp.mean(1)
    else:
        div_pp = torch.empty(len(chosen), 0)
        div = torch.full((len(chosen),), math.nan)
    correct = torch.empty(0, 0, dtype=torch.bool)
    clean = torch.empty(0, dtype=torch.bool)
    if accuracy:
        tasks = list(tasks) if tasks is not None else default_tasks()
        score_fn = _scorer(tasks, scorer)
        ids = _prompt_ids(adapter, tasks, chat_template)

        def run() -> list[bool]:
            texts = _generate_answers(adapter, ids, max_new_tokens=max_new_tokens, batch_size=batch_size)
            return [bool(score_fn(t, c)) for t, c in zip(tasks, texts)]

        from tqdm.auto import tqdm

        # the slow part (one generation of every task per layer): say so, with how to skip it
        bar = tqdm(total=len(chosen) + 1, disable=not progress,
                   desc=f"layer-skip accuracy: {len(tasks)} tasks x {len(chosen) + 1} runs (accuracy=False skips)")
        with bar:
            clean = torch.tensor(run(), dtype=torch.bool)
            bar.update()
            rows = []
            for layer in chosen:
                with skip_layers(adapter, layer):
                    rows.append(run())
                bar.update()
        correct = torch.tensor(rows, dtype=torch.bool)
    return LayerSkipResult(
        layers=torch.tensor(chosen),
        divergence=div,
        divergence_per_prompt=div_pp,
        correct=correct,
        clean_correct=clean,
        meta={"confidence": confidence, "model_name": adapter.name, "n_layers": adapter.n_layers,
              "max_new_tokens": max_new_tokens, "units": "nats"},
    )
