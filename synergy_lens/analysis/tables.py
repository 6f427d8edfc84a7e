"""Per-layer tables of an analysis: the numbers behind the report's and the CLI's tables.

- :func:`layer_summary`: one row per layer (depth, mean atoms, mean score, the plotted
  profile and its band, core heads, the strongest head).
- :func:`core_table`: one row per layer with its abstract (core) and memory heads.

Both return ``pandas.DataFrame``; ``view.report`` lays them out, ``synergy-lens report``
prints and saves them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from synergy_lens.units import label_layers, normalised_depth, unit_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["core_table", "layer_summary"]


def layer_summary(scores: Any, profile: Any = None, core: Any = None) -> pd.DataFrame:
    """One row per layer: the numbers behind the layer profile, as a DataFrame.

    Columns: ``layer``, ``depth``, ``mean_sts``, ``mean_rtr`` (means over the layer's heads,
    nats), ``score`` (mean of ``scores.values``), ``profile`` / ``low`` / ``high`` (the
    plotted profile and its band, when given), ``abstract`` / ``memory`` (core heads in the
    layer, when given) and ``top_head`` (the layer's highest-scoring head).
    """
    import pandas as pd

    values = scores.values.detach().cpu().numpy()
    n_layers, n_heads = values.shape
    labels = _labels(scores, n_layers, n_heads)
    depth = normalised_depth(n_layers).numpy()
    with np.errstate(all="ignore"):
        frame: dict[str, Any] = {
            "layer": label_layers(labels, n_heads),
            "depth": depth,
            "mean_sts": np.nanmean(scores.mean_sts.numpy(), axis=1),
            "mean_rtr": np.nanmean(scores.mean_rtr.numpy(), axis=1),
            "score": np.nanmean(values, axis=1),
        }
    if profile is not None:
        frame["profile"] = profile.values.numpy()
        if profile.low is not None and profile.high is not None:
            frame["low"], frame["high"] = profile.low.numpy(), profile.high.numpy()
    if core is not None:
        frame["abstract"] = core.abstract.sum(1).numpy()
        frame["memory"] = core.memory.sum(1).numpy()
    top = []
    for layer in range(n_layers):
        row = values[layer]
        top.append(labels[layer * n_heads + int(np.nanargmax(row))] if np.isfinite(row).any() else "")
    frame["top_head"] = top
    return pd.DataFrame(frame).set_index("layer")


def core_table(core: Any) -> pd.DataFrame:
    """One row per layer: its abstract (core) heads and its memory heads, strongest first,
    each as ``"L5H3 (41)"`` with the head's score; layers with neither are left out."""
    import pandas as pd

    rows = []
    values, n_heads = core.values, core.n_heads
    labels = _labels(core, core.n_layers, n_heads)
    model_layers = label_layers(labels, n_heads)
    for layer in range(core.n_layers):
        cells = {}
        for group in ("abstract", "memory"):
            pairs = [(lay, h) for lay, h in core.pairs(group) if lay == layer]
            cells[group] = ", ".join(f"{labels[lay * n_heads + h]} ({float(values[lay, h]):.3g})" for lay, h in pairs)
        if cells["abstract"] or cells["memory"]:
            rows.append({"layer": model_layers[layer], "abstract heads": cells["abstract"],
                         "memory heads": cells["memory"]})
    return pd.DataFrame(rows, columns=["layer", "abstract heads", "memory heads"]).set_index("layer")


def _labels(result: Any, n_layers: int, n_heads: int) -> list[str]:
    """The result's unit labels (heads ``L{l}H{h}`` when it has none)."""
    labels = list(getattr(result, "labels", None) or [])
    return labels if len(labels) == n_layers * n_heads else unit_labels(n_layers, n_heads)
