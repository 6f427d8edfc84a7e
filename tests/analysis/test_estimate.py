"""The shared inverted-U estimate fields (synergy_lens.analysis.estimate)."""

from __future__ import annotations

import torch

from synergy_lens.analysis.estimate import ESTIMATE_FIELDS, IndexEstimate


def _estimate(offset: float) -> IndexEstimate:
    base = torch.arange(6, dtype=torch.float64).reshape(2, 3) + offset
    return IndexEstimate(index=base, ci_low=base - 1, ci_high=base + 1, p=base / 100)


def test_estimate_reads_one_position_and_stacks() -> None:
    est = _estimate(0.0)
    assert est.estimate(1, 2) == (5.0, 4.0, 6.0, 0.05)
    single = est.estimate_tensors(torch.float32)
    assert list(single) == list(ESTIMATE_FIELDS) and all(t.dtype == torch.float32 for t in single.values())
    stacked = IndexEstimate.stacked([est, _estimate(10.0)])
    assert stacked["ci_high"].shape == (2, 2, 3) and float(stacked["ci_high"][1, 0, 0]) == 11.0

