"""Save/load for analysis results (the shared format of :mod:`synergy_lens._io`), and unit labels."""

from __future__ import annotations

from synergy_lens._io import load_payload, save_payload

__all__ = ["load_payload", "save_payload", "unit_labels"]


def unit_labels(n_layers: int, n_heads: int) -> list[str]:
    """``["L0H0", "L0H1", ...]``: unit = layer * n_heads + head (ARCHITECTURE.md)."""
    return [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
