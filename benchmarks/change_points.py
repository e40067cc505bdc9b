"""Does ``basebench history`` catch a 10 % step and stay quiet on noise like this machine's?

The detector is ``basebench history``'s own (``noisy_change_points``). Synthetic nightly
series, each night the median of ``repeat`` startup samples drawn with
the spread measured on this machine, stand in for a cell's history. Half the series get
a step of ``--step`` (default +10 %) at a random night; the other half none. A change
point within one night of the true step is a hit; any other change point is a false
alarm. Prints precision and recall with their 95 % Wilson intervals, and the noise used.

The noise comes from published results (``--results``: the within-run spread of every
ok cell's startup samples, as a coefficient of variation, median over cells) or from
``--cv``. Run it standalone::

    .venv/bin/python benchmarks/change_points.py --results results
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

from tasks.analysis.history import noisy_change_points
from tasks.dataset.reader import read_table
from tasks.dataset.stores import open_store


def measured_cv(results: str) -> tuple[float, int]:
    """(median CV of startup samples over ok cells, cells) from a published results store."""
    samples = read_table(open_store(results), "samples")
    cvs = [
        statistics.stdev(group) / statistics.mean(group)
        for _, group in samples.groupby(["run_id", "cell_id"])["startup_seconds"]
        if len(group) >= 3
    ]
    if not cvs:
        raise SystemExit(f"{results}: no cell with 3 or more startup samples")
    return statistics.median(cvs), len(cvs)


def night(level: float, cv: float, repeat: int, rng: random.Random) -> float:
    """One night's published value: the median of ``repeat`` noisy samples."""
    return statistics.median(level * (1 + rng.gauss(0, cv)) for _ in range(repeat))


def wilson(hits: int, total: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if total == 0:
        return (math.nan, math.nan)
    z, p = 1.96, hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", help="published results to measure the noise from")
    parser.add_argument("--cv", type=float, default=None, help="sample CV, instead of --results")
    parser.add_argument("--step", type=float, default=0.10, help="relative step (default 0.10)")
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5, help="startup samples per night")
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--alpha", type=float, default=0.05, help="as basebench history")
    args = parser.parse_args()
    if args.results:
        cv, cells = measured_cv(args.results)
        source = f"measured: median over {cells} cells of {args.results}"
    elif args.cv is not None:
        cv, source = args.cv, "given with --cv"
    else:
        raise SystemExit("give --results DIR (published runs) or --cv VALUE")

    rng = random.Random(args.seed)
    hits = false_alarms = steps = 0
    started = time.perf_counter()
    for number in range(args.series):
        stepped = number % 2 == 0
        at = rng.randrange(6, args.nights - 6) if stepped else args.nights
        series = [
            night(0.25 * (1 + args.step if n >= at else 1), cv, args.repeat, rng)
            for n in range(args.nights)
        ]
        found = [p.index for p in noisy_change_points(series, args.alpha)]
        hit = stepped and any(abs(index - at) <= 1 for index in found)
        steps += stepped
        hits += hit
        false_alarms += len(found) - hit
    seconds = time.perf_counter() - started

    detections = hits + false_alarms
    precision = hits / detections if detections else math.nan
    recall = hits / steps
    p_low, p_high = wilson(hits, detections)
    r_low, r_high = wilson(hits, steps)
    print(f"noise: startup sample CV {cv:.3f} ({source}); night = median of {args.repeat}")
    print(
        f"series: {args.series} x {args.nights} nights, {steps} with a {args.step:+.0%} step,"
        f" {args.series - steps} without; {seconds:.1f} s ({seconds / args.series * 1000:.0f}"
        " ms a series)"
    )
    print(f"hits {hits}, false alarms {false_alarms}, missed {steps - hits}")
    print(f"precision {precision:.3f} (95 % CI {p_low:.3f}-{p_high:.3f})")
    print(f"recall    {recall:.3f} (95 % CI {r_low:.3f}-{r_high:.3f})")


if __name__ == "__main__":
    main()
