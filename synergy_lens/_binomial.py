"""The Wilson score interval of a binomial proportion, shared by every accuracy table."""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["wilson_interval"]


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (Wilson 1927).

    Unlike the normal ``p +- z sqrt(p(1-p)/n)`` interval it stays inside [0, 1] and does not
    collapse to a point at 0/n or n/n, which matters for the 10-40 tasks of a condition.
    The bounds are exactly 0 at ``successes == 0`` and exactly 1 at ``successes == n``.

    Returns ``(nan, nan)`` when ``n == 0`` (no tasks: the accuracy is undefined). Raises
    ``ValueError`` for counts that cannot be (negative, or more successes than trials) and
    for a confidence outside (0, 1).
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} successes of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high
