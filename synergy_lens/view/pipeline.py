"""The whole analysis in one call: model + prompts -> a :class:`RunResults` ready to report.

:func:`analyse` is what ``synergy-lens run``/``demo`` execute, usable from a notebook too:

1. record every head's activity while generating (``record_head_activity``);
2. PhiID of every pair of heads (``decompose``);
3. unstable heads (``unit_stability``), per-head scores, layer profiles of the rank
   gradient, (B)'s released ``syn_minus_red`` and the synergy fraction (docs/science.md,
   "Scores and their sources": always look at all three), the core (``find_core``) and the
   bootstrap of ranks and core membership (``rank_uncertainty``);
3b. the headline: every profile's inverted-U index against the autocorrelation-preserving
   surrogate null, and the robustness table (``analysis.headline``, ``analysis.robustness``);
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
from pathlib import Path
from typing import Any

from synergy_lens.distributed import (
    broadcast_from_main,
    decompose_sharded,
    rank_checkpoint,
    record_sharded,
    world,
)
from synergy_lens.record.checkpoint import weights_digest
from synergy_lens.runfolder import StageStore, digest, stage_result
from synergy_lens.view.results import RunResults

__all__ = ["ablation_step", "analyse", "control_step", "headline_step", "score_step"]


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
    min_steps: int | None = None,
    store: StageStore | None = None,
    n_surrogates: int = 19,
    robustness: Sequence[str] | None = ("detrended", "pooled", "tau10"),
    exclude_unstable: bool = False,
) -> RunResults:
    """Record, decompose and analyse; returns every result by name (saved only with ``store``).

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
        min_steps: leave out prompts whose series is shorter (a warning names them; too few
            left is an error), see ``record.drop_short_prompts``. None: keep every prompt.
        n_surrogates: circular-shift surrogates for the headline test of every score's
            layer profile and for each robustness variant (``analysis.headline``).
        robustness: analysis choices re-run besides the baseline (``analysis.robustness``
            ``VARIANTS``: ``"detrended"``, ``"pooled"``, ``"tau10"``, ``"ccs"``); None or
            empty: none.
        exclude_unstable: leave heads whose series are too coarse (``analysis.stability``)
            out of every score; by default they are only marked.
        store: a :class:`~synergy_lens.runfolder.StageStore`: each step's results are saved
            into its folder as soon as they exist, and the recording, PhiID, control and
            ablation of an earlier call with the same settings are loaded, not recomputed.

    Returns:
        :class:`RunResults` with ``activity``, ``phiid``, ``scores``,
        ``profile_rank_gradient``, ``profile_synergy_fraction`` (and ``profile_<score>``),
        ``core``, ``topology``, ``layer_summary``, ``tokens``, ``attention`` and, when asked
        for, ``control`` and ``ablation``.
    """
    from synergy_lens.analysis import topology_table
    from synergy_lens.models.adapter import adapt
    from synergy_lens.view.circuits import head_attention, token_strings
    from synergy_lens.view.report import layer_summary

    adapter = adapt(model)
    run = RunResults(settings=dict(settings or {}))
    run.settings.setdefault("view_prompt", view_prompt)
    rec_kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "batch_size": batch_size,
                              "chat_template": chat_template, "stop_at_eos": stop_at_eos}
    dec_kw: dict[str, Any] = {"tau": tau, "redundancy": redundancy, "aggregate": aggregate}

    rec_key = {"record": rec_kw, "model": adapter.name,
               "weights": weights_digest(adapter.model) if store is not None else None,
               "prompts": [[getattr(p, "text", p), getattr(p, "category", None)] for p in prompts]}
    own_checkpoint = store is not None and checkpoint is None
    if store is not None:
        stages = store.saving_stages(stages, run)
        if checkpoint is None:  # an interrupted recording resumes batch by batch
            checkpoint = str(store.recording_checkpoint(rec_key))

    # Under torchrun every rank records and decomposes its share of the prompts
    # (synergy_lens.distributed); rank 0 gathers, decides what is cached, and goes on alone.
    rank, size = world()
    own_checkpoint = broadcast_from_main(own_checkpoint)
    checkpoint = broadcast_from_main(checkpoint)
    stages(f"recording {len(prompts)} prompts x {max_new_tokens} new tokens"
           + (f" on {size} processes" if size > 1 else ""))
    activity: Any = _collective_stage(store, run, "activity", rec_key | {"min_steps": min_steps}, lambda: _record(
        model, prompts, store, min_steps, checkpoint=checkpoint, progress=progress, **rec_kw))
    if own_checkpoint:
        for path in {checkpoint, rank_checkpoint(checkpoint)}:
            if store is not None:
                store.remove_checkpoint(path)  # the recording is saved: its checkpoint is done
            elif path is not None and size > 1:
                Path(path).unlink(missing_ok=True)
    if activity is not None and activity.settings.get("dropped_prompts"):
        kept = set(activity.settings["kept_prompts"])
        prompts = [p for i, p in enumerate(prompts) if i in kept]

    stages(f"PhiID of {adapter.n_units * (adapter.n_units - 1) // 2} head pairs")
    result = _collective_stage(store, run, "phiid", dec_kw,
                               lambda: decompose_sharded(activity, progress=progress, **dec_kw))
    if size > 1:  # every rank takes part in the null tests and the ablation curve below
        activity, result = broadcast_from_main((activity, result))

    stages("scores, layer profiles, rank uncertainty and the synergistic core")
    scores, core = score_step(run, activity, result, score=score, q=q, n_boot=n_boot, seed=seed,
                              exclude_unstable=exclude_unstable)

    stages(f"headline: layer profiles against {n_surrogates} autocorrelation-preserving surrogates"
           + (f"; robustness ({', '.join(robustness)})" if robustness else ""))
    headline_step(run, activity, result, score=score, q=q, n_boot=n_boot, seed=seed, n_surrogates=n_surrogates,
                  robustness=robustness, exclude_unstable=exclude_unstable, progress=progress and rank == 0,
                  distributed=size > 1)

    if ablation is not None:
        stages("ablation curve: core heads first vs random orders")
        run.settings["ablation"] = dict(ablation)
        _collective_stage(store, run, "ablation", {"ablation": ablation, "seed": seed, "scores": scores.score},
                          lambda: ablation_step(model, activity, scores, ablation, seed=seed,
                                                progress=progress and rank == 0, distributed=size > 1),
                          needs=("activity", "scores"))
    if rank != 0:
        return run  # the other ranks' part is done
    run.add("layer_summary", layer_summary(scores, run.get(f"profile_{score}"), core))

    stages("graph topology of the synergy and redundancy networks")
    run.add("topology", topology_table(result, density=density, seed=seed))

    if control is not None:
        stages(f"randomised control ({control}): record and decompose it")
        stage_result(store, run, "control", {"control": control, "seed": seed, "n_boot": n_boot, "record": rec_kw,
                                             "decompose": dec_kw},
                     lambda: control_step(model, list(prompts), result, control, seed=seed, n_boot=n_boot,
                                          record_kwargs=rec_kw | {"progress": progress},
                                          decompose_kwargs=dec_kw | {"progress": progress}), file="control")

    stages("CircuitsVis data: attention of the top heads, generated tokens")
    p = view_prompt if view_prompt < activity.n_prompts else 0
    run.add("attention", head_attention(model, activity.full_ids(p), scores, k=attention_heads))
    run.add("tokens", [token_strings(adapter.tokenizer, ids) for ids in activity.generated_ids])
    if store is not None:
        store.flush(run)
    return run


def _collective_stage(store: StageStore | None, run: RunResults, name: str, key: Any, compute: Any,
                      needs: tuple[str, ...] | None = None) -> Any:
    """:func:`~synergy_lens.runfolder.stage_result` for a step that all ranks compute together:
    rank 0 looks in the store and tells the others whether the step runs at all."""
    if world()[1] == 1:
        return stage_result(store, run, name, key, compute, needs=needs)
    cached = store.cached(name, digest(key)) if store is not None and world()[0] == 0 else None
    if not broadcast_from_main(cached is None):
        run.add(name, cached)
        return cached
    obj = compute()
    if world()[0] == 0:
        if store is not None:
            store.save(name, obj, key=digest(key), needs=needs)
        run.add(name, obj)
    return obj


def _record(model: Any, prompts: Sequence[Any], store: StageStore | None, min_steps: int | None,
            **kwargs: Any) -> Any:
    """Record; save the whole recording at once, then leave out prompts shorter than ``min_steps``."""
    import torch

    from synergy_lens.record.activity import drop_short_prompts
    from synergy_lens.record.degenerate import DegenerateRecordingError

    try:
        activity = record_sharded(model, list(prompts), **kwargs)
        if activity is None:
            return None  # a rank other than 0: rank 0 holds the whole recording
    except DegenerateRecordingError as err:  # keep the finished recording, say why it is unusable
        if store is not None:
            store.save("activity", err.activity, key=None)
        if min_steps is not None:
            drop_short_prompts(err.activity, min_steps)  # raises when short answers are the cause
        raise
    if min_steps is None:
        return activity
    short = [i for i, n in enumerate(torch.as_tensor(activity.lengths).tolist()) if n < min_steps]
    if short and store is not None:  # kept even if too few prompts are usable
        store.save("activity", activity, key=None)
    used, dropped = drop_short_prompts(activity, min_steps)
    if dropped:
        kept = [i for i in range(activity.n_prompts) if i not in set(dropped)]
        used.settings.update(dropped_prompts=dropped, kept_prompts=kept, min_steps=min_steps)
    return used


def score_step(
    run: RunResults, activity: Any, result: Any, *, score: str, q: float, n_boot: int, seed: int,
    exclude_unstable: bool = False,
) -> tuple[Any, Any]:
    """Unstable heads, every score, the profiles of the three headline scores, the core and the
    bootstrap of ranks and core membership (items ``stability``, ``scores``, ``profile_<score>``,
    ``core``, ``ranks``). Returns ``(scores, core)``."""
    from synergy_lens.analysis import find_core, layer_profile, synergy_scores
    from synergy_lens.analysis.headline import HEADLINE_SCORES, _excluding
    from synergy_lens.analysis.stability import unit_stability
    from synergy_lens.analysis.uncertainty import rank_uncertainty

    stability = unit_stability(activity)
    run.add("stability", stability)
    drop = stability.unstable.flatten() if exclude_unstable else None
    scores = synergy_scores(result, score=score, unstable=stability, exclude=exclude_unstable)
    run.add("scores", scores)
    for name in dict.fromkeys((*HEADLINE_SCORES, score)):
        profile = layer_profile(result, score=_excluding(name, drop), n_boot=n_boot, seed=seed)
        profile.score = name
        run.add(f"profile_{name}", profile)
    core = find_core(scores, q=q)
    run.add("core", core)
    if n_boot > 0 and getattr(result, "per_prompt_sts", None) is not None and result.per_prompt_sts.shape[0] > 1:
        run.add("ranks", rank_uncertainty(result, score=score, q=q, n_boot=n_boot, seed=seed, unstable=stability,
                                          exclude=exclude_unstable))
    return scores, core


def headline_step(
    run: RunResults, activity: Any, result: Any, *, score: str, q: float, n_boot: int, seed: int,
    n_surrogates: int, robustness: Sequence[str] | None, exclude_unstable: bool = False, progress: bool = True,
    distributed: bool = False,
) -> None:
    """The headline test of every score's profile against the surrogate null, and the
    robustness table (items ``headline``, ``surrogates``, ``robustness``). Needs per-prompt
    PhiID (``aggregate="mean_over_prompts"``) and two or more prompts; skipped otherwise.
    ``distributed``: every rank of the process group calls this and shares the surrogates."""
    from synergy_lens.analysis.headline import headline
    from synergy_lens.analysis.robustness import robustness as robustness_table

    if n_surrogates < 2 or getattr(result, "per_prompt_sts", None) is None or result.per_prompt_sts.shape[0] < 2:
        return
    stability = run.get("stability")
    profiles = {k: v for k, v in run.profiles().items()}
    hl, test = headline(activity, result, n_surrogates=n_surrogates, n_boot=n_boot, q=q, core_score=score,
                        seed=seed, unstable=stability, exclude=exclude_unstable, profiles=profiles,
                        progress=progress, distributed=distributed)
    run.add("headline", hl)
    run.add("surrogates", test)
    if robustness:
        variants = ["baseline", *[v for v in robustness if v != "baseline"]]
        run.add("robustness", robustness_table(activity, variants=variants, n_surrogates=n_surrogates,
                                               n_boot=min(n_boot, 200), seed=seed, unstable=stability,
                                               exclude=exclude_unstable, baseline=hl, progress=progress,
                                               distributed=distributed))


def ablation_step(
    model: Any, activity: Any, scores: Any, settings: dict[str, Any], *, seed: int = 0, progress: bool = True,
    distributed: bool = False,
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
        mode=settings.get("mode", "zero"), progress=progress, distributed=distributed,
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
