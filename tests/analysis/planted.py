"""Planted ground truth for the analysis tests: systems whose synergy/redundancy is known.

- :func:`planted_core_system`: a Gaussian VAR(1) of 6 "layers" x 4 "heads" with a
  synergistic core in the middle layers (units coupled through their differences from
  the core mean, the many-unit analogue of the "difference" system of
  tests/phiid/test_ground_truth.py), redundant "memory" heads in the first and last layer
  (slow AR(0.9) units driven by a strongly shared noise) and weakly coupled heads between.
  :func:`true_atoms` gives its exact pairwise MMI atoms from the stationary covariance
  with the independent NumPy reference of tests/phiid/reference.py.
- :class:`FakeActivity`: the part of ``HeadActivity`` that ``decompose``, the surrogate
  test and the energy read.
- :func:`fake_result`: a ``PhiIDResult`` with chosen sts/rtr matrices.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch

from synergy_lens._grid import HeadLabels
from synergy_lens.phiid import ATOMS, PhiIDResult, atom_index

_spec = importlib.util.spec_from_file_location(
    "_phiid_reference", Path(__file__).parents[1] / "phiid" / "reference.py"
)
assert _spec is not None and _spec.loader is not None
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

N_LAYERS, N_HEADS = 6, 4
CORE = list(range(8, 16))  # layers 2 and 3
MEMORY = list(range(0, 4)) + list(range(20, 24))  # layers 0 and 5


def planted_core_system(
    a: float = 0.5, rho: float = 0.3, c: float = 0.8, a_mem: float = 0.9, rho_mem: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """``(A, Q)`` of ``X_{t+1} = A X_t + N(0, Q)`` with the planted core (module docstring).

    Every unit: AR coefficient ``a`` and a noise shared with all others (correlation
    ``rho``), so every pair carries some redundancy. Core units: ``A_core = c (I - 11^T / K)``
    (each future depends on the unit's deviation from the core mean: synergy). Memory
    units: AR ``a_mem`` and noise correlation ``rho_mem`` among themselves (redundancy).
    """
    u = N_LAYERS * N_HEADS
    amat = np.diag(np.full(u, a))
    q = (1 - rho) * np.eye(u) + rho * np.ones((u, u))
    k = len(CORE)
    amat[np.ix_(CORE, CORE)] = c * (np.eye(k) - np.ones((k, k)) / k)
    for m in MEMORY:
        amat[m, m] = a_mem
    q[np.ix_(MEMORY, MEMORY)] = rho_mem + (1 - rho_mem) * np.eye(len(MEMORY))
    return amat, q


def true_atoms(amat: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact MMI atoms ``[16, unit, unit]`` (diagonal NaN) of a stationary VAR(1)."""
    s = scipy.linalg.solve_discrete_lyapunov(amat, q)
    lag = s @ amat.T  # Cov(X_t, X_{t+1})
    u = amat.shape[0]
    out = np.full((16, u, u), np.nan)
    for i in range(u):
        for j in range(u):
            if i != j:
                idx = [i, j]
                cov = np.block(
                    [
                        [s[np.ix_(idx, idx)], lag[np.ix_(idx, idx)]],
                        [lag[np.ix_(idx, idx)].T, s[np.ix_(idx, idx)]],
                    ]
                )
                out[:, i, j] = reference.mmi_atoms_from_cov(cov)
    return out


def simulate(
    amat: np.ndarray, q: np.ndarray, n_prompts: int, n_time: int, seed: int, burn: int = 200
) -> torch.Tensor:
    """``[prompt, unit, time]`` independent stationary paths (after ``burn`` steps)."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(q)
    u = amat.shape[0]
    out = np.empty((n_prompts, u, n_time))
    for p in range(n_prompts):
        x = np.zeros(u)
        noise = rng.standard_normal((burn + n_time, u)) @ chol.T
        for t in range(burn + n_time):
            x = amat @ x + noise[t]
            if t >= burn:
                out[p, :, t - burn] = x
    return torch.from_numpy(out)


@dataclass
class FakeActivity(HeadLabels):
    """A ``HeadActivity`` stand-in: ``values[prompt, time, layer, head]``, NaN past ``lengths``
    (``n_layers``, ``n_heads`` and head labels from the grid of ``values``)."""

    GRID = ("values", 2)

    values: torch.Tensor
    lengths: torch.Tensor
    model_name: str = "planted"
    prompt_ids: list[list[int]] | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=lambda: {"signal": "z_norm"})

    @classmethod
    def from_series(
        cls, series: torch.Tensor, n_layers: int, n_heads: int, lengths: list[int] | None = None
    ) -> FakeActivity:
        """From ``[prompt, unit, time]``; steps past ``lengths`` become NaN."""
        p, _, t = series.shape
        values = series.permute(0, 2, 1).reshape(p, t, n_layers, n_heads).to(torch.float32).clone()
        lens = lengths or [t] * p
        for i, n in enumerate(lens):
            values[i, n:] = math.nan
        return cls(values=values, lengths=torch.tensor(lens))

    def unit_series(self) -> torch.Tensor:
        p, t = self.values.shape[:2]
        return self.values.reshape(p, t, -1).permute(0, 2, 1)

    def unit_labels(self) -> list[str]:
        return self.labels


def fake_result(
    sts: torch.Tensor,
    rtr: torch.Tensor,
    n_layers: int,
    n_heads: int,
    per_prompt_sts: torch.Tensor | None = None,
    per_prompt_rtr: torch.Tensor | None = None,
) -> PhiIDResult:
    """A ``PhiIDResult`` whose sts and rtr are the given matrices (other atoms 0, diagonal NaN)."""
    u = n_layers * n_heads
    atoms = torch.zeros(len(ATOMS), u, u, dtype=torch.float64)
    atoms[atom_index("sts")] = torch.as_tensor(sts, dtype=torch.float64)
    atoms[atom_index("rtr")] = torch.as_tensor(rtr, dtype=torch.float64)
    atoms[:, torch.eye(u, dtype=torch.bool)] = math.nan
    return PhiIDResult(
        atoms=atoms,
        n_layers=n_layers,
        n_heads=n_heads,
        labels=[f"L{layer}H{h}" for layer in range(n_layers) for h in range(n_heads)],
        per_prompt_sts=per_prompt_sts,
        per_prompt_rtr=per_prompt_rtr,
        meta={
            "model_name": "fake",
            "n_prompts": None if per_prompt_sts is None else int(per_prompt_sts.shape[0]),
        },
    )
