"""Independent textbook references for the PhiID tests (NumPy/SciPy only).

Nothing here imports ``synergy_lens``: the lattice is written out by hand as the list of
atoms below each node, entropies come from ``scipy.stats.multivariate_normal``, and the
atoms from ``np.linalg.solve``. It follows the published reference tool ``phyid``
(Imperial-MIND-lab, ``calc_PhiID``): variables (x_t, y_t, x_{t+tau}, y_{t+tau}) divided
by their (n - 1) standard deviations, sample mean and ``np.cov`` covariance, local
entropies, MMI keeping the local MI series with the smallest mean, CCS with the
sign-agreement rule.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.stats import multivariate_normal

ATOM_NAMES = [
    "rtr",
    "rtx",
    "rty",
    "rts",
    "xtr",
    "xtx",
    "xty",
    "xts",
    "ytr",
    "ytx",
    "yty",
    "yts",
    "str",
    "stx",
    "sty",
    "sts",
]

# The atoms at or below each node of the product lattice, written out by hand.
BELOW = {
    "rtr": "rtr",
    "rtx": "rtr rtx",
    "rty": "rtr rty",
    "rts": "rtr rtx rty rts",
    "xtr": "rtr xtr",
    "xtx": "rtr rtx xtr xtx",
    "xty": "rtr rty xtr xty",
    "xts": "rtr rtx rty rts xtr xtx xty xts",
    "ytr": "rtr ytr",
    "ytx": "rtr rtx ytr ytx",
    "yty": "rtr rty ytr yty",
    "yts": "rtr rtx rty rts ytr ytx yty yts",
    "str": "rtr xtr ytr str",
    "stx": "rtr rtx xtr xtx ytr ytx str stx",
    "sty": "rtr rty xtr xty ytr yty str sty",
    "sts": " ".join(ATOM_NAMES),
}


def zeta() -> np.ndarray:
    """``Z[k, a] = 1`` if atom a is below node k (hand-written lattice)."""
    z = np.zeros((16, 16))
    for k, node in enumerate(ATOM_NAMES):
        for a in BELOW[node].split():
            z[k, ATOM_NAMES.index(a)] = 1
    return z


# variable indices: 0 = x past, 1 = y past, 2 = x future, 3 = y future
SRC = {"x": [0], "y": [1], "s": [0, 1]}
TGT = {"x": [2], "y": [3], "s": [2, 3]}


def _mmi(*series: np.ndarray) -> np.ndarray:
    means = [s.mean() for s in series]
    return series[int(np.argmin(means))]


def _ccs(i1: np.ndarray, i2: np.ndarray, i12: np.ndarray) -> np.ndarray:
    c = i1 + i2 - i12
    s = np.sign(np.stack([i1, i2, i12, c]))
    return np.where(np.all(s == s[0], axis=0), c, 0.0)


def _knowns(mi: dict[tuple[str, str], np.ndarray], redundancy: str) -> np.ndarray:
    """The 16 known quantities, phyid's way, as ``[16, n]`` (or ``[16]`` for averages)."""
    red = _mmi if redundancy == "MMI" else None
    k: dict[str, np.ndarray] = {}
    for p in "xys":
        for f in "xys":
            k[f"{p}t{f}"] = mi[(p, f)]
    if redundancy == "MMI":
        assert red is not None
        k["rtx"] = red(mi[("x", "x")], mi[("y", "x")])
        k["rty"] = red(mi[("x", "y")], mi[("y", "y")])
        k["rts"] = red(mi[("x", "s")], mi[("y", "s")])
        k["xtr"] = red(mi[("x", "x")], mi[("x", "y")])
        k["ytr"] = red(mi[("y", "x")], mi[("y", "y")])
        k["str"] = red(mi[("s", "x")], mi[("s", "y")])
        k["rtr"] = red(mi[("x", "x")], mi[("x", "y")], mi[("y", "x")], mi[("y", "y")])
    elif redundancy == "CCS":
        k["rtx"] = _ccs(mi[("x", "x")], mi[("y", "x")], mi[("s", "x")])
        k["rty"] = _ccs(mi[("x", "y")], mi[("y", "y")], mi[("s", "y")])
        k["rts"] = _ccs(mi[("x", "s")], mi[("y", "s")], mi[("s", "s")])
        k["xtr"] = _ccs(mi[("x", "x")], mi[("x", "y")], mi[("x", "s")])
        k["ytr"] = _ccs(mi[("y", "x")], mi[("y", "y")], mi[("y", "s")])
        k["str"] = _ccs(mi[("s", "x")], mi[("s", "y")], mi[("s", "s")])
        double_coinfo = (
            -mi[("x", "x")] - mi[("x", "y")] - mi[("y", "x")] - mi[("y", "y")]
            + mi[("x", "s")] + mi[("y", "s")] + mi[("s", "x")] + mi[("s", "y")] - mi[("s", "s")]
            + k["rtx"] + k["rty"] - k["rts"] + k["xtr"] + k["ytr"] - k["str"]
        )  # fmt: skip
        singles = [mi[("x", "x")], mi[("x", "y")], mi[("y", "x")], mi[("y", "y")]]
        s = np.sign(np.stack([*singles, double_coinfo]))
        k["rtr"] = np.where(np.all(s == s[0], axis=0), double_coinfo, 0.0)
    else:
        raise ValueError(redundancy)
    return np.stack([k[a] for a in ATOM_NAMES])


def local_atoms(x: np.ndarray, y: np.ndarray, tau: int = 1, redundancy: str = "MMI") -> np.ndarray:
    """Per-sample local atoms ``[16, n]`` of source x, target y, the textbook way."""
    v = np.stack([x[:-tau], y[:-tau], x[tau:], y[tau:]])
    return local_atoms_of_samples(v, redundancy)


def local_atoms_of_samples(v: np.ndarray, redundancy: str = "MMI") -> np.ndarray:
    """Local atoms ``[16, n]`` of samples ``v = [x_t, y_t, x_{t+tau}, y_{t+tau}]`` (``[4, n]``)."""
    v = v.astype(np.float64)
    v = v / v.std(axis=1, ddof=1, keepdims=True)
    mu, cov = v.mean(axis=1), np.cov(v)

    def h(idx: list[int]) -> np.ndarray:
        dist = multivariate_normal(mu[idx], cov[np.ix_(idx, idx)])
        return -np.atleast_1d(dist.logpdf(v[idx].T))

    mi = {(p, f): h(SRC[p]) + h(TGT[f]) - h(SRC[p] + TGT[f]) for p in "xys" for f in "xys"}
    return np.linalg.solve(zeta(), _knowns(mi, redundancy))


def average_atoms(
    x: np.ndarray, y: np.ndarray, tau: int = 1, redundancy: str = "MMI"
) -> np.ndarray:
    """Mean over samples of :func:`local_atoms`, ``[16]``."""
    out: np.ndarray = local_atoms(x, y, tau, redundancy).mean(axis=1)
    return out


def mmi_atoms_from_cov(cov4: np.ndarray) -> np.ndarray:
    """MMI atoms ``[16]`` of a Gaussian with 4 x 4 covariance (xp, yp, xf, yf)."""

    def logdet(idx: list[int]) -> float:
        sign, val = np.linalg.slogdet(cov4[np.ix_(idx, idx)])
        assert sign > 0
        return float(val)

    mi = {
        (p, f): np.array(0.5 * (logdet(SRC[p]) + logdet(TGT[f]) - logdet(SRC[p] + TGT[f])))
        for p in "xys"
        for f in "xys"
    }
    return np.linalg.solve(zeta(), _knowns(mi, "MMI"))


def tdmi(x: np.ndarray, y: np.ndarray, tau: int = 1) -> float:
    """I(x_t, y_t; x_{t+tau}, y_{t+tau}) from the log-dets of the sample covariance."""
    c = np.cov(np.stack([x[:-tau], y[:-tau], x[tau:], y[tau:]]))
    return 0.5 * float(
        np.linalg.slogdet(c[:2, :2])[1] + np.linalg.slogdet(c[2:, 2:])[1] - np.linalg.slogdet(c)[1]
    )


def var1_true_cov4(a: np.ndarray, q: np.ndarray, tau: int = 1) -> np.ndarray:
    """Exact 4 x 4 covariance of (X_t, X_{t+tau}) for X_{t+1} = A X_t + N(0, Q), stationary."""
    s = linalg.solve_discrete_lyapunov(a, q)  # S = A S A^T + Q
    at = np.linalg.matrix_power(a, tau)
    lag = s @ at.T  # Cov(X_t, X_{t+tau})
    return np.block([[s, lag], [lag.T, s]])


def simulate_var1(
    a: np.ndarray, q: np.ndarray, n_steps: int, rng: np.random.Generator, burn_in: int = 500
) -> np.ndarray:
    """``[dim, n_steps]`` sample path of X_{t+1} = A X_t + N(0, Q)."""
    dim = a.shape[0]
    chol = np.linalg.cholesky(q)
    noise = rng.standard_normal((n_steps + burn_in, dim)) @ chol.T
    out = np.empty((n_steps + burn_in, dim))
    state = np.zeros(dim)
    at = a.T
    for t in range(n_steps + burn_in):
        state = state @ at + noise[t]
        out[t] = state
    return out[burn_in:].T


def summaries_of_atoms(atoms: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """What the streaming engine keeps, read off dense atoms ``[16, unit, unit]`` (NaN = undefined).

    ``mean[k, i]``: nanmean over j of ``atoms[k, i, j]`` (unit i as source); ``count[i]``:
    defined partners; ``fraction[i]``: nanmean over j of sts / (|sts| + |rtr|) (zero
    denominators skipped); ``sts_pairs``/``rtr_pairs`` ``[k, 2]`` and ``*_atoms`` ``[k, 16]``:
    the pairs i < j with the largest value, ties by (i, j) ascending (``np.lexsort``).
    """
    sts, rtr = atoms[ATOM_NAMES.index("sts")], atoms[ATOM_NAMES.index("rtr")]
    denom = np.abs(sts) + np.abs(rtr)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(denom > 0, sts / denom, np.nan)
    defined = ~np.isnan(sts)
    out = {
        "mean": np.nanmean(np.where(defined, atoms, np.nan), -1),
        "count": defined.sum(-1),
        "fraction": np.nanmean(frac, -1),
    }
    iu, ju = np.triu_indices(atoms.shape[-1], 1)
    for name, values in (("sts", sts), ("rtr", rtr)):
        v = values[iu, ju]
        ok = ~np.isnan(v)
        i, j, v = iu[ok], ju[ok], v[ok]
        order = np.lexsort((j, i, -v))[:k]  # last key first: value descending, then i, then j
        out[f"{name}_pairs"] = np.stack([i[order], j[order]], -1)
        out[f"{name}_atoms"] = atoms[:, i[order], j[order]].T
    return out
