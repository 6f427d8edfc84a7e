"""Models in: loading (offline default + hub), the backend adapter, tiny test models."""

from synergy_lens.models.adapter import BosPolicy, ModelAdapter, adapt, is_transformer_lens_model
from synergy_lens.models.loading import (
    DEFAULT_HF_NAME,
    DEFAULT_MODEL,
    ModelLoadError,
    available_backends,
    cache_dir,
    load_default_hf,
    load_model,
)
from synergy_lens.models.tiny import TinyConfig, byte_tokenizer, tiny_model

__all__ = [
    "BosPolicy",
    "ModelAdapter",
    "adapt",
    "is_transformer_lens_model",
    "DEFAULT_HF_NAME",
    "DEFAULT_MODEL",
    "ModelLoadError",
    "available_backends",
    "cache_dir",
    "load_default_hf",
    "load_model",
    "TinyConfig",
    "byte_tokenizer",
    "tiny_model",
]
