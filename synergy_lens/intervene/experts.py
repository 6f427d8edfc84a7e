"""Ablating mixture-of-experts experts (being written: see issue 15)."""

from __future__ import annotations

from typing import Any

__all__ = ["expert_ablation_hooks", "prepare_expert_reference"]


def prepare_expert_reference(adapter: Any, spec: Any, mode: str, seqs: list[list[int]]) -> Any:
    raise ValueError("ablating experts is not available yet in this version")


def expert_ablation_hooks(adapter: Any, spec: Any, mask: Any, *, mode: str = "zero", state: Any = None) -> list[Any]:
    raise ValueError("ablating experts is not available yet in this version")
