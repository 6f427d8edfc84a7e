"""Save/load for intervention results: ``torch.save`` of plain tensors plus one JSON header.

Never a pickle of the object: loading uses ``weights_only=True`` and runs no code. Each
result class writes a ``format`` tag so a file of one kind is not mistaken for another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["load_payload", "save_payload"]


def save_payload(path: str | Path, fmt: str, tensors: Mapping[str, Tensor | None], header: dict[str, Any]) -> None:
    """Write ``tensors`` (``None`` entries skipped) and a JSON-able ``header`` tagged ``fmt``."""
    payload: dict[str, Any] = {k: v.detach().cpu() for k, v in tensors.items() if v is not None}
    payload["header"] = json.dumps({"format": fmt, **header})
    torch.save(payload, Path(path))


def load_payload(path: str | Path, fmt: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Inverse of :func:`save_payload`: ``(tensors, header without "format")``."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "header" not in payload:
        raise ValueError(f"{path} is not a synergy-lens result file (no header)")
    header = json.loads(payload.pop("header"))
    found = header.pop("format", None)
    if found != fmt:
        raise ValueError(f"{path} holds {found!r}, not {fmt!r}: load it with the matching class")
    return payload, header
