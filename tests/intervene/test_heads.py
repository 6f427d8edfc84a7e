"""Head specifications: pairs, labels and masks, with clear errors."""

from __future__ import annotations

import pytest
import torch

from synergy_lens.intervene.heads import head_mask, mask_to_heads, parse_head, unit_order


def test_pairs_labels_and_masks_agree():
    m = head_mask((3, 4), [(0, 1), "L2H3", [1, 0]])
    assert m.dtype == torch.bool and m.shape == (3, 4)
    assert mask_to_heads(m) == [(0, 1), (1, 0), (2, 3)]
    assert torch.equal(head_mask((3, 4), m), m)
    assert torch.equal(head_mask((3, 4), "L2H3"), head_mask((3, 4), [(2, 3)]))
    assert torch.equal(head_mask((3, 4), (2, 3)), head_mask((3, 4), [(2, 3)]))
    assert not head_mask((3, 4), []).any()


def test_per_batch_mask_passes_through():
    batch = torch.zeros(5, 3, 4, dtype=torch.bool)
    assert head_mask((3, 4), batch).shape == (5, 3, 4)
    with pytest.raises(ValueError, match=r"\[layer, head\]"):
        head_mask((3, 4), batch, allow_batch=False)


@pytest.mark.parametrize(
    ("heads", "err", "match"),
    [
        (["L3H0"], ValueError, "out of range"),
        ([(0, 4)], ValueError, "out of range"),
        ([(-1, 0)], ValueError, "out of range"),
        (["L1-H2"], ValueError, "bad head label"),
        (["layer1head2"], ValueError, "bad head label"),
        ([1.5], TypeError, "bad head"),
        (torch.zeros(3, 4), TypeError, "bool tensor"),
        (torch.zeros(4, 3, dtype=torch.bool), ValueError, "shape"),
    ],
)
def test_bad_heads_raise_clear_errors(heads, err, match):
    with pytest.raises(err, match=match):
        head_mask((3, 4), heads)


def test_parse_head_and_orders():
    assert parse_head("L10H2", 12, 4) == (10, 2)
    assert unit_order((3, 4), ["L0H0", (2, 1)]) == [(0, 0), (2, 1)]
    with pytest.raises(ValueError, match="twice"):
        unit_order((3, 4), ["L0H0", (0, 0)])
