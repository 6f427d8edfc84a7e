"""record_head_activity: every head's hook_z signal at every generated token, batched.

What and why
------------
The raw material of every synergy-lens analysis is one scalar time series per attention
head: the L2 norm of the head's output before W_O (``blocks.{L}.attn.hook_z``) at each
generated token (Urbina-Rodriguez et al., arXiv 2601.06851; "Protocol of (B)" and
"Recording during generation" in ``docs/science.md``).

How, per batch of prompts: generate greedily (or sample, seeded) with the KV cache, prompts
left-padded (:meth:`ModelAdapter.generate`), with a hook on every layer's ``hook_z``
(:class:`GenerationRecorder`). Each forward call of cached generation (the prefill, then
one per new token) ends at the position whose output is the next token; the hook reduces
that position to the per-head signal on the spot and keeps ``[batch, head]``, so no
activation cache is ever held and no second pass is needed.

``docs/science.md`` describes the alternative, one teacher-forced pass over each finished
sequence (:func:`teacher_forced_signals`): because attention is causal, position
``len(prompt) - 1 + t`` of that pass computes what the hook sees at step ``t``. The two agree
to float rounding (tested). The pass costs about one more forward over every token (2-12%
of generation time on a 2-core CPU, ``benchmarks/bench_record.py``), the hooks well under
that, so recording happens during generation; the pass stays available for re-recording a
given continuation.

Batches are formed from prompts of similar token length (longest first), so little work is
spent on padding; results do not depend on the batching (tested), except that with
``do_sample=True`` each batch draws from its own seeded generator.

>>> import synergy_lens as sl
>>> model = sl.tiny_model()
>>> act = sl.record_head_activity(model, ["hello", "hi"], max_new_tokens=8, progress=False)
>>> act.values.shape  # [prompt, time, layer, head]
torch.Size([2, 8, 2, 4])
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from synergy_lens import hooks as H
from synergy_lens.models.adapter import ModelAdapter, adapt
from synergy_lens.record.activity import HeadActivity
from synergy_lens.record.checkpoint import Checkpoint, RecordingState, fingerprint, weights_digest
from synergy_lens.record.degenerate import DegenerateRecordingError, check_not_degenerate
from synergy_lens.record.kinds import UnitSpec, head_spec, resolve_units
from synergy_lens.record.prompts import Prompt, as_prompts
from synergy_lens.record.signals import weight_cache

__all__ = [
    "MIN_NEW_TOKENS",
    "DegenerateRecordingError",
    "GenerationRecorder",
    "batch_plan",
    "as_spec",
    "record_activity",
    "record_head_activity",
    "teacher_forced_signals",
]

MIN_NEW_TOKENS = 8
"""Fewest new tokens a recording may ask for: PhiID at lag 1 estimates a 4x4 covariance
from ``time - 1`` lag pairs per prompt, which is meaningless with a handful of samples."""


def record_head_activity(
    model: Any,
    prompts: str | Prompt | Iterable[str | Prompt],
    *,
    max_new_tokens: int = 100,
    batch_size: int = 8,
    signal: str = "l2",
    chat_template: bool | None = None,
    do_sample: bool = False,
    seed: int = 0,
    stop_at_eos: bool = True,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> HeadActivity:
    """Generate from each prompt and record every head's signal at every generated token.

    Args:
        model: a HookedTransformer, a TransformerBridge or a ``ModelAdapter``.
        prompts: texts, :class:`Prompt` objects (their categories are kept), e.g.
            :func:`default_prompts`, or a single text.
        max_new_tokens: tokens to generate per prompt (the time axis); at least
            :data:`MIN_NEW_TOKENS`. The protocol of (B) uses 100.
        batch_size: prompts generated and recorded together.
        signal: name of a registered signal (``"l2"``, ``"l2_out"``, or one added with
            :func:`register_signal`).
        chat_template: ``None`` wraps each prompt in the tokenizer's chat template when it
            has one; ``True`` requires it; ``False`` feeds the raw text.
        do_sample: sample instead of greedy decoding; batch ``b`` uses a generator seeded
            from ``(seed, b)``, so a run is reproducible (and resumable) for a given
            ``batch_size``.
        seed: the sampling seed.
        stop_at_eos: end a prompt's series at its first EOS (the default: the model's own
            answer). ``False`` keeps generating past EOS to exactly ``max_new_tokens``
            steps for every prompt, so all series have the protocol's full length: past its
            EOS a prompt is fed the model's own next tokens (greedy, or sampled), exactly as
            if it were generated alone; no padding is ever fed (tested against uncached
            greedy decoding on SmolLM2).
        checkpoint: a file path; every finished batch is saved there atomically and a later
            call with the same arguments resumes from it (see
            :mod:`synergy_lens.record.checkpoint`). A finished run leaves the complete file.
        progress: show a tqdm progress bar.

    Returns:
        :class:`HeadActivity` with ``values[p, t, layer, head]`` the signal at the step that
        produced generated token ``t`` of prompt ``p``. With ``stop_at_eos`` generation stops
        at EOS; the EOS step counts (``lengths[p] == len(generated_ids[p])``) and later steps
        are NaN.

    Raises:
        TypeError: ``model`` is not a TransformerLens model, or a prompt is not a string.
        ValueError: no prompts, an empty prompt, a prompt that does not fit in the context
            window with ``max_new_tokens`` more tokens, ``max_new_tokens`` below 8, an
            unknown signal, or a checkpoint written by a different run.
    """
    return record_activity(
        model, prompts, units="heads", max_new_tokens=max_new_tokens, batch_size=batch_size,
        signal=signal, chat_template=chat_template, do_sample=do_sample, seed=seed,
        stop_at_eos=stop_at_eos, checkpoint=checkpoint, progress=progress,
    )


def record_activity(
    model: Any,
    prompts: str | Prompt | Iterable[str | Prompt],
    *,
    units: str | UnitSpec = "heads",
    layers: Sequence[int] | int | str | None = None,
    max_new_tokens: int = 100,
    batch_size: int = 8,
    signal: str = "l2",
    chat_template: bool | None = None,
    do_sample: bool = False,
    seed: int = 0,
    stop_at_eos: bool = True,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> HeadActivity:
    """Generate from each prompt and record every unit's value at every generated token.

    The same recording as :func:`record_head_activity` (same arguments, same time axis,
    checkpoints and errors) for any kind of unit (:mod:`synergy_lens.record.kinds`):

    - ``"heads"`` (default): the signal of every attention head, ``L5H3``;
    - ``"attn"`` / ``"mlp"``: one unit per sub-layer, the L2 norm of its write to the
      residual stream (``hook_attn_out`` / ``hook_mlp_out``), ``L5.attn`` / ``L5.mlp``;
    - ``"mlp_neurons"``: each MLP neuron's activation (``mlp.hook_post``), ``L5N1023``;
      with tens of thousands of neurons pick layers, e.g. ``layers=spread_layers(n, 6)``;
    - ``"experts"``: MoE models, the norm of each expert's weighted output, ``L5E7``;
    - your own: ``units=hook_units(hook, reducer, size=...)`` or
      ``units=sae_units(hook, encoder, n_latents=...)``.

    Args:
        units: a kind name or a :class:`~synergy_lens.record.kinds.UnitSpec`.
        layers: record these model layers only (default: every layer): indices,
            ``"0,6,12"`` or ``"spread:K"``. The rows of ``values`` are these layers in order
            (``HeadActivity.layers``).
        signal: for ``units="heads"``, the registered signal.
        (the rest): as in :func:`record_head_activity`.

    Returns:
        :class:`HeadActivity` with ``values[p, t, row, unit]``, ``unit_kind`` and ``layers``
        set; ``unit_labels()`` names every unit.
    """
    adapter = adapt(model)
    spec = _bind(resolve_units(adapter, units, layers=layers, signal=signal), adapter)
    items = _check_prompts(prompts)
    _check_int("max_new_tokens", max_new_tokens, MIN_NEW_TOKENS,
               why="PhiID needs a time series per prompt; the protocol of (B) uses 100")
    _check_int("batch_size", batch_size, 1)
    use_template = _resolve_chat_template(adapter, chat_template)
    texts = [adapter.apply_chat_template(p.text) if use_template else p.text for p in items]
    prompt_ids = [adapter.tokenize(t) for t in texts]
    _check_context(adapter, prompt_ids, max_new_tokens)
    model_config = _model_config(adapter)
    settings = _settings(adapter, signal, max_new_tokens, use_template, do_sample, seed, batch_size, stop_at_eos)
    if spec.kind != "heads" or not spec.all_layers:  # only then, so that earlier checkpoints resume
        settings["units"] = {**spec.describe, "layers": list(spec.layers)}
        if spec.kind != "heads":
            settings.pop("signal")
    state = RecordingState.empty(len(items), max_new_tokens, spec.n_rows, spec.size)
    ckpt = None
    if checkpoint is not None:
        ckpt = _open_checkpoint(checkpoint, adapter, items, prompt_ids, model_config, settings)
        ckpt.load_into(state)
    generate = functools.partial(
        adapter.generate, max_new_tokens=max_new_tokens, do_sample=do_sample, stop_at_eos=stop_at_eos
    )
    _record_batches(adapter, spec, generate, prompt_ids, batch_plan(prompt_ids, batch_size),
                    state, ckpt, seed=seed, progress=progress)
    activity = _activity(adapter, items, prompt_ids, state, model_config, settings, spec)
    check_not_degenerate(activity)
    return activity


def _bind(spec: UnitSpec, adapter: ModelAdapter) -> UnitSpec:
    """The spec with the model's layer count, its layers checked against the model."""
    import dataclasses

    bad = [v for v in spec.layers if not 0 <= v < adapter.n_layers]
    if bad:
        raise ValueError(f"units on layers {bad}, but this model has layers 0..{adapter.n_layers - 1}")
    return dataclasses.replace(spec, n_model_layers=adapter.n_layers)


def as_spec(adapter: ModelAdapter, units: UnitSpec | Callable[..., Tensor]) -> UnitSpec:
    """A spec from a spec, or from a head signal function (every layer's heads)."""
    if isinstance(units, UnitSpec):
        return _bind(units, adapter)
    return head_spec(adapter, units)


def _settings(
    adapter: ModelAdapter, signal: str, max_new_tokens: int, use_template: bool, do_sample: bool,
    seed: int, batch_size: int, stop_at_eos: bool,
) -> dict[str, Any]:
    """``HeadActivity.settings`` (also the key a checkpoint must match to resume)."""
    settings = {
        "signal": signal,
        "max_new_tokens": int(max_new_tokens),
        "chat_template": use_template,
        "do_sample": bool(do_sample),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "prepend_bos": adapter.prepend_bos,
    }
    if not stop_at_eos:  # only when set, so checkpoints of earlier versions still resume
        settings["stop_at_eos"] = False
    return settings


def _record_batches(
    adapter: ModelAdapter,
    spec: UnitSpec,
    generate: Any,
    prompt_ids: list[list[int]],
    plan: list[list[int]],
    state: RecordingState,
    ckpt: Any,
    *,
    seed: int,
    progress: bool,
) -> None:
    """Generate and record every batch of ``plan`` not done yet into ``state``, saving the
    checkpoint after each; on Ctrl-C, save what finished and say how to resume."""
    n_prompts = len(prompt_ids)
    bar = tqdm(total=n_prompts, initial=state.n_done, unit="prompt", desc="recording", disable=not progress)
    saved = state.n_done
    # eval() walks every module (slow on the bridge): only when the model is training
    eval_mode = adapter.eval_mode() if adapter.model.training else contextlib.nullcontext()
    try:
        with eval_mode, weight_cache(), bar:
            for b, indices in enumerate(plan):
                if bool(state.done[indices].all()):
                    continue
                start = time.perf_counter()
                recorder = GenerationRecorder(adapter, spec)
                with adapter.hooks(recorder.hooks()):
                    generated = generate([prompt_ids[i] for i in indices], seed=_batch_seed(seed, b))
                state.put(indices, recorder.values(generated, n_steps=state.values.shape[1]), generated)
                if ckpt is not None:
                    ckpt.save(state)
                    saved = state.n_done
                n_tokens = sum(len(g) for g in generated)
                bar.set_postfix(tok_s=f"{n_tokens / (time.perf_counter() - start):.1f}")
                bar.update(len(indices))
    except KeyboardInterrupt as err:
        if ckpt is not None:
            if state.n_done != saved:  # a batch finished but its save was interrupted
                ckpt.save(state)
            _note(
                err,
                f"synergy-lens: recording interrupted; {state.n_done} of {n_prompts} "
                f"prompts are saved in {ckpt.path}. Call again with the same arguments "
                "to resume.",
            )
        raise


def _activity(
    adapter: ModelAdapter,
    items: list[Prompt],
    prompt_ids: list[list[int]],
    state: RecordingState,
    model_config: dict[str, Any],
    settings: dict[str, Any],
    spec: UnitSpec,
) -> HeadActivity:
    """The finished recording as a :class:`HeadActivity` (completions decoded)."""
    tok = adapter.tokenizer
    generated_ids = [list(g or []) for g in state.generated_ids]
    has_categories = any(p.category is not None for p in items)
    return HeadActivity(
        values=state.values,
        lengths=torch.tensor([len(g) for g in generated_ids], dtype=torch.long),
        prompts=[p.text for p in items],
        categories=[p.category or "" for p in items] if has_categories else None,
        prompt_ids=prompt_ids,
        generated_ids=generated_ids,
        completions=[tok.decode(g, skip_special_tokens=True) for g in generated_ids],
        model_name=adapter.name,
        model_config=model_config,
        settings=settings,
        prompt_texts=[tok.decode(ids) for ids in prompt_ids],
        unit_kind=spec.kind,
        layers=None if spec.all_layers else list(spec.layers),
    )


def _model_config(adapter: ModelAdapter) -> dict[str, Any]:
    return {
        "n_layers": adapter.n_layers,
        "n_heads": adapter.n_heads,
        "d_head": adapter.d_head,
        "n_kv_heads": adapter.n_kv_heads,
        "backend": adapter.backend,
        "d_model": adapter.d_model,
        "n_ctx": adapter.n_ctx,
        "dtype": str(adapter.dtype).replace("torch.", ""),
    }


def _open_checkpoint(
    path: str | Path,
    adapter: ModelAdapter,
    items: list[Prompt],
    prompt_ids: list[list[int]],
    model_config: dict[str, Any],
    settings: dict[str, Any],
) -> Checkpoint:
    """The checkpoint of this run, fingerprinted by its prompts, model and settings."""
    prompts = {
        "texts": [p.text for p in items],
        "categories": [p.category for p in items],
        "prompt_ids": prompt_ids,
    }
    model = {"name": adapter.name, "config": model_config, "weights": weights_digest(adapter.model)}
    return Checkpoint(path, fingerprint(prompts=prompts, model=model, settings=settings))


class GenerationRecorder:
    """Hooks that reduce each recorded activation to unit values at each forward call of
    cached generation.

    With a KV cache every forward call of :meth:`ModelAdapter.generate` (the prefill, then
    one call per new token) ends with the position whose output is the next token, so the
    last position of each call's activation is the unit activity at the step that produced
    generated token ``t`` (call ``t``). Prompts are left-padded, so that position is real
    for every row. Only ``[batch, unit]`` per row and step is kept.

    Usage::

        rec = GenerationRecorder(adapter, spec)  # a UnitSpec, or a head signal function
        with adapter.hooks(rec.hooks()):
            generated = adapter.generate(prompts, max_new_tokens=n)
        values = rec.values(generated, n_steps=n)  # [batch, time, row, unit], float32 CPU
    """

    def __init__(self, adapter: ModelAdapter, spec: UnitSpec | Callable[..., Tensor]) -> None:
        self.adapter = adapter
        self.spec = as_spec(adapter, spec)
        self._rows: dict[int, Tensor] = {}
        self._steps: list[Tensor] = []

    def hooks(self) -> list[H.FwdHook]:
        # before any hook is attached: the check's own forward passes must not be recorded
        self.adapter.check_cached_decoding()
        return self.spec.hooks(self._reduce)

    def _reduce(self, act: Tensor, *, hook: Any, row: int, layer: int) -> None:
        value = _reduced(self.spec, act[:, -1:], layer)
        self._rows[row] = value[:, 0].float()
        if row == self.spec.n_rows - 1:
            missing = sorted(set(range(self.spec.n_rows)) - set(self._rows))
            if missing:
                lost = [self.spec.hook(self.spec.layers[r]) for r in missing]
                raise RuntimeError(f"hooks {lost} did not run in a generation step")
            self._steps.append(torch.stack([self._rows[k] for k in range(row + 1)], dim=1))
            self._rows.clear()

    def values(
        self, generated_ids: Sequence[Sequence[int]], *, n_steps: int
    ) -> Float[Tensor, "batch time layer head"]:
        """The recorded steps as ``[batch, n_steps, row, unit]``, NaN past each row's length."""
        lengths = [len(g) for g in generated_ids]
        if len(self._steps) < max(lengths):
            raise RuntimeError(
                f"recorded {len(self._steps)} generation steps for continuations of up to "
                f"{max(lengths)} tokens: was generate() run inside the recorder's hooks?"
            )
        out = torch.full((len(lengths), n_steps, self.spec.n_rows, self.spec.size), float("nan"))
        steps = torch.stack(self._steps[:n_steps], dim=1).cpu()  # [batch, time, row, unit]
        for i, n in enumerate(lengths):
            out[i, :n] = steps[i, :n]
        self._steps.clear()
        return out


def _reduced(spec: UnitSpec, act: Tensor, layer: int) -> Tensor:
    """``spec.reduce`` on ``act`` ``[batch, pos, ...]``, its shape checked: ``[batch, pos, size]``."""
    value = spec.reduce(act, layer)
    want = (act.shape[0], act.shape[1], spec.size)
    if not isinstance(value, Tensor) or tuple(value.shape) != want:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        if spec.kind == "heads":
            what = "signal", "a signal must map [batch, pos, head, d_head] to [batch, pos, head]"
        else:
            what = "reducer", f"a {spec.kind} reducer must map [batch, pos, ...] to [batch, pos, {spec.size}]"
        raise ValueError(f"{what[0]} returned shape {got} for an activation of shape {tuple(act.shape)}: {what[1]}")
    return value


def teacher_forced_signals(
    adapter: ModelAdapter,
    prompt_ids: Sequence[Sequence[int]],
    generated_ids: Sequence[Sequence[int]],
    units: UnitSpec | Callable[..., Tensor],
    *,
    n_steps: int | None = None,
) -> Float[Tensor, "batch time layer head"]:
    """One batch's unit values from teacher-forced, right-padded passes over the sequences.

    ``units`` is a :class:`~synergy_lens.record.kinds.UnitSpec` or a head signal function
    (every head). ``out[i, t]`` is the value at position ``len(prompt_ids[i]) - 1 + t`` of
    ``prompt_ids[i] + generated_ids[i]``: the step that produced generated token ``t``. The
    last generated token is never fed (no step reads it). Steps at or past
    ``len(generated_ids[i])`` (up to ``n_steps``, default the longest continuation) are NaN.
    Returns a float32 CPU tensor ``[batch, time, row, unit]``.

    On CPU, where compute grows with the padded token count, rows of very different lengths
    (continuations that stopped at EOS early) go in separate passes when that saves more
    padding than a pass costs; elsewhere the batch is one pass.
    """
    spec = as_spec(adapter, units)
    lengths = [len(g) for g in generated_ids]
    if not lengths or min(lengths) < 1:
        raise ValueError("every prompt needs at least one generated token to record")
    n_steps = max(lengths) if n_steps is None else n_steps
    if max(lengths) > n_steps:
        raise ValueError(f"a continuation has {max(lengths)} tokens, more than n_steps={n_steps}")
    seqs = [[*p, *g[:-1]] for p, g in zip(prompt_ids, generated_ids)]
    out = torch.full((len(seqs), n_steps, spec.n_rows, spec.size), float("nan"))
    overhead = _PASS_OVERHEAD_TOKENS.get(adapter.device.type)
    for rows in _split_by_length([len(s) for s in seqs], overhead):
        values = _one_pass(
            adapter,
            [seqs[i] for i in rows],
            [len(prompt_ids[i]) - 1 for i in rows],
            [lengths[i] for i in rows],
            spec,
        )
        out[rows, : values.shape[1]] = values
    return out


_PASS_OVERHEAD_TOKENS: dict[str, int] = {"cpu": 32}
"""Fixed cost of one forward pass, in padded tokens, per device type (where splitting pays)."""


def _one_pass(
    adapter: ModelAdapter,
    seqs: list[list[int]],
    starts: list[int],
    lengths: list[int],
    spec: UnitSpec,
) -> Float[Tensor, "batch time layer head"]:
    """One right-padded pass; hooks reduce each row's activation at the recorded positions."""
    ids, mask = adapter.pad(seqs, side="right")
    device, steps = ids.device, max(lengths)
    offsets = torch.arange(steps, device=device)
    positions = (torch.tensor(starts, device=device)[:, None] + offsets).clamp(max=ids.shape[1] - 1)
    out = torch.empty((len(seqs), steps, spec.n_rows, spec.size), device=device)
    recorded: set[int] = set()

    def reduce(act: Tensor, *, hook: Any, row: int, layer: int) -> None:
        index = positions.view(len(seqs), steps, *([1] * (act.ndim - 2))).expand(-1, -1, *act.shape[2:])
        out[:, :, row, :] = _reduced(spec, act.gather(1, index), layer).float()
        recorded.add(row)
        if row == spec.n_rows - 1:
            raise H.StopForward  # the rest of the network is not needed

    with torch.inference_mode():
        try:
            adapter.forward(ids, attention_mask=mask, fwd_hooks=spec.hooks(reduce))
        except H.StopForward:
            pass
    if len(recorded) != spec.n_rows:
        lost = [spec.hook(spec.layers[r]) for r in sorted(set(range(spec.n_rows)) - recorded)]
        raise RuntimeError(f"hooks {lost} never ran during the recording pass")
    out[offsets[None, :] >= torch.tensor(lengths, device=device)[:, None]] = float("nan")
    return out.cpu()


def _split_by_length(sizes: list[int], overhead: int | None) -> list[list[int]]:
    """Group rows into passes minimising ``sum(overhead + rows * longest)`` (exact, by DP
    over rows sorted by size); one group when ``overhead`` is None."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    if overhead is None or len(order) < 2:
        return [order]
    n = len(order)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for k in range(1, n + 1):
        for j in range(k):  # rows order[j:k] share a pass; order[j] is the longest
            cost = best[j] + overhead + (k - j) * sizes[order[j]]
            if cost < best[k]:
                best[k], cut[k] = cost, j
    groups, k = [], n
    while k > 0:
        groups.append(order[cut[k] : k])
        k = cut[k]
    return groups[::-1]


def batch_plan(prompt_ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Prompt indices grouped into batches of similar token length, longest first."""
    order = sorted(range(len(prompt_ids)), key=lambda i: (-len(prompt_ids[i]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# -- checks ---------------------------------------------------------------------------
def _check_prompts(prompts: Any) -> list[Prompt]:
    items = as_prompts(prompts)
    if not items:
        raise ValueError(
            "no prompts to record: pass a list of texts, e.g. synergy_lens.default_prompts()"
        )
    for i, p in enumerate(items):
        if not p.text.strip():
            raise ValueError(f"prompt {i} is empty: every prompt needs some text")
    return items


def _check_int(name: str, value: Any, minimum: int, *, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        extra = f" ({why})" if why else ""
        raise ValueError(f"{name}={value} is too small: use at least {minimum}{extra}")


def _resolve_chat_template(adapter: ModelAdapter, chat_template: bool | None) -> bool:
    has = bool(getattr(adapter.tokenizer, "chat_template", None))
    if chat_template is None:
        return has
    if chat_template and not has:
        raise ValueError(
            "chat_template=True but this model's tokenizer has no chat template: pass "
            "chat_template=False (raw text) or None (use one when available)"
        )
    return bool(chat_template)


def _check_context(adapter: ModelAdapter, prompt_ids: list[list[int]], max_new: int) -> None:
    n_ctx = adapter.n_ctx
    for i, ids in enumerate(prompt_ids):
        if len(ids) > n_ctx:
            raise ValueError(
                f"prompt {i} is {len(ids)} tokens long, longer than the model's context "
                f"window ({n_ctx} tokens): shorten it"
            )
        if len(ids) + max_new - 1 > n_ctx:
            raise ValueError(
                f"prompt {i} ({len(ids)} tokens) plus max_new_tokens={max_new} does not fit "
                f"in the model's context window ({n_ctx} tokens): shorten the prompt or "
                f"use max_new_tokens <= {n_ctx - len(ids) + 1}"
            )


def _batch_seed(seed: int, batch: int) -> int:
    digest = hashlib.sha256(f"synergy-lens/{seed}/{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _note(err: BaseException, message: str) -> None:
    if hasattr(err, "add_note"):  # shown under the traceback (Python >= 3.11)
        err.add_note(message)
    else:
        print(message, file=sys.stderr)
