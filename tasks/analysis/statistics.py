"""Statistics for noisy measurements.

- Two samples (compare): the Mann-Whitney rank test, the Hodges-Lehmann shift and
  Cliff's delta, so a verdict needs both evidence and a magnitude (as asv and bencher do).
- A history (``basebench history``): E-divisive means change points (Matteson & James
  2014) with a permutation significance test, as MongoDB's and Hunter's CI analysis do.

Hand-written: scipy's exact Mann-Whitney test does not handle ties; the E-divisive
package on PyPI (signal-processing-algorithms) pins numpy<2, which pandas 3 cannot use,
and ruptures has no significance test. Each routine here is short and tested.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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


def hodges_lehmann_shift(x: Sequence[float], y: Sequence[float]) -> float:
    """The median of every pairwise difference ``y_j - x_i``: how far y sits from x,
    robust to outliers (the estimator that goes with the Mann-Whitney test)."""
    if not x or not y:
        raise ValueError("hodges_lehmann_shift needs at least one value in each sample")
    return statistics.median(b - a for a in x for b in y)


def cliffs_delta(x: Sequence[float], y: Sequence[float]) -> float:
    """P(y > x) - P(y < x) over all pairs, in [-1, 1]: 0 means the samples overlap fully,
    +1 that every y is larger. |delta| >= 0.33 is a "medium" effect (Romano et al. 2006)."""
    if not x or not y:
        raise ValueError("cliffs_delta needs at least one value in each sample")
    greater = sum(1 for a in x for b in y if b > a)
    smaller = sum(1 for a in x for b in y if b < a)
    return (greater - smaller) / (len(x) * len(y))


@dataclass(frozen=True)
class ChangePoint:
    """Where a series changes: ``index`` is the first point of the new segment."""

    index: int
    p_value: float
    before: float  # median of the segment before
    after: float  # median of the segment after


def e_divisive(
    series: Sequence[float],
    alpha: float = 0.05,
    permutations: int = 199,
    min_size: int = 3,
    seed: int = 0,
) -> list[ChangePoint]:
    """Change points of ``series`` by E-divisive means, each significant at ``alpha``.

    Bisects recursively: in each segment, the split that maximises the energy
    divergence between its two sides is kept when fewer than ``alpha`` of
    ``permutations`` shuffles of that segment reach as high a divergence. Segments
    shorter than ``2 * min_size`` are not split. Deterministic for a given ``seed``.
    """
    values = [float(v) for v in series]
    rng = random.Random(seed)
    found: list[tuple[int, float]] = []
    pending = [(0, len(values))]
    while pending:
        start, end = pending.pop()
        segment = values[start:end]
        best = _best_split(segment, min_size)
        if best is None:
            continue
        split, statistic = best
        p_value = _permutation_p(segment, statistic, min_size, permutations, rng)
        if p_value >= alpha:
            continue
        found.append((start + split, p_value))
        pending += [(start, start + split), (start + split, end)]
    cuts = sorted(found)
    bounds = [0, *(i for i, _ in cuts), len(values)]
    return [
        ChangePoint(
            index,
            p_value,
            statistics.median(values[bounds[n] : index]),
            statistics.median(values[index : bounds[n + 2]]),
        )
        for n, (index, p_value) in enumerate(cuts)
    ]


def _best_split(values: Sequence[float], min_size: int) -> tuple[int, float] | None:
    """(split, divergence) maximising the scaled energy statistic Q over the splits.

    Q(s) = s (n - s) / n * (2 mean|X - Y| - mean|X - X'| - mean|Y - Y'|), every block
    sum read from a summed-area table of the distance matrix: O(n^2) per segment.
    """
    n = len(values)
    if n < 2 * min_size:
        return None
    points = np.asarray(values, dtype=float)
    area = np.zeros((n + 1, n + 1))
    area[1:, 1:] = np.abs(points[:, None] - points[None, :]).cumsum(0).cumsum(1)
    splits = np.arange(min_size, n - min_size + 1)
    total = area[n, n]
    left = area[splits, splits]  # sum over the left block (each pair counted twice)
    right = total - 2 * area[splits, n] + left  # the right block, by inclusion-exclusion
    between = area[splits, n] - left  # left x right
    size_left, size_right = splits.astype(float), (n - splits).astype(float)
    energy = (
        2 * between / (size_left * size_right)
        - left / (size_left * (size_left - 1))
        - right / (size_right * (size_right - 1))
    )
    q = size_left * size_right / n * energy
    best = int(np.argmax(q))
    return int(splits[best]), float(q[best])


def _permutation_p(
    values: list[float], observed: float, min_size: int, permutations: int, rng: random.Random
) -> float:
    shuffled = list(values)
    reached = 0
    for _ in range(permutations):
        rng.shuffle(shuffled)
        best = _best_split(shuffled, min_size)
        if best is not None and best[1] >= observed:
            reached += 1
    return (reached + 1) / (permutations + 1)
