"""Statistics for noisy measurements: the rank test compare uses on startup samples.

Hand-written: scipy's exact Mann-Whitney test does not handle ties, and a 40 MB
dependency for one rank test is not worth it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

_EXACT_LIMIT = 200_000


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """U statistic of ``x`` and the two-sided p-value that x and y come from one distribution.

    Exact (a permutation test over every split of the pooled midranks, so ties are
    handled) when there are at most 200 000 splits; otherwise the normal approximation
    with tie and continuity corrections.
    """
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        raise ValueError("mann_whitney_u needs at least one value in each sample")
    ranks = _midranks([*x, *y])
    rank_sum = sum(ranks[:n])
    u = rank_sum - n * (n + 1) / 2
    if math.comb(n + m, n) <= _EXACT_LIMIT:
        return u, _exact_p(ranks, n, rank_sum)
    return u, _normal_p(ranks, n, m, u)


def _midranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for index in order[start : end + 1]:
            ranks[index] = (start + end) / 2 + 1  # tied values share their mean rank
        start = end + 1
    return ranks


def _exact_p(ranks: list[float], n: int, observed: float) -> float:
    expected = n * (len(ranks) + 1) / 2
    distance = abs(observed - expected) - 1e-9  # tolerate float noise in rank sums
    splits = extreme = 0
    for chosen in itertools.combinations(ranks, n):
        splits += 1
        if abs(sum(chosen) - expected) >= distance:
            extreme += 1
    return extreme / splits


def _normal_p(ranks: list[float], n: int, m: int, u: float) -> float:
    total = n + m
    ties = sum(t**3 - t for t in _tie_sizes(ranks))
    variance = n * m / 12 * ((total + 1) - ties / (total * (total - 1)))
    if variance <= 0:
        return 1.0  # every value equal: no evidence of a difference
    z = (abs(u - n * m / 2) - 0.5) / math.sqrt(variance)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def _tie_sizes(ranks: list[float]) -> list[int]:
    counts: dict[float, int] = {}
    for rank in ranks:
        counts[rank] = counts.get(rank, 0) + 1
    return [c for c in counts.values() if c > 1]
