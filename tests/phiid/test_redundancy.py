"""The redundancy registry."""

from __future__ import annotations

import pytest
import torch

from synergy_lens.phiid import (
    RedundancyFunction,
    all_pairs,
    get_redundancy,
    register_redundancy,
    registered_redundancies,
)


def test_builtins() -> None:
    assert {"MMI", "CCS"} <= set(registered_redundancies())
    assert get_redundancy("MMI").closed_form and not get_redundancy("CCS").closed_form
    with pytest.raises(ValueError, match="already registered"):
        register_redundancy(get_redundancy("MMI"))


def test_custom_function_without_closed_form_uses_local_path() -> None:
    mmi = get_redundancy("MMI")
    local_only = RedundancyFunction(
        name="MMI-local-test", local_single=mmi.local_single, local_double=mmi.local_double
    )
    x = torch.randn(4, 150, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    via_local = all_pairs(x, redundancy=local_only)  # passes the object, no registration
    torch.testing.assert_close(via_local, all_pairs(x), rtol=0, atol=1e-12, equal_nan=True)
    register_redundancy(local_only, overwrite=True)
    assert "MMI-local-test" in registered_redundancies()
    torch.testing.assert_close(all_pairs(x, redundancy="MMI-local-test"), via_local, equal_nan=True)
