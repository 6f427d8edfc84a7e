"""CircuitsVis views that work offline: attention of the core heads, text coloured by a head.

What the views show
-------------------
- :func:`attention_view`: the attention patterns (``hook_pattern``, ``[head, q, k]``) of the
  top synergistic heads on one prompt, in CircuitsVis's ``AttentionHeads`` component (a
  thumbnail per head; click one to enlarge; hover a token to see where it attends).
- :func:`activity_tokens_view`: the generated text coloured by one head's recorded
  activity over time (``HeadActivity.values[p, :, layer, head]``, the signal PhiID reads),
  in CircuitsVis's ``ColoredTokens`` component. A synergistic head's activity tends to
  change with the content being produced; a redundant one's follows position or format.

Why not ``circuitsvis.attention.attention_heads(...)`` itself
-------------------------------------------------------------
Its ``RenderedHTML`` holds two versions: one importing ``https://unpkg.com/circuitsvis``
(returned by ``str()`` and, when a probe of ``http://google.com`` succeeds, by Jupyter)
and one with the JavaScript bundle inlined. The CDN one fails offline, and the probe
costs a network round trip per display. The inlined one puts the data in a
``<script>`` unescaped, so a prompt containing ``</script>`` breaks the page. So we use the
same component names and properties as ``circuitsvis.attention.attention_heads`` and
``circuitsvis.tokens.colored_tokens`` with our own renderer:

- the bundle shipped in the circuitsvis wheel (``circuitsvis/dist/cdn/iife.js``, which
  defines the global ``CircuitsVis``) is inlined in a classic ``<script>``; no URL is ever
  referenced;
- the properties are JSON with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped as ``\\uXXXX``,
  so no text can close the script;
- :class:`OfflineHTML` is a ``circuitsvis`` ``RenderedHTML`` whose every representation is
  the offline one, and :attr:`OfflineHTML.fragment` is the view without the bundle, for
  pages that include the bundle once (the HTML report does).

The patterns themselves are recorded by :func:`synergy_lens.record.attention.head_attention`
(re-exported here with :class:`HeadAttention`, :func:`parse_heads` and :func:`token_strings`):
views only draw what they are given.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
import torch
from circuitsvis.utils.render import RenderedHTML
from torch import Tensor

from synergy_lens.record.attention import (  # re-exported
    HeadAttention,
    head_attention,
    parse_heads,
    token_strings,
)
from synergy_lens.units import unit_label
from synergy_lens.view import style as S

__all__ = [
    "HeadAttention",
    "OfflineHTML",
    "activity_tokens_view",
    "attention_view",
    "circuitsvis_js",
    "head_attention",
    "parse_heads",
    "render_offline",
    "token_strings",
]

@functools.lru_cache(maxsize=1)
def circuitsvis_js() -> str:
    """The CircuitsVis browser bundle shipped in the installed wheel, safe to inline.

    ``dist/cdn/iife.js`` defines the global ``CircuitsVis``. Its source-map comment is
    dropped (it names a file that is not there) and any ``</script`` is written
    ``<\\/script`` (the same string in JavaScript, harmless to the HTML parser).
    """
    path = resources.files("circuitsvis").joinpath("dist/cdn/iife.js")
    try:
        js = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:  # pragma: no cover - broken install
        raise RuntimeError(
            "the circuitsvis package has no dist/cdn/iife.js bundle: reinstall circuitsvis"
        ) from err
    js = re.sub(r"//# sourceMappingURL=\S*\s*$", "", js)
    return js.replace("</script", "<\\/script")


def script_json(value: Any) -> str:
    """JSON that can sit inside ``<script>``: ``<``, ``>``, ``&``, U+2028/9 escaped."""
    text = json.dumps(value, allow_nan=False)
    for char, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                      ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, esc)
    return text


def _jsonable(x: Any) -> Any:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        x = np.where(np.isfinite(x), x, 0.0) if x.dtype.kind == "f" else x
        return x.tolist()
    return x


class OfflineHTML(RenderedHTML):
    """A CircuitsVis ``RenderedHTML`` that never references the network.

    ``_repr_html_()``, ``str()`` and ``show_code()`` all return the self-contained HTML
    (bundle inlined); :attr:`fragment` is the same view without the bundle (for a page
    that loads ``circuitsvis_js()`` once in an earlier ``<script>``).
    """

    def __init__(self, fragment: str) -> None:
        self.fragment = fragment
        full = f"<script>{circuitsvis_js()}</script>\n{fragment}"
        super().__init__(local_src=full, cdn_src=full)

    def _repr_html_(self) -> str:
        return self.local_src

    def __str__(self) -> str:
        return self.local_src

    def show_code(self) -> str:
        return self.local_src


def render_offline(component: str, **props: Any) -> OfflineHTML:
    """Render a CircuitsVis React component (e.g. ``"AttentionHeads"``) with the given props.

    ``props`` use the component's (camelCase) names; tensors and arrays become lists,
    ``None`` values are dropped, non-finite floats in arrays become 0.
    """
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", component):
        raise ValueError(f"not a CircuitsVis component name: {component!r}")
    data = {k: _jsonable(v) for k, v in props.items() if v is not None}
    div = "circuits-vis-" + uuid.uuid4().hex[:12]
    fragment = (
        f'<div id="{div}" class="circuitsvis" style="margin: 15px 0;"></div>\n'
        f"<script>CircuitsVis.render({json.dumps(div)}, CircuitsVis.{component}, {script_json(data)});</script>"
    )
    return OfflineHTML(fragment)


# ----------------------------------------------------------------------------- attention


def attention_view(attention: HeadAttention, *, decimals: int = 4) -> OfflineHTML:
    """CircuitsVis ``AttentionHeads`` of a :class:`HeadAttention` (causal: upper triangle masked).

    Weights are rounded to ``decimals`` places (invisible in the colours; halves the HTML).
    """
    patterns = np.round(attention.patterns.detach().cpu().double().numpy(), decimals)
    return render_offline(
        "AttentionHeads", attention=patterns, tokens=list(attention.tokens),
        attentionHeadNames=list(attention.labels), maskUpperTri=True,
        positiveColor=S.SYNERGY,
    )


def activity_tokens_view(
    activity: Any,
    head: str | tuple[int, int],
    prompt: int = 0,
    *,
    tokens: Sequence[str] | None = None,
    tokenizer: Any = None,
) -> OfflineHTML:
    """The generated text of one prompt, each token coloured by one head's activity.

    Args:
        activity: a ``HeadActivity``.
        head: a unit label of the recording (``"L5H3"``, ``"L5.mlp"``, ``"L5N7"``, ...) or
            ``(layer, head)`` (row and unit of the recording's grid).
        prompt: index of the prompt.
        tokens: the generated tokens as strings; else decoded with ``tokenizer`` (e.g.
            ``model.tokenizer``); else the raw ids are shown.

    Token ``t`` gets ``activity.values[prompt, t, layer, head]``, the activity at the step
    that produced it (the recording's time index).
    """
    labels = list(activity.unit_labels())
    if isinstance(head, str) and head.strip() in labels:  # any kind of unit: "L5H3", "L5.mlp", "L5N7"
        layer, h = divmod(labels.index(head.strip()), activity.n_heads)
    else:
        ((layer, h),) = parse_heads([head])
    if not (0 <= layer < activity.n_layers and 0 <= h < activity.n_heads):
        raise ValueError(f"head {unit_label(layer, h)} is outside the recording ({activity.n_layers} x {activity.n_heads})")
    if not 0 <= prompt < activity.n_prompts:
        raise ValueError(f"prompt {prompt} out of range (the recording has {activity.n_prompts})")
    n = int(activity.lengths[prompt])
    ids = list(activity.generated_ids[prompt])[:n]
    if tokens is None:
        tokens = token_strings(tokenizer, ids) if tokenizer is not None else [f"⟨{i}⟩" for i in ids]
    tokens = list(tokens)[:n]
    if len(tokens) != n:
        raise ValueError(f"{len(tokens)} tokens for {n} recorded steps of prompt {prompt}")
    values = activity.values[prompt, :n, layer, h].to(torch.float64)
    return render_offline("ColoredTokens", tokens=tokens, values=values, positiveColor=S.SYNERGY,
                          negativeColor=S.REDUNDANCY)
