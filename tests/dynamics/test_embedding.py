"""Functional embedding: PCA against a NumPy reference, planted groups, feature builders."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synergy_lens.dynamics.embedding import (
    fill_nan_columns,
    functional_embedding,
    pca,
    phiid_features,
    profile_features,
)
from synergy_lens.dynamics.order import NULL_SEPARATION_1D, cluster_separation


def _blobs(shift: float, n: int = 40, dim: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian groups of ``n`` heads, means ``shift`` apart along a random direction."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    group = np.repeat([0, 1], n)
    x = rng.normal(size=(2 * n, dim)) + np.outer(group * shift, direction)
    return x, group


def test_pca_matches_numpy_svd():
    x = np.random.default_rng(1).normal(size=(30, 6)) @ np.diag([5, 3, 1, 1, 0.5, 0.1])
    coords, ratio = pca(torch.from_numpy(x), k=2)
    xc = x - x.mean(0)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    for k in range(2):
        ref = u[:, k] * s[k]
        sign = np.sign(vt[k][np.argmax(np.abs(vt[k]))])  # the documented sign rule
        np.testing.assert_allclose(coords[:, k].numpy(), sign * ref, atol=1e-10)
    np.testing.assert_allclose(ratio.numpy(), s[:2] ** 2 / (s**2).sum(), atol=1e-12)


def test_sign_rule_makes_embedding_deterministic():
    """Loadings fix the sign: negating the data negates the coordinates (V is unchanged)."""
    x, _ = _blobs(4.0)
    a = functional_embedding(torch.from_numpy(x))
    torch.testing.assert_close(functional_embedding(torch.from_numpy(-x)), -a)
    assert torch.equal(a, functional_embedding(torch.from_numpy(x.copy())))
    _, v_ratio = pca(torch.from_numpy(x))
    assert float(v_ratio[0]) > float(v_ratio[1]) > 0


def test_planted_two_groups_split_along_pc1():
    x, group = _blobs(8.0)
    emb = functional_embedding(torch.from_numpy(x))
    pc1 = emb[:, 0].numpy()
    assert (pc1[group == 0].max() < pc1[group == 1].min()) or (pc1[group == 1].max() < pc1[group == 0].min())
    assert cluster_separation(emb) > 6.0
    mixed, _ = _blobs(0.0)
    assert cluster_separation(functional_embedding(torch.from_numpy(mixed))) < NULL_SEPARATION_1D + 1.0


def test_degenerate_inputs():
    one = functional_embedding(torch.arange(5.0)[:, None])
    assert one.shape == (5, 2) and torch.all(one[:, 1] == 0)
    with pytest.raises(ValueError, match="NaN"):
        functional_embedding(torch.tensor([[0.0, math.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="unknown embedding method"):
        functional_embedding(torch.zeros(4, 2), method="tsne")  # type: ignore[arg-type]
    filled = fill_nan_columns(torch.tensor([[1.0, math.nan], [3.0, 4.0], [math.nan, 6.0]]))
    assert filled.tolist() == [[1.0, 5.0], [3.0, 4.0], [2.0, 6.0]]


def test_umap_is_optional():
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="umap-learn"):
            functional_embedding(torch.randn(20, 3), method="umap")
    else:
        emb = functional_embedding(torch.randn(20, 3, generator=torch.Generator().manual_seed(0)), method="umap")
        assert emb.shape == (20, 2)


def _planted_result(n_layers: int = 4, n_heads: int = 4, contrast: float = 1.0, seed: int = 0):
    """A fake PhiID result: heads of the middle layers share high sts, the others high rtr."""
    g = torch.Generator().manual_seed(seed)
    u = n_layers * n_heads
    core = torch.zeros(u, dtype=torch.bool)
    core[n_heads : (n_layers - 1) * n_heads] = True
    both = core[:, None] & core[None, :]
    neither = ~core[:, None] & ~core[None, :]
    sts = 0.1 + contrast * 0.5 * both + 0.02 * torch.rand(u, u, generator=g)
    rtr = 0.1 + contrast * 0.5 * neither + 0.02 * torch.rand(u, u, generator=g)
    sts, rtr = (sts + sts.T) / 2, (rtr + rtr.T) / 2
    sts.fill_diagonal_(math.nan)
    rtr.fill_diagonal_(math.nan)
    return SimpleNamespace(sts=sts.double(), rtr=rtr.double(), n_layers=n_layers, n_heads=n_heads), core


@pytest.mark.parametrize("how", ["row", "summary"])
def test_phiid_features_separate_planted_groups(how):
    result, core = _planted_result()
    feats = phiid_features(result, how)
    assert feats.shape == ((16, 32) if how == "row" else (16, 3)) and bool(torch.isfinite(feats).all())
    pc1 = functional_embedding(feats)[:, 0]
    assert pc1[core].min() > pc1[~core].max() or pc1[core].max() < pc1[~core].min()
    flat, _ = _planted_result(contrast=0.0)
    assert cluster_separation(functional_embedding(phiid_features(flat, how))) < cluster_separation(
        functional_embedding(feats))


def test_phiid_features_fill_degenerate_heads():
    result, _ = _planted_result()
    result.sts[3, :] = math.nan
    result.sts[:, 3] = math.nan
    assert bool(torch.isfinite(phiid_features(result, "row")).all())
    assert bool(torch.isnan(phiid_features(result, "row", fill_nan=False)).any())
    with pytest.raises(ValueError, match="unknown feature kind"):
        phiid_features(result, "pairs")  # type: ignore[arg-type]


def test_profile_features():
    scores = torch.arange(24.0).reshape(3, 2, 4)  # [level, layer, head]
    raw = profile_features(scores, standardize=False)
    assert raw.shape == (8, 3) and raw[5].tolist() == [5.0, 13.0, 21.0]
    z = profile_features([SimpleNamespace(values=s) for s in scores])
    torch.testing.assert_close(z.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(3, dtype=torch.float64))
