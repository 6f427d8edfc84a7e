"""Ground truth by construction: white noise, Gaussian VAR(1) systems with known atoms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.stats import chi2

from synergy_lens.phiid import ATOMS, MIRROR, all_pairs, atom_index

from . import reference as ref

# Two-unit VAR(1) systems X_{t+1} = A X_t + N(0, Q); their exact atoms come from the
# stationary covariance (reference.var1_true_cov4, an independent NumPy computation).
SYSTEMS = {
    # x drives y
    "coupled": (np.array([[0.6, 0.3], [0.0, 0.5]]), np.eye(2)),
    # both futures = 0.45 (x + y) + noise ("x_{t+1} = y_{t+1} depend on x_t + y_t")
    "sum": (np.array([[0.45, 0.45], [0.45, 0.45]]), np.eye(2)),
    # both futures = 0.5 (x - y) + noise: the sources are correlated and the target is
    # their difference, the Gaussian analogue of XOR; synergy exceeds redundancy
    "difference": (np.array([[0.5, -0.5], [0.5, -0.5]]), np.eye(2)),
    # two AR(0.9) copies of a shared signal (noise correlation 0.95): copy redundancy
    "copy": (0.9 * np.eye(2), np.array([[1.0, 0.95], [0.95, 1.0]])),
}


def _truth(name: str) -> np.ndarray:
    a, q = SYSTEMS[name]
    return ref.mmi_atoms_from_cov(ref.var1_true_cov4(a, q))


@pytest.fixture(scope="module")
def long_run() -> dict[int, torch.Tensor]:
    """All systems side by side (block-diagonal VAR), one seeded path, several lengths."""
    a = scipy.linalg.block_diag(*(s[0] for s in SYSTEMS.values()))
    q = scipy.linalg.block_diag(*(s[1] for s in SYSTEMS.values()))
    path = ref.simulate_var1(a, q, 200_000, np.random.default_rng(7))
    return {
        t: torch.from_numpy(np.ascontiguousarray(path[:, :t])) for t in (2_000, 20_000, 200_000)
    }


def test_estimates_converge_to_true_atoms(long_run: dict[int, torch.Tensor]) -> None:
    """Max error over 16 atoms x 4 systems x both orientations is within 8 / sqrt(T).

    The Gaussian estimator's error is O(1/sqrt(T)); on this seeded path the worst case is
    about 4.5 / sqrt(T), so 8 / sqrt(T) fails only if the estimates are biased.
    """
    errors = {}
    for t, x in long_run.items():
        atoms = all_pairs(x).numpy()
        err = 0.0
        for k, name in enumerate(SYSTEMS):
            truth = _truth(name)
            err = max(err, np.abs(atoms[:, 2 * k, 2 * k + 1] - truth).max())
            err = max(err, np.abs(atoms[:, 2 * k + 1, 2 * k] - truth[list(MIRROR)]).max())
        errors[t] = err
        assert err <= 8 / np.sqrt(t), (
            f"T={t}: max |estimate - truth| = {err:.4f} > {8 / np.sqrt(t):.4f}"
        )
    assert errors[200_000] < 0.02
    assert errors[200_000] < errors[2_000]


def test_true_atoms_sum_to_true_tdmi() -> None:
    for name, (a, q) in SYSTEMS.items():
        cov = ref.var1_true_cov4(a, q)
        logdet = [float(np.linalg.slogdet(m)[1]) for m in (cov[:2, :2], cov[2:, 2:], cov)]
        tdmi = 0.5 * (logdet[0] + logdet[1] - logdet[2])
        assert _truth(name).sum() == pytest.approx(tdmi, abs=1e-12), name


def test_planted_synergy_and_redundancy(long_run: dict[int, torch.Tensor]) -> None:
    atoms = all_pairs(long_run[20_000])
    sts, rtr = atoms[atom_index("sts")], atoms[atom_index("rtr")]
    k = list(SYSTEMS).index("difference")
    assert sts[2 * k, 2 * k + 1] > 0.08 and sts[2 * k, 2 * k + 1] > rtr[2 * k, 2 * k + 1] + 0.03
    assert _truth("difference")[atom_index("sts")] > _truth("difference")[atom_index("rtr")]
    k = list(SYSTEMS).index("sum")
    assert sts[2 * k, 2 * k + 1] > 0.08
    k = list(SYSTEMS).index("copy")
    copy = atoms[:, 2 * k, 2 * k + 1]
    assert copy[atom_index("rtr")] > 0.6  # true value 0.657
    assert copy[atom_index("rtr")] > 3 * copy[atom_index("xtx")].abs()


def test_white_noise_atoms_are_near_zero() -> None:
    """Independent white noise: 2 n TDMI ~ chi2(4) per pair, so with probability 1 - 1e-6
    (union bound over pairs) every TDMI <= chi2.isf(1e-6 / pairs, 4) / (2 n); each atom is
    a +-1 combination of at most 16 known quantities in [0, TDMI]."""
    n_units, n_steps = 24, 3_000
    x = torch.randn(
        n_units, n_steps, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    atoms = all_pairs(x)
    n = n_steps - 1
    pairs = n_units * (n_units - 1) // 2
    bound = chi2.isf(1e-6 / pairs, df=4) / (2 * n)
    off = ~torch.eye(n_units, dtype=torch.bool)
    tdmi = atoms.sum(0)[off]
    assert tdmi.min() >= -1e-12
    assert tdmi.max() <= bound
    assert atoms[:, off].abs().max() <= 16 * bound
    # the average TDMI is close to its expectation 4 / (2 n) = 2 / n
    assert tdmi.mean().item() == pytest.approx(2 / n, rel=0.25)


def test_true_ground_truth_function_is_sane() -> None:
    """Independent AR(1) units: no cross-unit information, so x->y atoms vanish."""
    truth = ref.mmi_atoms_from_cov(ref.var1_true_cov4(np.diag([0.5, 0.7]), np.eye(2)))
    for name in ("xty", "ytx", "rtr", "rtx", "rty", "xtr", "ytr"):
        assert truth[ATOMS.index(name)] == pytest.approx(0.0, abs=1e-12), name
