"""Controls: exact restore, noise of the stated size, re-initialisation, trained-vs-control."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from synergy_lens import hooks as H
from synergy_lens.analysis import (
    ControlComparison,
    compare_controls,
    perturb_weights,
    random_init_like,
)
from synergy_lens.models import adapt, available_backends, tiny_model
from synergy_lens.phiid import decompose

from .planted import N_HEADS, N_LAYERS, FakeActivity, planted_core_system, simulate

BACKENDS = available_backends()


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture(params=BACKENDS)
def model(request):
    """A fresh tiny model (seed 0) on each available backend."""
    return tiny_model(request.param, seed=0)


def test_perturb_copy_leaves_original_and_has_stated_noise(model) -> None:
    before = params(model)
    control = perturb_weights(model, scale=10.0, seed=3)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    noise = torch.cat([(p.detach() - before[n]).flatten() for n, p in control.named_parameters()])
    assert noise.numel() > 10_000
    assert noise.mean().item() == pytest.approx(0.0, abs=0.3)
    assert noise.std().item() == pytest.approx(10.0, rel=0.03)
    again = perturb_weights(model, scale=10.0, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(control.parameters(), again.parameters()))
    assert isinstance(perturb_weights(adapt(model), 1.0), type(adapt(model)))


def test_perturb_inplace_restores_exactly_even_after_an_error(model) -> None:
    before = params(model)
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    clean = model(tokens)
    with perturb_weights(model, scale=10.0, seed=1, inplace=True) as m:
        assert m is model
        assert not torch.equal(model.blocks[0].attn.W_O, before_w_o(model, before))
        assert not torch.allclose(model(tokens), clean)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with pytest.raises(RuntimeError, match="boom"), perturb_weights(model, seed=2, inplace=True):
        raise RuntimeError("boom")
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert torch.equal(model(tokens), clean)


def before_w_o(model, before: dict[str, torch.Tensor]) -> torch.Tensor:
    """W_O of layer 0 as it was (read through the model's own property after restoring a copy)."""
    saved = params(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(before[n])
        w = model.blocks[0].attn.W_O.detach().clone()
        for n, p in model.named_parameters():
            p.copy_(saved[n])
    return w


def test_random_init_like(model) -> None:
    before = params(model)
    fresh = random_init_like(model, seed=0, std=0.05)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    again = random_init_like(model, seed=0, std=0.05)
    for (name, p), q in zip(fresh.named_parameters(), again.parameters()):
        assert torch.equal(p, q)
        leaf = name.rsplit(".", 1)[-1].lstrip("_")
        if leaf == "bias" or leaf.startswith("b_"):
            assert not p.any(), name
        elif p.dim() == 1:
            assert bool((p == 1).all()), name
    mats = torch.cat(
        [p.detach().flatten() for p in fresh.parameters() if p.dim() >= 2 and p.abs().sum() > 0]
    )
    assert mats.std().item() == pytest.approx(0.05, rel=0.05)
    assert torch.isfinite(fresh(torch.tensor([[1, 2, 3]]))).all()


def znorm_recorder(model, prompts, **_):
    """A minimal recorder: teacher-forced L2 norm of hook_z per token (no generation)."""
    adapter = adapt(model)
    rows = []
    for text in prompts:
        ids = torch.tensor([adapter.tokenize(text)])
        store: dict[int, torch.Tensor] = {}

        def grab(z, *, hook, layer, store):
            store[layer] = z[0].norm(dim=-1).detach()

        hooks = [
            (H.hook_z(layer), functools.partial(grab, layer=layer, store=store))
            for layer in range(adapter.n_layers)
        ]
        with torch.no_grad():
            adapter.forward(ids, fwd_hooks=hooks)
        rows.append(
            torch.stack([store[layer] for layer in range(adapter.n_layers)], 1)
        )  # [time, layer, head]
    n = min(r.shape[0] for r in rows)
    return FakeActivity(
        values=torch.stack([r[:n] for r in rows]), lengths=torch.full((len(rows),), n)
    )


def test_compare_controls_end_to_end_on_tiny_model() -> None:
    model = tiny_model(BACKENDS[0], n_layers=3, n_heads=2, seed=0)
    before = params(model)
    rng = np.random.default_rng(0)
    prompts = ["".join(chr(97 + int(c)) for c in rng.integers(0, 26, size=60)) for _ in range(5)]
    comp = compare_controls(
        model,
        prompts,
        recorder=znorm_recorder,
        n_boot=50,
        scale=10.0,
        seed=0,
        decompose_kwargs={"progress": False, "jitter": 1e-2},
    )
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # restored
    assert comp.scores == ["rank_gradient", "synergy_fraction"]
    table = comp.index_table()
    assert (
        set(table["condition"]) == {"trained", "control", "trained - control"} and len(table) == 6
    )
    assert comp.control.startswith("perturb_weights")
    assert not torch.equal(
        comp.results["trained"].sts.nan_to_num(), comp.results["control"].sts.nan_to_num()
    )


def test_planted_trained_vs_null_control_difference(tmp_path) -> None:
    """Trained = planted core (inverted U); control = independent AR(1) units of the same
    autocorrelations and no coupling. The paired difference of the raw inverted-U indices
    under the synergy fraction is positive with a CI above 0 (8 prompts x 400 steps, seed
    2); the control's own raw index is near 0 (its scaled index is stretched noise)."""
    amat, q = planted_core_system()
    trained = decompose(
        FakeActivity.from_series(simulate(amat, q, 8, 400, seed=2), N_LAYERS, N_HEADS),
        progress=False,
    )
    null_a = np.diag(np.diag(amat).clip(0.5, 0.9))
    control = decompose(
        FakeActivity.from_series(simulate(null_a, np.eye(24), 8, 400, seed=3), N_LAYERS, N_HEADS),
        progress=False,
    )
    comp = ControlComparison.from_results(trained, control, n_boot=200, control_name="null AR(1)")
    diff, ci = comp.difference("synergy_fraction")
    assert diff > 0.03 and ci[0] > 0.02
    assert abs(comp.profiles["control"]["synergy_fraction"].inverted_u_raw) < 0.005
    comp.save(tmp_path / "cmp")
    back = ControlComparison.load(tmp_path / "cmp")
    assert back.index_table().equals(comp.index_table())
    long = comp.to_dataframe()
    assert len(long) == 2 * 2 * N_LAYERS


@pytest.mark.slow
def test_perturb_inplace_restores_smollm2_exactly() -> None:
    from synergy_lens import load_model

    model = load_model()
    first = next(model.parameters()).detach().clone()
    checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
    with perturb_weights(model, scale=10.0, seed=0, inplace=True):
        assert not torch.equal(next(model.parameters()), first)
    assert torch.equal(next(model.parameters()), first)
    assert sum(float(p.detach().double().sum()) for p in model.parameters()) == checksum


def test_select_prompts_keeps_every_per_prompt_field_aligned() -> None:
    from synergy_lens.analysis.controls import _select_prompts
    from synergy_lens.record import HeadActivity

    values = torch.randn(3, 10, 2, 2)
    act = HeadActivity(
        values=values, lengths=torch.tensor([10, 5, 8]), prompts=["a", "b", "c"], model_name="m"
    )
    sub = _select_prompts(act, [0, 2])
    assert sub.prompts == ["a", "c"] and sub.lengths.tolist() == [10, 8] and sub.model_name == "m"
    torch.testing.assert_close(sub.values, act.values[[0, 2]], equal_nan=True)
    assert _select_prompts(act, [0, 1, 2]) is act
