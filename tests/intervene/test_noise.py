"""Weight-noise ablation: the perturbation hits only the chosen heads and is undone bit for bit."""

from __future__ import annotations

import pytest
import torch

from synergy_lens.intervene import noise_heads
from synergy_lens.models import adapt, available_backends, tiny_model

IDS = torch.tensor([[256, 10, 20, 30, 40, 50]])


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def forward(model):
    with torch.no_grad():
        return adapt(model).forward(IDS)


def test_weights_bit_identical_after_exit_and_after_error(tiny3):
    before = params(tiny3)
    clean = forward(tiny3)
    with noise_heads(tiny3, ["L0H1", (2, 3)], std=0.5, seed=3) as heads:
        assert heads == [(0, 1), (2, 3)]
        noisy = forward(tiny3)
        changed = [k for k, v in tiny3.state_dict().items() if not torch.equal(v, before[k])]
        assert changed  # the weights really changed inside the block
    assert not torch.allclose(noisy, clean)
    assert all(torch.equal(v, before[k]) for k, v in tiny3.state_dict().items())
    with pytest.raises(KeyError), noise_heads(tiny3, ["L1H0"], std=2.0):
        raise KeyError("inside")
    assert all(torch.equal(v, before[k]) for k, v in tiny3.state_dict().items())
    assert torch.equal(forward(tiny3), clean)


def test_noise_hits_only_the_heads_rows_and_columns(tiny3):
    a = adapt(tiny3)
    before = {(layer, h): {k: v.clone() for k, v in a.head_weight_views(layer, h).items()}
              for layer in range(a.n_layers) for h in range(a.n_heads)}
    with noise_heads(tiny3, [(1, 2)], std=0.5, seed=0):
        for (layer, h), old in before.items():
            now = a.head_weight_views(layer, h)
            for name in ("W_Q", "W_O"):
                same = torch.equal(now[name], old[name])
                assert same != ((layer, h) == (1, 2)), (layer, h, name)
                if (layer, h) == (1, 2):
                    assert 0.3 < float((now[name] - old[name]).std()) < 0.7  # std 0.5


def test_noise_is_seeded_and_weights_option(tiny3):
    with noise_heads(tiny3, ["L0H0"], seed=5):
        a1 = forward(tiny3)
    with noise_heads(tiny3, ["L0H0"], seed=5):
        a2 = forward(tiny3)
    with noise_heads(tiny3, ["L0H0"], seed=6):
        a3 = forward(tiny3)
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)
    a = adapt(tiny3)
    q_before = a.head_weight_views(0, 0)["W_Q"].clone()
    with noise_heads(tiny3, ["L0H0"], weights=("W_O",)):
        assert torch.equal(a.head_weight_views(0, 0)["W_Q"], q_before)
    with pytest.raises(ValueError, match="unknown weights"), noise_heads(tiny3, ["L0H0"], weights=("W_K",)):
        pass
    with pytest.raises(ValueError, match=r"\[layer, head\]"), noise_heads(
        tiny3, torch.ones(2, a.n_layers, a.n_heads, dtype=torch.bool)
    ):
        pass


@pytest.mark.skipif(len(available_backends()) < 2, reason="needs both backends (TransformerLens 3.9)")
def test_same_perturbation_on_both_backends():
    models = [tiny_model(b, n_layers=2, seed=4) for b in ("bridge", "hooked")]
    outs = []
    for m in models:
        with noise_heads(m, ["L0H2", "L1H1"], std=0.5, seed=1):
            outs.append(forward(m))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=1e-4)
