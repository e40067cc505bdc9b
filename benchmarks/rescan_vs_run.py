"""Rescanning a run's stored SBOMs against a full run of the same matrix, side by side.

    flock /tmp/basebench-heavy.lock .venv/bin/python benchmarks/rescan_vs_run.py \
        --matrix configs/default.yaml --rounds 2 [--rescans 3] [--only KEY=GLOB ...]

Each round runs ``basebench run MATRIX --output TMP`` (build, save, inspect, scan and
probe of every cell, publish, compare) and then ``basebench rescan TMP --config MATRIX``
``--rescans`` times (the stored SBOMs of that run against the same DB, publish, compare),
each a fresh process from its start to its exit, as a user or the scheduler runs them:
the embedded Prefect server's start is in both. Printed: every measurement, the median
and spread (min-max) of each command, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# 0 done, 5 done with a stale DB (the run is published all the same).
ACCEPTED = {"run": (0, 5), "rescan": (0, 5)}


def timed(command: list[str], what: str) -> tuple[float, int]:
    """Wall seconds of ``basebench <command>`` in a fresh process, and its exit code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode not in ACCEPTED[what]:
        sys.exit(f"{what} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.returncode


def cells_of(output: Path) -> list[tuple[str, str | None, int]]:
    """(kind, source run, cells) of every run in ``output``, oldest first."""
    from tasks.dataset.reader import list_runs
    from tasks.dataset.stores import LocalStore

    return [(r["kind"], r["source_run_id"], r["cells"]) for r in list_runs(LocalStore(output))]


def spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.1f} s "
        f"(min {min(values):.1f}, max {max(values):.1f}, n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrix", default="configs/default.yaml", help="matrix file")
    parser.add_argument("--rounds", type=int, default=2, help="full runs (each then rescanned)")
    parser.add_argument("--rescans", type=int, default=3, help="rescans after each full run")
    parser.add_argument(
        "--only", action="append", default=[], metavar="KEY=GLOB", help="run only these cells"
    )
    args = parser.parse_args()
    only = [f"--only={item}" for item in args.only]
    full: list[float] = []
    rescans: list[float] = []
    exits: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-rescan-") as tmp:
        for round_number in range(1, args.rounds + 1):
            output = Path(tmp) / f"round-{round_number}"
            seconds, _ = timed(["run", args.matrix, "--output", str(output), *only], "run")
            full.append(seconds)
            print(f"round {round_number}: run {seconds:.1f} s", flush=True)
            for _ in range(args.rescans):
                seconds, code = timed(["rescan", str(output), "--config", args.matrix], "rescan")
                rescans.append(seconds)
                exits.append(code)
                print(f"round {round_number}: rescan {seconds:.1f} s (exit {code})", flush=True)
            runs = cells_of(output)
            print(f"round {round_number}: runs published {runs}", flush=True)
    ratio = statistics.median(full) / statistics.median(rescans)
    print(f"full run: {spread(full)}")
    print(f"rescan:   {spread(rescans)}")
    print(f"rescan is {ratio:.1f}x faster (ratio of the medians)")
    print(
        json.dumps(
            {
                "matrix": args.matrix,
                "only": args.only,
                "full": full,
                "rescan": rescans,
                "exits": exits,
                "ratio": ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
