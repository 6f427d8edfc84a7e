"""Exactness: the fast kernels against the textbook per-sample reference (phyid's method).

Tolerance 1e-9 in float64 (observed differences are around 1e-15).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synergy_lens.phiid import ATOMS, MIRROR, all_pairs, atom_index, pair
from synergy_lens.phiid.gaussian import pair_mutual_informations

from . import reference as ref

ATOL = 1e-9


def _system(n_units: int, n_steps: int, seed: int) -> np.ndarray:
    """A coupled Gaussian VAR(1) with correlated noise: every atom is non-trivial."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-0.4, 0.4, (n_units, n_units)) + 0.3 * np.eye(n_units)
    q = np.eye(n_units) + 0.3
    return ref.simulate_var1(a, q, n_steps, rng, burn_in=100)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return _system(5, 300, seed=0)


@pytest.mark.parametrize("redundancy", ["MMI", "CCS"])
@pytest.mark.parametrize("tau", [1, 3])
def test_all_pairs_equals_mean_of_textbook_local_atoms(
    data: np.ndarray, redundancy: str, tau: int
) -> None:
    atoms = all_pairs(torch.from_numpy(data), tau=tau, redundancy=redundancy)
    for i in range(data.shape[0]):
        for j in range(data.shape[0]):
            if i != j:
                want = ref.average_atoms(data[i], data[j], tau, redundancy)
                np.testing.assert_allclose(atoms[:, i, j].numpy(), want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("redundancy", ["MMI", "CCS"])
def test_pair_local_values_are_textbook(data: np.ndarray, redundancy: str) -> None:
    x, y = torch.from_numpy(data[1]), torch.from_numpy(data[3])
    local = pair(x, y, redundancy=redundancy, local=True)
    want = ref.local_atoms(data[1], data[3], 1, redundancy)
    got = torch.stack([local[a] for a in ATOMS]).numpy()
    assert got.shape == (16, data.shape[1] - 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    average = pair(x, y, redundancy=redundancy)
    for a in ATOMS:
        assert average[a].shape == ()
        np.testing.assert_allclose(average[a].item(), local[a].mean().item(), rtol=0, atol=ATOL)


def test_mmi_closed_form_equals_mean_of_local_atoms(data: np.ndarray) -> None:
    """Average MMI atoms need no per-sample work: closed form == mean of local atoms."""
    x, y = torch.from_numpy(data[0]), torch.from_numpy(data[2])
    closed, local = pair(x, y), pair(x, y, local=True)
    for a in ATOMS:
        np.testing.assert_allclose(closed[a].item(), local[a].mean().item(), rtol=0, atol=ATOL)


def test_atoms_sum_to_tdmi(data: np.ndarray) -> None:
    atoms = all_pairs(torch.from_numpy(data))
    total = atoms.sum(-3)
    for i in range(data.shape[0]):
        for j in range(data.shape[0]):
            if i != j:
                assert total[i, j].item() == pytest.approx(ref.tdmi(data[i], data[j]), abs=ATOL)


@pytest.mark.parametrize("redundancy", ["MMI", "CCS"])
def test_swapping_units_mirrors_atoms(data: np.ndarray, redundancy: str) -> None:
    x, y = torch.from_numpy(data[0]), torch.from_numpy(data[4])
    xy, yx = pair(x, y, redundancy=redundancy), pair(y, x, redundancy=redundancy)
    for k, a in enumerate(ATOMS):
        assert xy[a].item() == pytest.approx(yx[ATOMS[MIRROR[k]]].item(), abs=ATOL)
    for fixed in ("rtr", "sts"):
        assert xy[fixed].item() == pytest.approx(yx[fixed].item(), abs=ATOL)
    assert xy["xtx"].item() == pytest.approx(yx["yty"].item(), abs=ATOL)
    asymmetry = max(abs(xy[a].item() - xy[ATOMS[MIRROR[k]]].item()) for k, a in enumerate(ATOMS))
    assert asymmetry > 1e-3  # the pair is not symmetric, so the check is not trivial


def test_scale_and_offset_change_nothing(data: np.ndarray) -> None:
    scale = np.array([3.0, -0.01, 250.0, 1.0, -7.0])[:, None]
    offset = np.array([1e3, -5.0, 0.0, 42.0, 1e4])[:, None]
    base = all_pairs(torch.from_numpy(data))
    moved = all_pairs(torch.from_numpy(data * scale + offset))
    torch.testing.assert_close(moved, base, rtol=0, atol=ATOL, equal_nan=True)


def test_batch_dims_equal_a_loop() -> None:
    stacked = np.stack(
        [np.stack([_system(4, 120, seed=10 * b + c) for c in range(3)]) for b in range(2)]
    )
    x = torch.from_numpy(stacked)  # [2, 3, unit, time]
    atoms = all_pairs(x)
    assert atoms.shape == (2, 3, 16, 4, 4)
    for b in range(2):
        for c in range(3):
            torch.testing.assert_close(
                atoms[b, c], all_pairs(x[b, c]), rtol=0, atol=0, equal_nan=True
            )
    xs, ys = x[..., 0, :], x[..., 1, :]
    batched = pair(xs, ys)
    assert batched["sts"].shape == (2, 3)
    for b in range(2):
        for c in range(3):
            one = pair(xs[b, c], ys[b, c])
            for a in ATOMS:
                assert batched[a][b, c].item() == pytest.approx(one[a].item(), abs=1e-12)
    local = pair(xs, ys, local=True)
    assert local["rtr"].shape == (2, 3, 119)
    np.testing.assert_allclose(
        local["rtr"][1, 2].numpy(), pair(xs[1, 2], ys[1, 2], local=True)["rtr"].numpy()
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_low_precision_input_gives_float64(data: np.ndarray, dtype: torch.dtype) -> None:
    x = torch.from_numpy(data).to(dtype)
    atoms = all_pairs(x)
    assert atoms.dtype == torch.float64
    torch.testing.assert_close(atoms, all_pairs(x.double()), rtol=0, atol=0, equal_nan=True)
    assert pair(x[0], x[1])["sts"].dtype == torch.float64


def test_chunking_does_not_change_results(data: np.ndarray) -> None:
    x = torch.from_numpy(_system(9, 150, seed=3))
    torch.testing.assert_close(
        all_pairs(x, chunk_pairs=1), all_pairs(x), rtol=0, atol=1e-14, equal_nan=True
    )
    torch.testing.assert_close(
        all_pairs(x, chunk_pairs=7),
        all_pairs(x, chunk_pairs=10**6),
        rtol=0,
        atol=1e-14,
        equal_nan=True,
    )


def test_diagonal_is_nan_and_off_diagonal_finite(data: np.ndarray) -> None:
    atoms = all_pairs(torch.from_numpy(data))
    eye = torch.eye(5, dtype=torch.bool)
    assert atoms[:, eye].isnan().all()
    assert atoms[:, ~eye].isfinite().all()
    assert atoms[atom_index("sts")].shape == (5, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("redundancy", ["MMI", "CCS"])
def test_cuda_matches_cpu(data: np.ndarray, redundancy: str) -> None:
    x = torch.from_numpy(data)
    gpu = all_pairs(x.cuda().to(torch.bfloat16), redundancy=redundancy)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float64
    cpu = all_pairs(x.to(torch.bfloat16), redundancy=redundancy)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-9, equal_nan=True)


def test_closed_form_mis_and_determinant_match_numpy() -> None:
    """The kernel's nine MIs and 4 x 4 determinant against NumPy log-dets of sub-blocks."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        m = rng.standard_normal((4, 6))
        cov = m @ m.T + 0.05 * np.eye(4)
        s = np.sqrt(np.diag(cov))
        r = cov / np.outer(s, s)
        six = [torch.tensor(r[i, j]) for i, j in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]]
        mis, det4 = pair_mutual_informations(*six)
        assert det4.item() == pytest.approx(np.linalg.det(r), rel=1e-10)
        src, tgt = {"x": [0], "y": [1], "xy": [0, 1]}, {"x": [2], "y": [3], "xy": [2, 3]}
        for (p, f), value in mis.items():
            ld = [np.linalg.slogdet(r[np.ix_(i, i)])[1] for i in (src[p], tgt[f], src[p] + tgt[f])]
            assert value.item() == pytest.approx(0.5 * (ld[0] + ld[1] - ld[2]), abs=1e-12)
