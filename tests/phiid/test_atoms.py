"""The lattice: atom order, mirror map and Möbius inversion (against a hand-written lattice)."""

from __future__ import annotations

import pytest
import torch

from synergy_lens.phiid import ATOMS, MIRROR, atom_index
from synergy_lens.phiid.atoms import (
    bottom_mobius_weights,
    mobius_matrix,
    pid_leq,
    pid_mobius,
    zeta_matrix,
)

from .reference import ATOM_NAMES, zeta


def test_canonical_order() -> None:
    expected = ATOM_NAMES  # typed out by hand in the reference, independently of ATOMS
    assert list(ATOMS) == expected == ATOM_NAMES
    assert [atom_index(a) for a in expected] == list(range(16))


def test_atom_index_unknown_names_the_choices() -> None:
    with pytest.raises(ValueError, match="rtr rtx"):
        atom_index("syn")


def test_mirror_swaps_x_and_y() -> None:
    pairs = {("xtx", "yty"), ("xty", "ytx"), ("rtx", "rty"), ("xtr", "ytr"), ("stx", "sty")}
    for a, b in pairs:
        assert MIRROR[atom_index(a)] == atom_index(b)
        assert MIRROR[atom_index(b)] == atom_index(a)
    for fixed in ("rtr", "rts", "str", "sts"):
        assert MIRROR[atom_index(fixed)] == atom_index(fixed)
    assert [MIRROR[m] for m in MIRROR] == list(range(16))


def test_pid_order_and_mobius() -> None:
    assert pid_leq("r", "s") and pid_leq("x", "s") and not pid_leq("x", "y")
    assert [pid_mobius("r", n) for n in "rxys"] == [1, -1, -1, 1]
    assert pid_mobius("x", "y") == 0


def test_zeta_matches_hand_written_lattice() -> None:
    torch.testing.assert_close(zeta_matrix().double(), torch.from_numpy(zeta()), rtol=0, atol=0)


def test_mobius_inverts_zeta() -> None:
    eye = torch.eye(16, dtype=torch.int64)
    assert torch.equal(mobius_matrix() @ zeta_matrix(), eye)
    assert torch.equal(zeta_matrix() @ mobius_matrix(), eye)


def test_bottom_weights_pick_the_top_atom() -> None:
    atoms = torch.randn(16, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    known = zeta_matrix().double() @ atoms
    torch.testing.assert_close(bottom_mobius_weights().double() @ known, atoms[atom_index("sts")])
