"""The core: selection rule, exports, and TransformerLens activation patching restricted to it."""

from __future__ import annotations

import math

import pytest
import torch

from synergy_lens import hooks as H
from synergy_lens.analysis import Core, find_core, synergy_scores
from synergy_lens.models import adapt, available_backends, tiny_model

from .planted import fake_result


def planted_scores(values: list[float], n_layers: int, n_heads: int):
    """HeadScores whose mean_sts (used as the score) is exactly ``values``.

    sts[i, j] = v_i + v_j gives head means v_i (u - 2)/(u - 1) + mean(v)/(u - 1), a
    strictly increasing function of v_i, so the order of ``values`` is the order of scores.
    """
    v = torch.tensor(values, dtype=torch.float64)
    sts = v[:, None] + v[None, :]
    return synergy_scores(
        fake_result(sts, torch.zeros_like(sts), n_layers, n_heads), score="mean_sts"
    )


def test_core_size_order_ties_and_groups() -> None:
    #         L0H0 L0H1 L1H0 L1H1 L2H0 L2H1  L3H0 L3H1
    values = [0.0, 5.0, 1.0, 5.0, 3.0, -1.0, 2.0, 4.0]
    core = find_core(planted_scores(values, 4, 2), q=0.25)  # ceil(0.25 * 8) = 2
    assert len(core) == 2
    assert core.pairs() == [(0, 1), (1, 1)]  # tie 5.0 broken by unit index
    assert core.pairs("memory") == [(2, 1), (0, 0)]  # lowest first
    assert core.labels_of() == ["L0H1", "L1H1"]
    assert (0, 1) in core and (3, 1) not in core
    assert not (core.head_mask() & core.head_mask("memory")).any()
    assert find_core(planted_scores(values, 4, 2), q=0.3).abstract.sum() == 3  # ceil(2.4)


def test_nan_heads_are_never_in_a_group() -> None:
    sts = torch.rand(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sts = sts + sts.T
    sts[2, :] = sts[:, 2] = math.nan
    core = find_core(fake_result(sts, torch.ones_like(sts), 2, 3), q=0.5, score="mean_sts")
    assert not core.abstract[0, 2] and not core.memory[0, 2]
    assert core.abstract.sum() == 3 and core.memory.sum() == 2  # q = 0.5 of 5 heads: no overlap


def test_exports_hook_names_masks_index_df_and_hooks() -> None:
    values = [0.0, 9.0, 1.0, 2.0, 3.0, 8.0, 4.0, 5.0, 6.0, 7.0, -1.0, -2.0]
    core = find_core(planted_scores(values, 3, 4), q=0.25)  # 3 heads: L0H1, L1H1, L2H1
    assert core.pairs() == [(0, 1), (1, 1), (2, 1)]
    assert core.to_hook_names() == [H.hook_z(0), H.hook_z(1), H.hook_z(2)]
    mask = core.head_mask()
    assert mask.shape == (3, 4) and mask.dtype == torch.bool and mask.sum() == 3
    df = core.to_index_df()
    assert list(df.columns) == ["layer", "head"] and df.values.tolist() == [[0, 1], [1, 1], [2, 1]]
    assert core.heads_by_layer("memory") == {0: [0], 2: [2, 3]}
    seen = []
    hooks = core.fwd_hooks(lambda z, *, hook, layer, heads: seen.append((layer, heads)))
    assert [name for name, _ in hooks] == core.to_hook_names()
    for _, fn in hooks:
        fn(torch.zeros(1), hook=None)
    assert seen == [(0, [1]), (1, [1]), (2, [1])]
    frame = core.to_dataframe()
    assert (frame["group"] == "abstract").sum() == 3 and (frame["group"] == "memory").sum() == 3


def test_save_load(tmp_path) -> None:
    core = find_core(planted_scores([3.0, 1.0, 2.0, 0.0], 2, 2), q=0.25)
    core.save(tmp_path / "core.pt")
    back = Core.load(tmp_path / "core.pt")
    assert torch.equal(back.abstract, core.abstract) and torch.equal(back.memory, core.memory)
    assert back.pairs() == core.pairs() and back.score == core.score and back.q == core.q


def test_bad_arguments() -> None:
    scores = planted_scores([3.0, 1.0, 2.0, 0.0], 2, 2)
    with pytest.raises(ValueError, match="q must be"):
        find_core(scores, q=0.8)
    with pytest.raises(ValueError, match="recompute"):
        find_core(scores, score="synergy_fraction")
    with pytest.raises(ValueError, match="group"):
        scores.core().pairs("nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", available_backends())
def test_tl_activation_patching_restricted_to_core(backend: str) -> None:
    """Ground truth on a tiny model whose non-core heads write nothing (their W_O zeroed).

    TransformerLens's own head patcher, given ``core.to_index_df()``, patches exactly the
    core heads: one value per core head, each changing the output, while the same patcher
    on the non-core heads leaves the corrupted output unchanged. Patching all core heads
    at once through ``core.fwd_hooks`` sets exactly those heads to their clean values and
    leaves the other heads of the first layer (which nothing upstream changed) corrupted.
    """
    from transformer_lens import patching

    model = tiny_model(backend, n_layers=2, n_heads=4, seed=0)
    adapter = adapt(model)
    values = [0.0, 9.0, 1.0, 2.0, 3.0, 4.0, 8.0, 5.0]  # core (q=0.25): L0H1, L1H2
    core = find_core(planted_scores(values, 2, 4), q=0.25)
    assert core.pairs() == [(0, 1), (1, 2)]
    with torch.no_grad():
        for layer in range(2):
            for head in range(4):
                if (layer, head) not in core:
                    adapter.head_weight_views(layer, head)["W_O"].zero_()
    clean = torch.tensor([[1, 5, 9, 12, 40, 41, 7]])
    corrupted = torch.tensor([[1, 7, 9, 30, 40, 2, 7]])
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        corrupted_logits = model(corrupted)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return (logits - corrupted_logits).abs().max()

    def run_patch(index_df):
        return patching.get_act_patch_attn_head_out_all_pos(
            model, corrupted, clean_cache, metric, index_axis_names=None, index_df=index_df
        )

    core_effect = run_patch(core.to_index_df())
    assert core_effect.shape == (2,) and bool((core_effect > 1e-3).all())
    import pandas as pd

    others = pd.DataFrame(
        [(layer, h) for layer in range(2) for h in range(4) if (layer, h) not in core],
        columns=["layer", "head"],
    )
    assert run_patch(others).abs().max().item() < 1e-5

    def patch(z, *, hook, layer, heads):
        z = z.clone()
        z[:, :, heads] = clean_cache[H.hook_z(layer)][:, :, heads]
        return z

    with torch.no_grad(), adapter.hooks(core.fwd_hooks(patch)):
        _, patched = model.run_with_cache(corrupted)
    _, corrupted_cache = model.run_with_cache(corrupted)
    for layer, heads in core.heads_by_layer().items():
        torch.testing.assert_close(
            patched[H.hook_z(layer)][:, :, heads], clean_cache[H.hook_z(layer)][:, :, heads]
        )
    rest = [h for h in range(4) if (0, h) not in core]
    torch.testing.assert_close(
        patched[H.hook_z(0)][:, :, rest], corrupted_cache[H.hook_z(0)][:, :, rest]
    )
