"""The whole analysis in one call: model + prompts + a :class:`~synergy_lens.configs.RunConfig`
-> a :class:`~synergy_lens.view.results.RunResults` ready to report.

:func:`analyse` (``sl.analyse``) is what ``synergy-lens run``/``demo`` execute, usable from a
notebook too. It sits above every stage and only wires their public functions together:

1. record every head's activity while generating (``record_head_activity``);
2. PhiID of every pair of heads (``decompose``);
3. unstable heads (``unit_stability``), per-head scores, layer profiles of the rank
   gradient, (B)'s released ``syn_minus_red`` and the synergy fraction (docs/science.md,
   "Scores and their sources": always look at all three), the core (``find_core``) and the
   bootstrap of ranks and core membership (``rank_uncertainty``);
4. the headline: every profile's inverted-U index against the autocorrelation-preserving
   surrogate null, and the robustness table (``analysis.headline``, ``analysis.robustness``);
5. optionally a short ablation curve (paper (B), ablation 1);
6. the synergy/redundancy graph comparison (``topology_table``) and optionally a randomised
   control (paper (B));
7. the data of the CircuitsVis views: attention patterns of the top heads on one prompt and
   the generated tokens as strings.

Under torchrun (``synergy_lens.distributed``) every rank records and decomposes its share of
the prompts, every rank takes part in the null tests and the ablation curve, and rank 0 does
the rest and returns the whole run; the other ranks return a partial one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from synergy_lens._collective import barrier
from synergy_lens.configs import AblationConfig, RunConfig
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

__all__ = ["ablation_step", "analyse", "control_step", "headline_step", "resolve_config", "score_step"]


def _noop(text: str) -> None:
    return None


def analyse(
    model: Any,
    prompts: Sequence[Any],
    config: RunConfig | None = None,
    *,
    checkpoint: str | Path | None = None,
    store: StageStore | None = None,
    stages: Callable[[str], None] = _noop,
    progress: bool = True,
    settings: dict[str, Any] | None = None,
    **options: Any,
) -> RunResults:
    """Record, decompose and analyse; returns every result (saved only with ``store``).

    Args:
        model: HookedTransformer, TransformerBridge or ``ModelAdapter``.
        prompts: texts or ``Prompt`` objects (e.g. ``default_prompts()``).
        config: a :class:`~synergy_lens.configs.RunConfig` (default: ``RunConfig()``, the
            papers' protocol without the ablation curve).
        **options: flat option names changed on top of ``config`` (``max_new_tokens=32``,
            ``tau=2``, ``n_surrogates=0``, ``ablation_steps=5``, ...; see
            ``RunConfig.replace``). ``ablation=True`` (or an ``AblationConfig``) adds the
            ablation curve; ``control="perturb"`` the control model.
        checkpoint: recording checkpoint file (resumed if it exists); with ``store`` and no
            checkpoint, one in the store's folder is used and removed once the recording is saved.
        store: a :class:`~synergy_lens.runfolder.StageStore`: each step's results are saved
            into its folder as soon as they exist, and the recording, PhiID, control and
            ablation of an earlier call with the same settings are loaded, not recomputed.
        stages: called with a short text at the start of each step (the CLI prints it).
        progress: tqdm progress bars.
        settings: more facts to save with the run (the CLI adds the command and model).

    Returns:
        :class:`~synergy_lens.view.results.RunResults` with ``activity``, ``phiid``,
        ``stability``, ``scores``, ``profile_<score>``, ``core``, ``ranks``, ``headline``,
        ``surrogates``, ``robustness``, ``layer_summary``, ``topology``, ``tokens``,
        ``attention`` and, when asked for, ``control`` and ``ablation``. Its ``settings`` hold
        ``config.asdict()`` (one section per stage) and ``settings``.
    """
    config = resolve_config(config, options)
    run = RunResults(settings={**(settings or {}), **config.asdict()})
    if store is not None:
        store.update_settings(config.asdict())  # the folder's manifest holds the config too
        stages = store.saving_stages(stages, run)
    activity, result, prompts = _record_and_decompose(model, prompts, config, run, store=store, stages=stages,
                                                      checkpoint=checkpoint, progress=progress)
    rank, size = world()
    if size > 1:  # every rank takes part in the null tests and the ablation curve below
        activity, result = broadcast_from_main((activity, result))
    scores = _tests_and_ablation(model, run, activity, result, config, store=store, stages=stages,
                                 progress=progress and rank == 0)
    if size > 1:  # the collective part ends together on every rank; rank 0 then goes on alone
        barrier()
    if rank != 0:
        return run  # the other ranks' part is done
    _rank0_rest(model, run, activity, result, scores, list(prompts), config, store=store, stages=stages,
                progress=progress)
    if store is not None:
        store.flush(run)
    return run


def resolve_config(config: RunConfig | None, options: dict[str, Any]) -> RunConfig:
    """``config`` (default ``RunConfig()``) with flat ``options`` applied. Accepts the older
    keyword forms too: ``chat_template`` True/False/None, ``control=None``,
    ``robustness=None``, ``ablation`` as a config, True/False/None or a dict of
    ``ablation_*`` settings."""
    config = config if config is not None else RunConfig()
    options = dict(options)
    if "chat_template" in options and not isinstance(options["chat_template"], str):
        options["chat_template"] = {None: "auto", True: "yes", False: "no"}[options["chat_template"]]
    if "control" in options and options["control"] is None:
        options["control"] = "none"
    if "robustness" in options and options["robustness"] is None:
        options["robustness"] = ()
    if "ablation" in options:
        ablation = options.pop("ablation")
        if isinstance(ablation, dict):
            config = dataclasses.replace(config, ablation=AblationConfig())
            options.update({k if k.startswith("ablation_") else f"ablation_{k}": v for k, v in ablation.items()})
        else:
            chosen = AblationConfig() if ablation is True else (ablation or None)
            config = dataclasses.replace(config, ablation=chosen)
    return config.replace(**options) if options else config


def _record_and_decompose(
    model: Any, prompts: Sequence[Any], config: RunConfig, run: RunResults, *, store: StageStore | None,
    stages: Callable[[str], None], checkpoint: str | Path | None, progress: bool,
) -> tuple[Any, Any, Sequence[Any]]:
    """Steps 1-2 (every rank takes part under torchrun): the recording and its PhiID."""
    from synergy_lens.models.adapter import adapt

    adapter = adapt(model)
    rec = config.record
    rec_kw = rec.record_kwargs()
    dec_kw = dataclasses.asdict(config.decompose)
    rec_key = {"record": rec_kw, "model": adapter.name,
               "weights": weights_digest(adapter.model) if store is not None else None,
               "prompts": [[getattr(p, "text", p), getattr(p, "category", None)] for p in prompts]}
    own_checkpoint = store is not None and checkpoint is None
    if store is not None and checkpoint is None:  # an interrupted recording resumes batch by batch
        checkpoint = str(store.recording_checkpoint(rec_key))
    size = world()[1]
    own_checkpoint = broadcast_from_main(own_checkpoint)
    checkpoint = broadcast_from_main(checkpoint)
    stages(f"recording {len(prompts)} prompts x {rec.max_new_tokens} new tokens"
           + (f" on {size} processes" if size > 1 else ""))
    activity: Any = _collective_stage(store, run, "activity", rec_key | {"min_steps": rec.min_steps}, lambda: _record(
        model, prompts, store, rec.min_steps, checkpoint=checkpoint, progress=progress, **rec_kw))
    if own_checkpoint:
        for path in {checkpoint, rank_checkpoint(checkpoint)}:
            if store is not None:
                store.remove_checkpoint(path)  # the recording is saved: its checkpoint is done
            elif path is not None and size > 1:
                Path(path).unlink(missing_ok=True)
    if activity is not None and activity.settings.get("dropped_prompts"):
        kept = set(activity.settings["kept_prompts"])
        prompts = [p for i, p in enumerate(prompts) if i in kept]

    if activity is not None:  # rank 0 holds the recording
        n = activity.n_units
        stages(f"PhiID of {n * (n - 1) // 2} pairs of {n} {activity.unit_kind.replace('_', ' ')}")
    result = _collective_stage(store, run, "phiid", dec_kw,
                               lambda: decompose_sharded(activity, progress=progress, **dec_kw))
    return activity, result, prompts


def _tests_and_ablation(
    model: Any, run: RunResults, activity: Any, result: Any, config: RunConfig, *, store: StageStore | None,
    stages: Callable[[str], None], progress: bool,
) -> Any:
    """Steps 3-5 (every rank takes part under torchrun): scores, the null tests, the ablation
    curve. Returns the scores."""
    an = config.analysis
    distributed = world()[1] > 1
    stages("scores, layer profiles, rank uncertainty and the synergistic core")
    scores, _ = score_step(run, activity, result, score=an.score, q=an.q, n_boot=an.n_boot, seed=an.seed,
                           exclude_unstable=an.exclude_unstable)
    if not hasattr(result, "per_prompt_sts"):  # phiid.stream keeps no per-prompt matrices to test
        stages(f"headline: skipped (PhiID of {result.n_units} units was streamed; the surrogate null needs the "
               "dense per-prompt result: record fewer units, e.g. --unit-layers, or run "
               "benchmarks/bench_units.py's streamed null)")
    else:
        stages(f"headline: layer profiles against {an.n_surrogates} autocorrelation-preserving surrogates"
               + (f"; robustness ({', '.join(an.robustness)})" if an.robustness else ""))
    headline_step(run, activity, result, score=an.score, q=an.q, n_boot=an.n_boot, seed=an.seed,
                  n_surrogates=an.n_surrogates, robustness=an.robustness, exclude_unstable=an.exclude_unstable,
                  progress=progress, distributed=distributed)
    if config.ablation is not None:
        stages("ablation curve: core heads first vs random orders")
        key = {"ablation": dataclasses.asdict(config.ablation), "seed": an.seed, "scores": scores.score}
        _collective_stage(store, run, "ablation", key,
                          lambda: ablation_step(model, activity, scores, config.ablation, seed=an.seed,
                                                progress=progress, distributed=distributed),
                          needs=("activity", "scores"))
    return scores


def _rank0_rest(
    model: Any, run: RunResults, activity: Any, result: Any, scores: Any, prompts: list[Any], config: RunConfig, *,
    store: StageStore | None, stages: Callable[[str], None], progress: bool,
) -> None:
    """Steps 6-7 (rank 0): layer summary, graph topology, the control model, the views' data."""
    from synergy_lens.analysis import topology_table
    from synergy_lens.analysis.tables import layer_summary
    from synergy_lens.models.adapter import adapt
    from synergy_lens.record.attention import head_attention, token_strings

    an = config.analysis
    run.add("layer_summary", layer_summary(scores, run.get(f"profile_{an.score}"), run.get("core")))
    n_units = int(result.n_layers) * int(result.n_heads)
    if not hasattr(result, "sts"):  # phiid.stream: per-unit means and the top pairs, not the matrices
        stages(f"graph topology: skipped (PhiID of {n_units} units was streamed and keeps no sts/rtr matrix)")
    elif n_units > TOPOLOGY_MAX_UNITS:
        stages(f"graph topology: skipped ({n_units} units; global efficiency takes all shortest paths, minutes "
               f"above {TOPOLOGY_MAX_UNITS} units: call analysis.topology_table(result) yourself)")
    else:
        stages("graph topology of the synergy and redundancy networks")
        run.add("topology", topology_table(result, density=an.density, seed=an.seed))
    if an.control != "none":
        stages(f"randomised control ({an.control}): record and decompose it")
        rec_kw = config.record.record_kwargs()
        dec_kw = dataclasses.asdict(config.decompose)
        stage_result(store, run, "control", {"control": an.control, "seed": an.seed, "n_boot": an.n_boot,
                                             "record": rec_kw, "decompose": dec_kw},
                     lambda: control_step(model, prompts, result, an.control, seed=an.seed, n_boot=an.n_boot,
                                          record_kwargs=rec_kw | {"progress": progress},
                                          decompose_kwargs=dec_kw | {"progress": progress}), file="control")
    stages("CircuitsVis data: attention of the top heads, generated tokens")
    view = config.view
    p = view.view_prompt if view.view_prompt < activity.n_prompts else 0
    if activity.unit_kind == "heads" and activity.layers is None:  # attention patterns are the heads'
        run.add("attention", head_attention(model, activity.full_ids(p), scores, k=view.attention_heads))
    run.add("tokens", [token_strings(adapt(model).tokenizer, ids) for ids in activity.generated_ids])


TOPOLOGY_MAX_UNITS = 1024
"""Runs of more units skip the graph topology (1,536 units: about 7 minutes on 2 CPU cores)."""


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
    profiles = dict(run.profiles())
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
    model: Any, activity: Any, scores: Any, settings: AblationConfig | dict[str, Any] | None = None, *,
    seed: int = 0, progress: bool = True, distributed: bool = False,
) -> Any:
    """A short ablation curve of a recorded run (paper (B), ablation 1).

    Heads are zeroed cumulatively in decreasing score order (``"synergy-first"``), in
    increasing order (``"redundancy-first"``) and in ``seeds`` random orders, in about
    ``steps`` steps from no head to all heads. The divergence from the clean model
    (``intervene.ablation_curve``) is measured on the first ``prompts`` prompts of the run,
    over their first ``tokens`` generated tokens (an :class:`~synergy_lens.configs.AblationConfig`;
    a dict of ``ablation_*`` settings is accepted too).
    """
    import math

    from synergy_lens.intervene import ablation_curve

    cfg = settings if isinstance(settings, AblationConfig) else resolve_config(
        None, {"ablation": dict(settings or {})}).ablation
    assert cfg is not None
    n = min(cfg.prompts, activity.n_prompts)
    pairs = [(activity.prompt_ids[i], activity.generated_ids[i][: cfg.tokens]) for i in range(n)]
    n_units = int(scores.values.numel())
    step = max(1, math.ceil(n_units / cfg.steps))
    reference = activity if cfg.mode == "mean" else None  # the mean over every token of the run
    return ablation_curve(
        model, pairs, scores, step=step, n_random=cfg.seeds, seed=seed, mode=cfg.mode, reference=reference,
        progress=progress, distributed=distributed,
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
    from synergy_lens.analysis import ControlComparison
    from synergy_lens.analysis.controls import control_model
    from synergy_lens.phiid import decompose
    from synergy_lens.record import record_activity

    if control not in ("perturb", "random_init"):
        raise ValueError(f"control must be 'perturb' or 'random_init', got {control!r}")
    with control_model(model, control, scale, seed) as (model_, name):
        activity: Any = record_activity(model_, prompts, **(record_kwargs or {}))
        control_result = decompose(activity, **(decompose_kwargs or {}))
    return ControlComparison.from_results(result, control_result, scores=("rank_gradient", "synergy_fraction"),
                                          n_boot=n_boot, seed=seed, control_name=name)

