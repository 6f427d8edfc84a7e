"""Redundancy functions (a registry) and the 16 known quantities they define.

What and why
------------
PhiID needs, besides the nine mutual informations (MIs) between past and future
collections, a way to say how much information several sources share about several
targets: a *redundancy function*. Each node pair (alpha -> beta) of the lattice
(:mod:`synergy_lens.phiid.atoms`) gets one known quantity:

- one source, one target: the MI itself, e.g. K(x -> s) = I(x_t; x_{t+tau}, y_{t+tau});
- two sources about one target (or one source about two targets): a *single* redundancy
  of the two MIs (and the joint MI, which CCS needs);
- two sources about two targets, K(r -> r) = rtr: a *double* redundancy.

Two functions are built in (names as in ``phyid``):

``"MMI"`` (minimum mutual information; Barrett 2015, Mediano et al. 2109.13186):
    single = the smaller MI, double = the smallest of the four unit-to-unit MIs. On
    average values this is a closed form. On local (per-sample) values it follows
    ``phyid``: the local series whose *average* is smallest is kept, so the average of
    the local atoms equals the closed-form atoms exactly.
``"CCS"`` (common change in surprisal; Ince 2017, Entropy 19:318, Sec. 4):
    defined on local values only. Single: the local co-information
    c = i(A;T) + i(B;T) - i(A,B;T), kept where the signs of i(A;T), i(B;T), i(A,B;T) and
    c agree, else 0. Double (as ``phyid``'s ``double_redundacy_ccs`` and Mediano's
    ``DoubleRedundancyCCS.m``): the local *double co-information*
    d = -sum_{k != rtr} mu(rtr, k) K_k (which equals rtr - sts for any atoms; see
    :func:`~synergy_lens.phiid.atoms.bottom_mobius_weights`), kept where the signs of the
    four unit-to-unit local MIs and d agree, else 0.

Add your own with :func:`register_redundancy`.

Conventions: average inputs are tensors of any (broadcastable) shape; local inputs carry
the samples in the last dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from synergy_lens._registry import Registry
from synergy_lens.phiid.atoms import ATOMS, NODE_SOURCES, bottom_mobius_weights

__all__ = [
    "RedundancyFunction",
    "RedundancyName",
    "get_redundancy",
    "known_quantities",
    "register_redundancy",
    "registered_redundancies",
]

RedundancyName = Literal["MMI", "CCS"]
"""Names of the built-in redundancy functions."""

SingleFn = Callable[[Tensor, Tensor, Tensor], Tensor]
DoubleFn = Callable[[Sequence[Tensor], Tensor], Tensor]


@dataclass(frozen=True)
class RedundancyFunction:
    """A PhiID redundancy function.

    Attributes:
        name: registry key, e.g. ``"MMI"``.
        local_single: ``(i_a, i_b, i_joint) -> local redundancy`` on local MI values
            (samples last), for two sources about one target or one source about two.
        local_double: ``(four unit-to-unit local MIs, local double co-information) ->
            local rtr``. The MIs come in the order I(x;x), I(x;y), I(y;x), I(y;y).
        average_single: closed form on average MIs ``(i_a, i_b) -> redundancy``, or None
            when the function only exists locally (CCS).
        average_double: closed form ``(four average MIs) -> rtr``, or None.
    """

    name: str
    local_single: SingleFn
    local_double: DoubleFn
    average_single: Callable[[Tensor, Tensor], Tensor] | None = None
    average_double: Callable[[Sequence[Tensor]], Tensor] | None = None

    @property
    def closed_form(self) -> bool:
        """Whether average atoms follow from average MIs (no per-sample work)."""
        return self.average_single is not None and self.average_double is not None


def broadcast(*tensors: Tensor) -> list[Tensor]:
    """``torch.broadcast_tensors`` with types: expanded views to the common shape."""
    ndim = max(t.ndim for t in tensors)
    padded = [(1,) * (ndim - t.ndim) + tuple(t.shape) for t in tensors]
    shape = []
    for sizes in zip(*padded):
        big = {s for s in sizes if s != 1}
        if len(big) > 1:
            raise ValueError(f"shapes {[tuple(t.shape) for t in tensors]} do not broadcast")
        shape.append(big.pop() if big else 1)
    return [t.expand(shape) for t in tensors]


def _pick_lowest_mean(series: Sequence[Tensor]) -> Tensor:
    """Per leading index, the local series (samples last) whose mean is smallest (the
    first on ties, as ``np.argmin`` in phyid's double_redundacy_mmi)."""
    stacked = torch.stack(broadcast(*series))  # [k, ..., sample]
    best = stacked.mean(-1, keepdim=True).argmin(0, keepdim=True)  # [1, ..., 1]
    return stacked.gather(0, best.expand_as(stacked[:1])).squeeze(0)


def _mmi_local_single(i_a: Tensor, i_b: Tensor, i_joint: Tensor) -> Tensor:
    del i_joint
    a_lower = i_a.mean(-1, keepdim=True) < i_b.mean(-1, keepdim=True)
    return torch.where(a_lower, i_a, i_b)  # ties keep i_b, as phyid's redundancy_mmi


def _mmi_local_double(singles: Sequence[Tensor], double_coinfo: Tensor) -> Tensor:
    del double_coinfo
    return _pick_lowest_mean(singles)


def _mmi_average_double(singles: Sequence[Tensor]) -> Tensor:
    a, b, c, d = singles
    return torch.minimum(torch.minimum(a, b), torch.minimum(c, d))


def _same_sign(*values: Tensor) -> Tensor:
    first = torch.sign(values[0])
    agree = torch.ones_like(first, dtype=torch.bool)
    for v in values[1:]:
        agree &= torch.sign(v) == first
    return agree


def _ccs_local_single(i_a: Tensor, i_b: Tensor, i_joint: Tensor) -> Tensor:
    coinfo = i_a + i_b - i_joint
    return torch.where(_same_sign(i_a, i_b, i_joint, coinfo), coinfo, torch.zeros_like(coinfo))


def _ccs_local_double(singles: Sequence[Tensor], double_coinfo: Tensor) -> Tensor:
    keep = _same_sign(*singles, double_coinfo)
    return torch.where(keep, double_coinfo, torch.zeros_like(double_coinfo))


_REGISTRY: Registry[RedundancyFunction] = Registry(
    "redundancy", hint="add one with synergy_lens.phiid.register_redundancy"
)


def register_redundancy(fn: RedundancyFunction, *, overwrite: bool = False) -> RedundancyFunction:
    """Add a redundancy function to the registry under ``fn.name`` and return it."""
    return _REGISTRY.register(fn.name, fn, overwrite=overwrite)


def registered_redundancies() -> tuple[str, ...]:
    """Names accepted by the ``redundancy=`` arguments."""
    return tuple(_REGISTRY)


def get_redundancy(name: str | RedundancyFunction) -> RedundancyFunction:
    """Look up a redundancy function by name (or pass one through)."""
    if isinstance(name, RedundancyFunction):
        return name
    return _REGISTRY[name]  # an unknown name raises, listing the registered ones


for _fn in (
    RedundancyFunction(
        name="MMI",
        local_single=_mmi_local_single,
        local_double=_mmi_local_double,
        average_single=torch.minimum,
        average_double=_mmi_average_double,
    ),
    RedundancyFunction(name="CCS", local_single=_ccs_local_single, local_double=_ccs_local_double),
):
    register_redundancy(_fn)
assert set(get_args(RedundancyName)) <= set(_REGISTRY)


def known_quantities(
    mis: Mapping[tuple[str, str], Tensor], redundancy: RedundancyFunction, *, local: bool
) -> Tensor:
    """The 16 known quantities, stacked in :data:`ATOMS` order: ``[16, *shape]``.

    Args:
        mis: the nine MIs keyed as :data:`~synergy_lens.phiid.atoms.MI_KEYS`
            (``("x", "xy")`` is I(x_t; x_{t+tau}, y_{t+tau})). Shapes must broadcast.
        redundancy: the redundancy function.
        local: whether ``mis`` are local values (samples last) or averages.
    """
    if local:
        single: Callable[[Tensor, Tensor, Tensor], Tensor] = redundancy.local_single
    else:
        avg_single, avg_double = redundancy.average_single, redundancy.average_double
        if avg_single is None or avg_double is None:
            raise ValueError(f"redundancy {redundancy.name!r} has no closed form; use local values")

        def single(a: Tensor, b: Tensor, joint: Tensor) -> Tensor:
            del joint
            return avg_single(a, b)

    known: dict[int, Tensor] = {}
    double: tuple[int, tuple[str, ...]] | None = None
    for k, atom in enumerate(ATOMS):
        past, future = atom.split("t")
        src, tgt = NODE_SOURCES[past], NODE_SOURCES[future]
        if len(src) == 1 and len(tgt) == 1:
            known[k] = mis[(src[0], tgt[0])]
        elif len(tgt) == 1:
            known[k] = single(
                mis[(src[0], tgt[0])], mis[(src[1], tgt[0])], mis[("".join(src), tgt[0])]
            )
        elif len(src) == 1:
            known[k] = single(
                mis[(src[0], tgt[0])], mis[(src[0], tgt[1])], mis[(src[0], "".join(tgt))]
            )
        else:  # two sources about two targets: the double redundancy, once the rest are known
            double = (k, src)
    assert double is not None, "the lattice has exactly one double-redundancy node"
    k_double, sources = double
    singles = [mis[(a, b)] for a in sources for b in sources]
    if local:
        weights = bottom_mobius_weights().tolist()
        coinfo = -sum(w * known[k] for k, w in enumerate(weights) if k != k_double and w)
        known[k_double] = redundancy.local_double(singles, torch.as_tensor(coinfo))
    else:
        assert redundancy.average_double is not None
        known[k_double] = redundancy.average_double(singles)
    return torch.stack(broadcast(*(known[k] for k in range(len(ATOMS)))))
