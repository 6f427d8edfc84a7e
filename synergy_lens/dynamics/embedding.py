"""Functional embedding of attention heads: one feature vector per head, projected to 2-D.

What and why
------------
Paper (A) (Zhang et al. 2026, arXiv 2603.29735) draws every attention head as a point in
a low-dimensional "functional space" at each task difficulty: on easy tasks the points
form one intermixed cloud, on hard tasks they split into an abstract (synergistic) and a
memory (redundant) group. This module builds the pieces:

* feature builders, one row per head (unit ``u = layer * n_heads + head``):

  - :func:`phiid_features` from a ``PhiIDResult``: ``how="row"`` is the head's row of
    persistent synergy and persistent redundancy with every other head,
    ``[sts[u, :], rtr[u, :]]`` (``2 * unit`` features; its own diagonal entry, undefined,
    is filled with the row's mean). Each block is divided by its overall standard
    deviation so that synergy and redundancy weigh the same (rtr is typically larger).
    ``how="summary"`` is ``(mean sts, mean rtr, synergy fraction)`` over the pairs of the
    head, each z-scored across heads (3 features, robust with few prompts).
  - :func:`profile_features` from per-level head scores: a head's score at each
    difficulty level (``[head, level]``), to embed how heads *change* with difficulty.

* :func:`functional_embedding`: PCA (default) or UMAP (if ``umap-learn`` is installed) of
  ``[head, feature]`` to ``[head, 2]``.

PCA. Centre the features (column means), take the thin SVD ``X = U S V^T``
(``torch.linalg.svd``, float64) and return ``X V[:, :2] = U[:, :2] S[:2]``. The sign of a
singular vector is arbitrary, so each component is flipped to make its largest-magnitude
loading (entry of ``V[:, k]``) positive: the same features always give the same picture.
With a single feature (or head count), missing components are 0.

>>> import torch
>>> x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 0.1], [6.0, 0.1]])
>>> functional_embedding(x)[:, 0].tolist()   # doctest: +ELLIPSIS
[-3.0..., -1.0..., 1.0..., 3.0...]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

__all__ = [
    "EmbeddingMethod",
    "FeatureKind",
    "fill_nan_columns",
    "functional_embedding",
    "pca",
    "phiid_features",
    "profile_features",
]

EmbeddingMethod = Literal["pca", "umap"]
"""2-D projections of :func:`functional_embedding`."""
FeatureKind = Literal["row", "summary"]
"""Head features of :func:`phiid_features`."""


def _as_float64(x: Any, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    t = t.detach().to("cpu", torch.float64)
    if t.ndim != 2:
        raise ValueError(f"{name} must be [head, feature], got shape {tuple(t.shape)}")
    return t


def fill_nan_columns(features: Float[Tensor, "head feature"]) -> Float[Tensor, "head feature"]:
    """Replace NaN entries by their column's mean over finite entries (0 if none is finite).

    A degenerate head (constant signal) has NaN PhiID atoms; imputing the feature mean puts
    it at the centre of the cloud instead of dropping it, so every head keeps a point.
    """
    x = _as_float64(features, "features").clone()
    finite = torch.isfinite(x)
    col = torch.where(finite, x, 0.0).sum(0) / finite.sum(0).clamp(min=1)
    return torch.where(finite, x, col.expand_as(x))


def pca(
    features: Float[Tensor, "head feature"], k: int = 2
) -> tuple[Float[Tensor, "head k"], Float[Tensor, " k"]]:
    """``(coordinates [head, k], explained variance ratio [k])`` of sign-fixed PCA.

    See the module docstring for the centring and sign rule. Components beyond the rank of
    the centred data are 0 (coordinates and ratio).
    """
    x = _as_float64(features, "features")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features contain NaN or inf: impute them first (fill_nan_columns)")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 heads to embed, got {x.shape[0]}")
    xc = x - x.mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    m = min(k, s.numel())
    v = vh[:m].T  # [feature, m]
    flip = torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
    flip[flip == 0] = 1.0
    coords = torch.zeros(x.shape[0], k, dtype=torch.float64)
    coords[:, :m] = xc @ (v * flip)
    total = float((s**2).sum())
    ratio = torch.zeros(k, dtype=torch.float64)
    if total > 0:
        ratio[:m] = s[:m] ** 2 / total
    return coords, ratio


def functional_embedding(
    features: Float[Tensor, "head feature"],
    method: EmbeddingMethod = "pca",
    seed: int = 0,
    *,
    n_neighbors: int = 15,
) -> Float[Tensor, "head 2"]:
    """Project per-head feature vectors to 2-D (module docstring).

    Args:
        features: ``[head, feature]``, finite (see :func:`fill_nan_columns`).
        method: ``"pca"`` (deterministic, linear; distances along PC1 are interpretable)
            or ``"umap"`` (nonlinear, needs ``pip install umap-learn``; seeded).
        seed: UMAP's ``random_state`` (PCA is deterministic).
        n_neighbors: UMAP's neighbourhood size (capped at ``head - 1``).

    Returns:
        float64 ``[head, 2]`` coordinates.
    """
    if method == "pca":
        return pca(features, 2)[0]
    if method == "umap":
        try:
            import umap
        except ImportError as err:
            raise ImportError(
                "method='umap' needs the umap-learn package: pip install umap-learn "
                "(or use method='pca')"
            ) from err
        x = _as_float64(features, "features")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("features contain NaN or inf: impute them first (fill_nan_columns)")
        reducer = umap.UMAP(
            n_components=2, random_state=seed, n_neighbors=max(2, min(n_neighbors, x.shape[0] - 1))
        )
        return torch.from_numpy(np.asarray(reducer.fit_transform(x.numpy()), dtype=np.float64))
    raise ValueError(f"unknown embedding method {method!r}; use 'pca' or 'umap'")


def _row_block(m: Tensor) -> Tensor:
    m = m.clone()
    diag = torch.eye(m.shape[0], dtype=torch.bool)
    m[diag] = math.nan
    finite = torch.isfinite(m)
    row_mean = torch.where(finite, m, 0.0).sum(1) / finite.sum(1).clamp(min=1)
    m[diag] = row_mean
    sd = float(m[torch.isfinite(m)].std()) if bool(torch.isfinite(m).sum() > 1) else 0.0
    return m / sd if sd > 0 else m


def _zscore(x: Tensor) -> Tensor:
    finite = torch.isfinite(x)
    mu = x[finite].mean() if bool(finite.any()) else torch.tensor(0.0, dtype=x.dtype)
    sd = x[finite].std() if int(finite.sum()) > 1 else torch.tensor(0.0, dtype=x.dtype)
    return (x - mu) / sd if float(sd) > 0 else x - mu


def phiid_features(
    result: Any,
    how: FeatureKind = "row",
    *,
    fill_nan: bool = True,
) -> Float[Tensor, "head feature"]:
    """Per-head features from a ``PhiIDResult`` (or anything with ``sts``/``rtr`` ``[unit, unit]``).

    Args:
        result: the PhiID of one recording.
        how: ``"row"`` (``[sts[u, :], rtr[u, :]]``, each block scaled by its standard
            deviation, ``2 * unit`` features) or ``"summary"`` (z-scored mean sts, mean
            rtr and synergy fraction, 3 features); see the module docstring.
        fill_nan: impute NaN entries (degenerate heads) with the column mean.

    Returns:
        float64 ``[unit, feature]``.
    """
    from synergy_lens.analysis.scores import head_mean, pair_fraction, symmetrize

    sts = torch.as_tensor(result.sts).detach().to("cpu", torch.float64)
    rtr = torch.as_tensor(result.rtr).detach().to("cpu", torch.float64)
    if sts.ndim != 2 or sts.shape[0] != sts.shape[1] or rtr.shape != sts.shape:
        raise ValueError(f"sts and rtr must be [unit, unit], got {tuple(sts.shape)} and {tuple(rtr.shape)}")
    if how == "row":
        feats = torch.cat([_row_block(symmetrize(sts)), _row_block(symmetrize(rtr))], dim=1)
    elif how == "summary":
        frac = torch.nanmean(pair_fraction(sts, rtr), dim=-1)
        feats = torch.stack([_zscore(head_mean(sts)), _zscore(head_mean(rtr)), _zscore(frac)], dim=1)
    else:
        raise ValueError(f"unknown feature kind {how!r}; use 'row' or 'summary'")
    return fill_nan_columns(feats) if fill_nan else feats


def profile_features(
    scores: Sequence[Any] | Float[Tensor, "level layer head"] | Float[Tensor, "level head"],
    *,
    standardize: bool = True,
    fill_nan: bool = True,
) -> Float[Tensor, "head level"]:
    """Each head's score across difficulty levels: ``[head, level]``.

    Args:
        scores: one ``HeadScores`` per level (their ``values``), or a tensor
            ``[level, layer, head]`` / ``[level, unit]``.
        standardize: z-score each level's scores across heads first, so a level whose
            scores are larger overall does not dominate and a head's feature is its
            standing among heads at that level.
        fill_nan: impute NaN entries with the column mean.
    """
    if isinstance(scores, Tensor | np.ndarray):
        stack = torch.as_tensor(scores).to(torch.float64)
    else:
        items = list(scores)
        if not items:
            raise ValueError("no per-level scores given")
        stack = torch.stack([torch.as_tensor(getattr(s, "values", s)).to(torch.float64) for s in items])
    if stack.ndim == 3:
        stack = stack.flatten(1)
    if stack.ndim != 2:
        raise ValueError(f"scores must be [level, layer, head] or [level, unit], got {tuple(stack.shape)}")
    feats = stack.T.contiguous()  # [unit, level]
    if standardize:
        feats = torch.stack([_zscore(feats[:, j]) for j in range(feats.shape[1])], dim=1)
    return fill_nan_columns(feats) if fill_nan else feats
