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
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import torch
from circuitsvis.utils.render import RenderedHTML
from jaxtyping import Float
from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens._io import SavedFields
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

_LABEL = re.compile(r"^L(\d+)H(\d+)$")


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


def parse_heads(heads: Any, n_heads: int | None = None, k: int = 6) -> list[tuple[int, int]]:
    """Normalise a head selection to ``[(layer, head), ...]``.

    Accepts ``(layer, head)`` pairs, labels ``"L5H3"``, unit indices (with ``n_heads``),
    a ``Core`` (its abstract heads, strongest first) or ``HeadScores`` (the top ``k``).
    """
    if hasattr(heads, "pairs") and hasattr(heads, "abstract"):  # Core
        return list(heads.pairs("abstract"))[:k]
    if hasattr(heads, "core") and hasattr(heads, "values"):  # HeadScores
        flat = heads.values.flatten()
        nh = heads.values.shape[1]
        order = [u for u in torch.argsort(torch.nan_to_num(flat, nan=-torch.inf), descending=True).tolist()
                 if torch.isfinite(flat[u])]
        return [(u // nh, u % nh) for u in order[:k]]
    out = []
    for h in heads:
        if isinstance(h, str):
            m = _LABEL.match(h)
            if not m:
                raise ValueError(f"head label {h!r} is not of the form 'L<layer>H<head>' (e.g. 'L5H3')")
            out.append((int(m.group(1)), int(m.group(2))))
        elif isinstance(h, (int, np.integer)):
            if n_heads is None:
                raise ValueError("unit indices need n_heads (unit = layer * n_heads + head)")
            out.append((int(h) // n_heads, int(h) % n_heads))
        else:
            layer, head = h
            out.append((int(layer), int(head)))
    return out


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token id decoded on its own (what CircuitsVis shows as one token)."""
    return [tokenizer.decode([int(i)]) for i in ids]


@dataclass
class HeadAttention(SavedFields):
    """Attention patterns of some heads on one token sequence.

    Attributes:
        tokens: the decoded tokens (one string per position).
        patterns: float32 ``[head, q_pos, k_pos]`` (rows sum to 1, upper triangle 0).
        labels: ``"L{layer}H{head}"`` per pattern.
        meta: JSON-able extras (model name, prompt index).
    """

    FORMAT = "synergy_lens.HeadAttention/1"  # save/load: SavedFields

    tokens: list[str]
    patterns: Float[Tensor, "head q_pos k_pos"]
    labels: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

@torch.inference_mode()
def head_attention(model: Any, tokens: str | Sequence[int], heads: Any, *, k: int = 6) -> HeadAttention:
    """Record the attention patterns of ``heads`` on one sequence (one forward pass).

    Args:
        model: HookedTransformer, TransformerBridge or ``ModelAdapter``.
        tokens: a text (tokenised with the model's BOS policy, no chat template) or token
            ids, e.g. ``activity.full_ids(0)`` for a recorded prompt and its generation.
        heads: see :func:`parse_heads` (pairs, labels, a ``Core``, ``HeadScores``).
        k: how many heads to take from a ``Core`` / ``HeadScores``.

    Reads ``blocks.{L}.attn.hook_pattern`` (``[batch, head, q_pos, k_pos]``) of each layer
    involved; for grouped-query models the query heads are the units, as everywhere.
    """
    from synergy_lens.models.adapter import adapt

    adapter = adapt(model)
    pairs = parse_heads(heads, adapter.n_heads, k)
    if not pairs:
        raise ValueError("no heads selected")
    for layer, head in pairs:
        if not (0 <= layer < adapter.n_layers and 0 <= head < adapter.n_heads):
            raise ValueError(f"head L{layer}H{head} is outside this model "
                             f"({adapter.n_layers} layers x {adapter.n_heads} heads)")
    ids = adapter.tokenize(tokens) if isinstance(tokens, str) else [int(t) for t in tokens]
    if not ids:
        raise ValueError("empty token sequence")
    layers = sorted({layer for layer, _ in pairs})
    store: dict[int, Tensor] = {}

    def grab(pattern: Tensor, *, hook: Any, layer: int) -> None:
        store[layer] = pattern[0].detach().float().cpu()

    hooks = [(H.hook_pattern(layer), functools.partial(grab, layer=layer)) for layer in layers]
    adapter.forward(torch.tensor([ids], device=adapter.device), fwd_hooks=hooks)
    patterns = torch.stack([store[layer][head] for layer, head in pairs])
    return HeadAttention(
        tokens=token_strings(adapter.tokenizer, ids), patterns=patterns,
        labels=[f"L{layer}H{head}" for layer, head in pairs], meta={"model_name": adapter.name},
    )


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
        head: ``"L5H3"`` or ``(layer, head)``.
        prompt: index of the prompt.
        tokens: the generated tokens as strings; else decoded with ``tokenizer`` (e.g.
            ``model.tokenizer``); else the raw ids are shown.

    Token ``t`` gets ``activity.values[prompt, t, layer, head]``, the activity at the step
    that produced it (the recording's time index).
    """
    ((layer, h),) = parse_heads([head])
    if not (0 <= layer < activity.n_layers and 0 <= h < activity.n_heads):
        raise ValueError(f"head L{layer}H{h} is outside the recording ({activity.n_layers} x {activity.n_heads})")
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
