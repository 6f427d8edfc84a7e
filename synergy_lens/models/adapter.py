"""One small adapter for what differs between HookedTransformer and TransformerBridge.

Everything else in synergy-lens talks to the model through :class:`ModelAdapter`:
sizes, hook names, tokenisation with an explicit BOS policy, padded forward passes,
batched generation with a KV cache, and per-head weight views for weight interventions.
The host model is never subclassed or patched; hooks are added only inside
``with model.hooks(...)``.

BOS policy. TransformerLens prepends a BOS token by default; tokenizers converted from
GGUF (such as SmolLM2's) add none, and SmolLM2 was trained without one. The adapter
decides once, explicitly: ``bos="model"`` (default) follows the model's
``cfg.default_prepend_bos`` (TransformerLens's own switch, which :func:`load_model` sets to
False for the default model, as its tokenizer does), ``"always"`` prepends
``tokenizer.bos_token_id``, ``"never"`` prepends nothing. Text is tokenised without the
tokenizer's own special tokens and the BOS is added here, exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, overload

import torch
from jaxtyping import Float, Int
from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens.models._decoding import verify
from synergy_lens.units import unit_label, unit_labels

__all__ = ["ModelAdapter", "adapt", "BosPolicy", "is_transformer_lens_model"]

BosPolicy = Literal["model", "always", "never"]


def _backend_of(model: Any) -> Literal["hooked", "bridge"] | None:
    try:
        from transformer_lens.model_bridge import TransformerBridge

        if isinstance(model, TransformerBridge):
            return "bridge"
    except ImportError:
        pass
    try:
        from transformer_lens import HookedTransformer

        if isinstance(model, HookedTransformer):
            return "hooked"
    except ImportError:
        pass
    return None


def is_transformer_lens_model(model: Any) -> bool:
    """True for a HookedTransformer, a TransformerBridge or a :class:`ModelAdapter`."""
    return isinstance(model, ModelAdapter) or _backend_of(model) is not None


def adapt(model: Any, *, bos: BosPolicy = "model") -> ModelAdapter:
    """Wrap a TransformerLens model (idempotent on an existing :class:`ModelAdapter`)."""
    if isinstance(model, ModelAdapter):
        return model
    backend = _backend_of(model)
    if backend is None:
        raise TypeError(
            f"expected a TransformerLens model (HookedTransformer or TransformerBridge), got "
            f"{type(model).__module__}.{type(model).__name__}. Load one with "
            "synergy_lens.load_model(), TransformerBridge.boot_transformers(name) or "
            "HookedTransformer.from_pretrained(name)."
        )
    if bos not in get_args(BosPolicy):
        raise ValueError(f"unknown bos policy {bos!r}: use one of {get_args(BosPolicy)}")
    return ModelAdapter(model=model, backend=backend, bos=bos)


class _CfgSize:
    """A read-only size of the model, ``int(adapter.cfg.<name>)`` (typed ``int`` on instances)."""

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _CfgSize: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> int: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> int | _CfgSize:
        if obj is None:
            return self
        return int(getattr(obj.cfg, self.name))  # type: ignore[attr-defined]


@dataclass
class ModelAdapter:
    """What synergy-lens needs from a TransformerLens model, the same on both backends."""

    model: Any
    backend: Literal["hooked", "bridge"]
    bos: BosPolicy = "model"
    _prepend_bos: bool = field(init=False)

    def __post_init__(self) -> None:
        tok = self.tokenizer
        default = bool(getattr(self.cfg, "default_prepend_bos", True))
        if self.bos == "always":
            if tok is None or tok.bos_token_id is None:
                raise ValueError("bos='always' but the tokenizer has no BOS token: use bos='never'")
            self._prepend_bos = True
        elif self.bos == "never" or tok is None or tok.bos_token_id is None:
            self._prepend_bos = False
        else:  # TransformerLens's own setting for this model
            self._prepend_bos = default

    # -- sizes -----------------------------------------------------------------------
    @property
    def cfg(self) -> Any:
        return self.model.cfg

    n_layers = _CfgSize("n_layers", "Layers (blocks) of the model.")
    n_heads = _CfgSize("n_heads", "Query heads per layer: the units of every analysis.")
    d_head = _CfgSize("d_head", "Dimension of one head.")
    d_model = _CfgSize("d_model", "Width of the residual stream.")
    n_ctx = _CfgSize("n_ctx", "Context length.")

    @property
    def n_kv_heads(self) -> int:
        n = getattr(self.cfg, "n_key_value_heads", None)
        return int(n) if n else self.n_heads

    @property
    def n_units(self) -> int:
        return self.n_layers * self.n_heads

    @property
    def name(self) -> str:
        return str(getattr(self.cfg, "model_name", None) or type(self.model).__name__)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def prepend_bos(self) -> bool:
        """Whether a BOS token is put in front of every prompt (see the module docstring)."""
        return self._prepend_bos

    @property
    def eos_token_id(self) -> int | None:
        tok = self.tokenizer
        return None if tok is None else tok.eos_token_id

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok is not None else None
        if pad is None:
            pad = self.eos_token_id if self.eos_token_id is not None else 0
        return int(pad)

    def unit_labels(self) -> list[str]:
        """``["L0H0", "L0H1", ...]``: unit = layer * n_heads + head."""
        return unit_labels(self.n_layers, self.n_heads)

    # -- tokens ----------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Token ids of one text, with this adapter's BOS policy applied exactly once."""
        tok = self.tokenizer
        if tok is None:
            raise ValueError("this model has no tokenizer: pass token ids instead of text")
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        if self._prepend_bos:
            ids = [int(tok.bos_token_id), *ids]
        return ids

    def apply_chat_template(self, text: str) -> str:
        """Wrap a user message in the tokenizer's chat template (generation prompt added)."""
        tok = self.tokenizer
        if tok is None or not getattr(tok, "chat_template", None):
            raise ValueError(
                "this model's tokenizer has no chat template: use chat_template=False"
            )
        out = tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        return str(out)

    def pad(
        self, seqs: Sequence[Sequence[int]], *, side: Literal["left", "right"]
    ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
        """Pad token lists into ``(ids, attention_mask)`` on the model's device."""
        if not seqs:
            raise ValueError("no sequences to pad")
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if side == "left":
                ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
                mask[i, width - len(s) :] = 1
            else:
                ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
                mask[i, : len(s)] = 1
        return ids.to(self.device), mask.to(self.device)

    # -- forward passes --------------------------------------------------------------
    def hooks(self, fwd_hooks: Sequence[H.FwdHook] = ()) -> contextlib.AbstractContextManager[Any]:
        """``model.hooks(fwd_hooks=...)``: hooks live only inside the ``with`` block."""
        return self.model.hooks(fwd_hooks=list(fwd_hooks))

    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        *,
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        fwd_hooks: Sequence[H.FwdHook] = (),
    ) -> Float[Tensor, "batch out_pos vocab"]:
        """Logits of a teacher-forced pass over ``tokens`` (taken as given: no BOS added).

        ``out_pos == pos`` unless a hook keeps only some positions of the residual stream
        (``intervene.divergence`` gathers the ones it scores before the unembedding).

        Right padding needs no mask (attention is causal, so padding after a sequence
        cannot change it); pass ``attention_mask`` for left padding.
        """
        kwargs: dict[str, Any] = {}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        with self.hooks(fwd_hooks):
            return self.model(tokens, **kwargs)

    # -- generation ------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        do_sample: bool = False,
        temperature: float = 1.0,
        seed: int = 0,
        stop_at_eos: bool = True,
        check: bool = True,
    ) -> list[list[int]]:
        """Continue a batch of token-id prompts with the KV cache (left padding).

        Returns the new tokens of each prompt, ending at (and including) the first EOS when
        ``stop_at_eos``. Greedy unless ``do_sample``; sampling is seeded and reproducible.
        The first call on a model object checks that cached decoding equals uncached
        decoding (:func:`synergy_lens.models.selfcheck.check_cached_decoding`; ``check``
        turns that off) and raises ``CachedDecodingError`` if it does not.
        Without ``stop_at_eos`` every prompt gets exactly ``max_new_tokens`` tokens, all of
        them the model's own choices: a row that produced EOS goes on with its own next
        tokens (as if generated alone), never padding.
        """
        if check:
            self.check_cached_decoding()
        ids, mask = self.pad(prompts, side="left")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        if self.backend == "bridge" and hasattr(self.model, "original_model"):
            new = self._generate_hf(ids, mask, max_new_tokens, do_sample, temperature, gen, stop_at_eos)
        else:
            new = self._generate_tl(ids, mask, max_new_tokens, do_sample, temperature, gen, stop_at_eos)
        out: list[list[int]] = []
        eos = self.eos_token_id
        for row in new.tolist():
            if stop_at_eos and eos is not None and eos in row:
                row = row[: row.index(eos) + 1]
            out.append(row)
        return out

    def check_cached_decoding(self) -> None:
        """Raise ``CachedDecodingError`` unless cached decoding equals uncached decoding.

        Once per model object; call it before adding hooks that record or change
        activations, since the check runs a few forward passes of its own.
        """
        verify(self)

    def _next_token(
        self, logits: Tensor, do_sample: bool, temperature: float, gen: torch.Generator
    ) -> Tensor:
        if not do_sample:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float().cpu() / max(temperature, 1e-6), dim=-1)
        return torch.multinomial(probs, 1, generator=gen).squeeze(-1).to(logits.device)

    def _append(self, new_tokens: list[Tensor], nxt: Tensor, finished: Tensor, stop_at_eos: bool) -> bool:
        """Add one step's tokens (in place: padding for rows already finished, which
        ``finished`` then marks). True once every row has produced EOS."""
        if stop_at_eos:
            nxt.copy_(torch.where(finished, torch.full_like(nxt, self.pad_token_id), nxt))
        new_tokens.append(nxt)
        if stop_at_eos and self.eos_token_id is not None:
            finished |= nxt == self.eos_token_id
            return bool(finished.all())
        return False

    def _generate_hf(
        self, ids: Tensor, mask: Tensor, max_new: int, do_sample: bool, temp: float,
        gen: torch.Generator, stop_at_eos: bool = True,
    ) -> Tensor:
        """Bridge: the wrapped transformers model's cached decoding, our own sampler.

        With ``stop_at_eos`` a finished row is fed padding and the loop ends once every row
        produced EOS; without it, every row runs ``max_new`` steps on its own tokens.
        """
        hf = self.model.original_model
        past = None
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        cur_ids, cur_mask = ids, mask
        finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        new_tokens: list[Tensor] = []
        for _ in range(max_new):
            out = hf(
                input_ids=cur_ids,
                attention_mask=cur_mask,
                position_ids=position_ids,
                past_key_values=past,
                use_cache=True,
            )
            past = out.past_key_values
            nxt = self._next_token(out.logits[:, -1, :], do_sample, temp, gen)
            if self._append(new_tokens, nxt, finished, stop_at_eos):
                break
            cur_ids = nxt[:, None]
            cur_mask = torch.cat([cur_mask, torch.ones_like(cur_ids)], dim=1)
            position_ids = position_ids[:, -1:] + 1
        return torch.stack(new_tokens, dim=1)

    def _generate_tl(
        self, ids: Tensor, mask: Tensor, max_new: int, do_sample: bool, temp: float,
        gen: torch.Generator, stop_at_eos: bool = True,
    ) -> Tensor:
        """HookedTransformer: TransformerLens's KV cache, explicit attention mask (EOS
        handling as in :meth:`_generate_hf`)."""
        try:
            from transformer_lens import TransformerLensKeyValueCache as KVCache
        except ImportError:  # TransformerLens < 3.9 naming
            from transformer_lens.past_key_value_caching import (  # type: ignore[no-redef]
                HookedTransformerKeyValueCache as KVCache,
            )

        cache = KVCache.init_cache(self.cfg, self.cfg.device, ids.shape[0])
        finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        logits = self.model(ids, attention_mask=mask, past_kv_cache=cache)
        new_tokens: list[Tensor] = []
        for step in range(max_new):
            nxt = self._next_token(logits[:, -1, :], do_sample, temp, gen)
            if self._append(new_tokens, nxt, finished, stop_at_eos):
                break
            if step + 1 < max_new:
                logits = self.model(
                    nxt[:, None], attention_mask=torch.ones_like(nxt[:, None]), past_kv_cache=cache
                )
        return torch.stack(new_tokens, dim=1)

    # -- weights ---------------------------------------------------------------------
    def W_O(self, layer: int) -> Float[Tensor, "head d_head d_model"]:
        """Output projection per head, detached (read-only use; see head_weight_views)."""
        return self.model.blocks[layer].attn.W_O.detach()

    def head_weight_views(self, layer: int, head: int) -> dict[str, Tensor]:
        """In-place-writable views of one head's query and output weights.

        ``"W_Q"`` holds the weights that make the head's queries (the head's rows of
        ``q_proj.weight`` in transformers layout) and ``"W_O"`` the weights that read the
        head's output (its columns of ``o_proj.weight``). Used by weight-noise ablation,
        which restores them bit for bit.
        """
        if not 0 <= layer < self.n_layers or not 0 <= head < self.n_heads:
            raise IndexError(
                f"head {unit_label(layer, head)} out of range: layers 0..{self.n_layers - 1}, "
                f"heads 0..{self.n_heads - 1}"
            )
        attn = self.model.blocks[layer].attn
        if self.backend == "hooked":
            return {"W_Q": attn.W_Q.data[head], "W_O": attn.W_O.data[head]}
        q = _linear_weight(getattr(getattr(attn, "q", None), "original_component", None))
        o = _linear_weight(getattr(getattr(attn, "o", None), "original_component", None))
        width = self.n_heads * self.d_head
        if q is None or o is None or q.shape[0] != width or o.shape[1] != width:
            raise NotImplementedError(
                f"per-head weight views are not available for this architecture on the bridge "
                f"({type(attn).__name__}); use the 'hooked' backend or a head-output ablation"
            )
        sl = slice(head * self.d_head, (head + 1) * self.d_head)
        return {"W_Q": q[sl, :], "W_O": o[:, sl]}

    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Eval mode inside the block, the previous mode restored after."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)


def _linear_weight(module: Any) -> Tensor | None:
    """A module's weight data in ``nn.Linear`` layout ``[out, in]`` (a view, writable in place).

    GPT-2's ``Conv1D`` stores its weight transposed, ``[in, out]``; slicing it as a Linear
    weight would pick the wrong head (a bug the architecture matrix caught on GPT-2's W_O).
    """
    from transformers.pytorch_utils import Conv1D

    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        return None
    return weight.data.T if isinstance(module, Conv1D) else weight.data
