"""Tiny random-init models for fast tests: each architecture family users bring, from a config.

No download: a byte-level tokenizer (256 byte tokens plus BOS/EOS/PAD) is built in memory,
and the weights are drawn from a seeded generator. The same seed gives the same weights on
both backends, so a test can compare ``"bridge"`` and ``"hooked"`` on one network.

Architectures (``TinyConfig.arch``, listed in :data:`ARCHS`), each a transformers model
class built from its own config, so every family-specific detail is the real one:

==============  ======================  =================================================
arch            transformers class      what it exercises
==============  ======================  =================================================
``llama``       LlamaForCausalLM        the default: RMSNorm, RoPE, grouped-query attention
``gpt2``        GPT2LMHeadModel         LayerNorm, learned positions, biases, no GQA
``neox``        GPTNeoXForCausalLM      Pythia: parallel attention + MLP, partial RoPE
``qwen3``       Qwen3ForCausalLM        per-head q/k RMSNorm, GQA
``gemma3``      Gemma3ForCausalLM       sliding-window and global layers, sandwich norms,
                                        scaled embeddings, ``query_pre_attn_scalar``
``mixtral``     MixtralForCausalLM      sparse mixture-of-experts MLP (top-k routing)
``qwen3_moe``   Qwen3MoeForCausalLM     MoE with q/k norm
``olmoe``       OlmoeForCausalLM        MoE with full-width q/k norm
==============  ======================  =================================================

The Llama weights are exactly those of earlier versions (matrices ~ N(0, 0.2^2), norms 1).
The other families' matrices and expert tensors are N(0, 0.2^2) too, and every vector (norm
weights, biases) gets N(0, 0.1^2) added to its default, so a backend that drops a bias or a
norm weight is caught.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import torch

from synergy_lens.models.loading import _boot_bridge, _resolve_backend, hooked_from_hf

__all__ = ["ARCHS", "Arch", "TinyConfig", "byte_tokenizer", "hf_config", "llama_config", "tiny_model"]

Arch = Literal["gpt2", "neox", "llama", "qwen3", "gemma3", "mixtral", "qwen3_moe", "olmoe"]
ARCHS: tuple[str, ...] = get_args(Arch)
"""Every architecture :func:`tiny_model` builds, in the order of the README's support table."""

_NO_GQA = ("gpt2", "neox")
_VOCAB, _BOS, _EOS, _PAD = 259, 256, 257, 258


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of a tiny model of family ``arch`` (GQA when ``n_kv_heads < n_heads``).

    ``n_kv_heads=None`` means 2 on families with grouped-query attention and ``n_heads`` on
    those without (gpt2, neox). ``n_experts`` / ``experts_per_token`` size the MoE families;
    ``d_mlp`` is ignored by gpt2, whose MLP is ``4 * d_model`` wide as in every released
    GPT-2. ``sliding_window`` is Gemma 3's local-attention window (kept short, so that test
    sequences run past it), whose odd layers are global.
    """

    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_head: int = 8
    d_mlp: int = 64
    n_ctx: int = 256
    rope_theta: float = 10000.0
    arch: Arch = "llama"
    n_experts: int = 4
    experts_per_token: int = 2
    sliding_window: int = 4

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}: use one of {', '.join(ARCHS)}")
        if self.n_kv_heads is None:
            kv = self.n_heads if self.arch in _NO_GQA else min(2, self.n_heads)
            object.__setattr__(self, "n_kv_heads", kv)
        elif self.arch in _NO_GQA and self.n_kv_heads != self.n_heads:
            raise ValueError(
                f"arch {self.arch!r} has no grouped-query attention: n_kv_heads must equal "
                f"n_heads ({self.n_heads}), got {self.n_kv_heads}; leave n_kv_heads unset"
            )

    @property
    def d_model(self) -> int:
        return self.n_heads * self.d_head

    @property
    def kv_heads(self) -> int:
        """``n_kv_heads``, resolved (an ``int`` for type checkers)."""
        assert self.n_kv_heads is not None  # set in __post_init__
        return self.n_kv_heads


def _byte_to_char() -> dict[int, str]:
    """The byte -> printable character map that byte-level BPE uses (GPT-2's convention):
    printable bytes stand for themselves, the others are shifted above U+0100."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    out = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + shift)
            shift += 1
    return out


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (ids 0..255 are bytes; 256 BOS, 257 EOS, 258 PAD)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: b for b, ch in _byte_to_char().items()}  # id == byte value
    vocab.update({"<bos>": _BOS, "<eos>": _EOS, "<pad>": _PAD})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    return tok


_IDS: dict[str, Any] = {"bos_token_id": _BOS, "eos_token_id": _EOS, "pad_token_id": _PAD}


def _decoder_config(cfg: TinyConfig, config_class: str, model_class: str, *, kv_heads: bool = True,
                    head_dim: bool = True, **extra: Any) -> Any:
    """A transformers config of the Llama-like naming (most families) filled from ``cfg``: the
    byte tokenizer's ids, default rotary embeddings, ``extra`` for what the family adds."""
    import transformers

    kwargs: dict[str, Any] = {
        "vocab_size": _VOCAB, "hidden_size": cfg.d_model, "intermediate_size": cfg.d_mlp,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "max_position_embeddings": cfg.n_ctx,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "architectures": [model_class], **_IDS,
    }
    if kv_heads:
        kwargs["num_key_value_heads"] = cfg.kv_heads
    if head_dim:
        kwargs["head_dim"] = cfg.d_head
    return getattr(transformers, config_class)(**(kwargs | extra))


def llama_config(cfg: TinyConfig) -> Any:
    """The transformers ``LlamaConfig`` of ``cfg`` with the byte tokenizer's 259 ids."""
    return _decoder_config(cfg, "LlamaConfig", "LlamaForCausalLM", tie_word_embeddings=False)


def _gpt2_config(cfg: TinyConfig) -> Any:
    from transformers import GPT2Config

    out = GPT2Config(
        vocab_size=_VOCAB,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        # n_inner stays None (MLP width 4 * d_model), as in every released GPT-2:
        # TransformerLens 3.9's HookedTransformer ignores n_inner
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        architectures=["GPT2LMHeadModel"],
        **_IDS,
    )
    out.n_ctx = cfg.n_ctx  # as in the hub's gpt2 config.json; TransformerLens 3.9 reads it
    return out


def _neox_config(cfg: TinyConfig) -> Any:
    # Pythia: parallel attention and MLP, partial rotary embedding (half of each head rotates)
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta, "partial_rotary_factor": 0.5}
    return _decoder_config(cfg, "GPTNeoXConfig", "GPTNeoXForCausalLM", kv_heads=False, head_dim=False,
                           rope_parameters=rope, use_parallel_residual=True)


def _qwen3_config(cfg: TinyConfig) -> Any:
    return _decoder_config(cfg, "Qwen3Config", "Qwen3ForCausalLM")


def _gemma3_config(cfg: TinyConfig) -> Any:
    layer_types = ["full_attention" if i % 2 else "sliding_attention" for i in range(cfg.n_layers)]
    rope = {"sliding_attention": {"rope_type": "default", "rope_theta": cfg.rope_theta},
            "full_attention": {"rope_type": "default", "rope_theta": 100 * cfg.rope_theta}}
    # query_pre_attn_scalar is not d_head: Gemma 3 scales scores by query_pre_attn_scalar ** -0.5
    return _decoder_config(cfg, "Gemma3TextConfig", "Gemma3ForCausalLM", query_pre_attn_scalar=2 * cfg.d_head,
                           sliding_window=cfg.sliding_window, layer_types=layer_types, rope_parameters=rope)


def _mixtral_config(cfg: TinyConfig) -> Any:
    return _decoder_config(cfg, "MixtralConfig", "MixtralForCausalLM", num_local_experts=cfg.n_experts,
                           num_experts_per_tok=cfg.experts_per_token)


def _qwen3_moe_config(cfg: TinyConfig) -> Any:
    out = _decoder_config(cfg, "Qwen3MoeConfig", "Qwen3MoeForCausalLM", head_dim=False,
                          moe_intermediate_size=cfg.d_mlp, num_experts=cfg.n_experts,
                          num_experts_per_tok=cfg.experts_per_token, norm_topk_prob=True)
    out.head_dim = cfg.d_head
    return out


def _olmoe_config(cfg: TinyConfig) -> Any:
    return _decoder_config(cfg, "OlmoeConfig", "OlmoeForCausalLM", head_dim=False, num_experts=cfg.n_experts,
                           num_experts_per_tok=cfg.experts_per_token)


_CONFIGS: dict[str, Callable[[TinyConfig], Any]] = {
    "llama": llama_config,
    "gpt2": _gpt2_config,
    "neox": _neox_config,
    "qwen3": _qwen3_config,
    "gemma3": _gemma3_config,
    "mixtral": _mixtral_config,
    "qwen3_moe": _qwen3_moe_config,
    "olmoe": _olmoe_config,
}


def hf_config(cfg: TinyConfig) -> Any:
    """The transformers config of ``cfg`` (its family's own config class), byte-token ids."""
    return _CONFIGS[cfg.arch](cfg)


def _hf_tiny(cfg: TinyConfig, seed: int) -> Any:
    """The transformers model of ``cfg`` with seeded random weights, in eval mode."""
    from transformers import AutoModelForCausalLM

    hf_cfg = hf_config(cfg)
    hf_cfg.name_or_path = f"synergy-lens/tiny-{cfg.arch}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(hf_cfg)
        # Larger-than-default weights so heads carry distinct, non-trivial signals.
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2 or (p.dim() > 2 and cfg.arch != "llama"):  # MoE experts: 3-d
                    torch.nn.init.normal_(p, std=0.2)
                elif p.dim() == 1 and cfg.arch != "llama":
                    p.add_(torch.randn_like(p), alpha=0.1)
    model.eval()
    return model


def _hooked_gemma3_config(c: Any) -> Any:
    """The ``HookedTransformerConfig`` of a Gemma 3 transformers config.

    TransformerLens 3.9 converts Gemma 3 weights but reads Gemma 3 configs by hub name only
    (one fixed dictionary per released size); this is that dictionary filled in from ``c``,
    plus the score scale ``query_pre_attn_scalar ** 0.5`` (equal to ``sqrt(d_head)`` in the
    released models, so TransformerLens leaves it implicit).
    """
    from transformer_lens import HookedTransformerConfig

    rope = c.rope_parameters
    return HookedTransformerConfig(
        d_model=c.hidden_size,
        d_head=c.head_dim,
        n_heads=c.num_attention_heads,
        n_key_value_heads=c.num_key_value_heads,
        d_mlp=c.intermediate_size,
        n_layers=c.num_hidden_layers,
        n_ctx=c.max_position_embeddings,
        eps=c.rms_norm_eps,
        d_vocab=c.vocab_size,
        act_fn=c.hidden_activation,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=c.head_dim,
        rotary_base=rope["full_attention"]["rope_theta"],
        rotary_base_local=rope["sliding_attention"]["rope_theta"],
        use_attn_scale=True,
        attn_scale=float(c.query_pre_attn_scalar) ** 0.5,
        gated_mlp=True,
        final_rms=True,
        use_normalization_before_and_after=True,
        use_qk_norm=True,
        use_local_attn=True,
        window_size=c.sliding_window,
        attn_types=["local" if t == "sliding_attention" else "global" for t in c.layer_types],
        original_architecture="Gemma3ForCausalLM",
        init_weights=False,
        default_prepend_bos=False,
        dtype=torch.float32,
        model_name="tiny-gemma3",
    )


def tiny_model(
    backend: Literal["auto", "bridge", "hooked"] = "auto",
    config: TinyConfig | None = None,
    *,
    seed: int = 0,
    arch: Arch | None = None,
    **sizes: Any,
) -> Any:
    """A tiny random TransformerLens model of one architecture family, built offline in seconds.

    Args:
        backend: ``"bridge"``, ``"hooked"`` or ``"auto"``, as in :func:`load_model`.
        config: sizes; or pass them as keywords (``tiny_model(n_layers=3, n_heads=2)``).
        seed: weights are a deterministic function of ``(config, seed)``.
        arch: the architecture family (:data:`ARCHS`; default ``"llama"``), overriding
            ``config.arch``.

    Raises:
        ValueError: an unknown ``arch``, or GQA asked of a family without it.
        ModelLoadError: the backend cannot build this family (Qwen3-MoE on ``"hooked"``);
            the message names the architecture and says to use ``backend="bridge"``. The
            README's "Supported architectures" table lists every cell.
    """
    if config is not None and sizes:
        raise ValueError("pass either config= or size keywords, not both")
    if arch is not None and config is None:
        sizes["arch"] = arch
    cfg = config or TinyConfig(**sizes)
    if arch is not None and cfg.arch != arch:
        cfg = replace(cfg, arch=arch, n_kv_heads=None if arch in _NO_GQA else cfg.n_kv_heads)
    chosen = _resolve_backend(backend)
    from transformers import AutoTokenizer

    hf = _hf_tiny(cfg, seed)
    name = f"synergy-lens/tiny-{cfg.arch}"
    # TransformerLens re-reads tokenizers from their folder, so give it one on disk.
    with tempfile.TemporaryDirectory() as d:
        byte_tokenizer().save_pretrained(d)
        hf.config.save_pretrained(d)
        tok = AutoTokenizer.from_pretrained(d)
        if chosen == "bridge":
            model = _boot_bridge(name, hf, tok, None, torch.float32)
        else:
            # TransformerLens 3.9 reads Gemma 3 configs by hub name only
            hooked_cfg = _hooked_gemma3_config(hf.config) if cfg.arch == "gemma3" else None
            model = hooked_from_hf(d, hf, tok, dtype=torch.float32, config=hooked_cfg)
            model.cfg.model_name = f"tiny-{cfg.arch}"
    model.eval()
    return model
