"""The streaming engine (pair_summaries) against the dense path (all_pairs, decompose).

Ground truth is the dense ``[16, unit, unit]`` result on the same data: per-unit means are
``nanmean`` over the row (unit as source), top-k pairs are the upper-triangle pairs sorted
by value descending with ties broken by (i, j); tolerance 1e-12 nats throughout.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

from synergy_lens.analysis.scores import synergy_scores
from synergy_lens.phiid import (
    ATOMS,
    MIRROR,
    PairSummaries,
    all_pairs,
    decompose,
    pair_summaries,
)
from synergy_lens.phiid import result as result_module
from synergy_lens.phiid.stream import _TopK

from .reference import summaries_of_atoms
from .test_result import FakeActivity, _activity

TOL = 1e-12


def _series(n_units: int = 40, n_time: int = 300, seed: int = 0) -> torch.Tensor:
    """AR-coupled units; from 10 units on, planted degeneracies: unit 3 constant and
    unit 7 = 2 * unit 9 + 1 (a collinear pair)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_units, n_time, generator=g, dtype=torch.float64)
    for t in range(1, n_time):
        x[:, t] += 0.5 * x[:, t - 1] + 0.3 * x[:, t - 1].roll(1)
    if n_units >= 10:
        x[3] = 1.5
        x[7] = 2 * x[9] + 1
    return x.float()


def _dense_summary(atoms: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """The reference read-outs of dense atoms (NumPy, :func:`reference.summaries_of_atoms`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN rows
        ref = summaries_of_atoms(atoms.numpy(), k)
    return {name: torch.from_numpy(value) for name, value in ref.items()}


def _assert_matches(s: PairSummaries, ref: dict[str, torch.Tensor]) -> None:
    torch.testing.assert_close(s.unit_mean, ref["mean"], rtol=0, atol=TOL, equal_nan=True)
    assert torch.equal(s.n_partners, ref["count"].to(torch.int64))
    assert s.fraction_mean is not None
    torch.testing.assert_close(s.fraction_mean, ref["fraction"], rtol=0, atol=TOL, equal_nan=True)
    for name in ("sts", "rtr"):
        pairs, atoms = s.top_pairs(name)  # type: ignore[arg-type]
        assert torch.equal(pairs, ref[f"{name}_pairs"])
        torch.testing.assert_close(atoms, ref[f"{name}_atoms"], rtol=0, atol=TOL)


def _quiet(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("block", [(2**20, 301), (2**22, None), (256 * 2**20, 5000)])
def test_equals_dense_mmi(seed: int, block: tuple[int, int | None]) -> None:
    """Random AR data with a constant unit and a collinear pair; several tile/block sizes
    (1 MiB gives 90-unit tiles, so the 130 units span several tiles)."""
    x = _series(130, 300, seed)
    ref = _dense_summary(_quiet(all_pairs, x), 25)
    budget, chunk = block
    s = _quiet(pair_summaries, x, top_k=25, memory_budget=budget, chunk_pairs=chunk)
    _assert_matches(s, ref)
    assert s.constant_units == [3] and s.collinear_pairs == [[7, 9]]
    assert s.n_partners[3] == 0 and s.n_partners[0] == 130 - 1 - 1


def test_block_size_independence() -> None:
    """Top-k identical; means equal to rounding, for tiles and blocks of very different sizes."""
    x = _series(150, 200, 3)
    runs = [
        _quiet(pair_summaries, x, top_k=40, memory_budget=b, chunk_pairs=c)
        for b, c in [(2**20, 7), (2**20, 999), (2**24, 64), (2**28, None)]
    ]
    for s in runs[1:]:
        torch.testing.assert_close(s.unit_mean, runs[0].unit_mean, rtol=0, atol=1e-13, equal_nan=True)
        for name in ("sts", "rtr"):
            assert torch.equal(s.top_pairs(name)[0], runs[0].top_pairs(name)[0])  # type: ignore[arg-type]
            torch.testing.assert_close(
                s.top_pairs(name)[1], runs[0].top_pairs(name)[1], rtol=0, atol=1e-13  # type: ignore[arg-type]
            )


@pytest.mark.parametrize("tau", [1, 3])
def test_equals_dense_ccs_and_tau(tau: int) -> None:
    x = _series(14, 120, 2)
    ref = _dense_summary(_quiet(all_pairs, x, redundancy="CCS", tau=tau), 10)
    s = _quiet(pair_summaries, x, redundancy="CCS", tau=tau, top_k=10, chunk_pairs=7)
    _assert_matches(s, ref)
    assert s.redundancy == "CCS" and s.tau == tau


def test_source_and_target_means_and_mirror() -> None:
    """unit_mean is the unit as source; target_mean() is the column mean (via MIRROR)."""
    x = _series(30, 200, 4)
    atoms = _quiet(all_pairs, x)
    s = _quiet(pair_summaries, x)
    col = torch.nanmean(atoms, -2)  # unit as target y
    torch.testing.assert_close(s.target_mean(), col, rtol=0, atol=TOL, equal_nan=True)
    torch.testing.assert_close(s.target_mean()[list(MIRROR)], s.unit_mean, equal_nan=True)
    torch.testing.assert_close(
        s.syn_minus_red, torch.nanmean(atoms[-1] - atoms[0], -1), rtol=0, atol=TOL, equal_nan=True
    )


def test_warning_parity_with_all_pairs() -> None:
    """Same units and pairs named, one RuntimeWarning each; the consequence differs."""
    x = _series(20, 150, 5)
    labels = [f"U{u}" for u in range(20)]
    with pytest.warns(RuntimeWarning) as dense:
        all_pairs(x, labels=labels)
    with pytest.warns(RuntimeWarning) as streamed:
        pair_summaries(x, labels=labels)
    assert len(dense) == len(streamed) == 1
    d, s = str(dense[0].message), str(streamed[0].message)
    assert d.split(": their pairs")[0] == s.split(": their pairs")[0]
    assert "constant unit(s) 3 (U3)" in s and "(7, 9)" in s and "left out" in s
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = pair_summaries(x[[0, 1, 2, 4, 5]])
    assert clean.constant_units == [] and clean.collinear_pairs == []


def test_jitter_matches_all_pairs() -> None:
    """Jitter seeded as all_pairs. (Unit 7, a jittered copy of unit 9, is dropped: that pair's
    determinant is ~jitter^4, which amplifies rounding to ~1e-9 on both paths.)"""
    x = _series(12, 100, 6)[[u for u in range(12) if u != 7]]
    ref = _dense_summary(all_pairs(x, jitter=1e-2), 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = pair_summaries(x, jitter=1e-2, top_k=5)
    _assert_matches(s, ref)


def _prompt_activity() -> FakeActivity:
    """3 prompts of different lengths; head 4 constant in prompt 1 only (partial pairs)."""
    act = _activity(lengths=(60, 45, 52), n_layers=3, n_heads=4)
    act.values[1, :45, 1, 0] = 0.25  # unit 4 = layer 1 head 0
    return act


@pytest.mark.parametrize("aggregate", ["mean_over_prompts", "pooled"])
@pytest.mark.parametrize("redundancy", ["MMI", "CCS"])
def test_prompts_exact_against_decompose(aggregate: str, redundancy: str) -> None:
    act = _prompt_activity()
    dense = _quiet(decompose, act, aggregate=aggregate, redundancy=redundancy, progress=False)
    streamed = _quiet(
        decompose,
        act,
        aggregate=aggregate,
        redundancy=redundancy,
        progress=False,
        stream=True,
        top_k=20,
        chunk_pairs=5 if redundancy == "MMI" else 40,
    )
    assert isinstance(streamed, PairSummaries)
    _assert_matches(streamed, _dense_summary(dense.atoms, 20))
    assert streamed.labels == act.unit_labels() and streamed.meta["lengths"] == [60, 45, 52]
    assert streamed.n_prompts == 3 and streamed.aggregate == aggregate
    if aggregate == "mean_over_prompts":
        assert streamed.partial_pairs == 11  # unit 4's pairs, undefined in prompt 1
        assert int(streamed.n_partners[4]) == 11  # still defined in prompts 0 and 2


def test_decompose_switches_above_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    act = _activity(lengths=(40, 30), n_layers=2, n_heads=3)
    monkeypatch.setattr(result_module, "STREAM_ABOVE_UNITS", 5)
    with pytest.warns(UserWarning, match="streaming engine"):
        s = decompose(act, progress=False)
    assert isinstance(s, PairSummaries)
    dense = decompose(act, progress=False, stream=False)
    assert not isinstance(dense, PairSummaries)
    _assert_matches(s, _dense_summary(dense.atoms, 1000))
    for score in ("rank_gradient", "synergy_fraction", "mean_sts", "mean_rtr"):
        want = synergy_scores(dense, score=score)
        got = synergy_scores(s, score=score)  # from the per-unit means (analysis.scores)
        for name in ("mean_sts", "mean_rtr", "rank_gradient", "synergy_fraction", "values"):
            torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=TOL)
        assert got.labels == want.labels and got.score == score
        assert got.spearman == pytest.approx(want.spearman, abs=1e-12)
        torch.testing.assert_close(got.values, getattr(got, score), rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs the \\[unit, unit\\] atoms"):
        synergy_scores(s, score="no_such_score")


def test_merge_exact_without_partial_pairs_and_warns_otherwise() -> None:
    act = _activity(lengths=(50, 40, 45, 38), n_layers=2, n_heads=4)
    series = act.unit_series()
    prompts = [series[p, :, :n] for p, n in enumerate(act.lengths.tolist())]
    whole = pair_summaries(prompts)
    merged = pair_summaries(prompts[:1]).merge(pair_summaries(prompts[1:]))
    torch.testing.assert_close(merged.unit_mean, whole.unit_mean, rtol=0, atol=TOL)
    assert merged.n_prompts == 4 and merged.meta["exact_merge"] is True
    assert merged.top_sts_pairs is None and merged.fraction_mean is None
    with pytest.raises(ValueError, match="no top-k"):
        merged.top_pairs("sts")
    bad = [p.clone() for p in prompts]
    bad[0][2] = 1.0  # unit 2 constant in prompt 0 only
    with pytest.warns(RuntimeWarning, match="merging summaries"):
        approx = _quiet(pair_summaries, bad[:1]).merge(_quiet(pair_summaries, bad[1:]))
    assert approx.meta["exact_merge"] is False
    with pytest.raises(ValueError, match="different tau"):
        whole.merge(pair_summaries(prompts, tau=2))


def test_top_k_ties_order_and_sizes() -> None:
    """Ties are ordered by (i, j) whatever the block order; k larger than the pair count."""
    n = 6
    values = torch.tensor([[0.0, 1.0, 2.0, 2.0, 1.0, 2.0]] * n, dtype=torch.float64)
    block = torch.zeros((len(ATOMS), n, n), dtype=torch.float64)
    valid = torch.ones((n, n), dtype=torch.bool)
    results = []
    for splits in ([0, 6], [3, 6, 0, 3], [5, 6, 0, 1, 1, 5]):
        top = _TopK(4, 100, torch.device("cpu"))
        for a, b in zip(splits[::2], splits[1::2], strict=True):
            top.offer(values[a:b], valid[a:b], block[:, a:b], a, 0)
        results.append(top.result()[0])
    want = torch.tensor([[0, 2], [0, 3], [0, 5], [1, 2]])
    for pairs in results:
        assert torch.equal(pairs, want)
    x = _series(4, 80, 7)
    s = pair_summaries(x, top_k=100)
    assert s.top_pairs("sts")[0].shape == (6, 2)  # only 6 pairs exist
    none = pair_summaries(x, top_k=0)
    assert none.top_pairs("rtr")[0].shape == (0, 2)


def test_save_load_and_dataframes(tmp_path: Path) -> None:
    x = _series(10, 120, 8)
    labels = [f"L{u // 5}H{u % 5}" for u in range(10)]
    s = _quiet(pair_summaries, x, top_k=4, labels=labels, n_layers=2, n_heads=5)
    s.save(tmp_path / "s.pt")
    back = PairSummaries.load(tmp_path / "s.pt")
    for name in ("unit_mean", "fraction_mean", "top_sts_pairs", "top_rtr_atoms"):
        torch.testing.assert_close(getattr(back, name), getattr(s, name), equal_nan=True)
    assert back.labels == labels and back.constant_units == [3] and back.collinear_pairs == [[7, 9]]
    units = s.to_dataframe()
    assert list(units.columns[:3]) == ["unit", "label", "n_partners"] and len(units) == 10
    assert units["sts"].iloc[0] == pytest.approx(float(s.mean_sts[0]), abs=0)
    assert "top sts pairs" in repr(s) and "tensor[16x10] float64" in repr(s)
    top = s.to_dataframe("top_sts")
    assert top["rank"].tolist() == [1, 2, 3, 4] and top["source"].iloc[0] == labels[int(top["i"].iloc[0])]


@pytest.mark.wrong_shapes
def test_bad_input_errors() -> None:
    x = _series(6, 50)
    with pytest.raises(ValueError, match="top_k"):
        pair_summaries(x, top_k=-1)
    with pytest.raises(ValueError, match=r"\[unit, time\]"):
        pair_summaries(x[0])
    with pytest.raises(ValueError, match="same 6 units"):
        pair_summaries([x, x[:5]])
    with pytest.raises(ValueError, match="memory_budget"):
        pair_summaries(x, memory_budget=1000)
    nan = x.clone()
    nan[2, 10] = math.nan
    with pytest.raises(ValueError, match="unit 2"):
        pair_summaries(nan)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    x = _series(300, 200, 9)
    cpu = _quiet(pair_summaries, x, top_k=50)
    gpu = _quiet(pair_summaries, x.cuda(), top_k=50)
    assert gpu.unit_mean.device.type == "cuda"
    torch.testing.assert_close(gpu.unit_mean.cpu(), cpu.unit_mean, rtol=0, atol=1e-10, equal_nan=True)
    assert torch.equal(gpu.top_pairs("sts")[0].cpu(), cpu.top_pairs("sts")[0])
