"""The PhiID lattice: atom names, their order, and the Möbius inversion.

What and why
------------
Integrated Information Decomposition (PhiID; Mediano, Rosas et al., arXiv 2109.13186)
splits the time-delayed mutual information I(past; future) of two units x, y into 16
atoms. Each atom is a pair of nodes of the two-source partial-information lattice,

    r (redundant)  <  x (unique to x), y (unique to y)  <  s (synergistic),

one node for the past and one for the future: ``"xty"`` is "unique to x in the past,
becomes unique to y in the future". The 16 atoms are ordered as the product of the
lattice's node order with itself, which gives the canonical order of ``phyid`` (the
reference tool, Imperial-MIND-lab)::

    rtr rtx rty rts xtr xtx xty xts ytr ytx yty yts str stx sty sts

Everything else (indices, the mirror x <-> y, the inversion matrix) is *derived* from
:data:`PID_NODES` and :data:`PID_COVERS` below; nothing is typed as a number.

Known quantities and atoms
--------------------------
For every node pair (alpha -> beta) a redundancy function gives one *known quantity*
K(alpha -> beta) (for MMI: the smallest MI from a source collection of alpha to a target
collection of beta). The defining PhiID equation is that each known quantity is the sum
of the atoms at or below it in the product lattice:

    K(alpha -> beta) = sum_{alpha' <= alpha, beta' <= beta} atom(alpha' -> beta').

Möbius inversion of a partial order (Rota 1964) solves this:

    atom(alpha -> beta) = sum_{alpha' <= alpha, beta' <= beta}
                          mu(alpha', alpha) mu(beta', beta) K(alpha' -> beta'),

with mu the Möbius function of the 4-node lattice, computed here from the order by its
recursive definition (:func:`pid_mobius`). The product lattice's Möbius function is the
product of its factors' (Stanley, *Enumerative Combinatorics* I, Prop. 3.8.2).
"""

from __future__ import annotations

import functools
import itertools

import torch
from torch import Tensor

__all__ = [
    "ATOMS",
    "MIRROR",
    "MI_KEYS",
    "NODE_SOURCES",
    "PID_COVERS",
    "PID_NODES",
    "atom_index",
    "bottom_mobius_weights",
    "mobius_matrix",
    "pid_leq",
    "pid_mobius",
    "zeta_matrix",
]

PID_NODES: tuple[str, ...] = ("r", "x", "y", "s")
"""Nodes of the two-source PID lattice, in canonical order (bottom first)."""

PID_COVERS: tuple[tuple[str, str], ...] = (("r", "x"), ("r", "y"), ("x", "s"), ("y", "s"))
"""Hasse diagram of the PID lattice: ``(lower, upper)`` pairs, r < x, r < y, x < s, y < s."""

ATOMS: tuple[str, ...] = tuple(f"{p}t{f}" for p in PID_NODES for f in PID_NODES)
"""The 16 PhiID atom names in canonical order (``phyid``'s): past node, ``t``, future node."""

NODE_SOURCES: dict[str, tuple[str, ...]] = {"r": ("x", "y"), "x": ("x",), "y": ("y",), "s": ("xy",)}
"""The source collections of each lattice node, written over the unit letters.

A node's known quantity is the redundancy of these collections: ``r`` is the redundancy of
the two single units, ``x`` and ``y`` are one unit each, ``s`` is the joint ``(x, y)``."""

MI_KEYS: tuple[tuple[str, str], ...] = tuple(itertools.product(("x", "y", "xy"), ("x", "y", "xy")))
"""The nine mutual informations PhiID needs, as ``(past collection, future collection)``:
``("x", "xy")`` is I(x_t; x_{t+tau}, y_{t+tau})."""

_SWAP = str.maketrans("xy", "yx")


def atom_index(name: str) -> int:
    """Position of atom ``name`` (e.g. ``"sts"``) in :data:`ATOMS`."""
    try:
        return ATOMS.index(name)
    except ValueError:
        raise ValueError(
            f"unknown PhiID atom {name!r}; expected one of {' '.join(ATOMS)}"
        ) from None


MIRROR: tuple[int, ...] = tuple(atom_index(a.translate(_SWAP)) for a in ATOMS)
"""``MIRROR[k]`` is the index of atom ``k`` with the roles of x and y swapped
(``xtx`` <-> ``yty``, ``xty`` <-> ``ytx``, ``rtr`` and ``sts`` fixed). Swapping the two
units maps ``atoms[k, i, j]`` to ``atoms[MIRROR[k], j, i]``."""


@functools.cache
def _leq_relation() -> frozenset[tuple[str, str]]:
    """Reflexive-transitive closure of :data:`PID_COVERS`."""
    rel = {(n, n) for n in PID_NODES} | set(PID_COVERS)
    changed = True
    while changed:
        new = {(a, d) for a, b in rel for c, d in rel if b == c} - rel
        rel |= new
        changed = bool(new)
    return frozenset(rel)


def pid_leq(a: str, b: str) -> bool:
    """Whether node ``a`` lies at or below node ``b`` in the PID lattice."""
    return (a, b) in _leq_relation()


@functools.cache
def pid_mobius(a: str, b: str) -> int:
    """Möbius function mu(a, b) of the PID lattice, from its recursive definition.

    mu(a, a) = 1; mu(a, b) = -sum_{a <= c < b} mu(a, c) when a < b; 0 otherwise.
    """
    if a == b:
        return 1
    if not pid_leq(a, b):
        return 0
    return -sum(pid_mobius(a, c) for c in PID_NODES if pid_leq(a, c) and pid_leq(c, b) and c != b)


def _split(atom: str) -> tuple[str, str]:
    past, future = atom.split("t")
    return past, future


def zeta_matrix() -> Tensor:
    """``Z[k, a] = 1`` when atom ``a`` lies at or below node pair ``k`` (both in ATOMS order).

    Known quantities are ``K = Z @ atoms``. Returned as int64 ``[16, 16]``.
    """
    rows = []
    for k in ATOMS:
        kp, kf = _split(k)
        rows.append([int(pid_leq(_split(a)[0], kp) and pid_leq(_split(a)[1], kf)) for a in ATOMS])
    return torch.tensor(rows, dtype=torch.int64)


def mobius_matrix() -> Tensor:
    """The inverse of :func:`zeta_matrix`, built from the Möbius function.

    ``M[a, k] = mu(k_past, a_past) * mu(k_future, a_future)``, so ``atoms = M @ K``.
    Returned as int64 ``[16, 16]`` with entries in {-1, 0, 1}.
    """
    rows = []
    for a in ATOMS:
        ap, af = _split(a)
        rows.append([pid_mobius(_split(k)[0], ap) * pid_mobius(_split(k)[1], af) for k in ATOMS])
    return torch.tensor(rows, dtype=torch.int64)


def bottom_mobius_weights() -> Tensor:
    """``w[k] = mu(bottom, k)`` of the product lattice, bottom = ``rtr``; int64 ``[16]``.

    Because ``sum_k w[k] K[k] = sts`` for any atoms (only the top atom lies above every
    node with a non-vanishing weight sum), the *double co-information*
    ``rtr - sts = -sum_{k != rtr} w[k] K[k]`` follows from the known quantities alone; it
    is what the CCS double redundancy keeps where signs agree (see ``redundancy.py``).
    """
    bottom = PID_NODES[0]
    return torch.tensor(
        [pid_mobius(bottom, _split(k)[0]) * pid_mobius(bottom, _split(k)[1]) for k in ATOMS],
        dtype=torch.int64,
    )
