"""The whole analysis in one call: model + prompts -> a :class:`RunResults` ready to report.

:func:`analyse` is what ``synergy-lens run``/``demo`` execute, usable from a notebook too:

1. record every head's activity while generating (``record_head_activity``);
2. PhiID of every pair of heads (``decompose``);
3. per-head scores, layer profiles of both the rank gradient and the synergy fraction
   (science.md's pitfall: always look at both), the core (``find_core``);
4. the synergy/redundancy graph comparison (``topology_table``);
5. optionally a randomised control (paper (B)) and a short ablation curve (paper (B),
   ablation 1);
6. the data of the CircuitsVis views: attention patterns of the top heads on one prompt
   and the generated tokens as strings.

Every step is a public function of its stage; this module only wires them together and
names the results (see ``view/results.py`` for the files).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from synergy_lens.view.results import RunResults

__all__ = ["ablation_step", "analyse", "control_step"]


def _noop(text: str) -> None:
    return None


def analyse(
    model: Any,
    prompts: Sequence[Any],
    *,
    max_new_tokens: int = 100,
    batch_size: int = 8,
    chat_template: bool | None = None,
    stop_at_eos: bool = True,
    checkpoint: str | None = None,
    tau: int = 1,
    redundancy: str = "MMI",
    aggregate: str = "mean_over_prompts",
    score: str = "rank_gradient",
    q: float = 0.25,
    n_boot: int = 1000,
    density: float = 0.10,
    seed: int = 0,
    control: str | None = None,
    ablation: dict[str, Any] | None = None,
    attention_heads: int = 6,
    view_prompt: int = 0,
    settings: dict[str, Any] | None = None,
    stages: Callable[[str], None] = _noop,
    progress: bool = True,
) -> RunResults:
    """Record, decompose and analyse; returns every result by name (not yet saved).

    Args:
        model: HookedTransformer, TransformerBridge or ``ModelAdapter``.
        prompts: texts or ``Prompt`` objects (e.g. ``default_prompts()``).
        max_new_tokens, batch_size, chat_template, stop_at_eos, checkpoint: passed to
            ``record_head_activity``.
        tau, redundancy, aggregate: passed to ``decompose``.
        score: the score that defines the core and the main profile.
        q: core fraction; n_boot: bootstrap resamples; density: graph edge fraction.
        control: ``None``, ``"perturb"`` or ``"random_init"`` (``analysis.controls``).
        ablation: ``None`` or a dict of :func:`ablation_step` settings.
        attention_heads: how many top heads the attention view shows.
        view_prompt: the prompt shown in the CircuitsVis views.
        settings: recorded in the run (the report prints them).
        stages: called with a short text at the start of each step (the CLI prints it).
        progress: tqdm progress bars.

    Returns:
        :class:`RunResults` with ``activity``, ``phiid``, ``scores``,
        ``profile_rank_gradient``, ``profile_synergy_fraction`` (and ``profile_<score>``),
        ``core``, ``topology``, ``layer_summary``, ``tokens``, ``attention`` and, when asked
        for, ``control`` and ``ablation``.
    """
    from synergy_lens.analysis import find_core, layer_profile, synergy_scores, topology_table
    from synergy_lens.models.adapter import adapt
    from synergy_lens.phiid import decompose
    from synergy_lens.record import record_head_activity
    from synergy_lens.view.circuits import head_attention, token_strings
    from synergy_lens.view.report import layer_summary

    adapter = adapt(model)
    run = RunResults(settings=dict(settings or {}))
    run.settings.setdefault("view_prompt", view_prompt)
    rec_kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "batch_size": batch_size,
                              "chat_template": chat_template, "stop_at_eos": stop_at_eos}
    dec_kw: dict[str, Any] = {"tau": tau, "redundancy": redundancy, "aggregate": aggregate}

    stages(f"recording {len(prompts)} prompts x {max_new_tokens} new tokens")
    activity: Any = record_head_activity(model, list(prompts), checkpoint=checkpoint, progress=progress, **rec_kw)
    run.add("activity", activity)

    stages(f"PhiID of {adapter.n_units * (adapter.n_units - 1) // 2} head pairs")
    result = decompose(activity, progress=progress, **dec_kw)
    run.add("phiid", result)

    stages("scores, layer profiles and the synergistic core")
    scores = synergy_scores(result, score=score)
    run.add("scores", scores)
    for name in dict.fromkeys(("rank_gradient", "synergy_fraction", score)):
        run.add(f"profile_{name}", layer_profile(result, score=name, n_boot=n_boot, seed=seed))
    core = find_core(scores, q=q)
    run.add("core", core)
    run.add("layer_summary", layer_summary(scores, run.get(f"profile_{score}"), core))

    stages("graph topology of the synergy and redundancy networks")
    run.add("topology", topology_table(result, density=density, seed=seed))

    if control is not None:
        stages(f"randomised control ({control}): record and decompose it")
        run.add("control", control_step(model, list(prompts), result, control, seed=seed, n_boot=n_boot,
                                        record_kwargs=rec_kw | {"progress": progress},
                                        decompose_kwargs=dec_kw | {"progress": progress}), file="control")

    if ablation is not None:
        stages("ablation curve: core heads first vs random orders")
        run.add("ablation", ablation_step(model, activity, scores, ablation, seed=seed, progress=progress))
        run.settings["ablation"] = dict(ablation)

    stages("CircuitsVis data: attention of the top heads, generated tokens")
    p = view_prompt if view_prompt < activity.n_prompts else 0
    run.add("attention", head_attention(model, activity.full_ids(p), scores, k=attention_heads))
    run.add("tokens", [token_strings(adapter.tokenizer, ids) for ids in activity.generated_ids])
    return run


def ablation_step(
    model: Any, activity: Any, scores: Any, settings: dict[str, Any], *, seed: int = 0, progress: bool = True
) -> Any:
    """A short ablation curve of a recorded run (paper (B), ablation 1).

    Heads are zeroed cumulatively in decreasing score order (``"synergy-first"``), in
    increasing order (``"redundancy-first"``) and in ``ablation_seeds`` random orders, in
    about ``ablation_steps`` steps from no head to all heads. The divergence from the clean
    model (``intervene.ablation_curve``) is measured on the first ``ablation_prompts``
    prompts of the run, over their first ``ablation_tokens`` generated tokens.
    """
    import math

    from synergy_lens.intervene import ablation_curve

    n = min(int(settings.get("ablation_prompts", 8)), activity.n_prompts)
    tokens = int(settings.get("ablation_tokens", 32))
    pairs = [(activity.prompt_ids[i], activity.generated_ids[i][:tokens]) for i in range(n)]
    n_units = int(scores.values.numel())
    step = max(1, math.ceil(n_units / int(settings.get("ablation_steps", 10))))
    return ablation_curve(
        model, pairs, scores, step=step, n_random=int(settings.get("ablation_seeds", 3)), seed=seed,
        mode=settings.get("mode", "zero"), progress=progress,
    )


def control_step(
    model: Any,
    prompts: list[Any],
    result: Any,
    control: str,
    *,
    seed: int = 0,
    n_boot: int = 1000,
    scale: float = 10.0,
    record_kwargs: dict[str, Any] | None = None,
    decompose_kwargs: dict[str, Any] | None = None,
) -> Any:
    """Trained vs control layer profiles, reusing the trained model's ``result``.

    The control is recorded and decomposed on the same prompts with the same settings:
    ``"perturb"`` adds N(0, ``scale``^2) noise to every weight in place and restores the
    model exactly afterwards (paper (B)); ``"random_init"`` uses a freshly initialised copy.
    Both scores are profiled with the same bootstrap resamples (a paired comparison; see
    ``analysis.ControlComparison``).
    """
    import contextlib

    from synergy_lens.analysis import ControlComparison, perturb_weights, random_init_like
    from synergy_lens.phiid import decompose
    from synergy_lens.record import record_head_activity

    if control == "perturb":
        context: Any = perturb_weights(model, scale, seed=seed, inplace=True)
        name = f"perturb_weights(scale={scale}, seed={seed})"
    elif control == "random_init":
        context = contextlib.nullcontext(random_init_like(model, seed=seed))
        name = f"random_init_like(seed={seed})"
    else:
        raise ValueError(f"control must be 'perturb' or 'random_init', got {control!r}")
    with context as control_model:
        activity: Any = record_head_activity(control_model, prompts, **(record_kwargs or {}))
        control_result = decompose(activity, **(decompose_kwargs or {}))
    return ControlComparison.from_results(result, control_result, scores=("rank_gradient", "synergy_fraction"),
                                          n_boot=n_boot, seed=seed, control_name=name)
