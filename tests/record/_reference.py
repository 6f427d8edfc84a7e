"""The ground truth a recording must match: step-by-step generation without a KV cache.

At every step the whole sequence so far is run through the model (no cache, no padding)
with a hook on each layer's ``hook_z``; the hook keeps the signal at the last position,
which is the position that produces the next token.
"""

from __future__ import annotations

from functools import partial

import torch

from synergy_lens import hooks as H
from synergy_lens.record.signals import SIGNALS


def _keep(z, *, hook, seen, signals, adapter, layer):
    """Keep each signal at the last position: the one that produces the next token."""
    for s in signals:
        seen[s, layer] = SIGNALS[s](z[:, -1:], adapter=adapter, layer=layer)[0, 0].float()


def uncached_recording(adapter, prompt_ids, max_new_tokens, signals=("l2",)):
    """``(generated_ids, {signal: values [time, layer, head]})`` for one prompt, greedy,
    stopping after an EOS."""
    tokens = list(prompt_ids)
    generated = []
    values = {s: [] for s in signals}
    for _ in range(max_new_tokens):
        seen: dict = {}
        hooks = [
            (
                H.hook_z(layer),
                partial(_keep, seen=seen, signals=signals, adapter=adapter, layer=layer),
            )
            for layer in range(adapter.n_layers)
        ]
        ids = torch.tensor([tokens], device=adapter.device)
        with torch.inference_mode():
            logits = adapter.forward(ids, attention_mask=torch.ones_like(ids), fwd_hooks=hooks)
        for s in signals:
            values[s].append(torch.stack([seen[s, layer] for layer in range(adapter.n_layers)]))
        nxt = int(logits[0, -1].argmax())
        generated.append(nxt)
        tokens.append(nxt)
        if nxt == adapter.eos_token_id:
            break
    return generated, {s: torch.stack(v).cpu() for s, v in values.items()}
