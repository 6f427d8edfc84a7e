"""Short text and HTML summaries for result dataclasses (notebook display), in one place.

A result such as ``PhiIDResult`` holds tensors of thousands of numbers; the default
dataclass ``repr`` prints them all. :class:`SummaryRepr` gives one line per field instead:
a tensor as its shape, dtype and finite range, a list as its length and first items, a
dict as its keys. ``_repr_html_`` shows the same as a small table, which Jupyter renders
when a result is the last expression of a cell.

Use: subclass it and declare the dataclass with ``@dataclass(repr=False)`` (otherwise the
dataclass writes its own ``__repr__`` over this one). A class can add lines by overriding
:meth:`_summary_extra` (e.g. the top heads).
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any

__all__ = ["SummaryRepr", "describe"]


def describe(value: Any, *, width: int = 60) -> str:
    """A one-line description of a field's value."""
    try:
        from torch import Tensor
    except ImportError:  # pragma: no cover
        Tensor = ()  # type: ignore[assignment,misc]
    if isinstance(value, Tensor):
        shape = "x".join(map(str, value.shape)) or "scalar"
        text = f"tensor[{shape}] {str(value.dtype).replace('torch.', '')}"
        if value.numel():
            v = value.detach().float()
            finite = v[v.isfinite()]
            if finite.numel():
                text += f", {float(finite.min()):.4g}..{float(finite.max()):.4g}"
            n_nan = int(v.isnan().sum())
            if n_nan:
                text += f", {n_nan} NaN"
        return text
    if isinstance(value, dict):
        keys = list(value)
        shown = ", ".join(map(str, keys[:6])) + (", ..." if len(keys) > 6 else "")
        return f"dict of {len(keys)}: {{{shown}}}"
    if isinstance(value, (list, tuple)):
        head = ", ".join(_short(v) for v in value[:4]) + (", ..." if len(value) > 4 else "")
        return f"{type(value).__name__} of {len(value)}: [{head}]"
    return _short(value, width)


def _short(value: Any, width: int = 24) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


class SummaryRepr:
    """Mixin: ``repr`` of one short line per dataclass field, and ``_repr_html_``."""

    def _summary_items(self) -> list[tuple[str, str]]:
        items = [(f.name, describe(getattr(self, f.name))) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                 if f.repr]
        return items + list(self._summary_extra())

    def _summary_extra(self) -> list[tuple[str, str]]:
        """Extra ``(name, text)`` lines a class wants shown (default: none)."""
        return []

    def __repr__(self) -> str:
        lines = [f"  {name}: {text}" for name, text in self._summary_items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            f"<td style='text-align:left'><code>{html.escape(text)}</code></td></tr>"
            for name, text in self._summary_items()
        )
        return f"<div><b>{html.escape(type(self).__name__)}</b><table>{rows}</table></div>"
