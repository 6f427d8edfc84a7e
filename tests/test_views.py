"""Named read-only views of a result (synergy_lens._views)."""

from __future__ import annotations

import pytest
import torch

from synergy_lens._views import KeyedView
from synergy_lens.phiid import ATOMS, PhiIDResult


def _result() -> PhiIDResult:
    atoms = torch.arange(len(ATOMS) * 4, dtype=torch.float64).reshape(len(ATOMS), 2, 2)
    return PhiIDResult(atoms=atoms, n_layers=1, n_heads=2, labels=["L0H0", "L0H1"])


def test_view_is_the_method_at_its_key_and_read_only() -> None:
    result = _result()
    assert torch.equal(result.sts, result.atoms[ATOMS.index("sts")])
    assert torch.equal(result.rtr, result.atoms[ATOMS.index("rtr")])
    with pytest.raises(AttributeError, match="sts is read-only"):
        result.sts = torch.zeros(2, 2)  # type: ignore[misc]
    view = PhiIDResult.__dict__["sts"]
    assert isinstance(view, KeyedView) and PhiIDResult.sts is view
    assert "Persistent synergy" in (view.__doc__ or "")
