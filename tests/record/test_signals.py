"""The signal registry: built-ins, user signals, W_O read once per layer per recording."""

from __future__ import annotations

import pytest
import torch

import synergy_lens as sl
from synergy_lens.models import adapt
from synergy_lens.record import SIGNALS, register_signal
from synergy_lens.record.signals import get_signal, layer_weight, weight_cache


def test_builtins(tiny):
    a = adapt(tiny)
    z = torch.randn(2, 3, a.n_heads, a.d_head)
    torch.testing.assert_close(SIGNALS["l2"](z, adapter=a, layer=0), z.norm(dim=-1))
    w_o = a.W_O(1)  # [head, d_head, d_model]
    manual = torch.stack([(z[:, :, h] @ w_o[h]).norm(dim=-1) for h in range(a.n_heads)], dim=-1)
    torch.testing.assert_close(SIGNALS["l2_out"](z, adapter=a, layer=1), manual)


def test_user_signal_is_recorded(tiny, monkeypatch):
    monkeypatch.setitem(SIGNALS, "dummy", None)  # restored after the test
    register_signal("dummy", lambda z, *, adapter, layer: z.abs().sum(-1) + layer, overwrite=True)
    act = sl.record_head_activity(tiny, ["abc"], max_new_tokens=8, signal="dummy", progress=False)
    ref = sl.record_head_activity(tiny, ["abc"], max_new_tokens=8, progress=False)
    assert act.settings["signal"] == "dummy"
    assert (act.values[0, :, 1] > 1).all() and not torch.equal(act.values, ref.values)


def test_registry_errors(monkeypatch):
    with pytest.raises(ValueError, match="already registered"):
        register_signal("l2", SIGNALS["l2"])
    with pytest.raises(TypeError, match="callable"):
        register_signal("new", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown signal 'l3'"):
        get_signal("l3")


def test_wrong_signal_shape_is_reported(tiny, monkeypatch):
    monkeypatch.setitem(SIGNALS, "bad", lambda z, *, adapter, layer: z)
    with pytest.raises(ValueError, match="must map"):
        sl.record_head_activity(tiny, ["abc"], max_new_tokens=8, signal="bad", progress=False)


class _CountingAdapter:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def W_O(self, layer):
        self.calls += 1
        return self.inner.W_O(layer)


def test_weights_are_read_once_per_layer_inside_a_recording(tiny):
    counting = _CountingAdapter(adapt(tiny))
    z = torch.randn(1, 2, 4, 8)
    with weight_cache():
        for _ in range(3):
            SIGNALS["l2_out"](z, adapter=counting, layer=0)
    assert counting.calls == 1
    layer_weight(counting, 0)
    layer_weight(counting, 0)
    assert counting.calls == 3  # outside a recording nothing is cached
