"""Unit labels shared by the analysis results (files are written by :mod:`synergy_lens._io`)."""

from __future__ import annotations

__all__ = ["unit_labels"]


def unit_labels(n_layers: int, n_heads: int) -> list[str]:
    """``["L0H0", "L0H1", ...]``: unit = layer * n_heads + head (ARCHITECTURE.md)."""
    return [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
