"""Tiny random-init models for fast tests: a Llama-family transformer built from a config.

No download: a byte-level tokenizer (256 byte tokens plus BOS/EOS/PAD) is built in memory,
and the weights are drawn from a seeded generator. The same seed gives the same weights on
both backends, so a test can compare ``"bridge"`` and ``"hooked"`` on one network.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any, Literal

import torch

from synergy_lens.models.loading import _boot_bridge, _resolve_backend, hooked_from_hf

__all__ = ["TinyConfig", "byte_tokenizer", "llama_config", "tiny_model"]


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of a tiny Llama-style model (GQA when ``n_kv_heads < n_heads``)."""

    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    d_head: int = 8
    d_mlp: int = 64
    n_ctx: int = 256
    rope_theta: float = 10000.0

    @property
    def d_model(self) -> int:
        return self.n_heads * self.d_head


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
    vocab.update({"<bos>": 256, "<eos>": 257, "<pad>": 258})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    return tok


def llama_config(cfg: TinyConfig) -> Any:
    """The transformers ``LlamaConfig`` of ``cfg`` with the byte tokenizer's 259 ids."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=259,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.d_head,
        max_position_embeddings=cfg.n_ctx,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        bos_token_id=256,
        eos_token_id=257,
        pad_token_id=258,
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
    )


def _hf_tiny(cfg: TinyConfig, seed: int) -> Any:
    from transformers import LlamaForCausalLM

    hf_cfg = llama_config(cfg)
    hf_cfg.name_or_path = "synergy-lens/tiny-llama"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(hf_cfg)
        # Larger-than-default weights so heads carry distinct, non-trivial signals.
        for p in model.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.2)
    model.eval()
    return model


def tiny_model(
    backend: Literal["auto", "bridge", "hooked"] = "auto",
    config: TinyConfig | None = None,
    *,
    seed: int = 0,
    **sizes: Any,
) -> Any:
    """A tiny random Llama-family TransformerLens model, built offline in well under a second.

    Args:
        backend: ``"bridge"``, ``"hooked"`` or ``"auto"``, as in :func:`load_model`.
        config: sizes; or pass them as keywords (``tiny_model(n_layers=3, n_heads=2)``).
        seed: weights are a deterministic function of ``(config, seed)``.
    """
    cfg = config or TinyConfig(**sizes)
    if config is not None and sizes:
        raise ValueError("pass either config= or size keywords, not both")
    chosen = _resolve_backend(backend)
    from transformers import AutoTokenizer

    hf = _hf_tiny(cfg, seed)
    # TransformerLens re-reads tokenizers from their folder, so give it one on disk.
    with tempfile.TemporaryDirectory() as d:
        byte_tokenizer().save_pretrained(d)
        hf.config.save_pretrained(d)
        tok = AutoTokenizer.from_pretrained(d)
        if chosen == "bridge":
            model = _boot_bridge("synergy-lens/tiny-llama", hf, tok, None, torch.float32)
        else:
            model = hooked_from_hf(d, hf, tok, dtype=torch.float32)
            model.cfg.model_name = "tiny-llama"
    model.eval()
    return model
