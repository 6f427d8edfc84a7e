"""Bad input: constant and collinear units, non-finite values, too-short series."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from synergy_lens.phiid import all_pairs, atom_index, pair


def _noise(n_units: int = 5, n_steps: int = 200, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_units, n_steps, generator=g, dtype=torch.float64)
    x[:, 1:] += 0.5 * x[:, :-1]
    return x


@pytest.mark.parametrize("redundancy", ["MMI", "CCS"])
def test_constant_unit_gives_nan_pairs_and_one_warning(redundancy: str) -> None:
    x = _noise()
    x[2] = 3.5
    with pytest.warns(RuntimeWarning) as record:
        atoms = all_pairs(x, redundancy=redundancy, labels=[f"L0H{h}" for h in range(5)])
    assert len(record) == 1
    message = str(record[0].message)
    assert "constant unit(s) 2 (L0H2)" in message and "jitter" in message
    assert atoms[:, 2, :].isnan().all() and atoms[:, :, 2].isnan().all()
    keep = [0, 1, 3, 4]
    rest = atoms[:, keep][:, :, keep]
    off = ~torch.eye(4, dtype=torch.bool)
    assert rest[:, off].isfinite().all()
    torch.testing.assert_close(rest, all_pairs(x[keep], redundancy=redundancy), equal_nan=True)


def test_collinear_pair_is_named() -> None:
    x = _noise()
    x[3] = -2.0 * x[1] + 5.0
    with pytest.warns(
        RuntimeWarning, match=r"collinear pair\(s\) \(1, 3\) involving unit\(s\) 1, 3"
    ) as record:
        atoms = all_pairs(x)
    assert len(record) == 1
    assert atoms[:, 1, 3].isnan().all() and atoms[:, 3, 1].isnan().all()
    assert atoms[:, 0, 1].isfinite().all() and atoms[:, 3, 4].isfinite().all()


def test_many_batches_still_warn_once() -> None:
    x = _noise().repeat(4, 1, 1)
    x[:, 0] = 0.0
    with pytest.warns(RuntimeWarning) as record:
        all_pairs(x)
    assert len(record) == 1


def test_jitter_makes_every_pair_finite_without_warning() -> None:
    x = _noise()
    x[2] = 3.5
    x[3] = 2.0 * x[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms = all_pairs(x, jitter=1e-2)
        p = pair(x[2], x[0], jitter=1e-2)
    off = ~torch.eye(5, dtype=torch.bool)
    assert atoms[:, off].isfinite().all()
    assert all(v.isfinite() for v in p.values())
    # the constant unit became tiny white noise: its atoms are near zero
    assert atoms[:, 2, 0].abs().max() < 0.1
    # an untouched pair moves by about jitter / sqrt(time) relative
    clean = all_pairs(x[[0, 4]])[:, 0, 1]
    torch.testing.assert_close(atoms[:, 0, 4], clean, rtol=0.05, atol=1e-4)
    # and the noise is seeded: same result twice
    torch.testing.assert_close(atoms, all_pairs(x, jitter=1e-2), rtol=0, atol=0, equal_nan=True)


def test_pair_degenerate_is_nan_with_warning() -> None:
    x = _noise()[0]
    with pytest.warns(RuntimeWarning, match="undefined"):
        atoms = pair(x, torch.full_like(x, 2.0))
    assert all(v.isnan() for v in atoms.values())
    with pytest.warns(RuntimeWarning):
        local = pair(x, 3 * x, local=True)
    assert local["sts"].isnan().all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_names_unit_and_time(bad: float) -> None:
    x = _noise()
    x[3, 17] = bad
    with pytest.raises(ValueError, match="unit 3, time 17"):
        all_pairs(x)
    batched = torch.stack([_noise(), x])
    with pytest.raises(ValueError, match=r"unit 3, time 17 \(batch index \(1,\)\)"):
        all_pairs(batched)
    with pytest.raises(ValueError, match=r"y contains .* at time 17"):
        pair(x[0], x[3])


@pytest.mark.parametrize(("n_steps", "tau"), [(3, 1), (5, 3), (2, 1)])
def test_too_short_is_a_clear_error(n_steps: int, tau: int) -> None:
    with pytest.raises(ValueError, match=r"needs more than tau \+ 2"):
        all_pairs(torch.randn(3, n_steps), tau=tau)
    with pytest.raises(ValueError, match=r"needs more than tau \+ 2"):
        pair(torch.randn(n_steps), torch.randn(n_steps), tau=tau)


def test_short_series() -> None:
    """time = tau + 3 passes the check, but 3 lag pairs cannot span a 4 x 4 covariance:
    NaN with the warning. Five lag pairs are enough."""
    g = torch.Generator().manual_seed(1)
    with pytest.warns(RuntimeWarning, match="collinear"):
        atoms = all_pairs(torch.randn(3, 4, generator=g), tau=1)
    assert atoms.shape == (16, 3, 3) and atoms.isnan().all()
    atoms = all_pairs(torch.randn(3, 7, generator=g), tau=2)
    assert atoms[:, 0, 1].isfinite().all()


@pytest.mark.wrong_shapes
def test_type_errors() -> None:
    with pytest.raises(TypeError, match="floating-point"):
        all_pairs(torch.arange(30).reshape(3, 10))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        all_pairs(np.zeros((3, 10)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau"):
        all_pairs(torch.randn(3, 10), tau=0)
    with pytest.raises(ValueError, match="same shape"):
        pair(torch.randn(10), torch.randn(11))
    with pytest.raises(ValueError, match="unknown redundancy"):
        all_pairs(torch.randn(3, 10), redundancy="PPI")
    with pytest.raises(ValueError, match="jitter"):
        all_pairs(torch.randn(3, 10), jitter=-1.0)
    assert atom_index("sts") == 15
